"""The numbers of record, checked against a direct implementation of the formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ser_mlflow.metrics import ccc, pcc, rmse, score_frames, score_recordings


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
