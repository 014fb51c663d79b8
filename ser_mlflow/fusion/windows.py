"""Context windows over frames grouped by recording, and stacking of per-recording arrays."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

#: The published windows hold the centre frame three times (see ``Bank``).
CENTRE_SCALE = float(np.sqrt(3.0))

# --------------------------------------------------------------------------- windows


def group_codes(groups: Any, n_frames: int) -> np.ndarray:
    """Map recording ids to integer codes 0..G-1 (one per frame).

    Args:
        groups: recording id per frame (any sortable values), or None for one recording.
        n_frames: number of frames the ids must cover.

    Returns:
        int64 array of shape (n_frames,).

    Raises:
        ValueError: when ``groups`` is not 1-D, has the wrong length or holds missing ids.
    """
    if groups is None:
        return np.zeros(n_frames, dtype=np.int64)
    arr = np.asarray(groups)
    if arr.ndim != 1 or arr.shape[0] != n_frames:
        raise ValueError(
            f"groups: expected one recording id per frame, i.e. shape ({n_frames},), "
            f"got shape {arr.shape}"
        )
    if arr.dtype.kind == "f" and np.isnan(arr).any():
        raise ValueError("groups: recording ids contain NaN")
    try:
        _, codes = np.unique(arr, return_inverse=True)
    except TypeError as exc:  # mixed, unorderable ids such as None next to strings
        raise ValueError(f"groups: recording ids must be mutually sortable ({exc})") from None
    return codes.reshape(-1).astype(np.int64)


def window_index(codes: np.ndarray, offsets: Sequence[int] | np.ndarray) -> np.ndarray:
    """Row indices of each frame's neighbours at the given offsets, within its recording.

    Frames of one recording keep their order of appearance, so recordings may be
    interleaved. A neighbour beyond the recording's first/last frame is clipped to it, so
    edge frames repeat the recording's own edge frame and never reach another recording.

    Args:
        codes: integer recording code per frame, shape (n,).
        offsets: frame offsets, e.g. ``range(-k, k + 1)``.

    Returns:
        int64 array (n, len(offsets)): row ``t`` holds the rows of ``t + offset``.
    """
    codes = np.asarray(codes)
    n = codes.shape[0]
    offs = np.asarray(offsets, dtype=np.int64)
    order = np.argsort(codes, kind="stable")  # rows grouped by recording, time order kept
    sorted_codes = codes[order]
    # first and last sorted position of each frame's recording
    change = np.flatnonzero(np.diff(sorted_codes)) + 1
    starts = np.concatenate(([0], change))
    ends = np.concatenate((change, [n])) - 1
    run = np.repeat(np.arange(starts.size), np.diff(np.concatenate((starts, [n]))))
    pos = np.empty(n, dtype=np.int64)
    pos[order] = np.arange(n)  # sorted position of each original row
    lo = starts[run][pos]
    hi = ends[run][pos]
    neighbour = np.clip(pos[:, None] + offs[None, :], lo[:, None], hi[:, None])
    return order[neighbour]


def context_windows(X: np.ndarray, groups: Any = None, k: int = 0) -> np.ndarray:
    """Widen each frame with its +/- k neighbours from the same recording.

    Args:
        X: frames x columns, shape (n, p).
        groups: recording id per frame; None means all frames are one recording.
        k: context reach; the window holds the 2k+1 frames t-k..t+k.

    Returns:
        Array (n, (2k+1)*p); columns ``j*p:(j+1)*p`` hold the frame at offset ``j - k``.
        Edge frames repeat their recording's first/last frame.

    Raises:
        ValueError: when X is not 2-D, k is negative or groups do not fit X.
    """
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X: expected a 2-D array (frames, columns), got shape {X.shape}")
    if int(k) != k or k < 0:
        raise ValueError(f"k: expected a non-negative integer, got {k!r}")
    codes = group_codes(groups, X.shape[0])
    idx = window_index(codes, np.arange(-int(k), int(k) + 1))
    return X[idx].reshape(X.shape[0], -1)


def window_means(X: np.ndarray, codes: np.ndarray, k: int) -> np.ndarray:
    """Mean over each frame's +/- k window (edges repeated), shape like X.

    Why: a summary of the window is 2k+1 times fewer columns than the frames themselves,
    which is the regularisation a cross-validated fusion needs (see ``context='mean'``).
    """
    codes = np.asarray(codes)
    n = codes.shape[0]
    X = np.asarray(X, dtype=np.float64)
    order = np.argsort(codes, kind="stable")  # rows grouped by recording, time order kept
    Xs = X[order]
    change = np.flatnonzero(np.diff(codes[order])) + 1
    starts = np.concatenate(([0], change))
    ends = np.concatenate((change, [n])) - 1
    run = np.repeat(np.arange(starts.size), np.diff(np.concatenate((starts, [n]))))
    pos = np.arange(n)
    lo, hi = starts[run], ends[run]
    # one running sum instead of 2k+1 passes: the window's in-recording part from the
    # cumulative sum, plus the edge frame once for every step the window reaches past it
    csum = np.vstack((np.zeros((1, X.shape[1])), np.cumsum(Xs, axis=0)))
    a = np.maximum(pos - k, lo)
    b = np.minimum(pos + k, hi)
    total = csum[b + 1] - csum[a]
    total += (a - (pos - k))[:, None] * Xs[lo]
    total += ((pos + k) - b)[:, None] * Xs[hi]
    out = np.empty_like(total)
    out[order] = total / (2 * k + 1)
    return out


def nested_offsets(k: int) -> np.ndarray:
    """0, -1, +1, -2, +2, ...: the windows for k' < k are the leading columns."""
    offs = [0]
    for r in range(1, k + 1):
        offs += [-r, r]
    return np.asarray(offs, dtype=np.int64)


# --------------------------------------------------------------------------- data helpers


def stack_recordings(
    golds: Mapping[str, np.ndarray],
    systems: Mapping[str, Mapping[str, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stack per-recording system predictions into the estimator's (X, y, groups).

    Recordings are taken in sorted name order. A prediction longer than its gold labels
    is truncated to the label length (AVEC pads predictions to the longest recording).

    Args:
        golds: recording name -> gold labels (T, A).
        systems: system name -> recording name -> predictions (T', A) with T' >= T.

    Returns:
        ``X`` (N, M*A) with columns system-major (system 0's A attributes first),
        ``y`` (N, A) and ``groups`` (N,) holding the recording name of each frame.

    Raises:
        ValueError: a system misses a recording, is shorter than the labels or has another
            number of attributes.
    """
    names = sorted(golds)
    if not names or not systems:
        raise ValueError("stack_recordings: need at least one recording and one system")
    xs, ys, gs = [], [], []
    for rec in names:
        gold = np.asarray(golds[rec], dtype=np.float64)
        if gold.ndim == 1:
            gold = gold[:, None]
        cols = []
        for sys_name, preds in systems.items():
            if rec not in preds:
                raise ValueError(f"system {sys_name!r}: no predictions for recording {rec!r}")
            pred = np.asarray(preds[rec], dtype=np.float64)
            if pred.ndim == 1:
                pred = pred[:, None]
            if pred.shape[0] < gold.shape[0] or pred.shape[1] != gold.shape[1]:
                raise ValueError(
                    f"system {sys_name!r}, recording {rec!r}: expected at least "
                    f"{gold.shape[0]} frames x {gold.shape[1]} attributes, got {pred.shape}"
                )
            cols.append(pred[: gold.shape[0]])
        xs.append(np.hstack(cols))
        ys.append(gold)
        gs.append(np.full(gold.shape[0], rec, dtype=object))
    return np.vstack(xs), np.vstack(ys), np.concatenate(gs)


def split_recordings(pred: np.ndarray, groups: Any) -> dict[Any, np.ndarray]:
    """Undo ``stack_recordings``: recording id -> its frames of ``pred``, in frame order.

    Raises:
        ValueError: when groups does not have one id per row of pred.
    """
    pred = np.asarray(pred)
    arr = np.asarray(groups)
    if arr.ndim != 1 or arr.shape[0] != pred.shape[0]:
        raise ValueError(f"groups: expected shape ({pred.shape[0]},), got {arr.shape}")
    return {g: pred[arr == g] for g in dict.fromkeys(arr.tolist())}


def features(inputs: np.ndarray, codes: np.ndarray, k: int, context: str) -> np.ndarray:
    """Feature matrix of one context reach, columns in ``StageModel.coef`` order."""
    if context == "frames":
        return inputs[window_index(codes, np.arange(-k, k + 1))].reshape(inputs.shape[0], -1)
    return np.hstack((inputs, window_means(inputs, codes, k)))
