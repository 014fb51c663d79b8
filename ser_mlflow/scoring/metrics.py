"""CCC, PCC and RMSE in NumPy: the numbers of record.

AVEC convention: a score is computed once over all valid frames of all recordings
concatenated, not averaged per recording. Training-time Keras losses live in ``losses``;
everything reported to MLflow comes from here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def _pair(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"prediction and gold differ in length: {x.size} vs {y.size}")
    if x.size == 0:
        raise ValueError("cannot score zero frames")
    return x, y


def ccc(pred: np.ndarray, gold: np.ndarray) -> float:
    """Concordance correlation coefficient (Lin 1989), population moments.

    CCC = 2 cov(x, y) / (var(x) + var(y) + (mean(x) - mean(y))**2). Two constant, equal
    sequences have a zero denominator: returned as 0.0 (no agreement in variation).
    NaN in the input gives NaN.
    """
    x, y = _pair(pred, gold)
    mx, my = x.mean(), y.mean()
    vx, vy = x.var(), y.var()
    cov = ((x - mx) * (y - my)).mean()
    denom = vx + vy + (mx - my) ** 2
    if np.isnan(denom):
        return float("nan")
    if denom == 0.0:
        return 0.0
    return float(2.0 * cov / denom)


def pcc(pred: np.ndarray, gold: np.ndarray) -> float:
    """Pearson correlation; 0.0 when either side is constant."""
    x, y = _pair(pred, gold)
    sx, sy = x.std(), y.std()
    if np.isnan(sx) or np.isnan(sy):
        return float("nan")
    if sx == 0.0 or sy == 0.0:
        return 0.0
    return float(((x - x.mean()) * (y - y.mean())).mean() / (sx * sy))


def rmse(pred: np.ndarray, gold: np.ndarray) -> float:
    """Root mean squared error."""
    x, y = _pair(pred, gold)
    return float(np.sqrt(np.mean((x - y) ** 2)))


METRICS = {"ccc": ccc, "pcc": pcc, "rmse": rmse}


def score_frames(
    pred: np.ndarray,
    gold: np.ndarray,
    attributes: Sequence[str],
    *,
    prefix: str = "",
) -> dict[str, float]:
    """CCC/PCC/RMSE per attribute plus ``<prefix>ccc_mean`` for frames stacked as (n, A).

    Returns keys like ``devel_ccc_arousal`` when ``prefix='devel_'``.
    """
    pred = np.asarray(pred, dtype=np.float64)
    gold = np.asarray(gold, dtype=np.float64)
    if pred.ndim != 2 or pred.shape != gold.shape or pred.shape[1] != len(attributes):
        raise ValueError(
            f"expected (frames, {len(attributes)}) arrays, got {pred.shape} and {gold.shape}"
        )
    out: dict[str, float] = {}
    for name, fn in METRICS.items():
        for j, attr in enumerate(attributes):
            out[f"{prefix}{name}_{attr}"] = fn(pred[:, j], gold[:, j])
    out[f"{prefix}ccc_mean"] = float(np.mean([out[f"{prefix}ccc_{a}"] for a in attributes]))
    return out


def score_recordings(
    preds: Mapping[str, np.ndarray],
    golds: Mapping[str, np.ndarray],
    cultures: Mapping[str, str],
    attributes: Sequence[str],
    *,
    prefix: str = "devel_",
) -> dict[str, float]:
    """Scores over all recordings concatenated (AVEC), and per culture.

    Args:
        preds: recording name -> (T, A) predictions aligned with the gold frames.
        golds: recording name -> (T, A) gold labels.
        cultures: recording name -> culture code (``DE``, ``HU``).
        attributes: attribute names, in column order.
        prefix: metric prefix; per culture it becomes ``<prefix><culture>_``.

    Returns:
        ``<prefix>ccc_<attr>``, ``<prefix>ccc_mean``, pcc, rmse, and the same per culture.
    """
    names = sorted(golds)
    missing = [n for n in names if n not in preds]
    if missing:
        raise ValueError(f"no predictions for recordings {missing[:5]}")
    for n in names:
        if preds[n].shape != golds[n].shape:
            raise ValueError(
                f"{n}: prediction shape {preds[n].shape} differs from gold {golds[n].shape}"
            )
    out = score_frames(
        np.concatenate([preds[n] for n in names]),
        np.concatenate([golds[n] for n in names]),
        attributes,
        prefix=prefix,
    )
    for culture in sorted({cultures[n] for n in names}):
        sub = [n for n in names if cultures[n] == culture]
        out.update(
            score_frames(
                np.concatenate([preds[n] for n in sub]),
                np.concatenate([golds[n] for n in sub]),
                attributes,
                prefix=f"{prefix}{culture}_",
            )
        )
    return out


# --- Intervals over recordings -------------------------------------------------------------
# Frames within a recording are strongly autocorrelated, so the unit of resampling is the
# recording, stratified by culture (AVEC scores DE and HU pooled). A pooled CCC only needs six
# sums per recording and attribute, so every resample is one matrix product of resample
# counts with those sums instead of re-concatenating frames.

_MOMENTS = 6  # n, sum x, sum y, sum x^2, sum y^2, sum xy


def recording_moments(pred: np.ndarray, gold: np.ndarray) -> np.ndarray:
    """Sufficient statistics of one recording for the pooled CCC: shape (6, A)."""
    x = np.asarray(pred, dtype=np.float64)
    y = np.asarray(gold, dtype=np.float64)
    if x.ndim == 1:
        x, y = x[:, None], y[:, None]
    if x.shape != y.shape or x.ndim != 2:
        raise ValueError(f"prediction and gold differ in shape: {x.shape} vs {y.shape}")
    n = np.full(x.shape[1], float(x.shape[0]))
    return np.stack([n, x.sum(0), y.sum(0), (x * x).sum(0), (y * y).sum(0), (x * y).sum(0)])


def ccc_from_moments(moments: np.ndarray) -> np.ndarray:
    """Pooled CCC from summed moments of shape (..., 6, A); 0.0 where undefined (as ``ccc``)."""
    n, sx, sy, sxx, syy, sxy = (moments[..., k, :] for k in range(_MOMENTS))
    with np.errstate(invalid="ignore", divide="ignore"):
        mx, my = sx / n, sy / n
        vx = sxx / n - mx * mx
        vy = syy / n - my * my
        cov = sxy / n - mx * my
        denom = vx + vy + (mx - my) ** 2
        out = np.where(denom > 0, 2.0 * cov / np.where(denom > 0, denom, 1.0), 0.0)
    return np.asarray(out, dtype=np.float64)


def recording_resamples(
    strata: Sequence[str], *, n_boot: int, seed: int
) -> np.ndarray:
    """Bootstrap counts (n_boot, R): recordings drawn with replacement within each stratum.

    Each stratum keeps its size in every resample, so a resample never changes the mix of
    cultures the pooled score is computed over.
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    labels = np.asarray(list(strata))
    rng = np.random.default_rng(seed)
    counts = np.zeros((n_boot, labels.size), dtype=np.float64)
    for stratum in sorted(set(labels.tolist())):
        idx = np.flatnonzero(labels == stratum)
        draws = rng.integers(0, idx.size, size=(n_boot, idx.size))
        for b in range(n_boot):
            counts[b, idx] = np.bincount(draws[b], minlength=idx.size)
    return counts


def _moments_stack(preds: Sequence[np.ndarray], golds: Sequence[np.ndarray]) -> np.ndarray:
    if len(preds) != len(golds) or not preds:
        raise ValueError(f"need equal, non-zero numbers of recordings: {len(preds)} vs "
                         f"{len(golds)}")
    return np.stack([recording_moments(p, g) for p, g in zip(preds, golds, strict=True)])


def _resampled_ccc(counts: np.ndarray, moments: np.ndarray) -> np.ndarray:
    """Pooled CCC (B, A) of each resample: counts (B, R) weight per-recording moments."""
    return ccc_from_moments(np.einsum("br,rka->bka", counts, moments))


def _interval(samples: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    tail = (1.0 - level) / 2.0
    return np.quantile(samples, tail, axis=0), np.quantile(samples, 1.0 - tail, axis=0)


def bootstrap_ccc(
    preds: Sequence[np.ndarray],
    golds: Sequence[np.ndarray],
    strata: Sequence[str],
    *,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pooled CCC per attribute with a percentile bootstrap interval over recordings.

    Args:
        preds, golds: one (T_r, A) array per recording, aligned.
        strata: the culture (or other stratum) of each recording.

    Returns:
        (estimate, low, high), each of shape (A,); the estimate is the pooled CCC of the
        data as given.
    """
    moments = _moments_stack(preds, golds)
    counts = recording_resamples(strata, n_boot=n_boot, seed=seed)
    boot = _resampled_ccc(counts, moments)
    low, high = _interval(boot, level)
    return ccc_from_moments(moments.sum(0)), low, high


def bootstrap_ccc_difference(
    preds_a: Sequence[np.ndarray],
    preds_b: Sequence[np.ndarray],
    golds: Sequence[np.ndarray],
    strata: Sequence[str],
    *,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Paired bootstrap of pooled CCC(a) - CCC(b) on the same recordings.

    Both systems are scored on the same resample each time, so the interval is that of the
    gain, not of two independent scores.

    Returns:
        (difference, low, high, p_value) per attribute; the two-sided p-value is twice the
        smaller tail of the bootstrap distribution around 0, capped at 1 (identical systems
        give 1).
    """
    ma = _moments_stack(preds_a, golds)
    mb = _moments_stack(preds_b, golds)
    counts = recording_resamples(strata, n_boot=n_boot, seed=seed)
    diff = _resampled_ccc(counts, ma) - _resampled_ccc(counts, mb)
    low, high = _interval(diff, level)
    below = (np.sum(diff <= 0.0, axis=0) + 1.0) / (n_boot + 1.0)
    above = (np.sum(diff >= 0.0, axis=0) + 1.0) / (n_boot + 1.0)
    p_value = np.minimum(1.0, 2.0 * np.minimum(below, above))
    estimate = ccc_from_moments(ma.sum(0)) - ccc_from_moments(mb.sum(0))
    return estimate, low, high, p_value


def permutation_ccc_difference(
    preds_a: Sequence[np.ndarray],
    preds_b: Sequence[np.ndarray],
    golds: Sequence[np.ndarray],
    *,
    n_perm: int = 2000,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Paired permutation test of pooled CCC(a) - CCC(b): swap a and b per recording.

    Returns:
        (difference, p_value) per attribute; p = (1 + #|d_perm| >= |d|) / (1 + n_perm), so
        identical systems give p = 1.
    """
    ma = _moments_stack(preds_a, golds)
    mb = _moments_stack(preds_b, golds)
    observed = ccc_from_moments(ma.sum(0)) - ccc_from_moments(mb.sum(0))
    rng = np.random.default_rng(seed)
    swap = rng.integers(0, 2, size=(n_perm, ma.shape[0])).astype(np.float64)
    keep = 1.0 - swap
    perm_a = np.einsum("br,rka->bka", keep, ma) + np.einsum("br,rka->bka", swap, mb)
    perm_b = np.einsum("br,rka->bka", swap, ma) + np.einsum("br,rka->bka", keep, mb)
    d = ccc_from_moments(perm_a) - ccc_from_moments(perm_b)
    # A tiny tolerance so floating-point ties count as ties.
    extreme = np.sum(np.abs(d) >= np.abs(observed) - 1e-12, axis=0)
    return observed, (1.0 + extreme) / (1.0 + n_perm)
