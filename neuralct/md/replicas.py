"""Replicas as parallel worker processes: how many run at once, their threads, their progress, their end.

Each replica runs in a worker process of a ``spawn`` pool and reports every frame it records to
the parent through a queue, which feeds one progress bar. A worker whose parent process is gone
(killed, even with SIGKILL) stops at its next frame, leaving its last checkpoint for the rerun;
an idle one (its replica finished, or none was left for it) stops within 0.2 s.

Ctrl-C: the workers ignore SIGINT (a terminal sends it to every process of the command); the
parent, interrupted, sets a stop event that each running replica checks after every frame (it
saves its frames and checkpoint there and ends), starts no further replica, waits for the running
ones and raises ``KeyboardInterrupt``.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import threading
import time
from typing import Any, Callable, Sequence

from ..errors import NeuralCTError

__all__ = ["default_jobs", "plan_jobs", "run_in_processes"]


def default_jobs(replicas: int, cores: int) -> int:
    """Replicas run at once when ``jobs`` is not given: all of them up to two per core, else one per core.

    Equal replicas on fewer processes than replicas leave cores idle in the last round (3 on 2
    processes: the third runs alone), while up to two single-thread processes per core finish
    together. Measured with ``benchmarks/bench_replicas.py``: 3 tri-alanine replicas on 2 cores
    ran 2.45 times as fast as one after another with 3 jobs, 1.56 times with 2.
    """
    return replicas if replicas <= 2 * cores else cores


def plan_jobs(replicas: int, jobs: int | None, threads: int | None) -> tuple[int, int | None]:
    """The processes that run ``replicas`` and the CPU threads of each.

    Parameters
    ----------
    replicas : int
        Independent replicas to run.
    jobs : int, optional
        Replicas at once (default :func:`default_jobs` on this machine's cores); never more than
        ``replicas``.
    threads : int, optional
        CPU threads of each job; without it, one job keeps the platform's default and several
        share the cores (at least one thread each).

    Returns
    -------
    jobs : int
        Processes to run at once.
    threads : int or None
        CPU threads of each (None: the platform's default).

    Raises
    ------
    NeuralCTError
        If ``replicas`` or ``jobs`` is below 1.
    """
    if replicas < 1:
        raise NeuralCTError(f"`replicas` must be >= 1, got {replicas}")
    cores = os.cpu_count() or 1
    jobs = default_jobs(replicas, cores) if jobs is None else jobs
    if jobs < 1:
        raise NeuralCTError(f"`jobs` must be >= 1, got {jobs}")
    jobs = min(jobs, replicas)
    return jobs, threads if threads is not None or jobs == 1 else max(1, cores // jobs)


class _QueueProgress:
    """Progress of a replica in a worker process: frame counts go to the parent through a queue."""

    def __init__(self, frames: Any, parent: int):
        self.frames, self.parent, self.sent = frames, parent, 0

    def update(self, n: int) -> None:
        """Send ``n`` new frames to the parent, or end this worker if the parent is gone."""
        # A worker orphaned by a killed parent stops here; its last checkpoint stays valid for the rerun.
        if os.getppid() != self.parent:
            os._exit(1)
        self.frames.put(n)
        self.sent += n


#: The progress of the replica this worker process runs, and the parent's stop event (set by :func:`_start_worker`).
_worker_progress: _QueueProgress | None = None
_worker_stop: Any = None


def _start_worker(frames: Any, parent: int, stop: Any) -> None:
    """Worker initializer: the progress queue, the stop event, SIGINT ignored, and a watchdog for the parent.

    The per-frame check of :class:`_QueueProgress` stops a running replica at once; the
    watchdog also ends a worker that waits for work (it has finished its replica, or none was
    left for it), which otherwise blocks on the pool's queue forever.
    """
    global _worker_progress, _worker_stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _worker_progress, _worker_stop = _QueueProgress(frames, parent), stop
    threading.Thread(target=_exit_when_orphaned, args=(parent,), daemon=True).start()


def _exit_when_orphaned(parent: int, interval_s: float = 0.2) -> None:
    """End this worker process once its parent is no longer ``parent`` (checked every ``interval_s`` s)."""
    while os.getppid() == parent:
        time.sleep(interval_s)
    os._exit(1)


def _call_with_progress(function: Callable[..., Any], arguments: tuple) -> tuple[Any, int]:
    """``function(*arguments, progress, stop)`` in a worker, ``progress`` sending frame counts to the parent.

    Returns the result and the frames the call reported, so that the parent can wait for the
    last of them: a queue's items travel through a feeder thread and may arrive after the result.
    A call that a worker takes up after the parent has stopped raises ``KeyboardInterrupt`` at once.
    """
    if _worker_stop.is_set():
        raise KeyboardInterrupt
    sent_before = _worker_progress.sent
    result = function(*arguments, _worker_progress, _worker_stop)
    return result, _worker_progress.sent - sent_before


def run_in_processes(function: Callable[..., Any], calls: Sequence[tuple], jobs: int, progress: Any) -> list[Any]:
    """Call ``function(*arguments, progress)`` for each of ``calls`` in ``jobs`` worker processes.

    Parameters
    ----------
    function : callable
        A module-level function (workers import it by name); its last two arguments are an
        object whose ``update(n)`` reports ``n`` new frames and an event (``is_set()``) that the
        parent sets on Ctrl-C, on which the function saves its work and raises ``KeyboardInterrupt``.
    calls : sequence of tuple
        The arguments of each call (picklable).
    jobs : int
        Worker processes.
    progress : object
        Receives every worker's frame counts through ``update(n)`` (a tqdm bar).

    Returns
    -------
    list
        The results, in the order of ``calls``.

    Raises
    ------
    NeuralCTError
        If a worker process died (killed, or out of memory).
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    # spawn, not fork: the parent may already hold OpenMM contexts and their threads (the platform probe).
    context = multiprocessing.get_context("spawn")
    frames, stop = context.Queue(), context.Event()
    with ProcessPoolExecutor(
        jobs, mp_context=context, initializer=_start_worker, initargs=(frames, os.getpid(), stop)
    ) as pool:
        futures = [pool.submit(_call_with_progress, function, arguments) for arguments in calls]
        received, pending = 0, set(futures)
        try:
            while pending:
                with contextlib.suppress(queue.Empty):
                    count = frames.get(timeout=0.2)
                    progress.update(count)
                    received += count
                pending = {f for f in pending if not f.done()}
        except KeyboardInterrupt:
            stop.set()
            for future in futures:
                future.cancel()
            wait(futures)  # the running replicas save at the end of their frame under way
            raise
        try:
            outcomes = [f.result() for f in futures]
        except BrokenProcessPool:
            raise NeuralCTError(
                "a replica's worker process died (killed, or out of memory); "
                "rerun the same command to resume every replica from its checkpoint"
            ) from None
        while received < sum(sent for _, sent in outcomes):
            count = frames.get()
            progress.update(count)
            received += count
        return [result for result, _ in outcomes]
