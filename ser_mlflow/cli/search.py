"""The Optuna search command, and the worker that joins a running search.

The loss weights are what a search samples, so `search` offers no loss options.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import click

from ser_mlflow._quiet import import_tensorflow_quietly
from ser_mlflow.cli.app import main
from ser_mlflow.cli.errors import user_errors
from ser_mlflow.cli.train import LOSS_SETTINGS, build_train_config
from ser_mlflow.settings import (
    SEARCH_SETTINGS,
    optional_float,
    optional_int,
    settings_options,
    train_options,
)

STORAGE_ENV = "SER_MLFLOW_OPTUNA_STORAGE"  # keeps a password off worker command lines


@main.command()
@train_options(exclude=LOSS_SETTINGS)
@settings_options(SEARCH_SETTINGS)
@user_errors
def search(
    sampler: str,
    objective: str,
    n_trials: str,
    timeout: str,
    storage: str,
    study_name: str,
    resume: str,
    n_workers: int,
    prune: str,
    no_prune: bool,
    **kw: Any,
) -> None:
    """Optuna search over the loss weights alpha, beta, gamma; one nested run per trial."""
    from ser_mlflow import tracking
    from ser_mlflow.search.run import resolve_settings, run_search

    if no_prune and prune == "true":
        raise ValueError("prune: --prune and --no-prune contradict each other")
    settings: dict[str, Any] = dict(
        sampler=sampler,
        objective=objective,
        n_trials=optional_int(n_trials, "n_trials"),
        timeout=optional_float(timeout, "timeout"),
        study_name=study_name or None,
        n_workers=n_workers,
        prune=False if no_prune else {"auto": None, "true": True, "false": False}[prune],
        resume=resume == "true",
    )
    resolve_settings(**settings)  # bad combinations fail before TensorFlow loads
    cfg = build_train_config(**kw)
    import_tensorflow_quietly()
    run_search(cfg, storage=storage or None, echo=click.echo, **settings)
    click.echo(tracking.ui_hint())


@main.command(name="search-worker", hidden=True)
@click.option("--storage", envvar=STORAGE_ENV, required=True,
              help=f"Optuna RDB URL, or ${STORAGE_ENV}.")
@click.option("--study-name", required=True)
@click.option("--search-run-id", required=True)
@click.option("--index", type=int, default=1, show_default=True)
def search_worker(storage: str, study_name: str, search_run_id: str, index: int) -> None:
    """Join a running search as one more worker (its settings come from the study)."""
    from ser_mlflow import tracking
    from ser_mlflow.search.run import quiet_libraries
    from ser_mlflow.search.worker import run_worker

    os.environ.pop("MLFLOW_RUN_ID", None)
    tracking.configure()
    previous = signal.signal(signal.SIGTERM, tracking.sigterm_to_interrupt)
    try:
        with quiet_libraries():
            n = run_worker(storage=storage, study_name=study_name,
                           search_run_id=search_run_id, index=index,
                           echo=lambda s: click.echo(s))
    except ValueError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        click.echo("interrupted: the running trial was ended KILLED and told FAIL", err=True)
        raise SystemExit(130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    click.echo(f"[worker {index}] done: {n} trial(s)")
