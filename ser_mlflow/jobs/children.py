"""A sweep's children as N processes at once, TensorFlow's threads split between them.

Why processes: one TensorFlow runtime per child, so two trainings never contend for one
interpreter lock or one thread pool, and a crash or OOM takes down one child only.
Each task runs in a fresh ``spawn`` process (a forked TensorFlow is not safe), which
costs one TensorFlow import per child: worth it for runs of minutes, not of seconds.

Signals: the children ignore SIGINT; the parent, on Ctrl-C or SIGTERM (both arrive as
``KeyboardInterrupt`` inside a run), sends each running child SIGTERM, which its own
``run_context`` turns into a KILLED run, and waits for them before it re-raises, so no
child run is left RUNNING.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, cast


@dataclass
class ProcessDied:
    """A child process that ended without a result (killed, out of memory, a crash)."""

    exitcode: int | None


def cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def threads_per_child(jobs: int) -> int:
    """TensorFlow intra-op threads for each of ``jobs`` children: the cores, split."""
    return max(1, cores() // max(1, jobs))


def _child_main(fn: Callable[..., Any], args: tuple[Any, ...], threads: int,
                conn: Connection) -> None:
    """Entry point of one child process: split the threads, run ``fn``, send its result."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops children by SIGTERM
    os.environ["TF_NUM_INTRAOP_THREADS"] = str(threads)
    os.environ["TF_NUM_INTEROP_THREADS"] = "1"
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    try:
        result = fn(*args)
    except KeyboardInterrupt:  # SIGTERM from the parent: the run is already KILLED
        os._exit(130)
    conn.send(result)
    conn.close()


def map_processes(
    fn: Callable[..., Any],
    tasks: Sequence[tuple[Any, ...]],
    *,
    jobs: int,
    on_result: Callable[[int, Any], None] | None = None,
) -> list[Any]:
    """``[fn(*t) for t in tasks]`` with up to ``jobs`` processes at once, in task order.

    ``fn`` must be a module-level function and its arguments and result picklable. A
    child that dies without a result gives :class:`ProcessDied`. ``on_result(i, r)`` is
    called in the parent as each task ends.
    """
    ctx = multiprocessing.get_context("spawn")
    threads = threads_per_child(min(jobs, len(tasks)))
    results: list[Any] = [None] * len(tasks)
    pending = list(range(len(tasks)))
    running: dict[Connection, tuple[int, Any]] = {}
    try:
        while pending or running:
            while pending and len(running) < jobs:
                i = pending.pop(0)
                recv, send = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_child_main, args=(fn, tasks[i], threads, send),
                                   daemon=False)
                proc.start()
                send.close()  # the parent keeps only the reading end: EOF when the child dies
                running[recv] = (i, proc)
            for ready in wait(list(running)):
                conn = cast(Connection, ready)
                i, proc = running.pop(conn)
                try:
                    results[i] = conn.recv()
                except EOFError:
                    proc.join()
                    results[i] = ProcessDied(proc.exitcode)
                proc.join()
                conn.close()
                if on_result is not None:
                    on_result(i, results[i])
    except BaseException:
        _stop([proc for _, proc in running.values()])
        raise
    return results


def _stop(procs: Sequence[Any]) -> None:
    """SIGTERM each running child and wait until it has recorded its run and ended."""
    for proc in procs:
        if proc.is_alive():
            os.kill(proc.pid, signal.SIGTERM)
    for proc in procs:
        proc.join(timeout=120)
        if proc.is_alive():  # stuck: the stale-run reaper ends its run later
            proc.kill()
            proc.join()
