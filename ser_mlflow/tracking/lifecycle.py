"""Ending and tagging runs by id (also runs this process does not hold)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from typing import Any

import mlflow
from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient

from ser_mlflow.tracking.tags import TAG_ERROR, TAG_NOTE, TAG_REUSED_STEP_RUN, TAG_STAGE, TAG_STEP


def in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def end_as(run_id: str, status: int, message: str) -> None:
    """Record why a run stopped and end it; never masks the original error."""
    with contextlib.suppress(Exception):
        mlflow.flush_async_logging()
    with contextlib.suppress(Exception):
        client = MlflowClient()
        client.set_tag(run_id, TAG_ERROR, message[:5000])
        client.set_tag(
            run_id, TAG_NOTE, f"**{RunStatus.to_string(status)}**: {message[:4000]}"
        )
    active = mlflow.active_run()
    if active is not None and active.info.run_id == run_id:
        mlflow.end_run(RunStatus.to_string(status))
    else:
        MlflowClient().set_terminated(run_id, RunStatus.to_string(status))


def fail_run(run_id: str, message: str, tags: Mapping[str, Any] | None = None) -> None:
    """End a run this process may not hold (a dead worker's trial) as FAILED, with
    ``ser.error`` and a note; ``tags`` are set first. Never raises over a tag."""
    with contextlib.suppress(Exception):
        set_run_tags(run_id, tags or {})
    end_as(run_id, RunStatus.FAILED, message)


def note_launched_reuse(run_id: str, *, step: str, lines: list[str]) -> None:
    """Under ``mlflow run``, a reused step leaves the run MLflow created saying so.

    Without this the launched run ends FINISHED and empty, reading like a step that did
    nothing; with it, it names the finished run that holds the step's results.
    """
    launched = launched_run_id()
    if not launched:
        return
    os.environ.pop("MLFLOW_RUN_ID", None)
    with contextlib.suppress(Exception):
        set_run_tags(launched, {
            TAG_STAGE: "pipeline", TAG_STEP: step, TAG_REUSED_STEP_RUN: run_id,
            TAG_NOTE: f"Reused the finished {step} run {run_id} (same params, "
            "code and data):\n\n" + "\n".join(lines),
        })  # fmt: skip


def set_run_tags(run_id: str, tags: Mapping[str, Any]) -> None:
    """Tag any run by id (``set_tags`` tags the active one)."""
    client = MlflowClient()
    for key, value in tags.items():
        client.set_tag(run_id, key, str(value))


def launched_run_id() -> str | None:
    """The run ``mlflow run`` created for this process (``MLFLOW_RUN_ID``), if any."""
    return os.environ.get("MLFLOW_RUN_ID") or None
