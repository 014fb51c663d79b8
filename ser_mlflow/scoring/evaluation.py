"""Numbers a reviewer trusts: group intervals over recordings and seeds, paired tests, lags.

Pure NumPy on arrays already aligned (no MLflow, no TensorFlow). Built on the primitives of
``metrics`` (recording moments, stratified recording resamples, the pooled CCC from
moments), so a group of one run gives exactly ``metrics.bootstrap_ccc`` and a pair of
single runs exactly ``metrics.bootstrap_ccc_difference`` / ``permutation_ccc_difference``
with the same seed; tests hold them equal.

A *group* is several runs of one system that differ only in their seed (a loss in
``compare``). Its score is the mean over seeds of each run's pooled CCC; its interval
resamples recordings (stratified by culture, the same draw for every seed) and, in the
same replicate, the seeds with replacement, so it carries both sources of spread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ser_mlflow.scoring.metrics import (
    ccc,
    ccc_from_moments,
    recording_moments,
    recording_resamples,
)

#: Offset of the seed-resampling stream from the recording stream, so that the recording
#: draws of a group bootstrap are those of ``metrics.bootstrap_ccc`` with the same seed.
_SEED_STREAM = 7919


def moments_of(preds: Sequence[np.ndarray], golds: Sequence[np.ndarray]) -> np.ndarray:
    """(R, 6, A) pooled-CCC moments of one run's recordings."""
    if len(preds) != len(golds) or not preds:
        raise ValueError(f"need equal, non-zero numbers of recordings: {len(preds)} vs "
                         f"{len(golds)}")
    return np.stack([recording_moments(p, g) for p, g in zip(preds, golds, strict=True)])


def per_recording_ccc(preds: Sequence[np.ndarray], golds: Sequence[np.ndarray]) -> np.ndarray:
    """(R, A) CCC of each recording on its own (``metrics.ccc`` per column)."""
    out = np.empty((len(preds), np.asarray(preds[0]).reshape(len(preds[0]), -1).shape[1]))
    for r, (p, g) in enumerate(zip(preds, golds, strict=True)):
        p2 = np.asarray(p, dtype=np.float64).reshape(len(p), -1)
        g2 = np.asarray(g, dtype=np.float64).reshape(len(g), -1)
        out[r] = [ccc(p2[:, a], g2[:, a]) for a in range(p2.shape[1])]
    return out


def seed_resamples(n_seeds: int, *, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, S) counts of seeds drawn with replacement (all ones when S = 1)."""
    return recording_resamples(["seed"] * n_seeds, n_boot=n_boot, seed=seed + _SEED_STREAM)


def with_mean(values: np.ndarray) -> np.ndarray:
    """Append the mean over attributes (last axis) as one more column."""
    return np.concatenate([values, values.mean(-1, keepdims=True)], axis=-1)


def _percentiles(samples: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    tail = (1.0 - level) / 2.0
    return np.quantile(samples, tail, axis=0), np.quantile(samples, 1.0 - tail, axis=0)


@dataclass(frozen=True)
class Interval:
    """An estimate per attribute with its percentile interval (arrays of shape (A,))."""

    estimate: np.ndarray
    low: np.ndarray
    high: np.ndarray


def _boot_pooled(moments: np.ndarray, counts: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """(B, A) group-mean pooled CCC per replicate; ``moments`` (S, R, 6, A)."""
    per_seed = ccc_from_moments(np.einsum("br,srka->bska", counts, moments))  # (B, S, A)
    return np.einsum("bs,bsa->ba", seeds, per_seed) / seeds.sum(1, keepdims=True)


def _boot_per_recording(per_rec: np.ndarray, counts: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """(B, A) group mean of per-recording CCC means; ``per_rec`` (S, R, A)."""
    per_seed = np.einsum("br,sra->bsa", counts, per_rec) / counts.sum(1)[:, None, None]
    return np.einsum("bs,bsa->ba", seeds, per_seed) / seeds.sum(1, keepdims=True)


def group_intervals(
    preds: Sequence[Sequence[np.ndarray]],
    golds: Sequence[np.ndarray],
    strata: Sequence[str],
    *,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[Interval, Interval]:
    """Pooled CCC and mean per-recording CCC of a group of runs, with intervals.

    Args:
        preds: per run (seed), one (T_r, A) array per recording, aligned with ``golds``.
        golds: one (T_r, A) gold array per recording.
        strata: the culture of each recording (resampled within).

    Returns:
        (pooled, per_recording): estimates are means over runs of each run's pooled CCC
        (frames concatenated) and of each run's mean per-recording CCC; intervals
        resample recordings and runs together. Arrays have A + 1 entries: the attributes,
        then their mean.
    """
    moments = np.stack([moments_of(p, golds) for p in preds])  # (S, R, 6, A)
    per_rec = np.stack([per_recording_ccc(p, golds) for p in preds])  # (S, R, A)
    counts = recording_resamples(strata, n_boot=n_boot, seed=seed)
    seeds = seed_resamples(len(preds), n_boot=n_boot, seed=seed)
    pooled = with_mean(ccc_from_moments(moments.sum(1)).mean(0))
    lo, hi = _percentiles(with_mean(_boot_pooled(moments, counts, seeds)), level)
    mean_rec = with_mean(per_rec.mean(1).mean(0))
    lo2, hi2 = _percentiles(with_mean(_boot_per_recording(per_rec, counts, seeds)), level)
    return Interval(pooled, lo, hi), Interval(mean_rec, lo2, hi2)


@dataclass(frozen=True)
class Difference:
    """Group mean pooled CCC(a) - CCC(b) per attribute, its interval and two p-values."""

    estimate: np.ndarray
    low: np.ndarray
    high: np.ndarray
    p_bootstrap: np.ndarray
    p_permutation: np.ndarray
    n_pairs: int  # runs paired by the permutation test


def paired_difference(
    preds_a: Sequence[Sequence[np.ndarray]],
    preds_b: Sequence[Sequence[np.ndarray]],
    golds: Sequence[np.ndarray],
    strata: Sequence[str],
    *,
    n_boot: int = 2000,
    n_perm: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> Difference:
    """Compare two groups scored on the same recordings.

    Bootstrap: each replicate draws one stratified recording resample shared by both
    groups (the pairing) and the seeds of each group with replacement; the two-sided
    p-value is twice the smaller tail around 0 (as ``metrics.bootstrap_ccc_difference``).
    Permutation: runs are paired in the given order (seed i of a with seed i of b, the
    first min(S_a, S_b)); under "no difference" a and b are exchangeable per recording,
    so one random swap per recording is applied to every pair. With one run per group
    both reduce to the ``metrics`` functions. Arrays have A + 1 entries (the attributes,
    then their mean).
    """
    ma = np.stack([moments_of(p, golds) for p in preds_a])
    mb = np.stack([moments_of(p, golds) for p in preds_b])
    counts = recording_resamples(strata, n_boot=n_boot, seed=seed)
    sa = seed_resamples(len(preds_a), n_boot=n_boot, seed=seed)
    sb = seed_resamples(len(preds_b), n_boot=n_boot, seed=seed + 1)
    diff = with_mean(_boot_pooled(ma, counts, sa) - _boot_pooled(mb, counts, sb))
    low, high = _percentiles(diff, level)
    below = (np.sum(diff <= 0.0, axis=0) + 1.0) / (n_boot + 1.0)
    above = (np.sum(diff >= 0.0, axis=0) + 1.0) / (n_boot + 1.0)
    p_boot = np.minimum(1.0, 2.0 * np.minimum(below, above))
    estimate = with_mean(
        ccc_from_moments(ma.sum(1)).mean(0) - ccc_from_moments(mb.sum(1)).mean(0))

    k = min(len(ma), len(mb))
    pa, pb = ma[:k], mb[:k]
    observed = with_mean((ccc_from_moments(pa.sum(1)) - ccc_from_moments(pb.sum(1))).mean(0))
    rng = np.random.default_rng(seed)
    swap = rng.integers(0, 2, size=(n_perm, pa.shape[1])).astype(np.float64)
    keep = 1.0 - swap
    perm_a = np.einsum("br,srka->bska", keep, pa) + np.einsum("br,srka->bska", swap, pb)
    perm_b = np.einsum("br,srka->bska", swap, pa) + np.einsum("br,srka->bska", keep, pb)
    d = with_mean((ccc_from_moments(perm_a) - ccc_from_moments(perm_b)).mean(1))
    extreme = np.sum(np.abs(d) >= np.abs(observed) - 1e-12, axis=0)
    p_perm = (1.0 + extreme) / (1.0 + n_perm)
    return Difference(estimate, low, high, p_boot, p_perm, k)


# --- annotation delay --------------------------------------------------------------------


def lagged_ccc(
    preds: Sequence[np.ndarray], golds: Sequence[np.ndarray], lags: Sequence[int]
) -> np.ndarray:
    """(L, A) pooled CCC of ``pred[t]`` against ``gold[t + lag]`` per lag.

    Frames without a partner inside their recording are left out. A positive best lag
    means the gold trails the predictions: the labels would need ``lag`` more frames of
    shift to the front.
    """
    out = []
    for lag in lags:
        xs, ys = [], []
        for p, g in zip(preds, golds, strict=True):
            p2 = np.asarray(p, dtype=np.float64).reshape(len(p), -1)
            g2 = np.asarray(g, dtype=np.float64).reshape(len(g), -1)
            n = min(len(p2), len(g2)) - abs(lag)
            if n <= 0:
                continue
            if lag >= 0:
                xs.append(p2[:n])
                ys.append(g2[lag : lag + n])
            else:
                xs.append(p2[-lag : -lag + n])
                ys.append(g2[:n])
        if not xs:
            raise ValueError(f"lag {lag}: longer than every recording")
        x, y = np.concatenate(xs), np.concatenate(ys)
        out.append([ccc(x[:, a], y[:, a]) for a in range(x.shape[1])])
    return np.asarray(out)


def ridge_fit(x: np.ndarray, y: np.ndarray, *, alpha: float = 1.0) -> np.ndarray:
    """Ridge weights (F + 1, A) with an unpenalised intercept in the last row."""
    xm, ym = x.mean(0), y.mean(0)
    xc, yc = x - xm, y - ym
    gram = xc.T @ xc + alpha * np.eye(x.shape[1])
    w = np.linalg.solve(gram, xc.T @ yc)
    return np.vstack([w, ym - xm @ w])


def ridge_predict(weights: np.ndarray, x: np.ndarray) -> np.ndarray:
    return np.asarray(x @ weights[:-1] + weights[-1])


def argmax_lag(lags: Sequence[int], scores: np.ndarray) -> np.ndarray:
    """(A,) lag of the highest score per column (the smallest lag on ties)."""
    lag_arr = np.asarray(list(lags))
    return lag_arr[np.nanargmax(np.where(np.isnan(scores), -np.inf, scores), axis=0)]
