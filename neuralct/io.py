"""Atomic file output: nothing half-written is ever left where a finished file belongs."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterator

from .errors import NeuralCTError

__all__ = [
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "write_json",
    "atomic_torch_save",
    "prepare_output_dir",
    "is_atomic_temporary",
]

#: Temporary files of :func:`atomic_path`: ``.NAME.XXXXXXXX.tmp`` (``tempfile.mkstemp``'s 8 random characters).
_TEMPORARY_PATTERN = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")


def is_atomic_temporary(name: str) -> bool:
    """Whether a file name is one of :func:`atomic_path`'s temporaries (left behind only by a killed run)."""
    return _TEMPORARY_PATTERN.match(name) is not None


def _umask() -> int:
    # os.umask can only be read by setting it; set it straight back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is synced and renamed onto ``path``.

    If the block raises, the temporary file is removed and ``path`` is left as it was. The
    file gets the mode the process's umask gives new files. A temporary left by a killed process
    matches :func:`is_atomic_temporary`.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    # mkstemp creates the file 0600; a finished file gets the mode open() would give it.
    os.fchmod(fd, 0o666 & ~_umask())
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to ``path`` atomically (serialised in memory, then renamed into place)."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def prepare_output_dir(path: str | os.PathLike) -> Path:
    """Create the output folder if needed and check that it can be written.

    Raises
    ------
    NeuralCTError
        If the folder cannot be created or written.
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NeuralCTError(f"cannot create output folder {path}: {exc.strerror}; choose another --output") from None
    if not path.is_dir():
        raise NeuralCTError(f"output path {path} exists and is not a folder; choose another --output")
    if not os.access(path, os.W_OK | os.X_OK):
        raise NeuralCTError(f"output folder {path} is not writable; choose another --output")
    return path
