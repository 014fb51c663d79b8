"""The Keras loss equals 1 - numpy CCC on the valid frames, weighted per attribute."""

from __future__ import annotations

import numpy as np
import pytest

from ser_mlflow.scoring.metrics import ccc
from ser_mlflow.settings import LossConfig


def _batch(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    gold = rng.normal(size=(4, 25, 3)).astype(np.float32)
    pred = (0.7 * gold + rng.normal(size=gold.shape) * 0.5).astype(np.float32)
    mask = np.zeros((4, 25), dtype=np.float32)
    for i, t in enumerate((25, 18, 11, 5)):
        mask[i, :t] = 1
    # garbage on padded frames must not matter
    gold[mask == 0] = 100.0
    pred[mask == 0] = -50.0
    return gold, pred, mask


def test_masked_ccc_equals_numpy_on_valid_frames() -> None:
    from ser_mlflow.nn.losses import masked_ccc, pack_targets

    gold, pred, mask = _batch()
    got = np.asarray(masked_ccc(pack_targets(gold, mask), pred))
    valid = mask.astype(bool)
    for j in range(3):
        assert got[j] == pytest.approx(ccc(pred[..., j][valid], gold[..., j][valid]), abs=1e-5)


@pytest.mark.parametrize("name", ["STL1", "STL2", "STL3", "MTL1", "MTL2"])
def test_weighted_loss_matches_presets(name: str) -> None:
    from ser_mlflow.nn.losses import MultitaskCCCLoss, pack_targets

    cfg = LossConfig.from_name(name)
    gold, pred, mask = _batch(1)
    valid = mask.astype(bool)
    expected = sum(
        w * (1 - ccc(pred[..., j][valid], gold[..., j][valid]))
        for j, w in enumerate(cfg.weights)
    )
    got = float(np.asarray(MultitaskCCCLoss(cfg.weights)(pack_targets(gold, mask), pred)))
    assert got == pytest.approx(expected, abs=1e-5)


def test_loss_presets_and_validation() -> None:
    assert LossConfig.from_name("MTL2").weights == (0.7, 0.2, 1.0)
    assert LossConfig.from_name("mtl1").weights == pytest.approx((0.7, 0.3, 0.0))
    assert LossConfig.from_name("MTL1", alpha=0.5, beta=0.2).gamma == pytest.approx(0.3)
    assert LossConfig.from_name("custom", alpha=0.1, beta=0.2, gamma=0.3).name == "custom"
    for kwargs, match in [
        ({"name": "nope"}, "expected one of"),
        ({"name": "custom", "alpha": 0.1}, "needs alpha, beta and gamma"),
        ({"name": "custom", "alpha": -0.1, "beta": 0, "gamma": 1}, "alpha"),
        ({"name": "custom", "alpha": 0, "beta": 0, "gamma": 0}, "all 0"),
        ({"name": "MTL1", "alpha": 0.8, "beta": 0.5}, "gamma"),
    ]:
        with pytest.raises(ValueError, match=match):
            LossConfig.from_name(**kwargs)
