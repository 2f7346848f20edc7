"""What an output folder belongs to: one writer at a time, and a rerun that resumes or is refused, never mixes.

Every command writes into its ``--output`` folder through a :class:`RunFolder`. The folder
records the run's identity in ``run.json``: the command, every setting that changes a result,
and a fingerprint (name, size, SHA-256) of each input file. A rerun with the same identity
resumes; a rerun with another is refused with one line naming what differs, and the earlier
output is left byte-identical. ``--overwrite`` clears a folder that neuralct wrote and starts
afresh, but only a folder whose every file neuralct wrote (listed in its output log, see
:mod:`neuralct.io`): a file a user put there is never deleted. An OS lock (``flock`` on
``.neuralct.lock``, released by the kernel when the process dies, however it dies) keeps a
second run out of a folder in use.

A run that ends without error records the SHA-256 of every file it wrote in ``run.json``
(``outputs``). A rerun of that finished run checks them: outputs the command writes again
from what it kept (``rebuilt``) are restored by the rerun; any other file that is missing or
changed is refused in one line, so that a damaged result is never passed off as the run's.
"""

from __future__ import annotations

import fcntl
import fnmatch
import json
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import NeuralCTError
from ..io import LOCK_FILE, OUTPUT_LOG, is_atomic_temporary, prepare_output_dir, record_output, sha256, write_json

__all__ = ["fingerprint", "RunFolder", "IDENTITY_FILE", "LOCK_FILE", "OUTPUT_LOG"]

#: The folder's identity: command, settings and input fingerprints (and, once finished, its outputs' hashes).
IDENTITY_FILE = "run.json"
#: Files of the folder's own bookkeeping: never outputs, never a user's.
_BOOKKEEPING = {IDENTITY_FILE, LOCK_FILE, OUTPUT_LOG}

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
    return {"name": path.name, "size": path.stat().st_size, "sha256": sha256(path)}


def _plain(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples as lists, paths as strings)."""
    return json.loads(json.dumps(value, default=str))


#: Settings that earlier versions of a command did not record, with the value they ran with: a recorded identity
#: without one holds that value (an earlier run resumes where it is given, and is refused, naming it, where not).
UNRECORDED_BEFORE = {("bias", "equilibration_ps"): 0.0, ("explore", "round_equilibration_ps"): 0.0}


def _same_setting(old: Any, new: Any, input_names: set[str]) -> bool:
    """Whether a recorded setting is the current one; an input file recorded by its path (as earlier versions did) is
    the same as one by its name (its content is compared with the input files, ``input_names``). Any other text with
    a folder part (an OpenMM force field such as ``amber14/tip3p.xml``) is compared whole."""
    if isinstance(old, list) and isinstance(new, list):
        return len(old) == len(new) and all(_same_setting(a, b, input_names) for a, b in zip(old, new))
    if old == new:
        return True
    return isinstance(old, str) and isinstance(new, str) and new in input_names and "/" in old and Path(old).name == new


def _differences(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Names of what differs between two identities of one command: settings keys, input files."""
    old, new = dict(recorded.get("settings") or {}), current["settings"]
    presumed = {}
    for (command, key), value in UNRECORDED_BEFORE.items():
        if command == current["command"] and key not in old and key in new:
            old[key] = presumed[key] = value
    old_inputs, new_inputs = recorded.get("inputs") or [], current["inputs"]
    input_names = {item["name"] for item in new_inputs}
    changed_settings = [
        key + (f" (a run of an earlier version, which ran {presumed[key]:g})" if key in presumed else "")
        for key in sorted(set(old) | set(new))
        if not _same_setting(old.get(key), new.get(key), input_names)
    ]
    names = [", ".join(changed_settings)] if changed_settings else []
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
        Clear a folder that neuralct wrote (one holding ``run.json``, every file of it listed in
        its output log) instead of resuming or refusing.
    rebuilt : sequence of str
        Glob patterns (on paths inside the folder) of the outputs the command writes again, from
        what the run kept, whenever a finished run is rerun. A finished run's other outputs that
        are missing or changed are refused on entry.

    Attributes
    ----------
    path : Path
        The folder.
    resuming : bool
        True when the folder already held output of a run with the same identity.
    finished : bool
        True when that earlier run ended without error (its outputs' hashes are recorded).
    changed_outputs : list of str
        Outputs of the finished run that are missing or no longer match their recorded hash,
        all of them in ``rebuilt``: the command must write them again.
    identity : dict
        ``{"command", "settings", "inputs"}`` of this run.

    Raises
    ------
    NeuralCTError
        On entry: the folder cannot be written, another run holds it, it holds another run's
        output (and ``overwrite`` is not set), it holds files neuralct did not write, or a
        finished run's outputs changed that the command cannot write again.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        command: str,
        settings: Mapping[str, Any],
        inputs: Sequence[str | os.PathLike] = (),
        overwrite: bool = False,
        rebuilt: Sequence[str] = (),
    ):
        self.path = Path(path)
        self.command = command
        self.settings = dict(settings)
        self.inputs = [Path(item) for item in inputs]
        self.overwrite = overwrite
        self.rebuilt = tuple(rebuilt)
        self.resuming = False
        self.finished = False
        self.changed_outputs: list[str] = []
        self.identity: dict[str, Any] = {}
        self._lock: int | None = None
        self._created = False
        self._started = 0.0

    # -- context manager ---------------------------------------------------------------------
    def __enter__(self) -> "RunFolder":
        self.identity = _plain(
            {"command": self.command, "settings": self.settings, "inputs": [fingerprint(p) for p in self.inputs]}
        )
        self._created = not self.path.exists()
        prepare_output_dir(self.path)
        self._acquire_lock()
        self._started = time.time()
        try:
            self._remove_stale_temporaries()
            self._claim()
        except BaseException:
            self._release(failed=True)
            raise
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is None and self._lock is not None:
            self._record_outputs()
        self._release(failed=exc_type is not None)

    # -- steps -------------------------------------------------------------------------------
    def _acquire_lock(self) -> None:
        fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise NeuralCTError(
                f"output folder {self.path} is in use by another neuralct run; wait for it to finish "
                "or choose another --output"
            ) from None
        self._lock = fd

    def _release(self, failed: bool) -> None:
        if self._lock is None:
            return
        # A run that failed in a folder it created, before writing anything but its identity,
        # leaves nothing behind.
        if failed and self._created and self._own_files() <= {IDENTITY_FILE, OUTPUT_LOG}:
            shutil.rmtree(self.path, ignore_errors=True)
        os.close(self._lock)
        self._lock = None

    def _own_files(self) -> set[str]:
        """Names in the folder other than the lock file."""
        return {entry.name for entry in self.path.iterdir()} - {LOCK_FILE}

    def _files(self) -> list[str]:
        """Paths (relative, POSIX) of every file in the folder tree but its bookkeeping."""
        found = []
        for root, _, files in os.walk(self.path):
            for name in files:
                relative = Path(root, name).relative_to(self.path).as_posix()
                if relative not in _BOOKKEEPING:
                    found.append(relative)
        return sorted(found)

    def _logged(self) -> set[str]:
        """Paths listed in the output log: every file neuralct wrote into this folder."""
        log = self.path / OUTPUT_LOG
        return set(log.read_text(encoding="utf-8", errors="replace").splitlines()) if log.exists() else set()

    def _record_outputs(self) -> None:
        """List what the run wrote by other means than :mod:`neuralct.io`, then record every output's hash."""
        logged = self._logged()
        for relative in self._files():
            # A file neuralct's writers did not list but that this run created or changed (a
            # plain write by a library call) is this run's output too.
            if relative not in logged and (self.path / relative).stat().st_mtime >= self._started - 1.0:
                record_output(self.path / relative)
                logged.add(relative)
        outputs = {relative: self._digest(relative) for relative in self._files() if relative in logged}
        write_json(self.path / IDENTITY_FILE, {**self.identity, "outputs": outputs})

    def _digest(self, relative: str) -> str:
        """SHA-256 of an output (:func:`~neuralct.io.sha256`: read again only if it changed since it was last read)."""
        return sha256(self.path / relative)

    def _remove_stale_temporaries(self) -> None:
        # Temporaries of atomic writes (and staging folders) that a killed run left; no other
        # writer can hold them because we hold the lock.
        for root, folders, files in os.walk(self.path):
            for name in files:
                if is_atomic_temporary(name):
                    os.unlink(os.path.join(root, name))
            for name in [name for name in folders if is_atomic_temporary(name)]:
                shutil.rmtree(os.path.join(root, name))
                folders.remove(name)

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

    def _foreign(self) -> list[str]:
        """Files and folders in the folder that neuralct did not write (never deleted)."""
        logged = self._logged()
        ancestors = {parent.as_posix() for relative in logged for parent in Path(relative).parents}
        foreign = [relative for relative in self._files() if relative not in logged]
        for root, folders, _ in os.walk(self.path):
            for name in folders:
                relative = Path(root, name).relative_to(self.path).as_posix()
                if relative not in ancestors and not any(item.startswith(relative + "/") for item in foreign):
                    foreign.append(relative + "/")
        return sorted(foreign)

    def _clear(self) -> None:
        foreign = self._foreign()
        if foreign:
            listed = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
            raise NeuralCTError(
                f"output folder {self.path} holds files that neuralct did not write ({listed}); "
                "--overwrite deletes only neuralct's own output: move them out, or choose another --output"
            )
        for entry in self.path.iterdir():
            if entry.name == LOCK_FILE:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()

    def restored_line(self, source: str) -> str | None:
        """What a rerun of a finished run says before writing its missing or changed outputs again from ``source``."""
        if not self.changed_outputs:
            return None
        return (
            f"{self.path}: {', '.join(self.changed_outputs)} missing or changed since the run finished; "
            f"writing {'it' if len(self.changed_outputs) == 1 else 'them'} again from {source}"
        )

    def _refuse_clearing_inputs(self) -> None:
        """Refuse to clear the folder when one of the run's own input files lies in it."""
        inside = [item for item in self.inputs if item.resolve().is_relative_to(self.path.resolve())]
        if inside:
            raise NeuralCTError(
                f"--overwrite would delete input file {inside[0]}, which lies in the output folder {self.path}; "
                "choose another --output"
            )

    def remove_outputs(self) -> None:
        """Delete every file this run folder's runs wrote (never a user's file, never its identity)."""
        logged = self._logged()
        for relative in self._files():
            if relative in logged:
                (self.path / relative).unlink()

    def _check_outputs(self, recorded: Mapping[str, Any]) -> None:
        """Compare a finished run's outputs with their recorded hashes; refuse what cannot be written again."""
        outputs = recorded.get("outputs")
        if not isinstance(outputs, dict):
            return
        self.finished = True
        changed = [
            relative
            for relative, digest in sorted(outputs.items())
            if not (self.path / relative).is_file() or self._digest(relative) != digest
        ]
        lost = [
            relative for relative in changed if not any(fnmatch.fnmatch(relative, pattern) for pattern in self.rebuilt)
        ]
        if lost:
            listed = ", ".join(lost[:3]) + (f" and {len(lost) - 3} more" if len(lost) > 3 else "")
            raise NeuralCTError(
                f"output folder {self.path}: {listed} of the finished `neuralct {self.command}` run "
                f"{'is' if len(lost) == 1 else 'are'} missing or changed since it was written; "
                "add --overwrite to run it again, or choose another --output"
            )
        self.changed_outputs = changed

    def _claim(self) -> None:
        recorded = self._recorded_identity()
        if recorded is None and self._own_files() - {OUTPUT_LOG}:
            raise NeuralCTError(
                f"output folder {self.path} holds files that no neuralct run recorded ({IDENTITY_FILE} is missing); "
                "choose another --output or empty it"
            )
        if recorded is not None and not (self.path / OUTPUT_LOG).exists():
            # A folder without its output log (a neuralct too old to keep one, or a copy that left dot files
            # out): the outputs its finished run recorded are taken as its own, nothing else.
            outputs = recorded.get("outputs")
            for relative in outputs if isinstance(outputs, dict) else ():
                if (self.path / relative).is_file():
                    record_output(self.path / relative)
        if recorded is not None and self.overwrite:
            self._refuse_clearing_inputs()
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
        self._check_outputs(recorded)
        self.resuming = True
