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
