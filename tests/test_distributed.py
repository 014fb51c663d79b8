"""Beyond one process: search workers sharing a study, a tracking server, a dead worker.

The integration test runs an MLflow server on PostgreSQL and an Optuna study on
PostgreSQL, both in a throw-away cluster started here (``tests/services.py``). On a
developer's machine without PostgreSQL the same test runs on SQLite and the PostgreSQL
case is skipped with the reason; under CI (``$CI`` set) a missing PostgreSQL fails.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import optuna
import pytest
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState
from services import (
    SER_MLFLOW,
    PostgresCluster,
    client_env,
    postgres_unavailable,
    start_postgres,
    start_server,
    wait_for,
)

from ser_mlflow.search import run as search_run
from ser_mlflow.search import worker as search_worker
from ser_mlflow.settings import LossConfig, ModelConfig, TrainConfig

TINY = ["--epochs", "1", "--units", "4", "--batch-size", "4"]


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresCluster]:
    reason = postgres_unavailable()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI runs the PostgreSQL tests, but {reason}")
        pytest.skip(f"PostgreSQL part skipped ({reason}); the sqlite case ran instead")
    cluster = start_postgres(["mlflow", "optuna"])
    yield cluster
    cluster.stop()


def _children(client: MlflowClient, parent: Run) -> list[Run]:
    return [r for r in client.search_runs([parent.info.experiment_id])
            if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]


def _assert_stores_agree(study: optuna.Study, client: MlflowClient, parent: Run,
                         n_trials: int) -> None:
    """N trials, N child runs, none lost or duplicated, each trial's params its run's."""
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == n_trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * n_trials
    kids = _children(client, parent)
    assert len(kids) == n_trials, [k.info.run_name for k in kids]
    by_id = {k.info.run_id: k for k in kids}
    assert len(by_id) == n_trials
    run_ids = [t.user_attrs["mlflow_run_id"] for t in trials]
    assert sorted(run_ids) == sorted(by_id), "each trial has its own child run, and only one"
    for t in trials:
        run = by_id[t.user_attrs["mlflow_run_id"]]
        assert run.info.status == "FINISHED"
        assert run.data.tags["optuna.trial_number"] == str(t.number)
        for p in ("alpha", "beta", "gamma"):
            assert float(run.data.params[p]) == pytest.approx(t.params[p], abs=1e-12)
        assert run.data.metrics["devel_ccc_mean"] == pytest.approx(t.value)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_two_search_workers_on_a_shared_server_and_study(
    backend: str, request: pytest.FixtureRequest, tiny_corpus: Path, tmp_path: Path
) -> None:
    """`ser-mlflow search --n-workers 2` against a tracking server and an RDB study."""
    if backend == "postgresql":
        pg: PostgresCluster = request.getfixturevalue("postgres")
        store, storage = pg.url("mlflow"), pg.url("optuna")
    else:
        if postgres_unavailable() is None:
            pytest.skip("PostgreSQL is available here: the postgresql case covers this")
        store = f"sqlite:///{tmp_path / 'mlflow.db'}"
        storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    srv = start_server(tmp_path / "server", store=store)
    n_trials = 4
    try:
        proc = subprocess.run(
            [SER_MLFLOW, "search", "--data-root", str(tiny_corpus), *TINY, "--n-workers", "2",
             "--storage", storage, "--study-name", "shared", "--n-trials", str(n_trials),
             "--sampler", "random", "--no-prune", "--experiment", "dist"],
            cwd=tmp_path, env=client_env(srv.uri), capture_output=True, text=True,
            timeout=900,
        )
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
        client = MlflowClient(tracking_uri=srv.uri)
        exp = client.get_experiment_by_name("dist")
        (parent,) = [r for r in client.search_runs([exp.experiment_id])
                     if r.data.tags.get("ser.stage") == "search"]
        assert parent.info.status == "FINISHED"
        study = optuna.load_study(study_name="shared", storage=storage)
        _assert_stores_agree(study, client, parent, n_trials)
        log = client.download_artifacts(parent.info.run_id, "workers/worker-1.log",
                                        str(tmp_path))
        assert "[worker 1] done:" in Path(log).read_text(), "the second worker ran to its end"
        assert not (tmp_path / "mlartifacts").exists(), "artifacts go through the server"
    finally:
        srv.stop()


@pytest.mark.slow
def test_worker_killed_mid_trial_is_failed_by_heartbeat_and_the_budget_finishes(
    tiny_corpus: Path, tracking_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGKILL a worker process holding a trial: its trial and child run end FAILED (by the
    heartbeat), and the other worker runs the whole budget, a retry of that trial included.
    """
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    procs: list[subprocess.Popen[bytes]] = []
    real_start = search_run._start_workers

    def start_and_keep(*args: Any, **kw: Any) -> Any:
        started = real_start(*args, **kw)
        procs.extend(p for p, _ in started)
        return started

    killed: dict[str, Any] = {}
    real_train = search_worker.train_in_active_run

    def first_trial_waits_for_the_kill(*args: Any, **kw: Any) -> Any:
        """Hold this process's first trial until the other worker holds one, then kill it."""
        if not killed:
            own = mlflow.active_run().info.run_id
            storage = optuna.storages.RDBStorage(url)

            def other_worker_holds_a_trial() -> bool:
                study = optuna.load_study(study_name="killed", storage=storage)
                for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                    run_id = t.user_attrs.get("mlflow_run_id")
                    if run_id and run_id != own:
                        killed.update(number=t.number, run_id=run_id)
                        return True
                return False

            assert wait_for(other_worker_holds_a_trial, timeout=240, interval=0.2), (
                "the second worker never started a trial")
            os.kill(procs[0].pid, signal.SIGKILL)
        return real_train(*args, **kw)

    monkeypatch.setattr(search_run, "_start_workers", start_and_keep)
    monkeypatch.setattr(search_worker, "train_in_active_run", first_trial_waits_for_the_kill)
    cfg = TrainConfig(data_root=tiny_corpus, feature_sets=("fau",), epochs=1, batch_size=4,
                      model=ModelConfig(units=(4,), dropout=0.1, lr=5e-3),
                      loss=LossConfig.from_name("MTL2"), experiment="kill")
    n_trials = 4
    watchdog = threading.Timer(600, lambda: [p.kill() for p in procs])
    watchdog.start()
    try:
        res = search_run.run_search(cfg, sampler="random", n_trials=n_trials, storage=url,
                                    study_name="killed", n_workers=2, prune=False,
                                    heartbeat_interval=1, grace_period=4, progress=False)
    finally:
        watchdog.cancel()
    assert procs[0].returncode == -signal.SIGKILL
    study = optuna.load_study(study_name="killed", storage=url)
    by_number = {t.number: t for t in study.trials}
    dead = by_number[killed["number"]]
    assert dead.state == TrialState.FAIL
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == n_trials, "the surviving worker finished the whole budget"
    assert len(study.trials) == n_trials + 1  # the budget plus the dead trial
    retry = [t for t in complete if t.system_attrs.get("failed_trial") == dead.number]
    assert len(retry) == 1 and retry[0].params == pytest.approx(dead.params)
    client = MlflowClient()
    dead_run = client.get_run(killed["run_id"])
    assert dead_run.info.status == "FAILED"
    assert "heartbeat" in dead_run.data.tags["ser.error"]
    parent = client.get_run(res.parent_run_id)
    assert parent.info.status == "FINISHED"
    kids = _children(client, parent)
    assert sorted(k.info.status for k in kids) == ["FAILED"] + ["FINISHED"] * n_trials
    assert {t.user_attrs["mlflow_run_id"] for t in complete} == {
        k.info.run_id for k in kids if k.info.status == "FINISHED"}
    assert not [r for r in mlflow.search_runs(search_all_experiments=True, output_format="list")
                if r.info.status == "RUNNING"]
