"""The numbers of record, checked against a direct implementation of the formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ser_mlflow.scoring import metrics
from ser_mlflow.scoring.metrics import ccc, pcc, rmse, score_frames, score_recordings


def ccc_formula(x: list[float], y: list[float]) -> float:
    n = len(x)
    mx, my = sum(x) / n, sum(y) / n
    vx = sum((a - mx) ** 2 for a in x) / n
    vy = sum((b - my) ** 2 for b in y) / n
    cov = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True)) / n
    return 2 * cov / (vx + vy + (mx - my) ** 2)


def test_ccc_matches_formula() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=200), rng.normal(size=200) * 0.5 + 0.3
    y = 0.6 * x + y
    assert ccc(x, y) == pytest.approx(ccc_formula(list(x), list(y)), rel=1e-12)


def test_ccc_properties() -> None:
    x = np.linspace(-1, 1, 50)
    assert ccc(x, x) == pytest.approx(1.0)
    assert ccc(x, -x) == pytest.approx(-1.0)
    # a shifted copy is perfectly correlated but not concordant
    assert pcc(x, x + 1) == pytest.approx(1.0)
    assert ccc(x, x + 1) < 0.5
    # scaling hurts CCC but not PCC
    assert ccc(x, 0.5 * x) < 1.0 and pcc(x, 0.5 * x) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("pred", "gold", "expected"),
    [
        ([1.0, 1.0, 1.0], [1.0, 1.0, 1.0], 0.0),  # constant and equal: zero denominator
        ([2.0, 2.0], [1.0, 3.0], 0.0),  # constant prediction: zero covariance
        ([0.5], [0.2], 0.0),  # length 1: no variance, only a mean difference
    ],
)
def test_ccc_edge_cases(pred: list[float], gold: list[float], expected: float) -> None:
    assert ccc(np.array(pred), np.array(gold)) == pytest.approx(expected)


def test_nan_propagates_and_errors() -> None:
    assert math.isnan(ccc(np.array([1.0, np.nan]), np.array([1.0, 2.0])))
    assert math.isnan(pcc(np.array([1.0, np.nan]), np.array([1.0, 2.0])))
    with pytest.raises(ValueError, match="differ in length"):
        ccc(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="zero frames"):
        ccc(np.zeros(0), np.zeros(0))


def test_pcc_rmse_formula() -> None:
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=100), rng.normal(size=100)
    assert pcc(x, y) == pytest.approx(np.corrcoef(x, y)[0, 1], rel=1e-10)
    assert rmse(x, y) == pytest.approx(math.sqrt(sum((x - y) ** 2) / 100))
    assert pcc(np.ones(4), x[:4]) == 0.0


def test_scores_concatenate_recordings_avec_style() -> None:
    rng = np.random.default_rng(3)
    golds = {f"Devel_{c}_{i:02d}": rng.normal(size=(30 + i, 3)) for c in "DE HU".split()
             for i in range(1, 4)}
    preds = {k: v * 0.5 + rng.normal(size=v.shape) * 0.3 + 0.1 for k, v in golds.items()}
    cultures = {k: k.split("_")[1] for k in golds}
    attrs = ("arousal", "valence", "liking")
    out = score_recordings(preds, golds, cultures, attrs, prefix="devel_")
    names = sorted(golds)
    allp = np.concatenate([preds[n] for n in names])
    allg = np.concatenate([golds[n] for n in names])
    assert out["devel_ccc_valence"] == pytest.approx(ccc(allp[:, 1], allg[:, 1]))
    de = [n for n in names if "_DE_" in n]
    assert out["devel_DE_ccc_liking"] == pytest.approx(
        ccc(np.concatenate([preds[n] for n in de])[:, 2],
            np.concatenate([golds[n] for n in de])[:, 2])
    )
    assert out["devel_ccc_mean"] == pytest.approx(
        np.mean([out[f"devel_ccc_{a}"] for a in attrs])
    )
    # AVEC concatenation differs from averaging per recording
    per_rec = np.mean([ccc(preds[n][:, 0], golds[n][:, 0]) for n in names])
    assert out["devel_ccc_arousal"] != pytest.approx(per_rec)
    assert {"devel_pcc_arousal", "devel_rmse_liking", "devel_HU_ccc_mean"} <= set(out)


def test_score_errors() -> None:
    with pytest.raises(ValueError, match="no predictions"):
        score_recordings({}, {"a": np.zeros((2, 3))}, {"a": "DE"}, ("x", "y", "z"))
    with pytest.raises(ValueError, match="expected"):
        score_frames(np.zeros((4, 2)), np.zeros((4, 2)), ("a", "b", "c"))


# --- bootstrap intervals over recordings ----------------------------------------------------

def _recordings(seed: int = 0, n: int = 8) -> tuple[list, list, list]:
    rng = np.random.default_rng(seed)
    golds = [rng.normal(size=(int(rng.integers(20, 40)), 3)) for _ in range(n)]
    preds = [g + rng.normal(scale=1.0, size=g.shape) for g in golds]
    strata = ["DE" if i % 2 else "HU" for i in range(n)]
    return preds, golds, strata


def test_bootstrap_estimate_and_each_resample_match_concatenation() -> None:
    preds, golds, strata = _recordings()
    est, low, high = metrics.bootstrap_ccc(preds, golds, strata, n_boot=50, seed=3)
    for j in range(3):
        direct = metrics.ccc(np.concatenate(preds)[:, j], np.concatenate(golds)[:, j])
        assert est[j] == pytest.approx(direct, abs=1e-12)
        assert low[j] < direct < high[j]
    # One resample, recomputed the slow way: concatenate the drawn recordings.
    counts = metrics.recording_resamples(strata, n_boot=50, seed=3)
    b = 7
    drawn = [r for r, c in enumerate(counts[b]) for _ in range(int(c))]
    moments = np.stack([metrics.recording_moments(p, g)
                        for p, g in zip(preds, golds, strict=True)])
    fast = metrics.ccc_from_moments(np.einsum("r,rka->ka", counts[b], moments))
    for j in range(3):
        slow = metrics.ccc(np.concatenate([preds[r] for r in drawn])[:, j],
                           np.concatenate([golds[r] for r in drawn])[:, j])
        assert fast[j] == pytest.approx(slow, abs=1e-10)


def test_resamples_are_stratified_and_seeded() -> None:
    strata = ["DE", "DE", "DE", "HU", "HU"]
    a = metrics.recording_resamples(strata, n_boot=200, seed=1)
    b = metrics.recording_resamples(strata, n_boot=200, seed=1)
    np.testing.assert_array_equal(a, b)
    assert set(a[:, :3].sum(1)) == {3.0} and set(a[:, 3:].sum(1)) == {2.0}
    assert not np.array_equal(a, metrics.recording_resamples(strata, n_boot=200, seed=2))


def test_identical_systems_give_zero_gain_and_p_one() -> None:
    preds, golds, strata = _recordings(1)
    d, low, high, p = metrics.bootstrap_ccc_difference(preds, preds, golds, strata, n_boot=100)
    np.testing.assert_allclose([d, low, high], 0.0, atol=1e-12)
    np.testing.assert_allclose(p, 1.0)
    d, p = metrics.permutation_ccc_difference(preds, preds, golds, n_perm=100)
    np.testing.assert_allclose(d, 0.0, atol=1e-12)
    np.testing.assert_allclose(p, 1.0)


def test_a_clearly_better_system_is_significant() -> None:
    preds, golds, strata = _recordings(2, n=16)
    better = [g + 0.1 * (p - g) for p, g in zip(preds, golds, strict=True)]
    d, low, high, p = metrics.bootstrap_ccc_difference(better, preds, golds, strata,
                                                        n_boot=500, seed=0)
    assert np.all(low > 0) and np.all(d > low) and np.all(high > d)
    assert np.all(p < 0.01)
    d_perm, p_perm = metrics.permutation_ccc_difference(better, preds, golds, n_perm=500)
    np.testing.assert_allclose(d_perm, d)
    assert np.all(p_perm < 0.01)
