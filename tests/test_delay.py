"""The annotation-delay sweep: a planted delay is recovered; the sweep runs and is reused."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest
from click.testing import CliRunner

from ser_mlflow.cli import main
from ser_mlflow.data import read_avec_csv, write_synthetic_corpus
from ser_mlflow.jobs import delay

DELAY = 6  # frames planted in the corpus below (0.6 s)


@pytest.fixture(scope="module")
def delayed_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small corpus (16 Train, 8 Devel recordings) whose annotators lag DELAY frames."""
    root = tmp_path_factory.mktemp("delayed") / "corpus"
    write_synthetic_corpus(root, scale="small", seed=0, feature_sets=["fau"],
                           delay_frames=DELAY)
    return root


def test_planted_delay_moves_the_labels(tmp_path: Path) -> None:
    """Same seed, delay 0 vs 3: the same label trajectory; the features see it earlier."""
    a, b = tmp_path / "d0", tmp_path / "d3"
    write_synthetic_corpus(a, scale="tiny", seed=0, feature_sets=["fau"], delay_frames=0)
    write_synthetic_corpus(b, scale="tiny", seed=0, feature_sets=["fau"], delay_frames=3)
    for f in sorted((a / "labels").glob("*.csv"))[:3]:
        _, v0, _ = read_avec_csv(f)
        _, v3, _ = read_avec_csv(b / "labels" / f.name)
        np.testing.assert_array_equal(v0, v3)
        assert (a / "fau" / f.name).read_bytes() != (b / "fau" / f.name).read_bytes()
    with pytest.raises(ValueError, match="delay_frames"):
        write_synthetic_corpus(tmp_path / "bad", scale="tiny", delay_frames=-1)


def test_linear_estimate_recovers_the_planted_delay(delayed_corpus: Path) -> None:
    curve, best = delay.linear_estimate(delayed_corpus, ["fau"], list(range(0, 16)))
    pooled = best[best["scope"] == "all"].set_index("attribute")["best_shift_frames"]
    # liking is the weakest signal in the synthetic corpus; the others and the mean must
    # land on the planted delay within one frame
    for attr in ("arousal", "valence", "mean"):
        assert abs(int(pooled[attr]) - DELAY) <= 1, (attr, pooled.to_dict())
    mean_curve = curve[(curve["scope"] == "all") & (curve["attribute"] == "mean")]
    at = mean_curve.set_index("shift_frames")["ccc"]
    assert at[DELAY] > at[0] and at[DELAY] > at[15]


def test_parse_shifts() -> None:
    assert delay.parse_shifts("0:10:5") == [0, 5, 10]
    assert delay.parse_shifts("4,0,2,2") == [0, 2, 4]
    for bad in ("", "a,b", "-1,2", "0:10:0"):
        with pytest.raises(ValueError, match="shifts"):
            delay.parse_shifts(bad)


@pytest.mark.slow
def test_delay_sweep_logs_the_curve_and_is_reused(
    delayed_corpus: Path, tracking_store: str
) -> None:
    args = ["delay-sweep", "--data-root", str(delayed_corpus), "--feature-sets", "fau",
            "--shifts", "0,12", "--epochs", "1", "--units", "4", "--batch-size", "8",
            "--experiment", "delay"]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    runs = mlflow.search_runs(experiment_names=["delay"], output_format="list")
    parent = next(r for r in runs if r.data.tags.get("ser.step") == "delay")
    children = [r for r in runs if r.data.tags.get("ser.stage") == "delay"]
    assert sorted(int(r.data.params["shift_frames"]) for r in children) == [0, 12]
    assert parent.info.status == "FINISHED"
    client = mlflow.MlflowClient()
    history = client.get_metric_history(parent.info.run_id, "sweep/devel_ccc_mean")
    by_step = {m.step: m.value for m in history}
    assert set(by_step) == {0, 12}
    for r in children:
        shift = int(r.data.params["shift_frames"])
        assert by_step[shift] == pytest.approx(r.data.metrics["devel_ccc_mean"])
    # the quick estimate beside the sweep finds the planted delay (lags 0..12)
    assert abs(parent.data.metrics["linear_shift_frames_mean"] - DELAY) <= 1
    assert parent.data.metrics["best_delay_s_mean"] in (0.0, 1.2)
    arts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"delay_curve.csv", "delay_estimates.csv", "plots"} <= arts
    assert parent.data.tags.get("ser.view_key") == f"ser-delay-{parent.info.run_id}"

    second = CliRunner().invoke(main, args)
    assert second.exit_code == 0, second.output
    assert "reusing finished run" in second.output
    assert len(mlflow.search_runs(experiment_names=["delay"], output_format="list")) == len(runs)


def test_estimate_only_trains_nothing(delayed_corpus: Path, tracking_store: str) -> None:
    res = CliRunner().invoke(main, ["delay-sweep", "--estimate-only", "--data-root",
                                    str(delayed_corpus), "--feature-sets", "fau",
                                    "--shifts", "0:12"])
    assert res.exit_code == 0, res.output
    assert "linear ridge on fau" in res.output
    assert mlflow.search_runs(search_all_experiments=True, output_format="list") == []
