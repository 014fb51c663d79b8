"""Optuna RDB storage: URLs, the SQLite write lock, and the stale-trial callback.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from ser_mlflow import tracking
from ser_mlflow.search.spec import ATTR_RUN, DEFAULT_HEARTBEAT_S
from ser_mlflow.tracking.tags import TAG_TRIAL_STATE

# --------------------------------------------------------------------------- storage


def default_storage_url() -> str:
    """SQLite ``optuna.db`` beside the MLflow SQLite store, else in the working directory."""
    uri = tracking.tracking_uri()
    folder = Path.cwd()
    if uri.startswith("sqlite:///") and ":memory:" not in uri:
        folder = Path(uri[len("sqlite:///") :]).parent
    return f"sqlite:///{(folder / 'optuna.db').resolve()}"


def mask_url(url: str) -> str:
    """The storage URL without its password (for tags and messages)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a SQLAlchemy URL: nothing we can parse, so show nothing secret
        return url.split("@")[-1] if "@" in url else url


def open_storage(
    url: str,
    *,
    heartbeat_interval: int = DEFAULT_HEARTBEAT_S,
    grace_period: int | None = None,
) -> optuna.storages.RDBStorage:
    """An Optuna RDB storage with heartbeat; stale trials are failed and retried.

    SQLite gets a long lock timeout because several worker processes write to one file.

    Raises:
        ValueError: the URL cannot be opened.
    """
    kwargs: dict[str, Any] | None = None
    sqlite = url.startswith("sqlite:")
    if sqlite:
        # isolation_level=None: pysqlite stops issuing its own (deferred) BEGIN; see below
        kwargs = {"connect_args": {"timeout": 120, "isolation_level": None}}
        path = url[len("sqlite:///") :]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    from ser_mlflow.tracking.locks import sqlite_init_lock

    try:
        # processes opening a new SQLite file together would each create its schema
        with sqlite_init_lock(url), warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = optuna.storages.RDBStorage(
                url,
                engine_kwargs=kwargs,
                heartbeat_interval=heartbeat_interval,
                grace_period=grace_period or 4 * heartbeat_interval,
                heartbeat_stale_trial_callback=on_stale_trial,
            )
    except Exception as exc:
        raise ValueError(f"storage: cannot open {mask_url(url)}: {exc}") from None
    if sqlite:
        from sqlalchemy import event

        # Claiming a ticket reads "WAITING" and writes "RUNNING" in one transaction. The
        # row lock Optuna asks for (SELECT ... FOR UPDATE) does not exist in SQLite, and
        # pysqlite starts a transaction only at the first write, so two processes could
        # both read WAITING and both run the trial. BEGIN IMMEDIATE takes SQLite's write
        # lock at the start of every transaction, which makes the claim atomic.
        event.listen(storage.engine, "begin", _begin_immediate)
    return storage


def _begin_immediate(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def on_stale_trial(study: optuna.Study, trial: FrozenTrial) -> None:
    """Heartbeat callback: the trial's worker died. Fail its MLflow run, queue a retry.

    The retry (Optuna's ``RetryHeartbeatStaleTrialCallback``) keeps the trial's weights and
    user attributes, so it stays a ticket of the same search and the budget is not lost.
    """
    run_id = trial.user_attrs.get(ATTR_RUN)
    if run_id:
        _fail_run_if_running(
            run_id,
            f"worker stopped: no heartbeat for trial {trial.number} within the grace period "
            "(the Optuna trial was failed and a retry queued)",
        )
    optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=2)(study, trial)


def _fail_run_if_running(run_id: str, message: str) -> None:
    if tracking.run_status(run_id) == "RUNNING":
        tracking.fail_run(run_id, message, tags={TAG_TRIAL_STATE: "fail"})
