"""Running ``neuralct`` as a separate process, as a shell starts it (for tests of signals)."""

import os
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def start_neuralct(command: list[str], new_session: bool = False) -> subprocess.Popen:
    """``python -m neuralct COMMAND`` from this checkout, one OpenMP thread, its stderr captured as text.

    The child starts with Ctrl-C's default disposition, as from a shell, whatever this process inherited;
    with ``new_session`` it leads a process group of its own (its worker processes join it), so that
    ``os.killpg`` reaches them all as a terminal's Ctrl-C does.
    """
    return subprocess.Popen(
        [sys.executable, "-m", "neuralct", *command],
        env=dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=new_session,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


#: Values other than their defaults of the dynamics options that `simulate` and `bias` share (option-passing tests).
DYNAMICS_OPTIONS = {
    "temperature": 310.0,
    "length_ns": 0.5,
    "timestep_fs": 1.5,
    "friction_per_ps": 2.5,
    "report_ps": 0.3,
    "equilibration_ps": 4.0,
}
