"""Opening a run that always ends truthfully: FINISHED, FAILED with the error, KILLED on
Ctrl-C / SIGTERM, or left to the reaper when the tracking server is lost."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator, Mapping
from typing import Any

import mlflow
from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient

from ser_mlflow.tracking.experiments import experiment_for
from ser_mlflow.tracking.lifecycle import end_as, in_main_thread, launched_run_id
from ser_mlflow.tracking.liveness import (
    clear_stop_note,
    heartbeat_start,
    heartbeat_stop,
    liveness_tags,
)
from ser_mlflow.tracking.store import (
    SERVER_RETRY_ENV,
    TrackingLost,
    configure,
    is_connection_loss,
    masked_uri,
    server_retry_budget,
    stop_retrying,
    tracking_uri,
)
from ser_mlflow.tracking.tags import TAG_RUN_NAME


class RunInterrupted(KeyboardInterrupt):
    """SIGTERM turned into an interrupt so the active run ends KILLED, not RUNNING."""


def sigterm_to_interrupt(signum: int, frame: Any) -> None:
    """SIGTERM handler: raise like Ctrl-C, so the run in hand ends KILLED with a reason."""
    raise RunInterrupted(f"received signal {signum}")


@contextlib.contextmanager
def run_context(
    *,
    experiment: str,
    run_name: str | None = None,
    tags: Mapping[str, str] | None = None,
    nested: bool = False,
    reuse_env_run: bool = True,
    resume_run_id: str | None = None,
) -> Iterator[mlflow.ActiveRun]:
    """Open (or resume, under ``mlflow run``) a run that always ends truthfully.

    Every run opened here carries a liveness record (``ser.host``, ``ser.pid``,
    ``ser.heartbeat``), so that a run whose process died (SIGKILL, a lost machine) is found
    and ended KILLED by the next command that looks at it (:func:`reap_stale_runs`).

    Args:
        experiment: experiment name (empty: ``ser-ces``); see :func:`experiment_for`.
            A nested run always joins its parent's experiment.
        run_name: display name.
        tags: tags set at start.
        nested: open as a child of the active run (implied when a run is active).
        reuse_env_run: resume the run ``mlflow run`` created for this process.
        resume_run_id: continue this run (its KILLED/FAILED note is removed).

    Yields:
        The active run. Raises whatever the body raised after recording it on the run;
        a lost tracking server becomes :class:`TrackingLost` (nothing more can be recorded).
    """
    active = _open_run(experiment, run_name, dict(tags or {}), nested=nested,
                       reuse_env_run=reuse_env_run, resume_run_id=resume_run_id)
    run_id = active.info.run_id
    heartbeat_start(run_id)
    previous = None
    is_main = in_main_thread()
    if is_main:
        previous = signal.signal(signal.SIGTERM, sigterm_to_interrupt)
    try:
        yield active
    except BaseException as exc:
        heartbeat_stop(run_id)
        _record_stop(run_id, exc)
        raise
    else:
        heartbeat_stop(run_id)
        _finish(run_id)
    finally:
        if is_main and previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _open_run(experiment: str, run_name: str | None, tags: dict[str, str], *, nested: bool,
              reuse_env_run: bool, resume_run_id: str | None) -> mlflow.ActiveRun:
    """Start, resume, or take over the run ``mlflow run`` created; see :func:`run_context`."""
    configure()
    parent = mlflow.active_run()
    nested = nested or parent is not None  # a run opened inside another is its child
    env_run = launched_run_id() if reuse_env_run and not nested else None
    start_tags = {**tags, **liveness_tags()}
    if resume_run_id:
        active = mlflow.start_run(run_id=resume_run_id, tags=start_tags)
        clear_stop_note(resume_run_id)  # the run is alive again
        return active
    if env_run:
        experiment_for(experiment)  # refuses a conflicting -P experiment, fixes Default
        active = mlflow.start_run(run_id=env_run, tags=start_tags)
        # left in the environment, it would make every nested start_run resume this run
        os.environ.pop("MLFLOW_RUN_ID", None)
        if run_name:
            MlflowClient().set_tag(env_run, TAG_RUN_NAME, run_name)
        return active
    # a child lives in its parent's experiment, whatever name it was given
    return mlflow.start_run(
        experiment_id=experiment_for(experiment),
        run_name=run_name,
        tags=start_tags,
        nested=nested,
    )


def _record_stop(run_id: str, exc: BaseException) -> None:
    """The body raised: end the run KILLED (interrupt) or FAILED (error), or drop it when
    the server is gone (then raise :class:`TrackingLost` instead of ``exc``)."""
    if isinstance(exc, KeyboardInterrupt):
        end_as(run_id, RunStatus.KILLED, "interrupted (Ctrl-C or SIGTERM)")
        return
    if is_connection_loss(exc):
        abandon(run_id)
        if isinstance(exc, TrackingLost):
            return
        raise TrackingLost(lost_message(run_id)) from None
    end_as(run_id, RunStatus.FAILED, f"{type(exc).__name__}: {exc}")


def _finish(run_id: str) -> None:
    """The body returned: end the run FINISHED (a lost server becomes TrackingLost)."""
    try:
        mlflow.end_run(RunStatus.to_string(RunStatus.FINISHED))
    except Exception as exc:
        if is_connection_loss(exc):
            abandon(run_id)
            raise TrackingLost(lost_message(run_id)) from None
        raise


def lost_message(run_id: str, resume: str | None = None) -> str:
    """One line: the server is gone, which run is left RUNNING there, how to go on."""
    return (
        f"tracking server {masked_uri(tracking_uri())} unreachable (retried "
        f"{server_retry_budget():g} s; ${SERVER_RETRY_ENV} changes that); run {run_id} "
        "stays RUNNING there until a command finds its process gone"
        + (f"; {resume}" if resume else "")
    )


def abandon(run_id: str) -> None:
    """Drop the run from this process without waiting for a server that is gone."""
    stop_retrying()
    active = mlflow.active_run()
    while active is not None:
        with contextlib.suppress(Exception):
            mlflow.end_run(RunStatus.to_string(RunStatus.KILLED))  # pops first, then fails
        if mlflow.active_run() is active:
            break
        active = mlflow.active_run()
