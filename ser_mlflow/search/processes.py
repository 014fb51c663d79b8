"""Local worker processes of a search (`ser-mlflow search-worker`), started and stopped.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from ser_mlflow import tracking
from ser_mlflow.search.spec import STORAGE_ENV

# --------------------------------------------------------------------------- processes


def _worker_command(study_name: str, search_run_id: str, index: int) -> list[str]:
    return [
        sys.executable, "-m", "ser_mlflow.search", "worker",
        "--study-name", study_name, "--search-run-id", search_run_id, "--index", str(index),
    ]


def _start_workers(
    n: int, *, storage_url: str, study_name: str, search_run_id: str, logdir: Path
) -> list[tuple[subprocess.Popen[bytes], Path]]:
    """Start ``n`` extra local worker processes; their output goes to log files."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_RUN_ID",)}
    env["MLFLOW_TRACKING_URI"] = tracking.tracking_uri()
    env[STORAGE_ENV] = storage_url
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    procs = []
    for i in range(1, n + 1):
        log = logdir / f"worker-{i}.log"
        with open(log, "wb") as fh:
            procs.append((
                subprocess.Popen(
                    _worker_command(study_name, search_run_id, i),
                    stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=os.getcwd(),
                ),
                log,
            ))
    return procs


def _stop_workers(procs: Sequence[tuple[subprocess.Popen[bytes], Path]]) -> None:
    """SIGTERM first, so each worker ends its running child run KILLED and tells FAIL."""
    for p, _ in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p, _ in procs:
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _tail(path: Path, n: int = 5) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(lines[-n:])
