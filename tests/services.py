"""Throw-away services for tests: an MLflow tracking server and a PostgreSQL cluster.

Both listen on loopback only, on a free port, keep every file in a temporary folder and
are stopped (process group and all) by the fixture that started them. PostgreSQL refuses
to run as root, so as root the cluster runs as the ``postgres`` user (``runuser``).
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ser_mlflow.ui.process import free_port, wait_until_healthy

SER_MLFLOW = str(Path(sys.executable).parent / "ser-mlflow")


def client_env(uri: str, **extra: str) -> dict[str, str]:
    """The environment of a `ser-mlflow` client of ``uri`` (no inherited run)."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, **extra}
    env.pop("MLFLOW_RUN_ID", None)
    env.pop("MLFLOW_EXPERIMENT_ID", None)
    return env


def _server_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if k not in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID")}


def stop_group(proc: subprocess.Popen[bytes], *, grace_s: float = 15.0) -> None:
    """SIGTERM the process group (server + workers), SIGKILL what is left after grace."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError):  # children that outlived the leader
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


@dataclass
class Server:
    """A `ser-mlflow server` started by a test."""

    proc: subprocess.Popen[bytes]
    uri: str
    root: Path
    log: Path
    artifacts: Path
    env: dict[str, str] = field(default_factory=dict)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        stop_group(self.proc)

    def kill(self) -> None:
        """SIGKILL, no shutdown: what a crash or a lost machine looks like to clients."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def start_again(self, *, timeout: float = 180.0) -> None:
        """The same command on the same port and store (after :meth:`stop` or :meth:`kill`)."""
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen(self.proc.args, cwd=self.root, stdout=fh,
                                         stderr=subprocess.STDOUT, env=self.env,
                                         start_new_session=True)
        proc = self.proc
        wait_until_healthy(self.uri, timeout=timeout, alive=lambda: proc.poll() is None)


def start_server(
    root: Path,
    *,
    store: str | None = None,
    extra: Sequence[str] = (),
    env: dict[str, str] | None = None,
    timeout: float = 180.0,
) -> Server:
    """Start `ser-mlflow server` in ``root`` on a free loopback port and wait for /health.

    Raises:
        RuntimeError: the server did not become healthy (its log tail included).
    """
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    artifacts = root / "server-artifacts"
    log = root / f"server-{port}.log"
    cmd = [SER_MLFLOW, "server", "--port", str(port), "--workers", "1",
           "--backend-store-uri", store or f"sqlite:///{root / 'mlflow.db'}",
           "--artifacts-destination", str(artifacts), *extra]
    env = env or _server_env()
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, cwd=root, stdout=fh, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)
    srv = Server(proc=proc, uri=f"http://127.0.0.1:{port}", root=root, log=log,
                 artifacts=artifacts, env=env)
    try:
        wait_until_healthy(srv.uri, timeout=timeout, alive=lambda: proc.poll() is None)
    except TimeoutError as exc:
        srv.stop()
        raise RuntimeError(f"{exc}; server log:\n{srv.output()[-3000:]}") from None
    return srv


# --------------------------------------------------------------------------- PostgreSQL


def postgres_bindir() -> Path | None:
    """The folder of ``initdb``/``pg_ctl``: on PATH, else Debian's versioned folder."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                      key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return Path(versions[-1]).parent if versions else None


def postgres_unavailable() -> str | None:
    """Why a throw-away cluster cannot start here, or None when it can."""
    if os.environ.get("SER_MLFLOW_TESTS_NO_POSTGRES"):
        return "SER_MLFLOW_TESTS_NO_POSTGRES is set"
    if postgres_bindir() is None:
        return "PostgreSQL is not installed (no initdb on PATH or in /usr/lib/postgresql)"
    if os.geteuid() == 0:
        import pwd

        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to run the cluster as"
        if shutil.which("runuser") is None:
            return "running as root and there is no runuser to drop to the 'postgres' user"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "the PostgreSQL driver psycopg is not installed (pip install 'psycopg[binary]')"
    return None


@dataclass
class PostgresCluster:
    """A cluster in a temporary folder, listening on 127.0.0.1 only (password auth)."""

    root: Path
    port: int
    user: str = "ser"
    password: str = field(default_factory=lambda: secrets.token_hex(12))
    bindir: Path = field(default_factory=lambda: postgres_bindir() or Path("/nonexistent"))

    def _as_owner(self, args: Sequence[str]) -> list[str]:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        return [*prefix, *args]

    def _run(self, args: Sequence[str], timeout: float = 120) -> None:
        proc = subprocess.run(self._as_owner(args), capture_output=True, text=True,
                              timeout=timeout, cwd=self.root)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed: {proc.stdout}{proc.stderr}"[-3000:])

    def url(self, database: str) -> str:
        return (f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}")

    def start(self, databases: Sequence[str]) -> PostgresCluster:
        """initdb, start on loopback (socket in the temporary folder), create databases."""
        data = self.root / "data"
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        if os.geteuid() == 0:
            for path in (self.root, pwfile):
                shutil.chown(path, "postgres", "postgres")
        self._run([str(self.bindir / "initdb"), "-D", str(data), "-U", self.user,
                   f"--pwfile={pwfile}", "--auth=scram-sha-256", "-E", "UTF8", "--no-sync"])
        opts = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        self._run([str(self.bindir / "pg_ctl"), "-D", str(data), "-l",
                   str(self.root / "postgres.log"), "-o", opts, "-w", "-t", "60", "start"])
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user=self.user,
                             password=self.password, dbname="postgres", autocommit=True) as conn:
            for db in databases:
                conn.execute(f'CREATE DATABASE "{db}"')
        return self

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._run([str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"),
                       "-m", "immediate", "-w", "stop"], timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)


def start_postgres(databases: Sequence[str]) -> PostgresCluster:
    """A new cluster in ``/tmp/ser-pg-*`` (pytest's folders are private to root)."""
    root = Path(tempfile.mkdtemp(prefix="ser-pg-"))
    cluster = PostgresCluster(root=root, port=free_port())
    try:
        return cluster.start(databases)
    except BaseException:
        log = root / "postgres.log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        cluster.stop()
        if tail:
            raise RuntimeError(f"PostgreSQL did not start; log:\n{tail}") from None
        raise


def wait_for(predicate: Callable[[], object], *, timeout: float, interval: float = 0.5) -> bool:
    """Poll ``predicate()`` until true or ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False
