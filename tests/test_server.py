"""`ser-mlflow server`: every entry point through a real tracking server, auth, faults.

One SQLite-backed server serves the module's tests that only read and write through it
(a start costs 10-20 s on two cores); a test that kills or reconfigures a server starts its
own, so no test depends on what another did to a shared one. Clients run in-process
through click's CliRunner with ``MLFLOW_TRACKING_URI=http://127.0.0.1:<port>`` and a
working directory of their own, so anything written locally instead of through the server
would show.
"""

from __future__ import annotations

import os
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner
from mlflow.tracking import MlflowClient
from services import SER_MLFLOW, Server, client_env, start_server, wait_for

from ser_mlflow.cli import main
from ser_mlflow.ui.process import free_port
from ser_mlflow.ui.server import ServerSettings, prepare_launch

TINY_TRAIN = ["--epochs", "1", "--units", "4", "--batch-size", "4", "--experiment", "srv"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("server"))
    yield srv
    srv.stop()


@pytest.fixture
def client(server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A client of the module's server, working in an empty folder of its own."""
    import mlflow

    work = tmp_path / "client"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    yield work
    while mlflow.active_run() is not None:
        mlflow.end_run()


def _invoke(args: list[str]) -> str:
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output[-3000:]
    return result.output


# --------------------------------------------------------------------------- command line


def test_defaults_listen_on_loopback_with_proxied_artifacts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    launch = prepare_launch(ServerSettings(port=free_port()))
    cmd = launch.command
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1"
    assert "0.0.0.0" not in " ".join(cmd)
    assert "--serve-artifacts" in cmd
    assert cmd[cmd.index("--artifacts-destination") + 1] == str(tmp_path / "mlartifacts")
    assert launch.env["MLFLOW_BACKEND_STORE_URI"] == "sqlite:///mlflow.db"
    assert "--app-name" not in cmd
    assert launch.messages[-1] == f"export MLFLOW_TRACKING_URI={launch.client_uri}"
    assert launch.client_uri.startswith("http://127.0.0.1:")


def test_allowed_hosts_add_to_mlflows_defaults(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """--allowed-hosts replaces MLflow's list; ours extends it (port-forwarding keeps working)."""
    monkeypatch.chdir(tmp_path)
    launch = prepare_launch(ServerSettings(port=free_port(), allowed_hosts="mlflow:5000"))
    hosts = launch.command[launch.command.index("--allowed-hosts") + 1].split(",")
    assert hosts[0] == "mlflow:5000" and "127.0.0.1:*" in hosts and "localhost:*" in hosts


def test_auth_files_sit_beside_the_store_and_keep_secrets_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_AUTH_ADMIN_PASSWORD", raising=False)
    monkeypatch.delenv("MLFLOW_FLASK_SERVER_SECRET_KEY", raising=False)
    store = tmp_path / "lab"
    store.mkdir()
    settings = ServerSettings(port=free_port(), backend_store_uri=f"sqlite:///{store}/m.db",
                              auth=True, host="0.0.0.0")
    launch = prepare_launch(settings, echo=lambda s: None)
    cmd = launch.command
    assert cmd[cmd.index("--app-name") + 1] == "basic-auth"
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0"  # only because it was asked for
    assert launch.client_uri.startswith("http://127.0.0.1:")
    ini = Path(launch.env["MLFLOW_AUTH_CONFIG_PATH"])
    assert ini.parent == store
    assert f"database_uri = sqlite:///{store}/basic_auth.db" in ini.read_text()
    password = launch.env["MLFLOW_AUTH_ADMIN_PASSWORD"]
    assert len(password) >= 12 and password not in ini.read_text()
    for name in ("basic_auth_admin_password", "basic_auth_secret_key", "basic_auth.db"):
        assert stat.S_IMODE((store / name).stat().st_mode) == 0o600
    again = prepare_launch(settings, echo=lambda s: None)  # the saved secrets are reused
    assert again.env["MLFLOW_AUTH_ADMIN_PASSWORD"] == password
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_PASSWORD", "chosen-by-the-admin")
    chosen = prepare_launch(settings, echo=lambda s: None)
    assert chosen.env["MLFLOW_AUTH_ADMIN_PASSWORD"] == "chosen-by-the-admin"


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_entry_points_work_through_the_server(
    server: Server, client: Path, tiny_corpus: Path
) -> None:
    """train x2 -> fusion (downloads artifacts) -> register -> predict models:/...@champion."""
    data = ["--data-root", str(tiny_corpus)]
    for feature_set in ("fau", "egemaps"):
        _invoke(["train", *data, "--feature-sets", feature_set, *TINY_TRAIN])
    mlc = MlflowClient(tracking_uri=server.uri)
    exp = mlc.get_experiment_by_name("srv")
    runs = mlc.search_runs([exp.experiment_id])
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}
    for run in runs:  # artifacts went through the proxy into the server's destination
        assert run.info.artifact_uri.startswith("mlflow-artifacts:")
        stored = server.artifacts / exp.experiment_id / run.info.run_id / "artifacts"
        assert list((stored / "predictions" / "devel").glob("Devel_*.csv"))
    assert not (client / "mlartifacts").exists() and not (client / "mlflow.db").exists()

    out = _invoke(["fusion", *data, "--protocol", "paper", "--n-stages", "1", "--contexts",
                   "1", "--complexities", "1", "--experiment", "srv"])
    assert server.uri in out
    fused = [r for r in mlc.search_runs([exp.experiment_id])
             if r.data.tags.get("ser.stage") == "fusion"]
    assert len(fused) == 1 and fused[0].info.status == "FINISHED"
    assert "devel_ccc_mean" in fused[0].data.metrics

    # which runs qualify is the registry's business (tests/test_registry.py); here: the
    # two training runs, registered and loaded through the server
    _invoke(["register", *data, "--filter", "tags.`ser.stage` = 'unimodal'"])
    version = mlc.get_model_version_by_alias("ser-ces", "champion")
    assert version.run_id in {r.info.run_id for r in runs}
    out_dir = client / "preds"
    _invoke(["predict", "--model-uri", "models:/ser-ces@champion", *data, "--partition",
             "Devel", "--out", str(out_dir), "--experiment", "srv"])
    devel = sorted(p.name for p in (tiny_corpus / "labels").glob("Devel_*.csv"))
    assert sorted(p.name for p in out_dir.glob("*.csv")) == devel
    assert not any(r.info.status == "RUNNING" for r in mlc.search_runs([exp.experiment_id]))


@pytest.mark.slow
def test_training_survives_a_server_crash_and_restart(tiny_corpus: Path, tmp_path: Path) -> None:
    """The server dies (SIGKILL) mid-training and comes back: every epoch's metrics arrive.

    What carries the run: metrics are logged synchronously (MLflow's async logging is off
    by default) and MLflow's HTTP client retries a refused request with exponential backoff
    for $SER_MLFLOW_SERVER_RETRY_S (default 60 s; 300 here, so that a slow restart on a
    busy machine fits), so training waits at the next log call and nothing is dropped. A
    server away longer than that ends `train` in one line with the resume command
    (tests/test_bad_input.py).
    The server is this test's own: killing the module's would change what later tests see.
    """
    server = start_server(tmp_path / "crash")
    epochs = 100
    proc = subprocess.Popen(
        [SER_MLFLOW, "train", "--data-root", str(tiny_corpus), "--epochs", str(epochs),
         "--units", "4", "--batch-size", "4", "--experiment", "restart"],
        cwd=tmp_path, env=client_env(server.uri, SER_MLFLOW_SERVER_RETRY_S="300"),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        mlc = MlflowClient(tracking_uri=server.uri)
        started: list[str] = []

        def training_started() -> bool:
            """The run has a first epoch's metric in the store (or training ended early)."""
            exp = mlc.get_experiment_by_name("restart")
            runs = mlc.search_runs([exp.experiment_id]) if exp else []
            if runs and mlc.get_metric_history(runs[0].info.run_id, "epoch/train_loss"):
                started.append(runs[0].info.run_id)
            return bool(started) or proc.poll() is not None

        assert wait_for(training_started, timeout=600, interval=0.2) and started, (
            proc.communicate()[0][-3000:])
        run_id = started[0]
        server.kill()
        killed_at = time.time()
        # no sleep: the restart takes seconds (a fresh process, the store migrated), and
        # training's log calls in that time are refused and retried
        server.start_again()
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, out[-6000:]
        run = mlc.get_run(run_id)
        assert run.info.status == "FINISHED"
        history = mlc.get_metric_history(run_id, "epoch/train_loss")
        assert sorted(m.step for m in history) == list(range(1, epochs + 1))
        # training was still going when the server died (it waited for it, then went on)
        assert any(m.timestamp / 1000 > killed_at for m in history), "the crash missed training"
        assert "devel_ccc_mean" in run.data.metrics
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=60)
        server.stop()


@pytest.mark.slow
def test_server_prints_the_uri_clients_export(server: Server) -> None:
    out = server.output()
    assert f"export MLFLOW_TRACKING_URI={server.uri}" in out
    assert "(proxied)" in out


@pytest.mark.slow
def test_auth_refuses_requests_without_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_corpus: Path
) -> None:
    import mlflow.server

    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_AUTH_ADMIN_PASSWORD"] = admin_pw = "admin-password-for-tests"
    srv = start_server(tmp_path / "auth", extra=["--auth"], env=env)
    try:
        url = f"{srv.uri}/api/2.0/mlflow/experiments/search?max_results=1"
        assert requests.get(url, timeout=30).status_code == 401
        assert requests.get(url, auth=("admin", "not-the-password"), timeout=30
                            ).status_code == 401
        assert requests.get(url, auth=("admin", admin_pw), timeout=30).status_code == 200
        # creating a user the way the README says: the auth app's client, as the admin
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", admin_pw)
        users = mlflow.server.get_app_client("basic-auth", tracking_uri=srv.uri)
        users.create_user(username="alice", password="alice-password-123")
        users.grant_user_permission("alice", "experiment", "0", "EDIT")  # as the README says
        assert requests.get(url, auth=("alice", "alice-password-123"), timeout=30
                            ).status_code == 200
        assert "Basic auth on" in srv.output()
        assert stat.S_IMODE((tmp_path / "auth" / "basic_auth.db").stat().st_mode) == 0o600

        # what a user sees: 401 without credentials, 403 writing where they may only read
        monkeypatch.chdir(tmp_path)
        env = {"MLFLOW_TRACKING_URI": srv.uri, "MLFLOW_TRACKING_USERNAME": None,
               "MLFLOW_TRACKING_PASSWORD": None, "MLFLOW_RUN_ID": None}
        users.create_user(username="bob", password="bob-password-1234")  # READ everywhere
        MlflowClient(tracking_uri=srv.uri).create_experiment("admins-only")
        cases = {
            "refused the credentials (401)": (["init"], {}),
            "permission denied (403)": (
                ["import-predictions", "--predictions", str(tiny_corpus / "labels"), "--labels",
                 str(tiny_corpus / "labels"), "--name", "gold", "--experiment", "admins-only"],
                {"MLFLOW_TRACKING_USERNAME": "bob", "MLFLOW_TRACKING_PASSWORD":
                 "bob-password-1234"}),
        }
        for expected, (args, creds) in cases.items():
            result = CliRunner().invoke(main, args, env={**env, **creds})
            lines = [line for line in result.stderr.splitlines() if line.strip()]
            assert result.exit_code == 2 and len(lines) == 1, result.output[-3000:]
            assert expected in lines[0] and "Traceback" not in result.output
    finally:
        srv.stop()


# --------------------------------------------------------------------------- faults


@pytest.mark.slow
def test_unreachable_server_fails_fast_in_one_line(tiny_corpus: Path, tmp_path: Path) -> None:
    """Nothing listens on the port: one `error:` line, exit 2, no traceback, nothing written.

    How fast it fails is not asserted (no timing in tests); the limit only stops a hang on
    a loaded machine, it is no measure.
    """
    uri = f"http://127.0.0.1:{free_port()}"
    proc = subprocess.run(
        [SER_MLFLOW, "train", "--data-root", str(tiny_corpus), *TINY_TRAIN],
        cwd=tmp_path, env=client_env(uri), capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == [f"error: tracking server {uri} does not answer (connection refused); "
                     "start it (`ser-mlflow server`) or fix MLFLOW_TRACKING_URI"], proc.stderr
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlartifacts").exists()
