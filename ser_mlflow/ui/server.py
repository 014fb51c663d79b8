"""The one launcher of ``mlflow server``: `ser-mlflow server`, `ser-mlflow ui`, the tests and
the screenshot tool all start it through :func:`prepare_launch`.

`ser-mlflow server` is the shared MLflow tracking server for a lab, started the safe way.

One process per machine is fine for a student; a lab that runs search workers on several
machines needs one tracking server they all talk to. This module builds the
``mlflow server`` command line so that the defaults are the safe ones:

- it listens on ``127.0.0.1`` unless ``host`` says otherwise (never ``0.0.0.0`` by itself);
- its backend store is the project's SQLite file ``sqlite:///mlflow.db`` unless told
  otherwise (``postgresql://user:password@host:5432/mlflow`` for a lab);
- artifacts are *proxied* (``--serve-artifacts``): clients upload and download through the
  server, which writes to ``artifacts_destination`` (``./mlartifacts`` or ``s3://...``), so
  a client never needs the artifact path, a shared disk or cloud credentials;
- ``auth=True`` runs MLflow's basic-auth app with a generated ``basic_auth.ini`` whose user
  database sits beside the backend store (MLflow keeps users apart from runs).

Bad settings are refused before anything starts, in one line (``ValueError``): a malformed
store URI, a missing database driver, an artifact folder that cannot be written, a port in
use. The server then runs as a child of this process, in one process group with its
workers: SIGTERM or Ctrl-C to the printed pid stops them all (:func:`run_supervised`).
`ser-mlflow ui` runs the same command on the project's own store (:func:`ui_settings`);
:class:`BackgroundServer` runs it beside other work (tests, screenshots). Basic-auth files
are ``ui.auth``'s; supervision, the one ``/health`` poller and ``free_port`` are
``ui.process``'s.

MLflow's server is this module's subject, so it is the one module outside ``tracking`` that
asks MLflow something (its default allowed hosts); it never tracks.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from ser_mlflow.tracking import (
    DEFAULT_ARTIFACT_DIR,
    DEFAULT_TRACKING_URI,
    database_driver_problem,
)
from ser_mlflow.ui.auth import (
    ADMIN_PASSWORD_ENV,
    SECRET_KEY_ENV,
    admin_name,
    admin_password,
    default_auth_db_uri,
    flask_secret_key,
    private_sqlite,
    sqlite_path,
    store_scheme,
    write_auth_config,
)
from ser_mlflow.ui.process import LOOPBACK, Echo, run_supervised, wait_until_healthy

DEFAULT_PORT = 5000


#: Backend stores ``mlflow server`` accepts (SQLAlchemy dialects; ``+driver`` allowed).
DATABASE_SCHEMES: tuple[str, ...] = ("sqlite", "postgresql", "mysql", "mssql")


STORE_ENV = "MLFLOW_BACKEND_STORE_URI"  # read by `mlflow server` as --backend-store-uri


#: ``mlflow server`` 3.17 starts a job runner and three task consumers (about 1 GB and a
#: core at start) for GenAI jobs this project never submits; off unless the user set it.
JOB_EXECUTION_ENV = "MLFLOW_SERVER_ENABLE_JOB_EXECUTION"


@dataclass(frozen=True)
class ServerSettings:
    """What ``ser-mlflow server`` was asked for (CLI options one to one).

    Attributes:
        host: interface to bind; ``127.0.0.1`` keeps the server on this machine.
        port: TCP port.
        backend_store_uri: SQLAlchemy URI of the runs database.
        artifacts_destination: where proxied artifacts are written (path or ``s3://``...).
        auth: run MLflow's basic-auth app.
        auth_db_uri: users database; default ``basic_auth.db`` beside a SQLite store, in
            the working directory for other stores.
        workers: uvicorn worker processes (MLflow's default when None).
        allowed_hosts: ``Host`` headers to accept besides localhost and private IPs, as
            clients send them (``mlflow.lab.example:*``, ``mlflow:5000``).
    """

    host: str = LOOPBACK
    port: int = DEFAULT_PORT
    backend_store_uri: str = DEFAULT_TRACKING_URI
    artifacts_destination: str = DEFAULT_ARTIFACT_DIR
    auth: bool = False
    auth_db_uri: str | None = None
    workers: int | None = None
    allowed_hosts: str | None = None


@dataclass(frozen=True)
class Launch:
    """A validated server start: the command, its environment additions, what to print."""

    command: list[str]
    env: dict[str, str]
    client_uri: str
    messages: list[str]


def check_backend_store_uri(uri: str) -> str:
    """Refuse stores ``mlflow server`` cannot open, before it starts.

    Raises:
        ValueError: an unknown scheme (the deprecated ``file:`` store included: runs would
            be split between two kinds of store), a SQLite folder that does not exist, or a
            missing database driver (naming the package to install).
    """
    scheme = store_scheme(uri)
    if scheme not in DATABASE_SCHEMES:
        raise ValueError(
            f"backend_store_uri: expected a database URI ({', '.join(DATABASE_SCHEMES)}), "
            f"e.g. sqlite:///mlflow.db or postgresql://user:password@host:5432/mlflow; "
            f"got {_mask(uri)!r}"
        )
    path = sqlite_path(uri)
    if scheme == "sqlite" and path is None:
        raise ValueError(f"backend_store_uri: expected sqlite:///<file>, got {uri!r}")
    if path is not None and not path.resolve().parent.is_dir():
        raise ValueError(f"backend_store_uri: folder {path.resolve().parent} does not exist")
    problem = database_driver_problem(uri)
    if problem:
        raise ValueError(f"backend_store_uri: {problem}")
    return uri


def _mask(uri: str) -> str:
    """The URI without its password (messages and logs must not carry it)."""
    parsed = urlparse(uri)
    if parsed.password:
        return uri.replace(f":{parsed.password}@", ":***@", 1)
    return uri


def check_artifacts_destination(dest: str) -> str:
    """A local destination must be a folder this process can write; remote ones pass.

    Returns:
        The destination, local paths made absolute (the server's cwd is this one, but the
        printed line should say exactly where artifacts go).

    Raises:
        ValueError: the folder cannot be created or written (naming it and why).
    """
    scheme = urlparse(dest).scheme
    if scheme and scheme != "file" and len(scheme) > 1:  # s3://, gs://, ... (C:\ is local)
        return dest
    path = Path(urlparse(dest).path if scheme == "file" else dest).expanduser().resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
        with open(path / f".ser-mlflow-write-check-{os.getpid()}", "wb") as fh:
            fh.write(b"ok")
        os.remove(fh.name)
    except OSError as exc:
        raise ValueError(
            f"artifacts_destination: cannot write to {path} ({exc.strerror or exc})"
        ) from None
    return str(path)


def check_port_free(host: str, port: int) -> None:
    """Fail in one line when the port is taken (MLflow would print a uvicorn traceback).

    Raises:
        ValueError: the address is in use or cannot be bound on this machine.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ValueError(
                f"port: cannot listen on {host}:{port} ({exc.strerror or exc}); "
                "is another server running there? choose --port"
            ) from None


def allowed_hosts(extra: str) -> str:
    """MLflow's default ``Host`` patterns (localhost, private IPs) plus ``extra``.

    ``mlflow server --allowed-hosts`` *replaces* the defaults, so naming the cluster's DNS
    name would lock out ``kubectl port-forward`` and same-machine clients. Patterns are
    ``host:port`` as clients send them, ``*`` allowed (``mlflow.lab.example:*``).
    """
    try:
        from mlflow.server.security_utils import get_default_allowed_hosts

        defaults = list(get_default_allowed_hosts())
    except ImportError:  # pragma: no cover - older MLflow: loopback only
        defaults = ["localhost:*", "127.0.0.1:*"]
    names = [h.strip() for h in extra.split(",") if h.strip()]
    return ",".join(dict.fromkeys([*names, *defaults]))


def job_runner_env(environ: Mapping[str, str]) -> dict[str, str]:
    """MLflow's GenAI job runner off (see :data:`JOB_EXECUTION_ENV`) unless ``environ`` turns
    it on: on a small machine it costs more than the server and serves nothing here."""
    return {JOB_EXECUTION_ENV: environ.get(JOB_EXECUTION_ENV, "false")}


def client_uri(host: str, port: int) -> str:
    """The URI clients on this machine export as ``MLFLOW_TRACKING_URI``."""
    if host in ("0.0.0.0", "", "::"):
        host = LOOPBACK
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


# --------------------------------------------------------------------------- launch


def prepare_launch(settings: ServerSettings, *, echo: Echo = print) -> Launch:
    """Validate the settings and build the ``mlflow server`` command and environment.

    Raises:
        ValueError: a setting that cannot work, in one line (see the ``check_*`` helpers).
    """
    store = check_backend_store_uri(settings.backend_store_uri)
    dest = check_artifacts_destination(settings.artifacts_destination)
    if settings.workers is not None and settings.workers < 1:
        raise ValueError(f"workers: expected 1 or more, got {settings.workers}")
    check_port_free(settings.host, settings.port)
    cmd = [
        sys.executable, "-m", "mlflow", "server",
        "--host", settings.host,
        "--port", str(settings.port),
        "--serve-artifacts",
        "--artifacts-destination", dest,
    ]
    if settings.workers is not None:
        cmd += ["--workers", str(settings.workers)]
    if settings.allowed_hosts:
        cmd += ["--allowed-hosts", allowed_hosts(settings.allowed_hosts)]
    env = job_runner_env(os.environ)
    # The store URI may hold a database password: the environment keeps it out of `ps`.
    env[STORE_ENV] = store
    uri = client_uri(settings.host, settings.port)
    messages = [f"MLflow tracking server: store {_mask(store)}, artifacts {dest} (proxied)"]
    if settings.auth:
        import importlib.util

        if importlib.util.find_spec("flask_wtf") is None:  # MLflow imports it at start-up
            raise ValueError("auth: MLflow's basic auth needs its extra: "
                             "pip install 'mlflow[auth]'")
        cmd += ["--app-name", "basic-auth"]
        db_uri = settings.auth_db_uri or default_auth_db_uri(store)
        path = sqlite_path(store)
        folder = path.resolve().parent if path is not None else Path.cwd()
        ini = write_auth_config(folder, database_uri=db_uri)
        password = admin_password(folder, database_uri=db_uri, echo=echo)
        private_sqlite(db_uri)
        env["MLFLOW_AUTH_CONFIG_PATH"] = str(ini)
        env[SECRET_KEY_ENV] = flask_secret_key(folder)
        if password:
            env[ADMIN_PASSWORD_ENV] = password
        messages.append(
            f"Basic auth on: users in {_mask(db_uri)}, admin user {admin_name()!r}; clients "
            "export MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
        )
    elif settings.host not in (LOOPBACK, "localhost", "::1"):
        messages.append(
            f"warning: listening on {settings.host} without --auth: anyone who reaches this "
            "machine can read, change and delete runs"
        )
    messages.append(f"export MLFLOW_TRACKING_URI={uri}")
    return Launch(command=cmd, env=env, client_uri=uri, messages=messages)


def ui_settings(uri: str, *, host: str = LOOPBACK, port: int = DEFAULT_PORT,
                cwd: Path | None = None) -> ServerSettings:
    """The server `ser-mlflow ui` runs on the project's own store: one worker (plenty for one
    user, spares a small machine), proxied artifacts in ``./mlartifacts`` where the
    experiments ser_mlflow creates keep theirs, so runs logged through it land beside them."""
    return ServerSettings(
        host=host, port=port, backend_store_uri=uri, workers=1,
        artifacts_destination=str((cwd or Path.cwd()) / DEFAULT_ARTIFACT_DIR),
    )


def run_server(settings: ServerSettings, *, echo: Echo = print) -> None:
    """Validate, print the client URI, then run ``mlflow server`` until it is stopped.

    Raises:
        ValueError: see :func:`prepare_launch`; nothing was started.
        SystemExit: the server's exit status when it stopped by itself with an error.
    """
    launch = prepare_launch(settings, echo=echo)
    for line in launch.messages:
        echo(line)
    code = run_supervised(launch.command, {**os.environ, **launch.env}, echo=echo)
    if code:
        raise SystemExit(code)


class BackgroundServer:
    """:func:`prepare_launch`'s server in its own session, beside other work (a context manager).

    Starting is separate from :meth:`wait`, so a caller can do other work (a test trains
    its runs) while the server boots. On exit the whole group is stopped (TERM, then
    KILL), so no worker outlives its user.
    """

    def __init__(self, settings: ServerSettings, *, cwd: Path | None = None,
                 log: Path | None = None) -> None:
        self.settings = settings
        self.cwd = cwd or Path.cwd()
        self.log = log
        self.url = client_uri(settings.host, settings.port)

    def __enter__(self) -> BackgroundServer:
        import subprocess

        launch = prepare_launch(self.settings, echo=lambda line: None)
        env = {k: v for k, v in os.environ.items()
               if k not in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID")}
        self._out = open(self.log, "wb") if self.log else None  # noqa: SIM115
        self.proc = subprocess.Popen(
            launch.command, cwd=self.cwd, env={**env, **launch.env},
            stdout=self._out or subprocess.DEVNULL, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def wait(self, timeout: float = 120.0) -> str:
        """Block until ``/health`` answers; return the URL to browse."""
        proc = self.proc
        wait_until_healthy(self.url, timeout=timeout, alive=lambda: proc.poll() is None)
        return self.url

    def __exit__(self, *exc: object) -> None:
        import signal
        import subprocess

        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=15)
        if self._out:
            self._out.close()
