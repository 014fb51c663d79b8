"""One experiment per step, whichever way it starts; artifacts always under ./mlartifacts.

`mlflow run` creates its run before our code starts (``MLFLOW_RUN_ID``), in the
experiment of ``--experiment-name`` or in ``Default`` without it. These tests create that
run the way `mlflow run` does (a real run in a real store, the env variable set) and check
what ser_mlflow does with it; tests/test_ui_browser.py runs `mlflow run` itself.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from ser_mlflow import tracking
from ser_mlflow.cli import main


def _launch(monkeypatch: pytest.MonkeyPatch, experiment_id: str) -> str:
    """What `mlflow run` leaves for the entry point: a RUNNING run and its id in the env."""
    run = MlflowClient().create_run(experiment_id)
    monkeypatch.setenv("MLFLOW_RUN_ID", run.info.run_id)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", experiment_id)
    # a fresh process has no active experiment but this one's env; an earlier test's
    # mlflow.set_experiment would contradict the launched run, as MLflow checks
    mlflow.set_experiment(experiment_id=experiment_id)
    return run.info.run_id


def test_launched_run_in_default_keeps_step_together_under_mlartifacts(
    tracking_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = MlflowClient()
    default = client.get_experiment("0")  # MLflow's own Default: artifacts in ./mlruns/0
    assert default.artifact_location.endswith("/mlruns/0")
    launched = _launch(monkeypatch, "0")
    with tracking.run_context(experiment="", run_name="compare") as parent:
        assert parent.info.run_id == launched
        with tracking.run_context(experiment="ser-ces", run_name="child") as child:
            pass  # a child named another experiment: it still joins its parent
    runs = {r.info.run_id: r for r in client.search_runs(["0"])}
    assert set(runs) == {launched, child.info.run_id}
    assert client.get_experiment_by_name("ser-ces") is None  # nothing created elsewhere
    root = (tmp_path / "mlartifacts").resolve().as_uri()
    assert client.get_experiment("0").artifact_location == root
    assert all(r.info.artifact_uri == f"{root}/{rid}/artifacts" for rid, r in runs.items())
    assert runs[child.info.run_id].data.tags["mlflow.parentRunId"] == launched
    assert client.get_experiment("0").tags[tracking.TAG_EXPERIMENT_KIND] == (
        tracking.MODEL_TRAINING_KIND)
    assert not (tmp_path / "mlruns").exists()


def test_launched_run_decides_and_a_conflicting_name_is_refused(
    tracking_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    exp = tracking.ensure_experiment("chosen")
    launched = _launch(monkeypatch, exp)
    assert tracking.experiment_for("") == exp
    assert tracking.experiment_for("chosen") == exp
    res = CliRunner().invoke(main, ["train", "--experiment", "other", "--epochs", "1"])
    assert res.exit_code == 2
    assert res.output.count("\n") == 1, res.output
    assert "error: experiment: `mlflow run` created this run in experiment 'chosen'" in (
        res.output)
    assert "--experiment-name other" in res.output
    run = MlflowClient().get_run(launched)
    assert run.info.status == "FAILED" and "-P experiment='other'" in run.data.tags[
        tracking.TAG_ERROR]
    assert MlflowClient().get_experiment_by_name("other") is None


def test_without_mlflow_run_the_name_or_ser_ces(tracking_store: str) -> None:
    assert tracking.experiment_for("") == tracking.ensure_experiment("ser-ces")
    exp = mlflow.get_experiment(tracking.experiment_for("mine"))
    assert exp.name == "mine" and exp.tags[tracking.TAG_EXPERIMENT_KIND] == (
        tracking.MODEL_TRAINING_KIND)


def test_default_with_artifacts_under_mlruns_is_left_alone(
    tracking_store: str, tmp_path: Path
) -> None:
    old = MlflowClient().get_experiment("0").artifact_location
    kept = tmp_path / "mlruns" / "0" / "abc" / "artifacts" / "x.txt"
    kept.parent.mkdir(parents=True)
    kept.write_text("somebody's artifact")
    assert not tracking.adopt_default_experiment()
    assert MlflowClient().get_experiment("0").artifact_location == old
    assert kept.exists()
