"""The tracking store: which URI, is it usable, and the client pointed at it.

URI checks (scheme, host, database driver, a server that answers ``/health``), the retry
budget for a server that stops answering, the once-per-process SQLite migration and the
local artifact folder check. Contract in DESIGN.md §5.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_ARTIFACT_DIR = "mlartifacts"


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
adopted_uris: set[str] = set()


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
            f"postgresql://user:password@host/db in MLFLOW_TRACKING_URI, got {masked_uri(uri)!r}"
        )
    if base in ("http", "https"):
        if not parsed.hostname:
            raise TrackingUnavailable(f"tracking URI: no host in {masked_uri(uri)!r}")
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
        return f"cannot parse {masked_uri(uri)!r}: {str(exc).splitlines()[0]}"
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        module = (exc.name or dialect.driver).split(".")[0]
        package = DRIVER_PACKAGES.get(module, module)
        return f"{dialect.name} needs the Python package {package} (pip install '{package}')"
    return None


def masked_uri(uri: str) -> str:
    from urllib.parse import urlparse

    password = urlparse(uri).password
    return uri.replace(f":{password}@", ":***@", 1) if password else uri


def _check_server(uri: str) -> None:
    import requests

    try:
        answer = requests.get(f"{uri.rstrip('/')}/health", timeout=SERVER_CHECK_TIMEOUT_S)
        if answer.status_code == 404:  # any web server answers; MLflow's has /health
            raise TrackingUnavailable(
                f"{masked_uri(uri)} answers but is not an MLflow tracking server (GET /health: "
                "404); fix MLFLOW_TRACKING_URI"
            )
    except requests.exceptions.SSLError:
        return  # it answered; certificates are MLflow's business (MLFLOW_TRACKING_INSECURE_TLS)
    except requests.exceptions.RequestException as exc:
        reason = "connection refused" if "refused" in str(exc).lower() else type(exc).__name__
        raise TrackingUnavailable(
            f"tracking server {masked_uri(uri)} does not answer ({reason}); start it "
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


def is_local_store(uri: str) -> bool:
    return uri.startswith("sqlite:") or uri.startswith("postgresql") or uri.startswith("mysql")


def artifact_root() -> str:
    """``./mlartifacts`` as a file URI: where a database store opened here keeps artifacts."""
    return (Path.cwd() / DEFAULT_ARTIFACT_DIR).resolve().as_uri()
