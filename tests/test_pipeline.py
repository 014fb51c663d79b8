"""The experiment suite on a tiny corpus: sweeps, failures, bimodal from the server, reuse."""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
import pytest
from click.testing import CliRunner

from ser_mlflow.cli import main
from ser_mlflow.jobs import chain, pipeline
from ser_mlflow.settings import train_config

FAST = {"epochs": 2, "units": "8,4", "batch_size": 4, "experiment": "pipe"}


def _runs(filter_string: str = "") -> list:
    return mlflow.search_runs(
        experiment_names=["pipe"], filter_string=filter_string, output_format="list"
    )


def _training_runs() -> list:
    return [r for r in _runs() if r.data.tags.get("ser.stage") not in ("pipeline", "fusion")]


@pytest.fixture
def corpus_with_broken_set(tiny_corpus: Path, tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    shutil.copytree(tiny_corpus, root)
    broken = root / "mfcc" / sorted(p.name for p in (root / "mfcc").iterdir())[0]
    broken.write_text(broken.read_text().replace("\n", "\nnot;a;number\n", 1))
    return root


@pytest.mark.slow
def test_unimodal_sweep_survives_a_failing_child(
    corpus_with_broken_set: Path, tracking_store: str
) -> None:
    base = train_config({"data_root": str(corpus_with_broken_set), **FAST})
    res = pipeline.unimodal(base, feature_sets=["egemaps", "mfcc", "fau"], echo=lambda s: None)
    statuses = dict(zip(res.table["run"], res.table["status"], strict=True))
    assert statuses == {"egemaps": "FINISHED", "mfcc": "FAILED", "fau": "FINISHED"}
    parent = mlflow.get_run(res.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["ser.stage"] == "pipeline"
    assert "mfcc" in parent.data.tags["ser.failures"]
    children = _runs(f"tags.`mlflow.parentRunId` = '{res.parent_run_id}'")
    by_set = {r.data.tags["ser.feature_sets"]: r for r in children}
    assert by_set["mfcc"].info.status == "FAILED"
    assert "mfcc" in by_set["mfcc"].data.tags["ser.error"]
    assert by_set["fau"].info.status == "FINISHED"
    # ranking artifacts: CSV, Markdown and a bar plot, ranked by devel_ccc_mean
    arts = {a.path for a in mlflow.MlflowClient().list_artifacts(res.parent_run_id)}
    assert {"ranking.csv", "ranking.md", "plots"} <= arts
    ok = res.table[res.table["status"] == "FINISHED"]
    assert list(ok["devel_ccc_mean"]) == sorted(ok["devel_ccc_mean"], reverse=True)


@pytest.mark.slow
def test_main_chain_twice_reuses_every_step(
    tiny_corpus: Path, tracking_store: str, tmp_path: Path
) -> None:
    cfg = tmp_path / "chain.yaml"
    cfg.write_text(
        f"data_root: {tiny_corpus}\n"
        "train: {epochs: 2, units: '8,4', batch_size: 4, experiment: pipe}\n"
        "steps:\n"
        "  unimodal: {feature_sets: [egemaps, egemaps-func, fau]}\n"
        "  bimodal: {top_k: 2}\n"
        "  compare: {feature_set: fau, seeds: [0, 1]}\n"
        "  fusion: {top_n: 3, protocol: paper, n_stages: 1, contexts: '1', complexities: '1'}\n"
        "  register: {model_name: chain-best}\n"
    )
    runner = CliRunner()
    first = runner.invoke(main, ["main", "--config", str(cfg)])
    assert first.exit_code == 0, first.output
    trained = _training_runs()
    # 3 unimodal + 1 pair + 5 losses x 2 seeds
    assert len(trained) == 3 + 1 + 10
    assert {r.data.tags["ser.stage"] for r in trained} == {"unimodal", "bimodal", "compare"}
    pair = [r for r in trained if r.data.tags["ser.stage"] == "bimodal"][0]
    top2 = sorted(
        (r for r in trained if r.data.tags["ser.stage"] == "unimodal"),
        key=lambda r: -r.data.metrics["devel_ccc_mean"],
    )[:2]
    assert set(pair.data.tags["ser.feature_sets"].split("+")) == {
        r.data.tags["ser.feature_sets"] for r in top2
    }
    compare_parent = [r for r in _runs() if r.data.tags.get("ser.step") == "compare"][0]
    arts = {a.path for a in mlflow.MlflowClient().list_artifacts(compare_parent.info.run_id)}
    assert {"comparison.csv", "comparison.md"} <= arts
    # each loss's interval over recordings and seeds sits on the parent beside its mean
    cm = compare_parent.data.metrics
    for loss in pipeline.COMPARE_LOSSES:
        for attr in ("arousal", "valence", "liking", "mean"):
            key = f"{loss}_devel_ccc_{attr}"
            assert key in cm and cm[f"{key}_ci_low"] <= cm[f"{key}_ci_high"]
    assert "MTL2" in first.output and "±" in first.output
    fusion_runs = [r for r in _runs() if r.data.tags.get("ser.stage") == "fusion"]
    assert len(fusion_runs) == 1
    assert len(fusion_runs[0].data.tags["ser.input_runs"].split(",")) == 3
    champion = mlflow.MlflowClient().get_model_version_by_alias("chain-best", "champion")
    best = max(trained, key=lambda r: r.data.metrics["devel_ccc_mean"])
    assert champion.run_id == best.info.run_id

    second = runner.invoke(main, ["main", "--config", str(cfg)])
    assert second.exit_code == 0, second.output
    assert len(_training_runs()) == len(trained), "the second run must train nothing"
    assert second.output.count("reusing finished run") == 3
    # fusion is a step like the others: same options, inputs, code and data -> reused
    assert "[fusion] reusing finished fusion run " + fusion_runs[0].info.run_id in second.output
    assert len([r for r in _runs() if r.data.tags.get("ser.stage") == "fusion"]) == 1
    again = mlflow.MlflowClient().get_model_version_by_alias("chain-best", "champion")
    assert again.version == champion.version  # the champion stays where it was


def test_bimodal_without_unimodal_runs_is_a_clear_error(
    tiny_corpus: Path, tracking_store: str
) -> None:
    result = CliRunner().invoke(
        main, ["bimodal", "--data-root", str(tiny_corpus), "--experiment", "pipe", "--top-k", "2"]
    )
    assert result.exit_code == 2
    assert "at least 2 finished unimodal runs" in result.output
    assert _runs() == []


def test_params_normalise_to_one_key() -> None:
    a = pipeline.make_key("train", {"lr": 0.0005, "epochs": 2, "units": "8,4"}, "fp")
    b = pipeline.make_key("train", {"lr": "0.0005", "epochs": "2", "units": "8,4"}, "fp")
    c = pipeline.make_key("train", {"lr": "0.0005", "epochs": "3", "units": "8,4"}, "fp")
    d = pipeline.make_key("train", {"lr": "0.0005", "epochs": "2", "units": "8,4"}, "other")
    assert a == b and a != c and a != d


def test_chain_config_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: {unimodl: {}}\n")
    with pytest.raises(ValueError, match="unknown steps"):
        chain.load_chain(bad)
    with pytest.raises(ValueError, match="not found"):
        chain.load_chain(tmp_path / "missing.yaml")


def _child_runs(parent_run_id: str) -> list:
    return mlflow.search_runs(search_all_experiments=True, output_format="list",
                              filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}'")


def _same_parts(run: mlflow.entities.Run) -> tuple:
    """What a child run must share with its twin of the other --jobs: params and key tags."""
    tags = {k: v for k, v in run.data.tags.items()
            if k in ("ser.run_key", "ser.stage", "ser.feature_sets", "ser.loss",
                     "ser.parent_step", "ser.data_digest", "ser.code_version")}
    return (run.info.run_name, run.info.status, tuple(sorted(run.data.params.items())),
            tuple(sorted(tags.items())), "ser.error" in run.data.tags)


@pytest.mark.slow
def test_jobs_2_logs_the_same_runs_as_jobs_1(
    corpus_with_broken_set: Path, tracking_store: str
) -> None:
    """Two child processes at once: the same children (params, tags, statuses, a failing
    child FAILED and the sweep going on), each nested under the one parent."""
    results = {}
    for jobs in (1, 2):
        base = train_config({"data_root": str(corpus_with_broken_set),
                              **FAST, "experiment": f"pipe-j{jobs}"})
        results[jobs] = pipeline.unimodal(base, feature_sets=["egemaps", "mfcc", "fau"],
                                          echo=lambda s: None, jobs=jobs)
    seen = {}
    for jobs, res in results.items():
        parent = mlflow.get_run(res.parent_run_id)
        assert parent.info.status == "FINISHED" and "mfcc" in parent.data.tags["ser.failures"]
        parents = mlflow.search_runs(experiment_names=[f"pipe-j{jobs}"], output_format="list",
                                     filter_string="tags.`ser.stage` = 'pipeline'")
        assert len(parents) == 1
        children = _child_runs(res.parent_run_id)
        assert parent.data.tags["ser.children"].split(",") == [o.run_id for o in res.outcomes]
        assert {r.info.run_id for r in children} == {o.run_id for o in res.outcomes}
        assert {r.info.experiment_id for r in children} == {parent.info.experiment_id}
        seen[jobs] = sorted(_same_parts(r) for r in children)
        assert list(res.table.sort_values("run")["status"]) == ["FINISHED", "FINISHED", "FAILED"]
    assert seen[1] == seen[2]
    assert {s[1] for s in seen[2]} == {"FINISHED", "FAILED"}
    # with --jobs 2, the second sweep reuses every finished child and trains nothing
    again = pipeline.unimodal(
        train_config({"data_root": str(corpus_with_broken_set), **FAST,
                      "experiment": "pipe-j2"}),
        feature_sets=["egemaps", "fau"], echo=lambda s: None, jobs=2)
    assert {o.status for o in again.outcomes} == {"REUSED"}


@pytest.mark.slow
def test_sigterm_to_a_parallel_sweep_leaves_no_run_running(
    tiny_corpus: Path, tracking_store: str
) -> None:
    """SIGTERM to `unimodal --jobs 2` mid-training: parent and children end KILLED."""
    import os
    import signal
    import subprocess
    import sys
    import time

    code = (
        "from ser_mlflow.settings import train_config\n"
        "from ser_mlflow.jobs import pipeline\n"
        f"base = train_config({{'data_root': {str(tiny_corpus)!r}, 'epochs': 400,"
        " 'units': '8,4', 'batch_size': 4, 'experiment': 'pipe'})\n"
        "pipeline.unimodal(base, feature_sets=['egemaps', 'fau', 'mfcc'], jobs=2)\n"
    )
    from ser_mlflow import tracking

    # the store exists before this test polls it while the sweep writes: two processes
    # creating one new SQLite store race in MLflow's schema migration (not what is tested)
    tracking.ensure_experiment("pipe")
    proc = subprocess.Popen([sys.executable, "-c", code], env=os.environ.copy())
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:  # until both children have started training
            running = [r for r in _training_runs()
                       if r.info.status == "RUNNING" and "epoch/train_loss" in r.data.metrics]
            if len(running) == 2:
                break
            assert proc.poll() is None, "the sweep ended before it was stopped"
            time.sleep(1)
        else:
            pytest.fail("two children never trained at once")
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    runs = _runs()
    assert {r.info.status for r in runs} == {"KILLED"}, [(r.info.run_name, r.info.status)
                                                         for r in runs]
    assert len([r for r in runs if r.data.tags.get("ser.stage") == "pipeline"]) == 1
    assert len(_training_runs()) == 2
