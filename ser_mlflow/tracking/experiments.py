"""Which experiment a run belongs to, created (or adopted) with our artifact location."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from ser_mlflow.settings import DEFAULT_EXPERIMENT
from ser_mlflow.tracking.lifecycle import fail_run, launched_run_id
from ser_mlflow.tracking.liveness import reap_stale_runs
from ser_mlflow.tracking.store import (
    adopted_uris,
    artifact_root,
    check_artifact_location,
    configure,
    is_local_store,
)
from ser_mlflow.tracking.tags import MODEL_TRAINING_KIND, TAG_EXPERIMENT_KIND


def ensure_experiment(name: str) -> str:
    """Return the id of experiment ``name``, creating it with artifacts under ./mlartifacts.

    A tracking server decides artifact locations itself, so only database stores opened
    directly by this process get the ``./mlartifacts`` location. Experiments are tagged
    ``mlflow.experimentKind=custom_model_development`` so the UI opens them on their
    training runs, not on the GenAI overview.
    """
    from mlflow.exceptions import MlflowException

    if not name or not name.strip():
        raise ValueError(f"experiment: expected a name (e.g. ser-ces), got {name!r}")
    uri = configure()
    client = MlflowClient()
    if uri not in adopted_uris:  # once per process: Default's artifacts beside ours
        adopted_uris.add(uri)
        adopt_default_experiment()
    exp = client.get_experiment_by_name(name)
    if exp is None:
        location = None
        if is_local_store(uri):
            location = artifact_root()
            check_artifact_location(location)
        try:
            return client.create_experiment(
                name, artifact_location=location,
                tags={TAG_EXPERIMENT_KIND: MODEL_TRAINING_KIND},
            )
        except MlflowException as exc:
            # another process created it between our look and our create: use theirs
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise
    check_artifact_location(exp.artifact_location)
    if exp.lifecycle_stage == "deleted":
        client.restore_experiment(exp.experiment_id)
    mark_model_training(exp.experiment_id, exp.tags)
    reap_stale_runs(experiment_ids=[exp.experiment_id])
    return exp.experiment_id


#: The experiment MLflow creates with every store (id 0); `mlflow run` uses it when no
#: --experiment-name is given.
DEFAULT_EXPERIMENT_NAME = "Default"
DEFAULT_EXPERIMENT_ID = "0"


def mark_model_training(experiment_id: str, tags: Mapping[str, str] | None = None) -> None:
    """Tag an experiment as model training (what the UI opens on), unless a kind is set."""
    with contextlib.suppress(Exception):
        if tags is None:
            tags = MlflowClient().get_experiment(experiment_id).tags
        if TAG_EXPERIMENT_KIND not in tags:
            MlflowClient().set_experiment_tag(
                experiment_id, TAG_EXPERIMENT_KIND, MODEL_TRAINING_KIND
            )


def adopt_default_experiment() -> bool:
    """Keep the ``Default`` experiment's artifacts under ./mlartifacts, like ours.

    A database store gets ``Default`` (id 0) from MLflow with artifacts under
    ``./mlruns/0``, and ``mlflow run`` without ``--experiment-name`` puts its run there,
    before this code starts. MLflow has no call to move an experiment's artifact
    location, so while that folder holds no file yet, the location of ``Default`` and of
    its runs is rewritten in the store to ``./mlartifacts``. A ``Default`` whose
    ``./mlruns`` folder already holds artifacts is left as it is. Tracking servers decide
    their own locations and are never touched.

    Returns:
        True when the location was changed.
    """
    from urllib.parse import urlparse
    from urllib.request import url2pathname

    uri = configure()
    if not is_local_store(uri):
        return False
    try:
        exp = MlflowClient().get_experiment(DEFAULT_EXPERIMENT_ID)
    except Exception:
        return False
    old = exp.artifact_location or ""
    parsed = urlparse(old)
    if parsed.scheme not in ("", "file"):
        return False
    folder = Path(url2pathname(parsed.path) if parsed.scheme == "file" else old)
    if folder.parent.name != "mlruns" or _holds_files(folder):
        mark_model_training(exp.experiment_id, exp.tags)
        return False
    new = artifact_root()
    check_artifact_location(new)
    from mlflow.store.tracking.dbmodels.models import SqlExperiment, SqlRun
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore(uri, new)
    with store.ManagedSessionMaker(read_only=False) as session:
        row = session.query(SqlExperiment).filter(
            SqlExperiment.experiment_id == int(DEFAULT_EXPERIMENT_ID)
        ).one()
        row.artifact_location = new
        for run in session.query(SqlRun).filter(
            SqlRun.experiment_id == int(DEFAULT_EXPERIMENT_ID)
        ):
            if run.artifact_uri and run.artifact_uri.startswith(old.rstrip("/") + "/"):
                run.artifact_uri = f"{new}/{run.run_uuid}/artifacts"
    mark_model_training(exp.experiment_id, exp.tags)
    with contextlib.suppress(OSError):  # the empty folder MLflow may have made
        folder.rmdir()
        folder.parent.rmdir()
    return True


def _holds_files(folder: Path) -> bool:
    return folder.is_dir() and any(p.is_file() for p in folder.rglob("*"))


class ExperimentConflict(ValueError):
    """``mlflow run --experiment-name A`` (or Default) with ``-P experiment=B``."""


def check_launched_experiment(requested: str | None) -> None:
    """Refuse ``-P experiment`` that contradicts ``mlflow run``'s experiment, early.

    Cheap (one lookup, nothing created), so commands call it before loading TensorFlow.

    Raises:
        ExperimentConflict: see :func:`experiment_for`.
    """
    if requested and launched_run_id() and mlflow.active_run() is None:
        experiment_for(requested)


def experiment_for(requested: str | None) -> str:
    """Id of the experiment a new top-level run of this process belongs to.

    One rule for every entry point, so a step's parent, its children and its view share
    one experiment:

    - inside an active run (a child, or a step of ``main``): the active run's experiment;
    - under ``mlflow run`` the run MLflow created decides (``--experiment-name``, or
      ``Default`` without it); ``requested`` must be empty or name the same experiment;
    - otherwise ``requested`` (``ser-ces`` when empty), created when missing.

    Raises:
        ExperimentConflict: ``mlflow run`` chose another experiment than ``requested``;
            the launched run is ended FAILED with the reason.
    """
    configure()
    active = mlflow.active_run()
    if active is not None:  # a run opened now is a child: it joins its parent
        return str(active.info.experiment_id)
    launched = launched_run_id()
    if launched:
        run = MlflowClient().get_run(launched)
        exp = MlflowClient().get_experiment(run.info.experiment_id)
        if requested and requested != exp.name:
            how = ("--experiment-name" if exp.experiment_id != DEFAULT_EXPERIMENT_ID
                   else "no --experiment-name given")
            message = (
                f"experiment: `mlflow run` created this run in experiment {exp.name!r} "
                f"({how}), but -P experiment={requested!r} names another; choose it with "
                f"`mlflow run ... --experiment-name {requested}` and drop -P experiment"
            )
            fail_run(launched, message)
            os.environ.pop("MLFLOW_RUN_ID", None)
            raise ExperimentConflict(message)
        if exp.experiment_id == DEFAULT_EXPERIMENT_ID:
            adopt_default_experiment()
        else:
            mark_model_training(exp.experiment_id, exp.tags)
        return str(exp.experiment_id)
    return ensure_experiment(requested or DEFAULT_EXPERIMENT)


def experiment_tags(experiment_id: str) -> dict[str, str]:
    """Tags of an experiment (saved UI views live there)."""
    return dict(MlflowClient().get_experiment(experiment_id).tags)


def set_experiment_tag(experiment_id: str, key: str, value: str) -> None:
    MlflowClient().set_experiment_tag(experiment_id, key, value)


def delete_experiment_tag(experiment_id: str, key: str) -> None:
    MlflowClient().delete_experiment_tag(experiment_id, key)
