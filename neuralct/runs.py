"""What an output folder belongs to: one writer at a time, and a rerun that resumes or is refused, never mixes.

Every command writes into its ``--output`` folder through a :class:`RunFolder`. The folder
records the run's identity in ``run.json``: the command, every setting that changes a result,
and a fingerprint (name, size, SHA-256) of each input file. A rerun with the same identity
resumes; a rerun with another is refused with one line naming what differs, and the earlier
output is left byte-identical. ``--overwrite`` clears a folder that neuralct wrote and starts
afresh. An OS lock (``flock`` on ``.neuralct.lock``, released by the kernel when the process
dies, however it dies) keeps a second run out of a folder in use.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import NeuralCTError
from .io import is_atomic_temporary, prepare_output_dir, write_json

__all__ = ["fingerprint", "RunFolder", "IDENTITY_FILE", "LOCK_FILE"]

#: The folder's identity: command, settings and input fingerprints.
IDENTITY_FILE = "run.json"
#: Held with ``flock`` while a run writes into the folder.
LOCK_FILE = ".neuralct.lock"

_IDENTITY_KEYS = ("command", "settings", "inputs")


def fingerprint(path: str | os.PathLike) -> dict[str, Any]:
    """Identify an input file by its content.

    Parameters
    ----------
    path : path
        A file to read.

    Returns
    -------
    dict
        ``{"name": file name, "size": bytes, "sha256": hex digest of the content}``; the
        folder part of the path is left out, so moved files keep their fingerprint.

    Raises
    ------
    NeuralCTError
        If the file does not exist or is not a file.
    """
    path = Path(path)
    if not path.is_file():
        raise NeuralCTError(f"input file {path} does not exist or is not a file")
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"name": path.name, "size": path.stat().st_size, "sha256": digest.hexdigest()}


def _plain(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples as lists, paths as strings)."""
    return json.loads(json.dumps(value, default=str))


def _differences(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Names of what differs between two identities of one command: settings keys, input files."""
    old, new = recorded.get("settings") or {}, current["settings"]
    changed_settings = [key for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]
    names = [", ".join(changed_settings)] if changed_settings else []
    old_inputs, new_inputs = recorded.get("inputs") or [], current["inputs"]
    if old_inputs != new_inputs:
        if [item.get("name") for item in old_inputs] == [item["name"] for item in new_inputs]:
            changed = [new["name"] for old, new in zip(old_inputs, new_inputs) if old != new]
            names.append(f"content of input file(s) {', '.join(changed)}")
        else:
            names.append("input files")
    return names


class RunFolder:
    """An output folder held by one run: locked, identified, cleaned of stale temporaries.

    Use as a context manager around everything a command writes::

        with RunFolder(args.output, "train", settings, inputs=paths, overwrite=args.overwrite) as run:
            ...  # run.path exists; run.resuming says whether it holds this run's earlier output

    Parameters
    ----------
    path : path
        The output folder; created if missing.
    command : str
        The command writing it (``simulate``, ``train``...).
    settings : mapping
        Every setting that changes a result (JSON-serialisable after ``str`` of paths).
    inputs : sequence of path
        Input files, identified by :func:`fingerprint` (order matters).
    overwrite : bool
        Clear a folder that neuralct wrote (one holding ``run.json``) instead of resuming or refusing.

    Attributes
    ----------
    path : Path
        The folder.
    resuming : bool
        True when the folder already held output of a run with the same identity.
    identity : dict
        ``{"command", "settings", "inputs"}`` of this run.

    Raises
    ------
    NeuralCTError
        On entry: the folder cannot be written, another run holds it, it holds another run's
        output (and ``overwrite`` is not set), or it holds files neuralct did not write.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        command: str,
        settings: Mapping[str, Any],
        inputs: Sequence[str | os.PathLike] = (),
        overwrite: bool = False,
    ):
        self.path = Path(path)
        self.command = command
        self.settings = dict(settings)
        self.inputs = [Path(item) for item in inputs]
        self.overwrite = overwrite
        self.resuming = False
        self.identity: dict[str, Any] = {}
        self._lock: int | None = None
        self._created = False

    # -- context manager ---------------------------------------------------------------------
    def __enter__(self) -> "RunFolder":
        self.identity = _plain({"command": self.command, "settings": self.settings, "inputs": [fingerprint(p) for p in self.inputs]})
        self._created = not self.path.exists()
        prepare_output_dir(self.path)
        self._acquire_lock()
        try:
            self._remove_stale_temporaries()
            self._claim()
        except BaseException:
            self._release(failed=True)
            raise
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        self._release(failed=exc_type is not None)

    # -- steps -------------------------------------------------------------------------------
    def _acquire_lock(self) -> None:
        fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise NeuralCTError(
                f"output folder {self.path} is in use by another neuralct run; wait for it to finish or choose another --output"
            ) from None
        self._lock = fd

    def _release(self, failed: bool) -> None:
        if self._lock is None:
            return
        # A run that failed in a folder it created, before writing anything but its identity,
        # leaves nothing behind.
        if failed and self._created and self._own_files() <= {IDENTITY_FILE}:
            shutil.rmtree(self.path, ignore_errors=True)
        os.close(self._lock)
        self._lock = None

    def _own_files(self) -> set[str]:
        """Names in the folder other than the lock file."""
        return {entry.name for entry in self.path.iterdir()} - {LOCK_FILE}

    def _remove_stale_temporaries(self) -> None:
        # Temporaries of atomic writes that a killed run left; no other writer can hold them
        # because we hold the lock.
        for root, _, files in os.walk(self.path):
            for name in files:
                if is_atomic_temporary(name):
                    os.unlink(os.path.join(root, name))

    def _recorded_identity(self) -> dict[str, Any] | None:
        path = self.path / IDENTITY_FILE
        if not path.exists():
            return None
        try:
            recorded = json.loads(path.read_text())
        except (OSError, ValueError):
            recorded = None
        if not isinstance(recorded, dict) or "command" not in recorded:
            raise NeuralCTError(f"{path} cannot be read as a neuralct run record; choose another --output")
        return recorded

    def _clear(self) -> None:
        for entry in self.path.iterdir():
            if entry.name == LOCK_FILE:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()

    def _claim(self) -> None:
        recorded = self._recorded_identity()
        if recorded is None and self._own_files():
            raise NeuralCTError(
                f"output folder {self.path} holds files that no neuralct run recorded ({IDENTITY_FILE} is missing); "
                "choose another --output or empty it"
            )
        if recorded is not None and self.overwrite:
            self._clear()
            recorded = None
        if recorded is None:
            write_json(self.path / IDENTITY_FILE, self.identity)
            return
        if recorded["command"] != self.command:
            raise NeuralCTError(
                f"output folder {self.path} holds output of `neuralct {recorded['command']}`, not of {self.command}; "
                "add --overwrite to replace it or choose another --output"
            )
        differences = _differences(recorded, self.identity)
        if differences:
            raise NeuralCTError(
                f"output folder {self.path} holds a `neuralct {recorded['command']}` run with other "
                f"{'; '.join(differences)}; rerun with the same options and inputs, add --overwrite to replace it, "
                "or choose another --output"
            )
        self.resuming = True
