"""Running a server as one process family: supervised in the foreground (Ctrl-C or SIGTERM
stop it and its workers), polled until ``/health`` answers, on a free port when throw-away."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

Echo = Callable[[str], None]


LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port nobody listens on right now (bound and released): for throw-away servers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: the server gets SIGTERM when this process dies, even by SIGKILL (it then
    stops its own workers, as on Ctrl-C)."""
    import ctypes

    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, 15)  # PR_SET_PDEATHSIG, SIGTERM


def _descendants() -> set[int]:
    """Pids of every process below this one (Linux /proc; empty elsewhere)."""
    parent: dict[int, int] = {}
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[-1].split()
            parent[int(stat_file.parent.name)] = int(fields[1])
        except (OSError, ValueError, IndexError):
            continue
    me, found = os.getpid(), set()
    for pid in parent:
        cur, seen = pid, 0
        while cur in parent and cur > 1 and seen < 64:
            cur, seen = parent[cur], seen + 1
            if cur == me:
                found.add(pid)
                break
    return found


def _signal_all(group: int, pids: set[int], sig: int) -> None:
    """Signal the server's group (when it is not ours) and every process in ``pids``."""
    if group != os.getpgrp():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, sig)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def run_supervised(command: list[str], env: dict[str, str], *, echo: Echo = print,
                   grace_s: float = 15.0) -> int:
    """Run a server (``mlflow server`` + uvicorn + workers) that stops as one.

    The server runs in this process's group when this process leads one (a shell job, a
    test's session), else in a group of its own. SIGTERM, SIGINT or SIGHUP to the printed
    pid stop the whole group (SIGKILL after ``grace_s``); SIGKILL of it reaches the server
    as SIGTERM. Without this, stopping the ``mlflow server`` process alone left uvicorn
    and its workers serving on the port.

    Returns:
        The server's exit status (0 when it was stopped by a signal we forwarded).
    """
    import signal
    import subprocess

    leader = os.getpgrp() == os.getpid()
    sys.stdout.flush()
    sys.stderr.flush()
    proc = subprocess.Popen(command, env=env, process_group=None if leader else 0,
                            preexec_fn=_die_with_parent)
    group = os.getpgrp() if leader else proc.pid
    echo(f"Stop it (server and workers): Ctrl-C, or kill {os.getpid()}")
    sys.stdout.flush()
    asked: list[float] = []
    family: set[int] = set()  # the server's processes, seen while they were alive

    def stop(signum: int, frame: object) -> None:
        if asked:
            return
        asked.append(time.monotonic())
        family.update(_descendants())
        _signal_all(group, family, signal.SIGTERM)

    signals = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    previous = {sig: signal.signal(sig, stop) for sig in signals}
    try:
        while True:
            try:
                code = proc.wait(timeout=1.0)
                break
            except subprocess.TimeoutExpired:
                if asked and time.monotonic() - asked[0] > grace_s:
                    _signal_all(group, family | _descendants(), signal.SIGKILL)
    finally:
        family.update(_descendants())
        if proc.poll() is None:
            proc.kill()
        _signal_all(group, family, signal.SIGKILL)  # workers that outlived the server
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0 if asked else code


def wait_until_healthy(uri: str, *, timeout: float = 120.0,
                       alive: Callable[[], bool] | None = None) -> None:
    """Poll ``<uri>/health`` until it answers 200 (a fresh store migrates first).

    Raises:
        TimeoutError: not healthy within ``timeout`` seconds, or ``alive()`` turned False.
    """
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            raise TimeoutError(f"the server for {uri} exited before it was healthy")
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"{uri}/health", timeout=2).status_code == 200:
                return
        time.sleep(0.3)
    raise TimeoutError(f"{uri}/health did not answer 200 within {timeout:g} s")
