"""Memory: what the machine has free, and refusing work whose arrays would not fit, before any is done."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from ..errors import NeuralCTError

__all__ = ["available_memory_bytes", "format_bytes", "check_fits"]

#: A container's memory limit and usage: cgroup v2, then v1 (an unlimited v1 group reports a huge limit).
_CGROUP_FILES = (
    (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory.current")),
    (Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"), Path("/sys/fs/cgroup/memory/memory.usage_in_bytes")),
)


def _meminfo_available() -> int | None:
    """``MemAvailable`` of /proc/meminfo in bytes (free memory plus what the kernel can reclaim), else free pages."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def _cgroup_available() -> int | None:
    """What the memory limit of this process's container leaves, in bytes; None without a limit."""
    for limit_file, usage_file in _CGROUP_FILES:
        try:
            limit, usage = limit_file.read_text().strip(), int(usage_file.read_text())
        except (OSError, ValueError):
            continue
        if limit.isdigit():
            return max(int(limit) - usage, 0)
    return None


def available_memory_bytes() -> int | None:
    """Memory a new allocation can take without swapping or being killed, in bytes; None where it cannot be told.

    The machine's available memory (``MemAvailable`` on Linux, else free pages from
    ``os.sysconf``), capped by what a container's memory limit leaves (cgroup v2 or v1).
    """
    known = [value for value in (_meminfo_available(), _cgroup_available()) if value is not None]
    return min(known) if known else None


def format_bytes(size: float) -> str:
    """A size for people: ``38.2 GB``, ``512 MB`` (powers of 1000, as ``free -h --si`` prints them)."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size / 1e3:.1f} kB"


def check_fits(needed: Mapping[str, tuple[float, str]], what: str) -> None:
    """Refuse work whose memory would not fit in what the machine has free.

    Parameters
    ----------
    needed : mapping of str to (float, str)
        For each large part of the work: its size in bytes and the argument that scales it, backquoted
        (``"`samples`"``), which the command line shows as its flag.
    what : str
        The work, in words (``"sampling 16 chains for 1000 samples"``).

    Raises
    ------
    NeuralCTError
        Naming the memory needed, the largest part, the memory available and the option to reduce.
    """
    available = available_memory_bytes()
    if available is None:
        return
    total = sum(size for size, _ in needed.values())
    if total > available:
        largest, (size, options) = max(needed.items(), key=lambda item: item[1][0])
        raise NeuralCTError(
            f"{what} needs about {format_bytes(total)} of memory ({format_bytes(size)} for {largest}), "
            f"but {format_bytes(available)} is available; reduce {options}"
        )
