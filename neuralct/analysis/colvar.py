"""CV time series in PLUMED's COLVAR format: writing, and reading with PLUMED's header conventions."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import NeuralCTError
from ..io import atomic_write_text

__all__ = ["write_colvar", "read_colvar"]


def write_colvar(
    path: str | os.PathLike,
    time_ps: np.ndarray,
    cvs: np.ndarray,
    names: Sequence[str] | None = None,
) -> None:
    """Write CV time series as a PLUMED COLVAR file, atomically.

    The file starts with ``#! FIELDS time cv1 cv2 ...`` followed by one
    whitespace-separated row per frame (time in ps, then the CVs in their own
    units, 10 significant digits), so that PLUMED tools, ``numpy.loadtxt`` and
    :func:`read_colvar` all read it. It is written to a temporary file and
    renamed into place.

    Parameters
    ----------
    path : str or os.PathLike
        Output file.
    time_ps : np.ndarray, shape=(n_frames,)
        Time of each frame in ps.
    cvs : np.ndarray, shape=(n_frames,) or (n_frames, n_cvs)
        CV values, slowest first.
    names : sequence of str, optional
        Column names of the CVs (no whitespace, unique, not ``time``);
        default ``cv1, cv2, ...``.
    """
    time_ps = np.asarray(time_ps, dtype=np.float64)
    cvs = np.asarray(cvs, dtype=np.float64)
    cvs = cvs[:, None] if cvs.ndim == 1 else cvs
    if time_ps.ndim != 1 or cvs.ndim != 2 or cvs.shape[0] != time_ps.shape[0]:
        raise NeuralCTError(
            f"COLVAR {path}: need one time per frame and CVs of shape (n_frames, n_cvs); "
            f"got times {time_ps.shape} and CVs {cvs.shape}"
        )
    names = [f"cv{k + 1}" for k in range(cvs.shape[1])] if names is None else list(names)
    if len(names) != cvs.shape[1]:
        raise NeuralCTError(f"COLVAR {path}: {len(names)} names for {cvs.shape[1]} CV columns")
    for name in names:
        if not name or any(c.isspace() for c in name) or name == "time":
            raise NeuralCTError(f"COLVAR {path}: field name {name!r} must be non-empty, without spaces, and not 'time'")
    if len(set(names)) != len(names):
        raise NeuralCTError(f"COLVAR {path}: field names {names} are not unique")
    table = np.column_stack([time_ps, cvs])
    rows = "\n".join(" ".join(f"{v: .10g}" for v in row) for row in table)
    header = "#! FIELDS time " + " ".join(names)
    atomic_write_text(path, header + "\n" + rows + ("\n" if rows else ""))


def read_colvar(path: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """Read a PLUMED COLVAR file.

    Follows PLUMED's conventions: ``#! FIELDS`` names the columns,
    ``#! SET key value`` lines (e.g. ``min_phi -pi``) and other ``#`` lines are
    skipped, and a header repeated later in the file (a restarted run
    appends one) is accepted when it names the same fields.

    Parameters
    ----------
    path : str or os.PathLike
        COLVAR file.

    Returns
    -------
    fields : list of str
        Column names, e.g. ``["time", "cv1", "cv2"]``.
    data : np.ndarray, shape=(n_rows, n_fields)
        The values, float64.

    Raises
    ------
    NeuralCTError
        If the file is missing, has no ``#! FIELDS`` line before its data, a
        row with the wrong number of columns or a non-numeric value, or a later
        header with different fields.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise NeuralCTError(f"cannot read COLVAR file {path}: {exc.strerror}") from None
    fields: list[str] | None = None
    rows: list[list[float]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        words = line.split()
        if not words:
            continue
        if words[0] == "#!" and len(words) > 1 and words[1] == "FIELDS":
            if fields is not None and words[2:] != fields:
                raise NeuralCTError(
                    f"COLVAR {path}, line {number}: a later header names fields {words[2:]} instead of {fields}; "
                    "split the file at the restart and read the parts separately"
                )
            fields = words[2:]
            continue
        if words[0].startswith("#"):
            continue
        if fields is None:
            raise NeuralCTError(f"COLVAR {path}, line {number}: data before any '#! FIELDS' header")
        if len(words) != len(fields):
            raise NeuralCTError(f"COLVAR {path}, line {number}: {len(words)} values for {len(fields)} fields {fields}")
        try:
            rows.append([float(w) for w in words])
        except ValueError:
            raise NeuralCTError(f"COLVAR {path}, line {number}: non-numeric value in {line.strip()!r}") from None
    if fields is None:
        raise NeuralCTError(f"COLVAR {path}: no '#! FIELDS' header; is this a PLUMED COLVAR file?")
    return fields, np.array(rows, dtype=np.float64).reshape(len(rows), len(fields))
