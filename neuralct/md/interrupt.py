"""Ctrl-C (SIGINT) held until an MD loop reaches a state it can save.

An interrupt that lands inside an OpenMM step or inside a learned CV's ``openmm.PythonForce``
callback would lose the frames since the last checkpoint (and reach the caller as an
``OpenMMException``). The loops of ``simulate`` and ``bias`` hold it instead: the signal sets a
flag, the loop checks the flag between frames (or report intervals), saves and raises
``KeyboardInterrupt`` there.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

__all__ = ["sigint_held", "InterruptedBeforeCheckpoint"]


class InterruptedBeforeCheckpoint(KeyboardInterrupt):
    """Ctrl-C before a run wrote its first checkpoint, so that a rerun starts it again; ``str()`` names the stage
    (e.g. "the equilibration")."""


@contextlib.contextmanager
def sigint_held() -> Iterator[threading.Event]:
    """Turn SIGINT into a flag that the MD loop acts on between frames.

    Only the main thread receives signals, and a process that ignores SIGINT keeps ignoring it
    (a replica's worker process: its parent stops it): there the flag is never set.

    Yields
    ------
    threading.Event
        Set once SIGINT has arrived.
    """
    interrupted = threading.Event()
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        yield interrupted
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: interrupted.set())
    try:
        yield interrupted
    finally:
        signal.signal(signal.SIGINT, previous)
