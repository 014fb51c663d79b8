"""The CCC report: numbers against direct computations, and the report run end to end."""

from __future__ import annotations

import io
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from ser_mlflow.cli import main
from ser_mlflow.data import read_avec_csv, write_avec_csv
from ser_mlflow.scoring import evaluation, metrics


def direct_ccc(x: np.ndarray, y: np.ndarray) -> float:
    """Lin's CCC written out (audmetric's formula, population moments)."""
    mx, my = x.mean(), y.mean()
    cov = np.mean((x - mx) * (y - my))
    return float(2 * cov / (x.var() + y.var() + (mx - my) ** 2))


def _data(seed: int, n_rec: int = 8, noise: float = 0.5) -> tuple[list, list, list]:
    rng = np.random.default_rng(seed)
    golds, preds = [], []
    for r in range(n_rec):
        t = 40 + 7 * r
        g = np.cumsum(rng.normal(size=(t, 2)), axis=0) * 0.1 + rng.normal(size=2) * 0.2
        golds.append(g)
        preds.append(g * 0.8 + rng.normal(scale=noise, size=(t, 2)) * 0.1 + 0.05)
    strata = ["DE" if r % 2 else "HU" for r in range(n_rec)]
    return preds, golds, strata


def test_per_recording_mean_is_the_mean_of_each_recordings_ccc() -> None:
    preds, golds, strata = _data(0)
    per_rec = evaluation.per_recording_ccc(preds, golds)
    for r, (p, g) in enumerate(zip(preds, golds, strict=True)):
        assert per_rec[r] == pytest.approx([direct_ccc(p[:, a], g[:, a]) for a in range(2)])
    pooled, mean_rec = evaluation.group_intervals([preds], golds, strata, n_boot=200)
    expected = [np.mean([direct_ccc(p[:, a], g[:, a]) for p, g in zip(preds, golds, strict=True)])
                for a in range(2)]
    assert mean_rec.estimate[:2] == pytest.approx(expected)
    assert mean_rec.estimate[2] == pytest.approx(np.mean(expected))
    frames_p, frames_g = np.concatenate(preds), np.concatenate(golds)
    assert pooled.estimate[:2] == pytest.approx(
        [direct_ccc(frames_p[:, a], frames_g[:, a]) for a in range(2)])
    # the two conventions differ on these data: the report must not present one as the other
    assert abs(pooled.estimate[0] - mean_rec.estimate[0]) > 1e-3


def test_group_of_one_run_reproduces_the_recording_bootstrap() -> None:
    preds, golds, strata = _data(1)
    pooled, _ = evaluation.group_intervals([preds], golds, strata, n_boot=300, seed=5)
    est, low, high = metrics.bootstrap_ccc(preds, golds, strata, n_boot=300, seed=5)
    np.testing.assert_allclose(pooled.estimate[:2], est)
    np.testing.assert_allclose(pooled.low[:2], low)
    np.testing.assert_allclose(pooled.high[:2], high)
    # and by hand: concatenate each resample's frames and score them directly
    counts = metrics.recording_resamples(strata, n_boot=300, seed=5)
    boot = []
    for row in counts:
        idx = np.repeat(np.arange(len(preds)), row.astype(int))
        p = np.concatenate([preds[i] for i in idx])
        g = np.concatenate([golds[i] for i in idx])
        boot.append([direct_ccc(p[:, a], g[:, a]) for a in range(2)])
    np.testing.assert_allclose(pooled.low[:2], np.quantile(boot, 0.025, axis=0))
    np.testing.assert_allclose(pooled.high[:2], np.quantile(boot, 0.975, axis=0))


def test_group_interval_resamples_recordings_and_seeds_together() -> None:
    preds0, golds, strata = _data(2)
    preds1 = [p + np.random.default_rng(9).normal(scale=0.05, size=p.shape) for p in preds0]
    preds2 = [p * 0.7 for p in preds0]
    runs = [preds0, preds1, preds2]
    pooled, _ = evaluation.group_intervals(runs, golds, strata, n_boot=250, seed=3)
    counts = metrics.recording_resamples(strata, n_boot=250, seed=3)
    seeds = evaluation.seed_resamples(3, n_boot=250, seed=3)
    boot = []
    for rc, sc in zip(counts, seeds, strict=True):
        idx = np.repeat(np.arange(len(golds)), rc.astype(int))
        g = np.concatenate([golds[i] for i in idx])
        per_run = []
        for s in np.repeat(np.arange(3), sc.astype(int)):
            p = np.concatenate([runs[s][i] for i in idx])
            per_run.append([direct_ccc(p[:, a], g[:, a]) for a in range(2)])
        boot.append(np.mean(per_run, axis=0))
    np.testing.assert_allclose(pooled.low[:2], np.quantile(boot, 0.025, axis=0))
    np.testing.assert_allclose(pooled.high[:2], np.quantile(boot, 0.975, axis=0))
    direct = [[direct_ccc(np.concatenate(r)[:, a], np.concatenate(golds)[:, a]) for a in range(2)]
              for r in runs]
    np.testing.assert_allclose(pooled.estimate[:2], np.mean(direct, axis=0))
    # seeds that disagree widen the interval beyond the recordings-only one
    one, _ = evaluation.group_intervals([preds0], golds, strata, n_boot=250, seed=3)
    assert (pooled.high - pooled.low)[0] > (one.high - one.low)[0]


def test_identical_systems_give_p_one_and_zero_difference() -> None:
    preds, golds, strata = _data(3)
    d = evaluation.paired_difference([preds, preds], [preds, preds], golds, strata,
                                     n_boot=300, n_perm=300)
    assert np.all(d.estimate == 0.0)
    assert np.all(d.p_permutation == 1.0)
    assert np.all(d.p_bootstrap == 1.0)


def test_single_run_pairs_equal_the_metrics_tests_and_a_real_gain_is_found() -> None:
    good, golds, strata = _data(4, n_rec=12, noise=0.3)
    bad = [g * 0.3 + np.random.default_rng(1).normal(scale=0.2, size=g.shape) for g in golds]
    d = evaluation.paired_difference([good], [bad], golds, strata, n_boot=400, n_perm=400,
                                     seed=2)
    est, low, high, p = metrics.bootstrap_ccc_difference(good, bad, golds, strata, n_boot=400,
                                                         seed=2)
    np.testing.assert_allclose(d.estimate[:2], est)
    np.testing.assert_allclose([d.low[:2], d.high[:2], d.p_bootstrap[:2]], [low, high, p])
    obs, p_perm = metrics.permutation_ccc_difference(good, bad, golds, n_perm=400, seed=2)
    np.testing.assert_allclose(d.p_permutation[:2], p_perm)
    assert np.all(d.low > 0) and np.all(d.p_permutation < 0.01)


def test_lagged_ccc_finds_a_planted_lag() -> None:
    rng = np.random.default_rng(0)
    latent = [np.cumsum(rng.normal(size=(120, 1)), axis=0) for _ in range(4)]
    gold = [x[:-5] for x in latent]  # gold[t] = latent[t]
    pred = [x[5:] for x in latent]  # pred[t] = latent[t + 5] = gold[t + 5]
    scores = evaluation.lagged_ccc(pred, gold, range(-3, 10))
    assert evaluation.argmax_lag(range(-3, 10), scores)[0] == 5
    assert scores[8, 0] == pytest.approx(1.0)


def test_pairs_parse_hyphenated_labels_and_refuse_unknown_ones() -> None:
    from ser_mlflow.jobs.report import parse_pairs

    labels = ["egemaps-func", "fau", "MTL2", "STL2"]
    assert parse_pairs("MTL2-STL2, egemaps-func - fau", labels) == [
        ("MTL2", "STL2"), ("egemaps-func", "fau")]
    with pytest.raises(ValueError, match="groups are egemaps-func, fau"):
        parse_pairs("MTL2-MTL9", labels)


# --- end to end: imported runs (no training) ---------------------------------------------


def _import(tiny: Path, tmp: Path, name: str, scale: float, noise: float, seed: int) -> str:
    from ser_mlflow.jobs import latefusion

    out = tmp / name
    rng = np.random.default_rng(seed)
    for f in sorted((tiny / "labels").glob("Devel_*.csv")):
        t, v, attrs = read_avec_csv(f)
        write_avec_csv(out / f.name, f.stem, t, v * scale + rng.normal(scale=noise, size=v.shape),
                       attrs)
    return latefusion.import_predictions(predictions=out, labels=tiny / "labels", name=name,
                                         experiment="rep", echo=lambda s: None)


def test_report_of_imported_runs(tiny_corpus: Path, tracking_store: str, tmp_path: Path) -> None:
    client = mlflow.MlflowClient()
    ids = {
        "good-s0": _import(tiny_corpus, tmp_path, "good-s0", 0.9, 0.05, 0),
        "good-s1": _import(tiny_corpus, tmp_path, "good-s1", 0.9, 0.06, 1),
        "weak": _import(tiny_corpus, tmp_path, "weak", 0.3, 0.3, 2),
    }
    for name, rid in ids.items():
        client.set_tag(rid, "ser.system", name.split("-")[0])
    res = CliRunner().invoke(main, ["report", "--run-ids", ",".join(ids.values()),
                                    "--group-by", "ser.system", "--pairs", "good-weak",
                                    "--n-boot", "200"])
    assert res.exit_code == 0, res.output
    reports = mlflow.search_runs(experiment_names=["rep"], output_format="list",
                                 filter_string="tags.`ser.stage` = 'report'")
    assert len(reports) == 1 and reports[0].info.status == "FINISHED"
    rid = reports[0].info.run_id
    arts = {a.path for a in client.list_artifacts(rid)}
    assert {"report.md", "report.html", "report_numbers.csv", "plots"} <= arts
    html = Path(mlflow.artifacts.download_artifacts(run_id=rid, artifact_path="report.html"))
    page = html.read_text()
    assert page.count("data:image/png;base64,") == 3 and "good − weak" in page
    numbers = pd.read_csv(io.StringIO(Path(mlflow.artifacts.download_artifacts(
        run_id=rid, artifact_path="report_numbers.csv")).read_text()))
    pooled = numbers[(numbers["statistic"] == "pooled_ccc") & (numbers["scope"] == "all")]
    # a one-run group's pooled CCC is the run's own devel CCC, scored at import
    weak = client.get_run(ids["weak"]).data.metrics
    for attr in ("arousal", "valence", "liking", "mean"):
        row = pooled[(pooled["group"] == "weak") & (pooled["attribute"] == attr)].iloc[0]
        assert row["estimate"] == pytest.approx(weak[f"devel_ccc_{attr}"], abs=1e-6)
        assert row["low"] <= row["estimate"] <= row["high"]
    good = pooled[(pooled["group"] == "good") & (pooled["attribute"] == "arousal")].iloc[0]
    runs = [client.get_run(ids[n]).data.metrics["devel_ccc_arousal"] for n in ("good-s0",
                                                                                "good-s1")]
    assert good["estimate"] == pytest.approx(np.mean(runs), abs=1e-6) and good["n_runs"] == 2
    cmp = numbers[numbers["section"] == "comparison"]
    assert set(cmp["scope"]) == {"DE", "HU", "all"}
    assert "report" in reports[0].data.tags["mlflow.runName"]
    assert reports[0].data.metrics["good_devel_ccc_mean_ci_low"] <= \
        reports[0].data.metrics["good_devel_ccc_mean"]


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ([], "exactly one of --parent-run-id, --filter, --run-ids"),
        (["--run-ids", "0123456789abcdef"], "no such run"),
        (["--filter", "tags.`ser.stage` = 'nothing'"], "no FINISHED runs"),
        (["--run-ids", "{empty}"], "no predictions/devel/ artifact"),
    ],
)
def test_report_bad_input_is_one_line_and_leaves_no_run(
    tracking_store: str, args: list[str], match: str
) -> None:
    with mlflow.start_run(experiment_id=mlflow.create_experiment("rep")) as run:
        pass
    args = [a.replace("{empty}", run.info.run_id) for a in args]
    res = CliRunner().invoke(main, ["report", *args])
    assert res.exit_code == 2, res.output
    assert match in res.output and "Traceback" not in res.output
    assert len(mlflow.search_runs(search_all_experiments=True, output_format="list")) == 1


def test_grouping_runs_that_log_different_params() -> None:
    """A run launched by `mlflow run` logs ``alpha_effective`` beside its raw ``alpha``;
    grouping it with runs that do not must neither fail nor split equal settings apart."""
    from ser_mlflow.jobs.report import group_runs
    from ser_mlflow.tracking.runpreds import RunPredictions

    def run(rid: str, loss: str, seed: str, **params: str) -> RunPredictions:
        return RunPredictions(rid, rid, {"ser.loss": loss, "ser.feature_sets": "fau"},
                              {"seed": seed, "epochs": "2", **params}, {}, "0",
                              ("arousal", "valence", "liking"))

    runs = [run("a", "MTL2", "0", alpha="0.7"),
            run("b", "MTL2", "1", alpha="None", alpha_effective="0.7"),
            run("c", "STL1", "0", alpha="1.0", extra="x")]
    groups = group_runs(runs)
    assert sorted((g.label, [r.run_id for r in g.runs]) for g in groups) == [
        ("MTL2", ["a", "b"]), ("STL1", ["c"])]
