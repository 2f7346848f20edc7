"""Importing the analysis package stays light: heavy optional libraries load only inside the functions."""

import subprocess
import sys


def test_import_does_not_load_matplotlib_mdtraj_or_deeptime():
    code = (
        "import sys, neuralct.analysis; "
        "print(sorted(m for m in ('matplotlib', 'mdtraj', 'deeptime') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
