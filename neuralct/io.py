"""Atomic file output: nothing half-written is ever left where a finished file belongs.

Every file a command writes into its run folder (the folder holding :data:`LOCK_FILE`, see
:mod:`neuralct.cli.runs`) is also listed, by its path inside the folder, in :data:`OUTPUT_LOG`
before it appears under its final name. The list survives a killed process, so ``--overwrite``
can tell what neuralct wrote from what a user put there.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from .errors import NeuralCTError

__all__ = [
    "LOCK_FILE",
    "OUTPUT_LOG",
    "record_output",
    "publish",
    "strict_json",
    "sha256",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "write_json",
    "atomic_torch_save",
    "atomic_savez",
    "ArrayCheckpoint",
    "DamagedFile",
    "torch_load_verified",
    "prepare_output_dir",
    "is_atomic_temporary",
]

#: Held with ``flock`` while a run writes into its folder; its presence marks a run folder.
LOCK_FILE = ".neuralct.lock"
#: The paths (relative to the run folder, one per line) of every file neuralct wrote there.
OUTPUT_LOG = ".neuralct.files"

#: Temporary files of :func:`atomic_path`: ``.NAME.XXXXXXXX.tmp`` (``tempfile.mkstemp``'s 8 random characters).
_TEMPORARY_PATTERN = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")


def is_atomic_temporary(name: str) -> bool:
    """Whether a file name is one of :func:`atomic_path`'s temporaries (left behind only by a killed run)."""
    return _TEMPORARY_PATTERN.match(name) is not None


def _run_folder_of(path: Path) -> Path | None:
    """The nearest folder at or above ``path``'s folder that holds :data:`LOCK_FILE`, if any."""
    for folder in path.resolve().parents:
        if (folder / LOCK_FILE).exists():
            return folder
    return None


def record_output(path: str | os.PathLike) -> None:
    """List ``path`` in the output log of the run folder it lies in (nothing outside a run folder).

    Called before the file appears under its final name, so that a process killed right after
    still leaves it listed. Appends are single ``write`` calls on an ``O_APPEND`` file: replica
    processes writing into one folder at once do not interleave lines.
    """
    path = Path(path)
    folder = _run_folder_of(path)
    if folder is None:
        return
    line = (path.resolve().relative_to(folder).as_posix() + "\n").encode("utf-8")
    fd = os.open(folder / OUTPUT_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666 & ~_umask())
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(source: str | os.PathLike, path: str | os.PathLike) -> None:
    """Move a finished file ``source`` onto ``path`` (same file system), listing it as an output first."""
    record_output(path)
    os.replace(source, path)


def sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 digest of a file's content, read in 1 MiB blocks.

    Read again only when the file's inode, size, modification or change time differ from when it
    was last read in this process: a run fingerprints its inputs, checks them for repeats, records them in the
    model and checks its outputs, each through this one function.
    """
    status = os.stat(path)
    key = (status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns)
    return _sha256_of(str(Path(path).resolve()), key)


@functools.lru_cache(maxsize=1024)
def _sha256_of(path: str, status: tuple[int, int, int, int]) -> str:
    """:func:`sha256` of ``path`` as it was with ``status`` (inode, size, mtime, ctime in ns: the cache key)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
        publish(tmp, path)
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


def strict_json(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float replaced by ``None``, so that it is standard JSON.

    JSON has no NaN or Infinity; Python's ``json`` writes them as bare words that strict
    parsers (jq, JavaScript) reject. A figure that is undefined is ``null``; where it matters,
    the writer records why beside it.
    """
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {key: strict_json(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(value) for value in obj]
    if hasattr(obj, "dtype") and hasattr(obj, "tolist"):  # numpy scalars and arrays
        return strict_json(obj.tolist())
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented, standard JSON to ``path`` atomically (non-finite numbers as ``null``)."""
    atomic_write_text(path, json.dumps(strict_json(obj), indent=2, sort_keys=False, allow_nan=False) + "\n")


def atomic_savez(path: str | os.PathLike, **arrays: Any) -> None:
    """``numpy.savez`` of ``arrays`` to ``path`` atomically (serialised in memory, then renamed into place)."""
    import numpy as np

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


class ArrayCheckpoint:
    """What a run needs to resume, as named arrays with the settings they belong to, in one ``.npz`` file.

    The file holds one entry per array and ``settings`` as JSON text (sorted keys); it is written
    atomically, so a run killed while saving leaves the previous checkpoint whole.

    Parameters
    ----------
    arrays : mapping of str to array-like or bytes
        The state to resume from. Bytes (an OpenMM ``Context.createCheckpoint()``) are stored as
        a uint8 array.
    settings : dict
        JSON-serialisable settings the state belongs to, for the caller to compare on resume.

    Examples
    --------
    >>> ArrayCheckpoint({"step": 40, "state": context.createCheckpoint()}, {"seed": 1}).save("run.npz")
    >>> checkpoint = ArrayCheckpoint.load("run.npz", {"step": int, "state": bytes}, "delete it to start again")
    >>> checkpoint["step"], checkpoint.settings["seed"]
    (40, 1)
    """

    def __init__(self, arrays: Mapping[str, Any], settings: dict):
        self.arrays, self.settings = dict(arrays), settings

    def __getitem__(self, name: str) -> Any:
        """The entry ``name`` as :meth:`load` read it (or as it was given)."""
        return self.arrays[name]

    def save(self, path: str | os.PathLike) -> None:
        """Write the arrays and the settings to ``path`` atomically."""
        import numpy as np

        stored = {
            name: np.frombuffer(value, dtype=np.uint8) if isinstance(value, bytes) else np.asarray(value)
            for name, value in self.arrays.items()
        }
        atomic_savez(path, **stored, settings=np.array(json.dumps(self.settings, sort_keys=True)))

    @classmethod
    def load(
        cls, path: str | os.PathLike, entries: Mapping[str, Callable[[Any], Any]], advice: str
    ) -> "ArrayCheckpoint":
        """Read the checkpoint at ``path``, each of ``entries`` through its reader.

        Parameters
        ----------
        path : path
            A file written by :meth:`save`.
        entries : mapping of str to callable
            The arrays to read, each with what turns the stored array into its value: ``int`` or
            ``str`` for a scalar, ``bytes`` for bytes stored as uint8, ``np.asarray`` for an array.
        advice : str
            What the error of an unreadable file tells the user to do.

        Raises
        ------
        NeuralCTError
            If the file cannot be read, lacks an entry, or an entry cannot be read as asked.
        """
        import numpy as np

        try:
            with np.load(path, allow_pickle=False) as data:
                return cls(
                    {name: reader(data[name]) for name, reader in entries.items()},
                    json.loads(str(data["settings"])),
                )
        except Exception as exc:  # numpy and zipfile raise many types for damaged or foreign files
            raise NeuralCTError(f"checkpoint {path} cannot be read ({type(exc).__name__}); {advice}") from None


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to ``path`` atomically (serialised in memory, then renamed into place)."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


class DamagedFile(Exception):
    """A file that cannot be read back as it was written; the message says what is wrong.

    Attributes
    ----------
    failed_entry : str or None
        The archive entry whose checksum fails; None when the file could not be read at all.
    cause : str
        The type of the error that kept it from being read (``"CRC-32"`` for a failed checksum).
    """

    def __init__(self, message: str, failed_entry: str | None = None, cause: str = "CRC-32"):
        super().__init__(message)
        self.failed_entry, self.cause = failed_entry, cause


def torch_load_verified(path: str | os.PathLike) -> Any:
    """``torch.load`` (tensors and plain data only, on the CPU) of a file whose every part passes its CRC-32 check.

    A torch file is a zip archive; torch reads an entry whose bytes were damaged without
    noticing, so every entry's CRC-32 is checked first.

    Raises
    ------
    DamagedFile
        Naming the entry whose checksum fails, or what kept the file from being read.
    """
    import zipfile

    import torch

    data = Path(path).read_bytes()  # an OSError (permissions, a folder) is not damage: it propagates
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            failed_entry = archive.testzip()
    except Exception as exc:  # zipfile raises many types for truncated or foreign files
        raise DamagedFile(
            f"it cannot be read as a torch file ({type(exc).__name__})", cause=type(exc).__name__
        ) from None
    if failed_entry is not None:
        raise DamagedFile(f"the CRC-32 checksum of its entry {failed_entry} fails", failed_entry)
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for foreign contents
        raise DamagedFile(
            f"it cannot be read as a torch file ({type(exc).__name__})", cause=type(exc).__name__
        ) from None


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
        raise NeuralCTError(f"cannot create output folder {path}: {exc.strerror}; choose another `output`") from None
    if not path.is_dir():
        raise NeuralCTError(f"output path {path} exists and is not a folder; choose another `output`")
    if not os.access(path, os.W_OK | os.X_OK):
        raise NeuralCTError(f"output folder {path} is not writable; choose another `output`")
    return path
