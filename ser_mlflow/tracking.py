"""The only module that talks to MLflow: store set-up, runs, logging, search, download.

Contract (DESIGN.md §5): tracking URI from ``MLFLOW_TRACKING_URI`` or the embedded default
``sqlite:///mlflow.db`` in the working directory, artifacts of experiments we create under
``./mlartifacts``. A run opened here always ends in a truthful state: FINISHED only when
the body returned, FAILED with the error recorded, KILLED on Ctrl-C / SIGTERM.

Other modules import MLflow only where MLflow is the subject: ``pyfunc``/``pyfunc_entry``
(the model class MLflow loads), ``server`` (MLflow's own server options) and ``views``
(which UI bundle is installed).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Run, RunStatus
from mlflow.tracking import MlflowClient

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_ARTIFACT_DIR = "mlartifacts"

TAG_STAGE = "ser.stage"
TAG_FEATURE_SETS = "ser.feature_sets"
TAG_LOSS = "ser.loss"
TAG_DIGEST = "ser.data_digest"  # identity of the data root (all feature sets)
TAG_CONTENT_DIGEST = "ser.content_digest"  # sha256 of the bytes this run read
TAG_ERROR = "ser.error"


class RunInterrupted(KeyboardInterrupt):
    """SIGTERM turned into an interrupt so the active run ends KILLED, not RUNNING."""


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` when set, else the embedded SQLite store in the cwd."""
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


class TrackingUnavailable(ValueError):
    """The tracking store cannot be used: a malformed URI, a server that does not answer.

    A ``ValueError`` so that every command reports it in one line with exit code 2.
    """


#: URI schemes MLflow tracks to (``+driver`` suffixes of database URIs allowed).
TRACKING_SCHEMES: tuple[str, ...] = (
    "http", "https", "sqlite", "postgresql", "mysql", "mssql", "file", "databricks",
    "databricks-uc", "uc",
)
#: Driver module -> the pip package that provides it (for the "install X" hint).
DRIVER_PACKAGES: dict[str, str] = {
    "psycopg": "psycopg[binary]", "psycopg2": "psycopg2-binary", "MySQLdb": "mysqlclient",
    "pymysql": "PyMySQL", "pyodbc": "pyodbc",
}
SERVER_CHECK_TIMEOUT_S = (5.0, 10.0)  # connect, read: well inside the 30 s a user waits
_checked_uris: set[str] = set()


def check_tracking_uri(uri: str) -> None:
    """Refuse a tracking URI MLflow cannot use, in one line, before any run starts.

    A tracking server is asked for ``/health`` once per process: without that, MLflow's
    client retries a refused connection for minutes (``MLFLOW_HTTP_REQUEST_MAX_RETRIES``,
    7 tries with exponential backoff) and then prints a traceback. Those retries stay on
    for every later request: they are what carries a run over a server restart.

    Raises:
        TrackingUnavailable: unknown scheme, bare path, missing host or database driver,
            or a server that does not answer.
    """
    if uri in _checked_uris:
        return
    from urllib.parse import urlparse

    parsed = urlparse(uri)
    scheme = parsed.scheme.lower()
    base = scheme.split("+", 1)[0]
    if base not in TRACKING_SCHEMES:
        raise TrackingUnavailable(
            f"tracking URI: expected e.g. http://127.0.0.1:5000, sqlite:///mlflow.db or "
            f"postgresql://user:password@host/db in MLFLOW_TRACKING_URI, got {_masked(uri)!r}"
        )
    if base in ("http", "https"):
        if not parsed.hostname:
            raise TrackingUnavailable(f"tracking URI: no host in {_masked(uri)!r}")
        _check_server(uri)
    if base in ("sqlite", "postgresql", "mysql", "mssql"):
        problem = database_driver_problem(uri)
        if problem:
            raise TrackingUnavailable(f"tracking URI: {problem}")
    _checked_uris.add(uri)


def database_driver_problem(uri: str) -> str | None:
    """Why SQLAlchemy cannot open ``uri`` here (a malformed URL, a missing driver), or None.

    Asks SQLAlchemy for the dialect's driver rather than assuming one: SQLAlchemy 2.1 opens
    ``postgresql://`` with psycopg 3, 2.0 with psycopg2.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        dialect = make_url(uri).get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError) as exc:
        return f"cannot parse {_masked(uri)!r}: {str(exc).splitlines()[0]}"
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        module = (exc.name or dialect.driver).split(".")[0]
        package = DRIVER_PACKAGES.get(module, module)
        return f"{dialect.name} needs the Python package {package} (pip install '{package}')"
    return None


def _masked(uri: str) -> str:
    from urllib.parse import urlparse

    password = urlparse(uri).password
    return uri.replace(f":{password}@", ":***@", 1) if password else uri


def _check_server(uri: str) -> None:
    import requests

    try:
        requests.get(f"{uri.rstrip('/')}/health", timeout=SERVER_CHECK_TIMEOUT_S)
    except requests.exceptions.SSLError:
        return  # it answered; certificates are MLflow's business (MLFLOW_TRACKING_INSECURE_TLS)
    except requests.exceptions.RequestException as exc:
        reason = "connection refused" if "refused" in str(exc).lower() else type(exc).__name__
        raise TrackingUnavailable(
            f"tracking server {_masked(uri)} does not answer ({reason}); start it "
            "(`ser-mlflow server`) or fix MLFLOW_TRACKING_URI"
        ) from None


def configure() -> str:
    """Point the MLflow client at :func:`tracking_uri` (checked once) and return it.

    Raises:
        TrackingUnavailable: see :func:`check_tracking_uri`.
    """
    uri = tracking_uri()
    check_tracking_uri(uri)
    mlflow.set_tracking_uri(uri)
    return uri


def check_artifact_location(location: str | None) -> None:
    """A local artifact folder must be writable before a run starts, not at its end.

    MLflow writes artifacts only when they are logged, i.e. after training; an unwritable
    folder would turn a finished training into a FAILED run. Remote locations (a tracking
    server's ``mlflow-artifacts:``, ``s3:``...) are the server's or the cloud's business.

    Raises:
        ValueError: the folder cannot be created or written, naming it and why.
    """
    from urllib.parse import urlparse
    from urllib.request import url2pathname

    if not location:
        return
    parsed = urlparse(location)
    if parsed.scheme not in ("", "file"):
        return
    path = Path(url2pathname(parsed.path) if parsed.scheme == "file" else location)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-check-"):
            pass
    except OSError as exc:
        raise ValueError(
            f"artifact location: cannot write to {path} ({exc.strerror or exc})"
        ) from None


def _is_local_store(uri: str) -> bool:
    return uri.startswith("sqlite:") or uri.startswith("postgresql") or uri.startswith("mysql")


def ensure_experiment(name: str) -> str:
    """Return the id of experiment ``name``, creating it with artifacts under ./mlartifacts.

    A tracking server decides artifact locations itself, so only database stores opened
    directly by this process get the ``./mlartifacts`` location.
    """
    uri = configure()
    client = MlflowClient()
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        check_artifact_location(exp.artifact_location)
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    location = None
    if _is_local_store(uri):
        location = (Path.cwd() / DEFAULT_ARTIFACT_DIR).resolve().as_uri()
        check_artifact_location(location)
    return client.create_experiment(name, artifact_location=location)


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

    Args:
        experiment: experiment name; ignored when ``mlflow run`` already created the run
            (``MLFLOW_RUN_ID``), whose experiment is the one given to ``mlflow run``.
        run_name: display name.
        tags: tags set at start.
        nested: open as a child of the active run.
        reuse_env_run: resume the run ``mlflow run`` created for this process.

    Yields:
        The active run. Raises whatever the body raised after recording it on the run.
    """
    configure()
    env_run = os.environ.get("MLFLOW_RUN_ID") if reuse_env_run and not nested else None
    if resume_run_id:
        active = mlflow.start_run(run_id=resume_run_id, tags=dict(tags or {}))
        if _has_tag(resume_run_id, TAG_ERROR):  # the run is alive again
            MlflowClient().delete_tag(resume_run_id, TAG_ERROR)
    elif env_run:
        active = mlflow.start_run(run_id=env_run, tags=dict(tags or {}))
        # left in the environment, it would make every nested start_run resume this run
        os.environ.pop("MLFLOW_RUN_ID", None)
        if run_name:
            MlflowClient().set_tag(env_run, "mlflow.runName", run_name)
    else:
        exp_id = ensure_experiment(experiment)
        active = mlflow.start_run(
            experiment_id=exp_id, run_name=run_name, tags=dict(tags or {}), nested=nested
        )
    previous = None
    is_main = _in_main_thread()
    if is_main:
        previous = signal.signal(signal.SIGTERM, sigterm_to_interrupt)
    try:
        yield active
    except KeyboardInterrupt:
        _end(active.info.run_id, RunStatus.KILLED, "interrupted (Ctrl-C or SIGTERM)")
        raise
    except BaseException as exc:
        _end(active.info.run_id, RunStatus.FAILED, f"{type(exc).__name__}: {exc}")
        raise
    else:
        mlflow.end_run(RunStatus.to_string(RunStatus.FINISHED))
    finally:
        if is_main and previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _has_tag(run_id: str, key: str) -> bool:
    return key in MlflowClient().get_run(run_id).data.tags


def get_run_or_error(run_id: str) -> Run:
    """A run by id, or a one-line ValueError naming it."""
    from mlflow.exceptions import MlflowException

    configure()
    try:
        return MlflowClient().get_run(run_id)
    except MlflowException:
        raise ValueError(f"run id {run_id!r}: no such run on {tracking_uri()}") from None


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _end(run_id: str, status: int, message: str) -> None:
    """Record why a run stopped and end it; never masks the original error."""
    with contextlib.suppress(Exception):
        mlflow.flush_async_logging()
    with contextlib.suppress(Exception):
        client = MlflowClient()
        client.set_tag(run_id, TAG_ERROR, message[:5000])
        client.set_tag(
            run_id, "mlflow.note.content", f"**{RunStatus.to_string(status)}**: {message[:4000]}"
        )
    active = mlflow.active_run()
    if active is not None and active.info.run_id == run_id:
        mlflow.end_run(RunStatus.to_string(status))
    else:
        MlflowClient().set_terminated(run_id, RunStatus.to_string(status))


def log_dataset(
    *,
    name: str,
    source: str | Path,
    digest: str,
    context: str,
    tags: Mapping[str, str] | None = None,
) -> None:
    """Record a dataset read from disk by its content digest (no copy of the data)."""
    import warnings

    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    with warnings.catch_warnings():  # local paths match two equivalent source types
        warnings.simplefilter("ignore", UserWarning)
        src = resolve_dataset_source(Path(source).resolve().as_uri())
    ds = MetaDataset(source=src, name=name, digest=digest[:36])  # type: ignore[abstract]
    mlflow.log_input(ds, context=context, tags=dict(tags or {}))


def log_artifact_dir(local_dir: str | Path, artifact_path: str) -> None:
    mlflow.log_artifacts(str(local_dir), artifact_path=artifact_path)


def log_figure(fig: Any, artifact_file: str) -> None:
    mlflow.log_figure(fig, artifact_file)


def log_text(text: str, artifact_file: str) -> None:
    mlflow.log_text(text, artifact_file)


def log_metrics(
    metrics: Mapping[str, float], *, step: int | None = None, model_id: str | None = None
) -> None:
    mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step, model_id=model_id)


def log_metrics_to(run_id: str, metrics: Mapping[str, float]) -> None:
    """Log metrics on any run by id (e.g. figures derived later for a finished parent)."""
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    MlflowClient().log_batch(
        run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()]
    )


def log_params(params: Mapping[str, Any]) -> None:
    """Log params; keep values ``mlflow run`` already logged from the entry point.

    ``mlflow run`` records the raw entry-point values (e.g. ``alpha=''`` for a preset
    loss) and MLflow forbids changing a param, so a resolved value that differs is logged
    as ``<key>_effective`` beside the raw one.
    """
    active = mlflow.active_run()
    existing = MlflowClient().get_run(active.info.run_id).data.params if active else {}
    out = {}
    for k, v in params.items():
        value = str(v)
        if k not in existing:
            out[k] = value
        elif existing[k] != value:
            out[f"{k}_effective"] = value
    if out:
        mlflow.log_params(out)


def set_tags(tags: Mapping[str, Any]) -> None:
    mlflow.set_tags({k: str(v) for k, v in tags.items()})


def search_runs(
    *,
    experiment_names: list[str] | None = None,
    filter_string: str = "",
    order_by: list[str] | None = None,
    max_results: int | None = None,
) -> list[Run]:
    """Every matching run across all experiments (or the named ones), paging past 1000."""
    configure()
    client = MlflowClient()
    if experiment_names:
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


def ui_hint() -> str:
    """How a newcomer opens the UI on the store this process used."""
    uri = tracking_uri()
    if uri.startswith("http"):
        return f"Open the MLflow UI at {uri}"
    # `ser-mlflow ui` opens this same store and lists the saved views (ser_mlflow.views)
    return "Open the MLflow UI:  ser-mlflow ui   then browse http://127.0.0.1:5000"


def _pip_requirements() -> list[str]:
    from importlib.metadata import version

    pins = []
    for pkg in ("mlflow", "tensorflow", "keras", "numpy", "pandas", "scikit-learn"):
        try:
            pins.append(f"{pkg}=={version(pkg)}")
        except Exception:  # pragma: no cover - a package missing only narrows the pins
            continue
    return pins


def log_ser_model(
    *,
    network: Any,
    preprocess: Mapping[str, Any],
    example: Any,
    example_output: Any,
    workdir: Path,
    params: Mapping[str, Any] | None = None,
    name: str = "model",
) -> Any:
    """Log the self-contained pyfunc (network + preprocessing) as the run's LoggedModel.

    The package source travels with the model (``code_paths``), so loading needs only the
    URI and the pip requirements, not this checkout.
    """
    import json

    from mlflow.models import infer_signature

    import ser_mlflow

    workdir.mkdir(parents=True, exist_ok=True)
    net_path = workdir / "network.keras"
    network.save(net_path)
    meta_path = workdir / "preprocess.json"
    meta_path.write_text(json.dumps(dict(preprocess), indent=1))
    return _log_pyfunc(
        name=name,
        python_model=str(Path(ser_mlflow.__file__).parent / "pyfunc_entry.py"),
        artifacts={"network": str(net_path), "preprocess": str(meta_path)},
        signature=infer_signature(example, example_output),
        input_example=example,
        code_paths=[str(Path(ser_mlflow.__file__).parent)],
        pip_requirements=_pip_requirements(),
        params={k: str(v) for k, v in (params or {}).items()},
    )


@contextlib.contextmanager
def _quiet_model_logging() -> Iterator[None]:
    """Mute MLflow's INFO lines while a model is logged ("Validating input example against
    model signature"): they land between our progress lines and read as noise."""
    loggers = [logging.getLogger(n) for n in ("mlflow.pyfunc", "mlflow.models")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _log_pyfunc(**kwargs: Any) -> Any:
    with _quiet_model_logging():
        return mlflow.pyfunc.log_model(**kwargs)


# --- model registry -------------------------------------------------------------------


def register_run_model(run_id: str, model_name: str) -> Any:
    """Register the run's logged model, or return the version that already holds it."""
    configure()
    client = MlflowClient()
    with contextlib.suppress(Exception):
        for mv in client.search_model_versions(f"name = '{model_name}' and run_id = '{run_id}'"):
            return mv
    return mlflow.register_model(f"runs:/{run_id}/model", model_name)


def model_version_by_alias(model_name: str, alias: str) -> Any:
    """The version an alias points to.

    Raises:
        ValueError: the model or the alias does not exist (names what does).
    """
    from mlflow.exceptions import MlflowException

    configure()
    client = MlflowClient()
    try:
        model = client.get_registered_model(model_name)
    except MlflowException:
        names = [m.name for m in client.search_registered_models()]
        raise ValueError(
            f"model_name: no registered model {model_name!r}; registered: {names or 'none'}"
        ) from None
    try:
        return client.get_model_version_by_alias(model_name, alias)
    except MlflowException:
        have = sorted(model.aliases) if model.aliases else []
        raise ValueError(
            f"alias: model {model_name!r} has no alias {alias!r}; aliases: {have or 'none'}"
        ) from None


def set_alias(model_name: str, alias: str, version: str) -> None:
    configure()
    MlflowClient().set_registered_model_alias(model_name, alias, version)


def set_version_tags(model_name: str, version: str, tags: Mapping[str, Any]) -> None:
    configure()
    client = MlflowClient()
    for k, v in tags.items():
        client.set_model_version_tag(model_name, version, k, str(v))


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


def fail_run(run_id: str, message: str, tags: Mapping[str, Any] | None = None) -> None:
    """End a run this process may not hold (a dead worker's trial) as FAILED, with
    ``ser.error`` and a note; ``tags`` are set first. Never raises over a tag."""
    with contextlib.suppress(Exception):
        set_run_tags(run_id, tags or {})
    _end(run_id, RunStatus.FAILED, message)


def experiment_name_of(run_id: str) -> str:
    """Name of the experiment a run belongs to."""
    client = MlflowClient()
    return client.get_experiment(client.get_run(run_id).info.experiment_id).name


def set_run_tags(run_id: str, tags: Mapping[str, Any]) -> None:
    """Tag any run by id (``set_tags`` tags the active one)."""
    client = MlflowClient()
    for key, value in tags.items():
        client.set_tag(run_id, key, str(value))


def experiment_tags(experiment_id: str) -> dict[str, str]:
    """Tags of an experiment (saved UI views live there)."""
    return dict(MlflowClient().get_experiment(experiment_id).tags)


def set_experiment_tag(experiment_id: str, key: str, value: str) -> None:
    MlflowClient().set_experiment_tag(experiment_id, key, value)


def delete_experiment_tag(experiment_id: str, key: str) -> None:
    MlflowClient().delete_experiment_tag(experiment_id, key)


def model_versions(model_name: str) -> list[Any]:
    """Every version of a registered model; empty when the model does not exist."""
    configure()
    try:
        return list(MlflowClient().search_model_versions(f"name = '{model_name}'"))
    except Exception:
        return []


def resolve_model_version(model_uri: str) -> tuple[str, str] | None:
    """(name, version) behind a ``models:/name@alias`` or ``models:/name/version`` URI."""
    if not model_uri.startswith("models:/"):
        return None
    rest = model_uri[len("models:/") :]
    if "@" in rest:
        name, alias = rest.split("@", 1)
        return name, model_version_by_alias(name, alias).version
    name, _, version = rest.partition("/")
    return (name, version) if version and version.isdigit() else None


def load_pyfunc(model_uri: str) -> Any:
    """Load any MLflow model URI as pyfunc; a bad URI becomes a one-line ValueError."""
    from mlflow.exceptions import MlflowException

    configure()
    try:
        return mlflow.pyfunc.load_model(model_uri)
    except (MlflowException, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"model_uri: cannot load {model_uri!r}: {first}") from None


def log_fusion_model(
    est: Any,
    *,
    system_labels: list[str],
    attributes: list[str],
    input_runs: list[str],
    raw_inputs: list[dict[str, Any]] | None = None,
) -> Any:
    """Log a fitted fusion as a pyfunc whose input is the systems' predictions.

    Input columns are ``<system>:<attribute>`` beside ``name`` and ``timestamp``; the
    description lists the input runs whose predictions feed each column. With
    ``raw_inputs`` (one ``{"system", "model_uri", "feature_columns"}`` per input, all runs
    with models), the input models are packed inside and the input is raw features.
    """
    import json

    import joblib
    import pandas as pd
    from mlflow.models import infer_signature

    import ser_mlflow

    columns = [f"{s}:{a}" for s in system_labels for a in attributes]
    with tempfile.TemporaryDirectory() as tmp:
        est_path = Path(tmp) / "fusion.joblib"
        joblib.dump(est, est_path)
        meta_path = Path(tmp) / "preprocess.json"
        raw_columns = list(dict.fromkeys(
            c for spec in raw_inputs or [] for c in spec["feature_columns"]))
        meta: dict[str, Any] = {
            "kind": "fusion", "feature_columns": columns, "attributes": attributes,
            "systems": system_labels, "input_runs": input_runs,
        }  # fmt: skip
        artifacts = {"fusion": str(est_path), "preprocess": str(meta_path)}
        if raw_inputs:
            meta["inputs"] = [{"system": sp["system"], "model_uri": sp["model_uri"],
                               "feature_columns": sp["feature_columns"]} for sp in raw_inputs]
            meta["raw_columns"] = raw_columns
            for i, sp in enumerate(raw_inputs):
                artifacts[f"input_{i}"] = sp["model_uri"]
        meta_path.write_text(json.dumps(meta, indent=1))
        example = pd.DataFrame(0.0, index=range(3), columns=raw_columns or columns)
        example.insert(0, "timestamp", [0.0, 0.1, 0.2])
        example.insert(0, "name", "Devel_DE_01")
        out = example[["name", "timestamp"]].copy()
        for a in attributes:
            out[a] = 0.0
        return _log_pyfunc(
            name="model",
            python_model=str(Path(ser_mlflow.__file__).parent / "pyfunc_entry.py"),
            artifacts=artifacts,
            signature=infer_signature(example, out),
            input_example=example,
            code_paths=[str(Path(ser_mlflow.__file__).parent)],
            pip_requirements=_pip_requirements(),
            tags={"ser.model_input": "raw" if raw_inputs else "predictions",
                  "description": (
                      "Multistage SVR fusion over the models of runs "
                      f"{', '.join(input_runs)}: input raw feature columns <set>:<column>; "
                      "each input model predicts, then the fusion combines them."
                      if raw_inputs else
                      "Multistage SVR fusion. Input: predictions of the systems "
                      f"{', '.join(system_labels)} (runs {', '.join(input_runs)}) as columns "
                      "<system>:<attribute>, not raw features (imported prediction folders)."
                  )},
        )
