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

from ser_mlflow.settings import DEFAULT_EXPERIMENT

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
_adopted_uris: set[str] = set()


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
        answer = requests.get(f"{uri.rstrip('/')}/health", timeout=SERVER_CHECK_TIMEOUT_S)
        if answer.status_code == 404:  # any web server answers; MLflow's has /health
            raise TrackingUnavailable(
                f"{_masked(uri)} answers but is not an MLflow tracking server (GET /health: "
                "404); fix MLFLOW_TRACKING_URI"
            )
    except requests.exceptions.SSLError:
        return  # it answered; certificates are MLflow's business (MLFLOW_TRACKING_INSECURE_TLS)
    except requests.exceptions.RequestException as exc:
        reason = "connection refused" if "refused" in str(exc).lower() else type(exc).__name__
        raise TrackingUnavailable(
            f"tracking server {_masked(uri)} does not answer ({reason}); start it "
            "(`ser-mlflow server`) or fix MLFLOW_TRACKING_URI"
        ) from None


#: Seconds a client keeps retrying a tracking server that stopped answering.
SERVER_RETRY_ENV = "SER_MLFLOW_SERVER_RETRY_S"
DEFAULT_SERVER_RETRY_S = 60.0


def server_retry_budget() -> float:
    """``$SER_MLFLOW_SERVER_RETRY_S`` (default 60): how long a lost server is retried.

    Raises:
        TrackingUnavailable: the variable is not a number >= 0.
    """
    raw = os.environ.get(SERVER_RETRY_ENV, "").strip()
    if not raw:
        return DEFAULT_SERVER_RETRY_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value < 1e6:
        raise TrackingUnavailable(
            f"{SERVER_RETRY_ENV}: expected seconds >= 0, got {raw!r}")
    return value


def retry_schedule(budget_s: float) -> tuple[int, int]:
    """(retries, backoff factor) whose waits add up to at most ``budget_s`` seconds.

    urllib3 waits 0, 2f, 4f, ... 2^(n-1)f seconds before retries 1..n (MLflow's factor f is
    an integer), i.e. f * (2^n - 2) in all; MLflow's own default (7 retries, f=2) waits
    about four minutes per request, and every request of a dying run waits again.
    """
    if budget_s < 2:
        return (1 if budget_s > 0 else 0), 0
    n = 2
    while n < 10 and 2 ** (n + 1) - 2 <= budget_s:
        n += 1
    n = min(n, 5)  # more, shorter waits rather than one long final sleep
    return n, int(budget_s // (2**n - 2))


def _bound_server_retries(uri: str) -> None:
    """Give a tracking server's requests our retry budget unless the user set MLflow's own
    variables (``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` / ``_BACKOFF_FACTOR``)."""
    if not uri.startswith("http"):
        return
    retries, factor = retry_schedule(server_retry_budget())
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(retries))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", str(factor))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", "0")


class TrackingLost(RuntimeError):
    """The tracking server stopped answering mid-run and the retry budget ran out."""


def is_connection_loss(exc: BaseException) -> bool:
    """Whether ``exc`` says the tracking server could not be reached (after retries)."""
    import requests

    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, TrackingLost | requests.exceptions.ConnectionError):
            return True
        text = str(cur)
        if "Max retries exceeded" in text or "Connection refused" in text:
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def stop_retrying() -> None:
    """After the server is known lost, fail fast on any later request of this process
    (MLflow's exit hook ends the active run; it must not wait the budget again)."""
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] = "0"


def configure() -> str:
    """Point the MLflow client at :func:`tracking_uri` (checked once) and return it.

    Raises:
        TrackingUnavailable: see :func:`check_tracking_uri`.
    """
    uri = tracking_uri()
    check_tracking_uri(uri)
    mlflow.set_tracking_uri(uri)
    _bound_server_retries(uri)
    _initialise_store(uri)
    return uri


_initialised: set[str] = set()


def _initialise_store(uri: str) -> None:
    """Create (or migrate) a SQLite store's tables once per process, one process at a time.

    MLflow migrates an empty SQLite file on first open; several processes starting together
    on a new file would each run the migration and leave the store half-migrated. The lock
    file beside the database makes them take turns (a no-op for other stores).
    """
    if uri in _initialised or not uri.startswith("sqlite:"):
        return
    from ser_mlflow.tracking.locks import sqlite_init_lock

    with sqlite_init_lock(uri):
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        client.search_experiments(max_results=1)
        client.search_registered_models(max_results=1)
    _initialised.add(uri)


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


def _artifact_root() -> str:
    """``./mlartifacts`` as a file URI: where a database store opened here keeps artifacts."""
    return (Path.cwd() / DEFAULT_ARTIFACT_DIR).resolve().as_uri()


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
    if uri not in _adopted_uris:  # once per process: Default's artifacts beside ours
        _adopted_uris.add(uri)
        adopt_default_experiment()
    exp = client.get_experiment_by_name(name)
    if exp is None:
        location = None
        if _is_local_store(uri):
            location = _artifact_root()
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


#: MLflow's experiment tag the 3.17 UI reads to pick the model-training or GenAI pages.
TAG_EXPERIMENT_KIND = "mlflow.experimentKind"
MODEL_TRAINING_KIND = "custom_model_development"
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
    if not _is_local_store(uri):
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
    new = _artifact_root()
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


def launched_run_id() -> str | None:
    """The run ``mlflow run`` created for this process (``MLFLOW_RUN_ID``), if any."""
    return os.environ.get("MLFLOW_RUN_ID") or None


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
    configure()
    parent = mlflow.active_run()
    nested = nested or parent is not None  # a run opened inside another is its child
    env_run = launched_run_id() if reuse_env_run and not nested else None
    start_tags = {**dict(tags or {}), **liveness_tags()}
    if resume_run_id:
        active = mlflow.start_run(run_id=resume_run_id, tags=start_tags)
        _clear_stop_note(resume_run_id)  # the run is alive again
    elif env_run:
        experiment_for(experiment)  # refuses a conflicting -P experiment, fixes Default
        active = mlflow.start_run(run_id=env_run, tags=start_tags)
        # left in the environment, it would make every nested start_run resume this run
        os.environ.pop("MLFLOW_RUN_ID", None)
        if run_name:
            MlflowClient().set_tag(env_run, "mlflow.runName", run_name)
    else:
        # a child lives in its parent's experiment, whatever name it was given
        active = mlflow.start_run(
            experiment_id=experiment_for(experiment),
            run_name=run_name,
            tags=start_tags,
            nested=nested,
        )
    run_id = active.info.run_id
    _heartbeat_start(run_id)
    previous = None
    is_main = _in_main_thread()
    if is_main:
        previous = signal.signal(signal.SIGTERM, sigterm_to_interrupt)
    try:
        yield active
    except KeyboardInterrupt:
        _heartbeat_stop(run_id)
        _end(run_id, RunStatus.KILLED, "interrupted (Ctrl-C or SIGTERM)")
        raise
    except BaseException as exc:
        _heartbeat_stop(run_id)
        if is_connection_loss(exc):
            _abandon(run_id)
            if isinstance(exc, TrackingLost):
                raise
            raise TrackingLost(lost_message(run_id)) from None
        _end(run_id, RunStatus.FAILED, f"{type(exc).__name__}: {exc}")
        raise
    else:
        _heartbeat_stop(run_id)
        try:
            mlflow.end_run(RunStatus.to_string(RunStatus.FINISHED))
        except Exception as exc:
            if is_connection_loss(exc):
                _abandon(run_id)
                raise TrackingLost(lost_message(run_id)) from None
            raise
    finally:
        if is_main and previous is not None:
            signal.signal(signal.SIGTERM, previous)


def lost_message(run_id: str, resume: str | None = None) -> str:
    """One line: the server is gone, which run is left RUNNING there, how to go on."""
    return (
        f"tracking server {_masked(tracking_uri())} unreachable (retried "
        f"{server_retry_budget():g} s; ${SERVER_RETRY_ENV} changes that); run {run_id} "
        "stays RUNNING there until a command finds its process gone"
        + (f"; {resume}" if resume else "")
    )


def _abandon(run_id: str) -> None:
    """Drop the run from this process without waiting for a server that is gone."""
    stop_retrying()
    active = mlflow.active_run()
    while active is not None:
        with contextlib.suppress(Exception):
            mlflow.end_run(RunStatus.to_string(RunStatus.KILLED))  # pops first, then fails
        if mlflow.active_run() is active:
            break
        active = mlflow.active_run()


# --- liveness of runs ------------------------------------------------------------------

TAG_HOST = "ser.host"
TAG_PID = "ser.pid"
TAG_PID_START = "ser.pid_start"
TAG_HEARTBEAT = "ser.heartbeat"
TAG_HEARTBEAT_EVERY = "ser.heartbeat_s"  # set when the heartbeat is renewed
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
    if not tracking_uri().startswith("sqlite:"):  # see _heartbeat_start
        tags[TAG_HEARTBEAT_EVERY] = f"{HEARTBEAT_S:g}"
    start = _process_start(os.getpid())
    if start is not None:
        tags[TAG_PID_START] = start
    return tags


def _heartbeat_start(run_id: str) -> None:
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


def _heartbeat_stop(run_id: str) -> None:
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
    _end(run.info.run_id, RunStatus.KILLED, message)
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


def _clear_stop_note(run_id: str) -> None:
    """A resumed run is alive again: drop the error tag and the KILLED/FAILED note."""
    client = MlflowClient()
    tags = client.get_run(run_id).data.tags
    if TAG_ERROR in tags:
        client.delete_tag(run_id, TAG_ERROR)
    note = tags.get("mlflow.note.content", "")
    if note.startswith(("**KILLED**", "**FAILED**")):
        client.delete_tag(run_id, "mlflow.note.content")


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


def metric_steps(run_id: str, key: str) -> set[int]:
    """The steps at which a run has logged ``key``."""
    return {m.step for m in MlflowClient().get_metric_history(run_id, key)}


def set_tags(tags: Mapping[str, Any]) -> None:
    mlflow.set_tags({k: str(v) for k, v in tags.items()})


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
    # `ser-mlflow ui` opens this same store and lists the saved views (ser_mlflow.ui.views)
    return f"Open the MLflow UI:  ser-mlflow ui   then browse {where or 'http://127.0.0.1:5000'}"


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
        python_model=str(Path(ser_mlflow.__file__).parent / "models" / "entry.py"),
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


def check_registry_names(model_name: str, *aliases: str) -> None:
    """Refuse a model name or alias MLflow would reject, before anything is registered.

    MLflow's own rules: a name is not empty and has no '/' or ':' (nor '..' path parts);
    an alias is letters, digits, '_' and '-' only, not ``latest`` and not ``v<number>``.

    Raises:
        ValueError: naming the option and the rule.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.utils.validation import (
        _validate_model_alias_name,
        _validate_model_alias_name_reserved,
        _validate_model_name,
    )

    try:
        _validate_model_name(model_name)
    except MlflowException as exc:
        raise ValueError(f"model_name: {model_name!r} is not a valid registered model name "
                         f"({exc.message.splitlines()[0]})") from None
    for alias in aliases:
        try:
            _validate_model_alias_name(alias)
            _validate_model_alias_name_reserved(alias)
        except MlflowException as exc:
            raise ValueError(f"alias: {alias!r} cannot be used ({exc.message.splitlines()[0]}"
                             "); expected letters, digits, '_' or '-', e.g. champion") from None


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
            TAG_STAGE: "pipeline", "ser.step": step, "ser.reused_step_run": run_id,
            "mlflow.note.content": f"Reused the finished {step} run {run_id} (same params, "
            "code and data):\n\n" + "\n".join(lines),
        })  # fmt: skip


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
            python_model=str(Path(ser_mlflow.__file__).parent / "models" / "entry.py"),
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
