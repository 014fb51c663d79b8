"""Reading the store: runs, artifacts, and where the UI shows them."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from ser_mlflow.tracking.liveness import reap_stale_runs
from ser_mlflow.tracking.store import configure, tracking_uri


def get_run_or_error(run_id: str) -> Run:
    """A run by id, or a one-line ValueError naming it."""
    from mlflow.exceptions import MlflowException

    configure()
    try:
        return MlflowClient().get_run(run_id)
    except MlflowException:
        raise ValueError(f"run id {run_id!r}: no such run on {tracking_uri()}") from None


def search_runs(
    *,
    experiment_names: list[str] | None = None,
    experiment_ids: list[str] | None = None,
    filter_string: str = "",
    order_by: list[str] | None = None,
    max_results: int | None = None,
) -> list[Run]:
    """Every matching run across all experiments (or the named ones), paging past 1000."""
    configure()
    client = MlflowClient()
    if experiment_ids:
        exp_ids = list(experiment_ids)
    elif experiment_names:
        exps = [client.get_experiment_by_name(n) for n in experiment_names]
        exp_ids = [e.experiment_id for e in exps if e is not None]
    else:
        exp_ids = [e.experiment_id for e in client.search_experiments()]
    if not exp_ids:
        return []
    out: list[Run] = []
    token: str | None = None
    while True:
        page = _search_page(
            client,
            exp_ids,
            filter_string=filter_string,
            order_by=order_by,
            max_results=min(1000, max_results - len(out)) if max_results else 1000,
            page_token=token,
        )
        out.extend(page)
        token = page.token
        for i in range(len(out) - len(page), len(out)):
            if reap_stale_runs([out[i]]):  # a dead process's run: show what it is now
                out[i] = client.get_run(out[i].info.run_id)
        if not token or (max_results and len(out) >= max_results):
            return out


def _search_page(client: MlflowClient, exp_ids: list[str], **kw: Any) -> Any:
    """One page of runs; a malformed filter becomes a one-line ValueError."""
    from mlflow.exceptions import MlflowException

    try:
        return client.search_runs(exp_ids, **kw)
    except MlflowException as exc:
        if exc.error_code != "INVALID_PARAMETER_VALUE":
            raise
        first = str(exc).splitlines()[0]
        raise ValueError(f"filter: {kw.get('filter_string')!r} is not valid: {first}") from None


def download_artifacts(run_id: str, artifact_path: str, dst: str | Path | None = None) -> Path:
    """Download a run's artifact folder (any store, incl. proxied servers) and return it."""
    configure()
    dst = Path(dst or tempfile.mkdtemp(prefix="ser-mlflow-"))
    path = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path=artifact_path, dst_path=str(dst)
    )
    return Path(path)


def runs_page(experiment_id: str, base: str | None = None) -> str:
    """An experiment's runs in the UI's model-training pages (not the GenAI overview a new
    browser opens on: ``workflowType`` in the URL decides, whatever the browser stored)."""
    uri = tracking_uri()
    base = base or (uri.rstrip("/") if uri.startswith("http") else "http://127.0.0.1:5000")
    return f"{base}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def experiments_with_runs() -> list[tuple[str, str]]:
    """(id, name) of the active experiments that hold at least one run."""
    configure()
    client = MlflowClient()
    return [(e.experiment_id, e.name) for e in client.search_experiments()
            if client.search_runs([e.experiment_id], max_results=1)]


def ui_hint(experiment_id: str | None = None) -> str:
    """How a newcomer opens the UI on the store this process used (on the runs of
    ``experiment_id``, or of the only experiment with runs)."""
    uri = tracking_uri()
    if experiment_id is None:
        with contextlib.suppress(Exception):
            found = experiments_with_runs()
            experiment_id = found[0][0] if len(found) == 1 else None
    where = runs_page(experiment_id) if experiment_id else None
    if uri.startswith("http"):
        return f"Open the MLflow UI at {where or uri}"
    # `ser-mlflow ui` opens this same store and lists the saved views (ser_mlflow.views)
    return f"Open the MLflow UI:  ser-mlflow ui   then browse {where or 'http://127.0.0.1:5000'}"


def get_run(run_id: str) -> Run:
    configure()
    return MlflowClient().get_run(run_id)


def active_run_id() -> str:
    """Id of the run this process is logging to (inside ``run_context``)."""
    run = mlflow.active_run()
    if run is None:
        raise RuntimeError("no active MLflow run: call this inside tracking.run_context")
    return run.info.run_id


def run_status(run_id: str) -> str | None:
    """Status of any run (RUNNING, FINISHED, ...), None when it cannot be read (deleted,
    or on another tracking server)."""
    try:
        return MlflowClient().get_run(run_id).info.status
    except Exception:
        return None


def experiment_name_of(run_id: str) -> str:
    """Name of the experiment a run belongs to."""
    client = MlflowClient()
    return client.get_experiment(client.get_run(run_id).info.experiment_id).name


def installed_ui_bundle() -> tuple[str, list[Path]]:
    """(MLflow version, the JavaScript files of its UI) of this installation: what a local
    ``ser-mlflow ui`` serves (none with mlflow-skinny)."""
    js = Path(mlflow.__file__).parent / "server" / "js" / "build" / "static" / "js"
    return mlflow.__version__, sorted(js.glob("*.js")) if js.is_dir() else []
