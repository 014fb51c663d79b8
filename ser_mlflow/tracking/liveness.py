"""Liveness of runs: who runs a run (host, pid, heartbeat) and ending the dead ones KILLED."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from mlflow.entities import Run, RunStatus
from mlflow.tracking import MlflowClient

from ser_mlflow.tracking.lifecycle import end_as
from ser_mlflow.tracking.store import tracking_uri
from ser_mlflow.tracking.tags import (
    TAG_ERROR,
    TAG_HEARTBEAT,
    TAG_HEARTBEAT_EVERY,
    TAG_HOST,
    TAG_NOTE,
    TAG_PID,
    TAG_PID_START,
    TAG_STAGE,
)

STALE_AFTER_ENV = "SER_MLFLOW_STALE_AFTER_S"
DEFAULT_STALE_AFTER_S = 600.0  # a run on another machine: no heartbeat for this long
HEARTBEAT_S = 30.0
_live_runs: set[str] = set()
_beat_thread: Any = None


def _hostname() -> str:
    import socket

    return socket.gethostname()


def _process_start(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (tells a reused pid apart), None when unknown."""
    try:
        stat_text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat_text.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def _process_alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except (OSError, IndexError):
        return True
    if state in ("Z", "X"):  # killed, not yet collected by its parent
        return False
    return start is None or _process_start(pid) in (None, start)


def liveness_tags() -> dict[str, str]:
    """Who runs this run: host, pid (with its start time) and a first heartbeat."""
    import time

    tags = {TAG_HOST: _hostname(), TAG_PID: str(os.getpid()), TAG_HEARTBEAT: f"{time.time():.0f}"}
    if not tracking_uri().startswith("sqlite:"):  # see heartbeat_start
        tags[TAG_HEARTBEAT_EVERY] = f"{HEARTBEAT_S:g}"
    start = _process_start(os.getpid())
    if start is not None:
        tags[TAG_PID_START] = start
    return tags


def heartbeat_start(run_id: str) -> None:
    """Beat every 30 s for runs on shared stores (a server or database other machines see:
    their processes cannot be checked by pid from here)."""
    global _beat_thread
    import threading

    _live_runs.add(run_id)
    if tracking_uri().startswith("sqlite:") or (_beat_thread and _beat_thread.is_alive()):
        return
    uri = tracking_uri()

    def beat() -> None:
        import time

        while True:
            time.sleep(HEARTBEAT_S)
            client = MlflowClient(tracking_uri=uri)
            for rid in list(_live_runs):
                with contextlib.suppress(Exception):
                    client.set_tag(rid, TAG_HEARTBEAT, f"{time.time():.0f}")

    _beat_thread = threading.Thread(target=beat, name="ser-mlflow-heartbeat", daemon=True)
    _beat_thread.start()


def heartbeat_stop(run_id: str) -> None:
    _live_runs.discard(run_id)


def stale_reason(run: Run) -> str | None:
    """Why a RUNNING run is dead (its process is gone, or no heartbeat for too long), or
    None when it is alive, finished, or has no liveness record (started by other tools)."""
    import time

    tags = run.data.tags
    if run.info.status != "RUNNING" or TAG_PID not in tags or TAG_HOST not in tags:
        return None
    host = tags[TAG_HOST]
    try:
        pid = int(tags[TAG_PID])
    except ValueError:
        return None
    if host == _hostname():
        if _process_alive(pid, tags.get(TAG_PID_START)):
            return None
        return f"its process {pid} on {host} is gone"
    if TAG_HEARTBEAT_EVERY not in tags:  # no renewed heartbeat: only its host can tell
        return None
    try:
        age = time.time() - float(tags.get(TAG_HEARTBEAT, "0"))
    except ValueError:
        return None
    limit = float(os.environ.get(STALE_AFTER_ENV) or DEFAULT_STALE_AFTER_S)
    return f"no heartbeat from {host} for {age:.0f} s" if age > limit else None


def resume_hint(run: Run) -> str | None:
    """The command that continues a training run, None for other runs."""
    if "epochs" in run.data.params and run.data.tags.get(TAG_STAGE) in ("unimodal", "bimodal"):
        return f"ser-mlflow train --resume-run-id {run.info.run_id}"
    return None


def end_stale(run: Run, reason: str, *, echo: Any = None) -> None:
    """End a dead run KILLED with why, and say so in one line on stderr."""
    import sys

    hint = resume_hint(run)
    message = f"interrupted: {reason}" + (f"; continue it: {hint}" if hint else "")
    end_as(run.info.run_id, RunStatus.KILLED, message)
    line = (f"note: run {run.info.run_id} ({run.info.run_name}) was RUNNING but {reason}: "
            "ended KILLED" + (f"; continue it: {hint}" if hint else ""))
    (echo or (lambda text: print(text, file=sys.stderr)))(line)


def reap_stale_runs(runs: list[Run] | None = None, *, experiment_ids: list[str] | None = None,
                    echo: Any = None) -> list[str]:
    """End every dead RUNNING run among ``runs`` (or in the experiments) as KILLED.

    Returns:
        The ids of the runs ended.
    """
    if runs is None:
        client = MlflowClient()
        ids = experiment_ids or [e.experiment_id for e in client.search_experiments()]
        if not ids:
            return []
        runs = list(client.search_runs(ids, filter_string="attributes.status = 'RUNNING'",
                                       max_results=1000))
    ended = []
    for run in runs:
        reason = stale_reason(run)
        if reason:
            end_stale(run, reason, echo=echo)
            ended.append(run.info.run_id)
    return ended


def clear_stop_note(run_id: str) -> None:
    """A resumed run is alive again: drop the error tag and the KILLED/FAILED note."""
    client = MlflowClient()
    tags = client.get_run(run_id).data.tags
    if TAG_ERROR in tags:
        client.delete_tag(run_id, TAG_ERROR)
    note = tags.get(TAG_NOTE, "")
    if note.startswith(("**KILLED**", "**FAILED**")):
        client.delete_tag(run_id, TAG_NOTE)
