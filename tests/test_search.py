"""Optuna search over alpha, beta, gamma: nested runs, pruning, resume, workers, Pareto front.

Tiny corpus, a (8, 4) network and 1-2 epochs per trial keep the whole file near 2-3 minutes
on two cores; each test has its own SQLite tracking store and Optuna storage.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import optuna
import pytest
from click.testing import CliRunner
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState
from services import wait_for

from ser_mlflow.search import worker as search_worker
from ser_mlflow.search.run import resolve_settings, run_search
from ser_mlflow.search.storage import mask_url, open_storage
from ser_mlflow.settings import LossConfig, ModelConfig, TrainConfig

SMALL = ModelConfig(units=(8, 4), dropout=0.1, lr=5e-3)


def _cfg(root: Path, **kw: Any) -> TrainConfig:
    base: dict[str, Any] = dict(data_root=root, feature_sets=("fau",), epochs=2, batch_size=4,
                                model=SMALL, loss=LossConfig.from_name("MTL2"),
                                experiment="search-test")
    base.update(kw)
    return TrainConfig(**base)


def _runs() -> list[Run]:
    return mlflow.search_runs(search_all_experiments=True, output_format="list")


def _children(parent_id: str) -> list[Run]:
    return [r for r in _runs() if r.data.tags.get("mlflow.parentRunId") == parent_id]


def _assert_nothing_running() -> None:
    running = [r.info.run_name for r in _runs() if r.info.status == "RUNNING"]
    assert running == [], f"runs left RUNNING: {running}"


def _study(url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=url)


def _check_child_matches_trial(child: Run, trial: optuna.trial.FrozenTrial, study: str) -> None:
    for p in ("alpha", "beta", "gamma"):
        assert float(child.data.params[p]) == pytest.approx(trial.params[p], abs=1e-12)
    assert child.data.params["loss"] == "custom"
    assert child.data.tags["ser.stage"] == "trial"
    assert child.data.tags["optuna.trial_number"] == str(trial.number)
    assert child.data.tags["ser.trial_number"] == str(trial.number)
    assert child.data.tags["ser.study_name"] == study


class PruneTrialOne(optuna.pruners.BasePruner):
    """Prunes trial 1 at its first report, nothing else (deterministic pruning)."""

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return trial.number == 1


@pytest.mark.slow
def test_trials_are_nested_runs_with_truthful_states(
    tiny_corpus: Path, tracking_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """4 trials: complete, pruned (forced), failed (injected, no training), complete."""
    real = search_worker.train_in_active_run
    calls = {"n": 0}

    def third_call_fails(*args: Any, **kw: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("boom in trial")
        return real(*args, **kw)

    monkeypatch.setattr(search_worker, "train_in_active_run", third_call_fails)
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    res = run_search(_cfg(tiny_corpus), sampler="random", n_trials=4, storage=url,
                     study_name="s1", pruner=PruneTrialOne(), progress=False)
    study = _study(url, "s1")
    states = [t.state for t in study.trials]
    assert states == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL,
                      TrialState.COMPLETE]
    parent = mlflow.get_run(res.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["ser.stage"] == "search"
    assert parent.data.tags["ser.study_name"] == "s1"
    assert parent.data.tags["ser.sampler"] == "random"
    assert parent.data.tags["ser.objective"] == "mean"
    assert parent.data.tags["ser.optuna_storage"] == url
    kids = {int(r.data.tags["optuna.trial_number"]): r for r in _children(res.parent_run_id)}
    assert sorted(kids) == [0, 1, 2, 3]
    for t in study.trials:
        assert t.user_attrs["mlflow_run_id"] == kids[t.number].info.run_id
        _check_child_matches_trial(kids[t.number], t, "s1")
    # complete: FINISHED with final metrics; pruned: FINISHED, tagged, no final metrics
    assert kids[0].info.status == "FINISHED"
    assert kids[0].data.tags["ser.trial_state"] == "complete"
    assert kids[0].data.metrics["devel_ccc_mean"] == pytest.approx(study.trials[0].value)
    assert kids[1].info.status == "FINISHED"
    assert kids[1].data.tags["ser.trial_state"] == "pruned"
    assert kids[1].data.tags["ser.pruned_epoch"] == "1"
    assert "devel_ccc_mean" not in kids[1].data.metrics
    assert "epoch/devel_ccc_mean" in kids[1].data.metrics
    assert kids[2].info.status == "FAILED"
    assert kids[2].data.tags["ser.trial_state"] == "fail"
    assert "boom in trial" in kids[2].data.tags["ser.error"]
    assert "boom in trial" in study.trials[2].user_attrs["error"]
    # intermediate values were reported per epoch for the pruner
    assert list(study.trials[0].intermediate_values) == [1, 2]
    # parent: best trial, params, metrics, plots and the CSV
    best = max((t for t in study.trials if t.state == TrialState.COMPLETE),
               key=lambda t: t.value)
    assert res.best_run_id == best.user_attrs["mlflow_run_id"]
    assert parent.data.tags["best_run"] == res.best_run_id
    assert float(parent.data.params["best_alpha"]) == pytest.approx(best.params["alpha"])
    assert parent.data.metrics["best_value"] == pytest.approx(best.value)
    assert parent.data.metrics["best_devel_ccc_mean"] == pytest.approx(best.value)
    assert parent.data.metrics["n_trials_pruned"] == 1
    assert parent.data.metrics["n_trials_failed"] == 1
    arts = {a.path for a in MlflowClient().list_artifacts(res.parent_run_id, "plots")}
    assert {"plots/optimization_history.png", "plots/intermediate_values.png"} <= arts
    csv = Path(mlflow.artifacts.download_artifacts(run_id=res.parent_run_id,
                                                   artifact_path="trials.csv"))
    import pandas as pd

    df = pd.read_csv(csv)
    assert len(df) == 4
    assert set(df["mlflow_run_id"]) == {r.info.run_id for r in kids.values()}
    assert list(df["state"]) == ["COMPLETE", "PRUNED", "FAIL", "COMPLETE"]
    assert df["params_alpha"].tolist() == pytest.approx([t.params["alpha"] for t in study.trials])
    out = capsys.readouterr().out
    assert "1 pruned" in out and "1 failed" in out and "Best devel_ccc_mean" in out
    _assert_nothing_running()


@pytest.mark.slow
def test_resume_adds_trials_to_the_same_study(
    tiny_corpus: Path, tracking_store: str, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    cfg = _cfg(tiny_corpus, epochs=1)
    first = run_search(cfg, sampler="random", n_trials=2, storage=url, study_name="s2",
                       prune=False, progress=False)
    with pytest.raises(ValueError, match="no study 'nope' to resume.*s2"):
        run_search(cfg, n_trials=1, storage=url, study_name="nope", resume=True,
                   progress=False)
    with pytest.raises(ValueError, match="optimises objective=mean"):
        run_search(cfg, objective="arousal", n_trials=1, storage=url, study_name="s2",
                   progress=False)
    second = run_search(cfg, sampler="random", n_trials=1, storage=url, study_name="s2",
                        resume=True, prune=False, progress=False)
    study = _study(url, "s2")
    assert [t.number for t in study.trials] == [0, 1, 2]
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    weights = {tuple(t.params.values()) for t in study.trials}
    assert len(weights) == 3, "a resumed random sampler must not redraw the same weights"
    assert len(_children(first.parent_run_id)) == 2
    (child,) = _children(second.parent_run_id)
    _check_child_matches_trial(child, study.trials[2], "s2")
    assert second.trials["trial"].tolist() == [0, 1, 2]
    _assert_nothing_running()


@pytest.mark.slow
def test_two_worker_processes_share_one_budget(
    tiny_corpus: Path, tracking_store: str, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    res = run_search(_cfg(tiny_corpus, epochs=1), sampler="tpe", n_trials=4, storage=url,
                     study_name="s3", n_workers=2, prune=False, progress=False)
    study = _study(url, "s3")
    assert [t.number for t in study.trials] == [0, 1, 2, 3]
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    kids = {int(r.data.tags["optuna.trial_number"]): r for r in _children(res.parent_run_id)}
    assert sorted(kids) == [0, 1, 2, 3], "every trial is one child run of the one parent"
    for t in study.trials:
        assert kids[t.number].info.status == "FINISHED"
        assert t.user_attrs["mlflow_run_id"] == kids[t.number].info.run_id
        _check_child_matches_trial(kids[t.number], t, "s3")
    log = Path(mlflow.artifacts.download_artifacts(run_id=res.parent_run_id,
                                                   artifact_path="workers/worker-1.log"))
    text = log.read_text()
    assert "[worker 1] done:" in text, text[-2000:]
    _assert_nothing_running()


@pytest.mark.slow
def test_multi_objective_study_has_a_pareto_front(
    tiny_corpus: Path, tracking_store: str, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    res = run_search(_cfg(tiny_corpus, epochs=1), objective="multi", n_trials=2, storage=url,
                     study_name="s4", progress=False)
    assert res.sampler == "nsga2"
    assert res.keys == ["devel_ccc_arousal", "devel_ccc_valence", "devel_ccc_liking"]
    assert res.pareto, "a multi-objective study has at least one Pareto-optimal trial"
    study = _study(url, "s4")
    assert {t.number for t in study.best_trials} == {p["trial"] for p in res.pareto}
    parent = mlflow.get_run(res.parent_run_id)
    kid_ids = {r.info.run_id for r in _children(res.parent_run_id)}
    assert set(parent.data.tags["best_run"].split(",")) <= kid_ids
    assert parent.data.metrics["pareto_size"] == len(res.pareto)
    arts = {a.path for a in MlflowClient().list_artifacts(res.parent_run_id, "plots")}
    assert "plots/pareto_front.png" in arts
    _assert_nothing_running()


@pytest.mark.slow
def test_stale_trial_of_a_dead_worker_is_failed_and_retried(
    tiny_corpus: Path, tracking_store: str, tmp_path: Path
) -> None:
    """A worker that stops heartbeating: its trial and run end FAILED; a retry runs."""
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    cfg = _cfg(tiny_corpus, epochs=1)
    hb = {"heartbeat_interval": 1, "grace_period": 4}
    first = run_search(cfg, sampler="random", n_trials=1, storage=url, study_name="s5",
                       prune=False, progress=False, **hb)
    # a "worker" of the first search claims a trial, beats once and dies
    storage = open_storage(url, **hb)
    study = optuna.load_study(study_name="s5", storage=storage)
    sid = storage.get_study_id_from_name("s5")
    tid = storage.create_new_trial(sid)
    trial = optuna.Trial(study, tid)
    weights = {p: trial.suggest_float(p, 0.0, 1.0) for p in ("alpha", "beta", "gamma")}
    client = MlflowClient()
    parent = mlflow.get_run(first.parent_run_id)
    dead = client.create_run(parent.info.experiment_id, run_name="trial-001",
                             tags={"mlflow.parentRunId": first.parent_run_id})
    storage.set_trial_user_attr(tid, "ser.search_run_id", first.parent_run_id)
    storage.set_trial_user_attr(tid, "mlflow_run_id", dead.info.run_id)
    storage.record_heartbeat(tid)
    # wait for the condition itself (no heartbeat within the grace period), not a fixed time
    assert wait_for(lambda: tid in storage._get_stale_trial_ids(sid), timeout=60, interval=0.5)
    second = run_search(cfg, sampler="random", n_trials=1, storage=url, study_name="s5",
                        resume=True, prune=False, progress=False, **hb)
    study = _study(url, "s5")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.FAIL,
                                               TrialState.COMPLETE]
    retry = study.trials[2]
    assert retry.system_attrs["failed_trial"] == 1
    assert retry.params == pytest.approx(weights)
    stale_run = client.get_run(dead.info.run_id)
    assert stale_run.info.status == "FAILED"
    assert "heartbeat" in stale_run.data.tags["ser.error"]
    assert stale_run.data.tags["ser.trial_state"] == "fail"
    (child,) = _children(second.parent_run_id)
    assert child.info.run_id == retry.user_attrs["mlflow_run_id"]
    _check_child_matches_trial(child, retry, "s5")
    _assert_nothing_running()


@pytest.mark.slow
def test_chain_step_runs_once_then_is_reused(
    tiny_corpus: Path, tracking_store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from ser_mlflow.jobs.chain import search_step as chain_step

    base = _cfg(tiny_corpus, epochs=1)
    opts = {"sampler": "random", "n_trials": 1, "prune": False}
    first = chain_step(base, opts, False)
    assert mlflow.get_run(first.parent_run_id).data.tags["ser.step_key"]
    n_runs = len(_runs())
    again = chain_step(base, opts, False)
    assert again.parent_run_id == first.parent_run_id and len(_runs()) == n_runs
    assert "reusing finished search run" in capsys.readouterr().out
    with pytest.raises(ValueError, match=r"unknown options \['epochs'\]"):
        chain_step(base, {"epochs": 3}, False)
    _assert_nothing_running()


_CLAIMER = """
import json, sys
from ser_mlflow.search.storage import open_storage
from ser_mlflow.search.tickets import claim_ticket
st = open_storage(sys.argv[1])
sid = st.get_study_id_from_name("race")
got = []
while (tid := claim_ticket(st, sid, "owner")) is not None:
    got.append(tid)
print(json.dumps(got))
"""


@pytest.mark.slow
def test_ticket_claims_are_atomic_across_processes_on_sqlite(tmp_path: Path) -> None:
    """Plain Optuna on SQLite lets two processes claim one WAITING trial; ours may not."""
    import json
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'race.db'}"
    storage = open_storage(url)
    study = optuna.create_study(study_name="race", storage=storage)
    n = 40
    for _ in range(n):
        study.enqueue_trial({}, user_attrs={"ser.search_run_id": "owner"})
    study.enqueue_trial({}, user_attrs={"ser.search_run_id": "someone else"})
    procs = [subprocess.Popen([sys.executable, "-c", _CLAIMER, url], stdout=subprocess.PIPE,
                              text=True) for _ in range(3)]
    claims = [json.loads(p.communicate(timeout=300)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    flat = [tid for c in claims for tid in c]
    assert len(flat) == n and len(set(flat)) == n, "each ticket claimed exactly once"
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert [t.user_attrs["ser.search_run_id"] for t in waiting] == ["someone else"]


BAD = [
    (dict(sampler="tpe", objective="multi"), "Pareto front: use sampler nsga2"),
    (dict(sampler="nsga2", objective="mean"), "sampler=nsga2 is for objective=multi"),
    (dict(objective="multi", prune=True), "cannot prune a multi-objective"),
    (dict(objective="dominance"), "objective: expected one of"),
    (dict(sampler="grid"), "sampler: expected one of"),
    (dict(n_trials=None, timeout=None), "budget: give n_trials, timeout"),
    (dict(n_trials=0), "n_trials: expected a positive"),
    (dict(timeout=0.0), "timeout: expected a positive"),
    (dict(n_workers=0), "n_workers: expected 1 or more"),
    (dict(resume=True, study_name=None), "resume: name the study"),
]


@pytest.mark.parametrize(("kw", "message"), BAD)
def test_bad_combinations_raise(kw: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = dict(sampler=None, objective="mean", prune=None, n_trials=5,
                                timeout=None, n_workers=1, resume=False, study_name="s")
    args.update(kw)
    with pytest.raises(ValueError, match=message):
        resolve_settings(**args)


def test_defaults_follow_the_objective() -> None:
    common: dict[str, Any] = dict(n_trials=5, timeout=None, n_workers=1, resume=False,
                                  study_name=None)
    assert resolve_settings(sampler=None, objective="mean", prune=None, **common) == (
        "tpe", True)
    assert resolve_settings(sampler="auto", objective="multi", prune=None, **common) == (
        "nsga2", False)
    assert resolve_settings(sampler="random", objective="multi", prune=None, **common) == (
        "random", False)


def test_custom_pruner_cannot_go_to_worker_processes(tracking_store: str,
                                                      tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot travel to worker processes"):
        run_search(_cfg(tmp_path / "unused"), n_trials=2, n_workers=2,
                   pruner=optuna.pruners.NopPruner(), progress=False)
    assert not (tmp_path / "mlflow.db").exists(), "refused before any store was touched"


def test_storage_password_is_masked() -> None:
    masked = mask_url("postgresql://ser:s3cret@db.example:5432/optuna")
    assert "s3cret" not in masked and "db.example" in masked


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--objective", "multi", "--sampler", "tpe"], "use sampler nsga2"),
        (["--prune", "--no-prune"], "contradict"),
        (["--loss", "STL1"], "No such option '--loss'"),  # the weights are searched
        (["--n-trials", "many"], "expected an integer"),
    ],
)
def test_cli_rejects_bad_input_in_one_line(args: list[str], message: str,
                                           tracking_store: str, tmp_path: Path) -> None:
    from ser_mlflow.cli import main

    result = CliRunner().invoke(main, ["search", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "mlflow.db").exists(), "refused before any store was touched"
