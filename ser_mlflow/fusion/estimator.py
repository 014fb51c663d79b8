"""Multistage late fusion with linear SVRs over context windows (Atmaja & Akagi 2020).

The recipe follows the AVEC 2019 ``fuse_results.py`` and the paper: one LinearSVR per
attribute whose input is every system's prediction of every attribute, each frame widened
with its +/- k neighbours; k and C are picked per attribute from a grid by CCC; stage s+1
sees the original inputs plus stage s's outputs. Two flaws of the published script are
not copied by default (DESIGN section 7): windows never cross a recording boundary (edge
frames repeat that recording's first/last frame) and they hold exactly the 2k+1 frames
t-k..t+k (the script repeats the centre frame three times and reaches only k-1 frames);
``windows='published'`` restores both for reproduction.

Why a closed form instead of liblinear: with epsilon=0 the primal objective of
``LinearSVR(loss='squared_epsilon_insensitive', dual=False)`` is
``0.5*|w|^2 + C*sum((y - Xw - b)^2)`` with the intercept penalised like a weight
(liblinear appends a constant feature). Its minimiser solves ``(G + I/(2C)) w = X'y`` with
``G`` the augmented Gram matrix, so one pass over the frames (``G``) serves every C, every
context width (the windows for k are a column subset of the windows for the largest k when
offsets are ordered 0, -1, +1, -2, +2, ...) and, under cross-validation, every fold (the
training Gram is the sum of the other folds' Grams). A stage of the full grid then costs
one matrix product and a few dozen small solves instead of ~60 unconverged dual
coordinate-descent runs. The published loss, ``epsilon_insensitive`` (absolute error), has
no closed form; ``svr.lad_grid`` solves it exactly by ADMM on the same Gram matrices, with
the products over the frames batched for the whole C grid. ``solver='liblinear'`` keeps
the published solver. Its published scores are those of a fit stopped after 1000 passes,
between the exact absolute-error and the exact squared-error optimum (measured in
``benchmarks/fusion.py``).

Why nested cross-validation: stage s+1 is trained on stage s's outputs. Scoring stage
s+1 out-of-fold while its inputs were produced by models that saw the held-out fold's
labels leaks those labels (on pure noise such a stage 2 scored CCC ~0.7). Under
``protocol='cv'`` the reported scores therefore come from running the whole procedure once
per outer fold on the other folds and scoring the held-out fold.

This module imports neither TensorFlow nor MLflow.
"""

from __future__ import annotations

import tempfile
import threading
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from joblib import Parallel, delayed, effective_n_jobs
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GroupKFold
from sklearn.utils.validation import check_is_fitted, validate_data
from threadpoolctl import threadpool_limits

from ser_mlflow.fusion.svr import calibration, lad_grid, liblinear_fit, ridge_grid
from ser_mlflow.scoring.metrics import ccc

Protocol = Literal["cv", "paper"]
Solver = Literal["exact", "liblinear"]
Context = Literal["frames", "mean"]
Selection = Literal["all", "same", "auto"] | Sequence[Literal["all", "same", "auto"]]
StageInputs = Literal["oof", "insample"]
Windows = Literal["clean", "published"]

_PROTOCOLS: tuple[str, ...] = ("cv", "paper")
_SOLVERS: tuple[str, ...] = ("exact", "liblinear")
_CONTEXTS: tuple[str, ...] = ("frames", "mean")
_SELECTIONS: tuple[str, ...] = ("all", "same", "auto")
_STAGE_INPUTS: tuple[str, ...] = ("oof", "insample")
_LOSSES: tuple[str, ...] = ("squared_epsilon_insensitive", "epsilon_insensitive")
_WINDOWS: tuple[str, ...] = ("clean", "published")

#: The recipes ``recipes="auto"`` (``AUTO_RECIPES``) chooses among under ``protocol="cv"``,
#: per outer fold and attribute, by an inner cross-validation grouped by recording (k and C
#: are chosen inside each recipe as before). Every recipe trains later stages on the
#: in-sample outputs of the stage refit on all training frames
#: (``stage_inputs="insample"``): out-of-fold outputs carry each fold's label mean through
#: the fold models' intercepts, which a later stage learns and which does not carry over
#: (measured: liking fell at stage 2).
#:
#: - ``paper``: every frame of the +/-k window of every input column (the published method);
#: - ``frames-cal``: the same, output mean and std calibrated in-fold.
#:   Neither is in ``auto``: on the AVEC set a recipe over all 27 columns' frame windows
#:   costs several CPU-minutes of inner fits, more than the rest of the choice together,
#:   and ``paper`` scored below the best single input under cv (0.488 / 0.522 / 0.058);
#: - ``frames-cal-same``: calibrated frame windows of only the columns that predict the
#:   attribute;
#: - ``mean``: centre frame and window mean of every column, not calibrated;
#: - ``mean-cal``: the same, calibrated;
#: - ``mean-cal-same``: centre frame and window mean of the attribute's own columns,
#:   calibrated (with ``mean-cal`` for liking, the hand-tuned recipe of issue #5:
#:   0.595 / 0.590 / 0.214 on the AVEC 2019 devel set).
RECIPES: dict[str, dict[str, Any]] = {
    "paper": {"context": "frames", "calibrate": False, "input_selection": "all"},
    "frames-cal": {"context": "frames", "calibrate": True, "input_selection": "all"},
    "frames-cal-same": {"context": "frames", "calibrate": True, "input_selection": "same"},
    "mean": {"context": "mean", "calibrate": False, "input_selection": "all"},
    "mean-cal": {"context": "mean", "calibrate": True, "input_selection": "all"},
    "mean-cal-same": {"context": "mean", "calibrate": True, "input_selection": "same"},
}
AUTO_RECIPES: tuple[str, ...] = ("frames-cal-same", "mean", "mean-cal", "mean-cal-same")
#: The recipe name of a fit whose recipe is the estimator's own parameters (``recipes=None``).
FLAGS_RECIPE = "flags"

#: The published windows hold the centre frame three times (see ``_Bank``).
_CENTRE_SCALE = float(np.sqrt(3.0))


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


def _nested_offsets(k: int) -> np.ndarray:
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


# --------------------------------------------------------------------------- stage models


@dataclass(frozen=True)
class StageModel:
    """One fitted attribute model of one stage.

    Attributes:
        k: context reach of its windows.
        C: SVR complexity.
        inputs: ``"all"`` (every input column) or ``"same"`` (only the columns that predict
            this attribute, and the previous stage's output for it).
        columns: indices of the stage input columns it reads; stage inputs are the
            original columns followed by the previous stage's A outputs.
        coef: weights (2k+1, len(columns)) for offsets -k..k under ``context='frames'``,
            (2, len(columns)) for [centre frame, window mean] under ``context='mean'``.
        intercept: bias of the SVR.
        gain, shift: output calibration ``gain * svr + shift`` (1 and 0 when off).
    """

    k: int
    C: float
    inputs: str
    columns: np.ndarray
    coef: np.ndarray
    intercept: float
    gain: float = 1.0
    shift: float = 0.0


def _features(inputs: np.ndarray, codes: np.ndarray, k: int, context: str) -> np.ndarray:
    """Feature matrix of one context reach, columns in ``StageModel.coef`` order."""
    if context == "frames":
        return inputs[window_index(codes, np.arange(-k, k + 1))].reshape(inputs.shape[0], -1)
    return np.hstack((inputs, window_means(inputs, codes, k)))


def _predict_stage(
    models: Sequence[StageModel], inputs: np.ndarray, codes: np.ndarray, context: str
) -> np.ndarray:
    out = np.empty((inputs.shape[0], len(models)), dtype=np.float64)
    cache: dict[tuple[int, bytes], np.ndarray] = {}
    for a, m in enumerate(models):
        key = (m.k, m.columns.tobytes())
        if key not in cache:
            cache[key] = _features(inputs[:, m.columns], codes, m.k, context)
        out[:, a] = m.gain * (cache[key] @ m.coef.reshape(-1) + m.intercept) + m.shift
    return out


# --------------------------------------------------------------------------- solver core


@dataclass
class _Bank:
    """Features of every context reach at once, rows in fold order.

    ``context='frames'``: the windows of the largest k with offsets 0, -1, +1, ..., so
    the features of a smaller k are the leading ``(2k+1)*p`` columns (one Gram matrix
    serves every k). Published windows of reach k hold offsets -(k-1)..k-1 with the
    centre frame three times; three equal columns are one column scaled by sqrt(3) (same
    inner products, so the same fit), which keeps the nesting with reach k-1's layout.
    ``context='mean'``: the frames followed by the window mean of each k.
    """

    Z: np.ndarray
    width: int
    context: str
    ks: list[int]
    published: bool = False

    def cols(self, k: int, subset: np.ndarray | None) -> slice | np.ndarray:
        """Columns of Z holding reach k of the source columns ``subset`` (None: all)."""
        p = self.width
        if self.context == "frames":
            reach = k - 1 if self.published else k
            if subset is None:
                return slice(0, (2 * reach + 1) * p)
            return (np.arange(2 * reach + 1)[:, None] * p + subset[None, :]).ravel()
        src = np.arange(p) if subset is None else subset
        return np.concatenate((src, (1 + self.ks.index(k)) * p + src))


def _bank(
    V: np.ndarray, codes: np.ndarray, ks: np.ndarray, context: str, published: bool = False
) -> _Bank:
    n, p = V.shape
    if context == "frames":
        reach = int(ks.max()) - 1 if published else int(ks.max())
        Z = V[window_index(codes, _nested_offsets(reach))].reshape(n, -1)
        if published:
            Z[:, :p] *= _CENTRE_SCALE
        return _Bank(Z=Z, width=p, context=context, ks=[], published=published)
    uniq = sorted({int(k) for k in ks})
    Z = np.hstack([V] + [window_means(V, codes, k) for k in uniq])
    return _Bank(Z=Z, width=p, context=context, ks=uniq)


def _times(Z: np.ndarray, cols: slice | np.ndarray, W: np.ndarray) -> np.ndarray:
    """``Z[:, cols] @ W`` without copying scattered columns out of a large Z."""
    if isinstance(cols, slice):
        return Z[:, cols] @ W
    full = np.zeros((Z.shape[1], W.shape[1]))
    full[cols] = W
    return Z @ full


def _ncols(c: slice | np.ndarray) -> int:
    return c.stop - c.start if isinstance(c, slice) else int(c.size)


def _sub(M: np.ndarray, r: slice | np.ndarray, c: slice | np.ndarray) -> np.ndarray:
    if isinstance(r, slice) and isinstance(c, slice):
        return M[r, c]
    rr = np.arange(M.shape[0])[r] if isinstance(r, slice) else r
    cc = np.arange(M.shape[1])[c] if isinstance(c, slice) else c
    return M[np.ix_(rr, cc)]


def _design(
    Zx: np.ndarray,
    Zs: np.ndarray | None,
    rows: np.ndarray,
    cx: slice | np.ndarray,
    cs: slice | np.ndarray | None,
) -> np.ndarray:
    """Feature rows of the training frames (without the constant column): the input
    windows ``Zx``, then the previous stage's output windows ``Zs`` when there are any."""
    Z = Zx[rows][:, cx]
    if Zs is not None:
        Z = np.hstack((Z, Zs[rows][:, cs]))
    return np.asarray(Z)


@contextmanager
def _shared(
    n_jobs: int | None, Zx: np.ndarray, Zs: np.ndarray | None
) -> Iterator[tuple[np.ndarray | str, np.ndarray | str | None]]:
    """The window banks as worker processes should receive them: the arrays themselves
    when the fits run in this process, else ``.npy`` files each worker maps read-only
    (written once per stage; joblib would hash and dump the array once per fit)."""
    if effective_n_jobs(n_jobs) == 1:
        yield Zx, Zs
        return
    with tempfile.TemporaryDirectory(prefix="ser-fusion-") as tmp:
        np.save(Path(tmp, "x.npy"), Zx)
        if Zs is not None:
            np.save(Path(tmp, "s.npy"), Zs)
        yield str(Path(tmp, "x.npy")), None if Zs is None else str(Path(tmp, "s.npy"))


def _liblinear_cell(
    Zx: np.ndarray | str,
    Zs: np.ndarray | str | None,
    rows: np.ndarray,
    cx: slice | np.ndarray,
    cs: slice | np.ndarray | None,
    y: np.ndarray,
    C: float,
    params: dict[str, Any],
) -> tuple[np.ndarray, int]:
    """One published-solver fit of one C and attribute (run in a worker process)."""
    zx = np.load(Zx, mmap_mode="r") if isinstance(Zx, str) else Zx
    zs = np.load(Zs, mmap_mode="r") if isinstance(Zs, str) else Zs
    return liblinear_fit(_design(zx, zs, rows, cx, cs), y, C, params)


@dataclass
class _Sums:
    """Sufficient statistics of a set of frames: the pieces of the augmented Gram matrix
    of [1, Zx, Zs] (Zx: windows of the original inputs, Zs: of the previous stage)."""

    n: float
    sx: np.ndarray
    Gxx: np.ndarray
    rx: np.ndarray
    ysum: np.ndarray
    yy: np.ndarray
    ss: np.ndarray | None = None
    Gxs: np.ndarray | None = None
    Gss: np.ndarray | None = None
    rs: np.ndarray | None = None

    def __add__(self, other: _Sums) -> _Sums:
        def add(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
            return None if a is None or b is None else a + b

        return _Sums(
            self.n + other.n,
            self.sx + other.sx,
            self.Gxx + other.Gxx,
            self.rx + other.rx,
            self.ysum + other.ysum,
            self.yy + other.yy,
            add(self.ss, other.ss),
            add(self.Gxs, other.Gxs),
            add(self.Gss, other.Gss),
            add(self.rs, other.rs),
        )

    def system(
        self, cx: slice | np.ndarray, cs: slice | np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Augmented Gram [1 Zx Zs]'[1 Zx Zs] and right-hand sides [1 Zx Zs]'Y."""
        dx = _ncols(cx)
        ds = 0 if cs is None else _ncols(cs)
        d = 1 + dx + ds
        G = np.empty((d, d))
        r = np.empty((d, self.rx.shape[1]))
        G[0, 0] = self.n
        G[0, 1 : 1 + dx] = self.sx[cx]
        G[1 : 1 + dx, 0] = self.sx[cx]
        G[1 : 1 + dx, 1 : 1 + dx] = _sub(self.Gxx, cx, cx)
        r[0] = self.ysum
        r[1 : 1 + dx] = self.rx[cx]
        if cs is not None:
            if self.ss is None or self.Gxs is None or self.Gss is None or self.rs is None:
                raise RuntimeError("stage-output statistics missing")  # internal misuse
            G[0, 1 + dx :] = self.ss[cs]
            G[1 + dx :, 0] = self.ss[cs]
            cross = _sub(self.Gxs, cx, cs)
            G[1 : 1 + dx, 1 + dx :] = cross
            G[1 + dx :, 1 : 1 + dx] = cross.T
            G[1 + dx :, 1 + dx :] = _sub(self.Gss, cs, cs)
            r[1 + dx :] = self.rs[cs]
        return G, r

    @property
    def ystats(self) -> np.ndarray:
        """(3, A): sum y, sum y^2, n."""
        return np.vstack((self.ysum, self.yy, np.full(self.ysum.shape, self.n)))


def _x_sums(Z: np.ndarray, Y: np.ndarray) -> _Sums:
    return _Sums(
        n=float(Z.shape[0]),
        sx=Z.sum(axis=0),
        Gxx=Z.T @ Z,  # numpy hands Z.T @ Z to BLAS syrk
        rx=Z.T @ Y,
        ysum=Y.sum(axis=0),
        yy=(Y**2).sum(axis=0),
    )


def _with_s(base: _Sums, Zx: np.ndarray, Zs: np.ndarray, Y: np.ndarray) -> _Sums:
    """Add the stage-output pieces; the costly Zx'Zx block is reused from stage 1."""
    return _Sums(
        base.n, base.sx, base.Gxx, base.rx, base.ysum, base.yy,
        ss=Zs.sum(axis=0), Gxs=Zx.T @ Zs, Gss=Zs.T @ Zs, rs=Zs.T @ Y,
    )  # fmt: skip


@dataclass(frozen=True)
class _Unit:
    """Attributes fitted from one column set: all of them ('all') or one ('same')."""

    inputs: str
    attrs: slice
    xsub: np.ndarray | None
    ssub: np.ndarray | None


@dataclass
class _UnitFit:
    W: np.ndarray  # (n_C, d, n_attrs), intercept in row 0
    gain: np.ndarray  # (n_C, n_attrs)
    shift: np.ndarray  # (n_C, n_attrs)


@dataclass
class _Run:
    """What one pass of the multistage procedure over a set of training folds yields."""

    scores: list[np.ndarray] = field(default_factory=list)  # (n_sel, n_k, n_C, A)
    chosen: list[list[tuple[str, int, float]]] = field(default_factory=list)
    best: list[np.ndarray] = field(default_factory=list)  # (A,)
    train_out: list[np.ndarray] = field(default_factory=list)  # (n_train, A)
    test_out: list[np.ndarray] = field(default_factory=list)  # (n_test, A)
    models: list[list[StageModel]] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)  # wall time of each stage


class _Engine:
    """The multistage procedure on frames grouped into folds (contiguous row blocks)."""

    def __init__(
        self,
        est: MultistageSVRFusion,
        X: np.ndarray,
        Y: np.ndarray,
        codes: np.ndarray,
        bounds: np.ndarray,
        ks: np.ndarray,
        Cs: np.ndarray,
        banks: dict[str, tuple[_Bank, list[_Sums]]] | None = None,
    ) -> None:
        """``banks``: windows and per-fold Gram blocks by context, shared between the
        engines of several recipes (the frame windows of k=19 take ~340 MB on AVEC)."""
        self.est, self.X, self.Y, self.codes = est, X, Y, codes
        self.bounds, self.ks, self.Cs = bounds, ks, Cs
        self.n_out = Y.shape[1]
        self.published = est.windows == "published"
        # published windows cross recordings within the frames fitted together (one fold
        # block, all frames under the paper protocol), as the AVEC script's did
        self.fit_codes = (
            np.repeat(np.arange(bounds.size - 1), np.diff(bounds)) if self.published else codes
        )
        banks = {} if banks is None else banks
        if est.context not in banks:
            xbank = _bank(X, self.fit_codes, ks, est.context, self.published)
            banks[est.context] = (
                xbank,
                [_x_sums(xbank.Z[self.rows(b)], Y[self.rows(b)]) for b in range(bounds.size - 1)],
            )
        self.xbank, self.xsums = banks[est.context]
        # stage-1 fits depend only on the training folds: outer and inner runs share them
        self.cache: dict[tuple[Any, ...], _UnitFit] = {}
        self.warm: dict[tuple[Any, ...], tuple[np.ndarray, np.ndarray]] = {}
        self._liblinear_done: dict[tuple[Any, ...], np.ndarray] = {}
        # BLAS threads for the ADMM products: n_jobs when the procedure runs once (paper),
        # else 1 because the outer folds already run in parallel
        self.blas_threads = effective_n_jobs(est.n_jobs) if est.protocol == "paper" else 1
        self.n_iter = 1  # most iterations of any fit; the squared loss is one exact solve
        p, A = X.shape[1], self.n_out
        # allowed column sets per attribute ('auto' lets the grid choose between both)
        self.allowed = [
            {"all", "same"} if sel == "auto" else {sel} for sel in est._selection_per_attribute(A)
        ]
        self.selections = [s for s in ("all", "same") if any(s in al for al in self.allowed)]
        self.units: dict[str, list[_Unit]] = {
            "all": [_Unit("all", slice(0, A), None, None)],
            "same": [
                _Unit("same", slice(a, a + 1), np.arange(a, p, A), np.array([a]))
                for a in range(A)
                if "same" in self.allowed[a]
            ],
        }

    def rows(self, b: int) -> slice:
        return slice(int(self.bounds[b]), int(self.bounds[b + 1]))

    def _rows_of(self, blocks: Sequence[int]) -> np.ndarray:
        return np.concatenate([np.arange(self.bounds[b], self.bounds[b + 1]) for b in blocks])

    def _cols(
        self, k: int, unit: _Unit, sbank: _Bank | None
    ) -> tuple[slice | np.ndarray, slice | np.ndarray | None]:
        cs = None if sbank is None else sbank.cols(k, unit.ssub)
        return self.xbank.cols(k, unit.xsub), cs

    def _key(self, blocks: Sequence[int], k: int, unit: _Unit) -> tuple[Any, ...]:
        return (frozenset(blocks), k, unit.inputs, unit.attrs.start)

    def _memo_of(
        self, sbank: _Bank | None, memo: dict[tuple[Any, ...], _UnitFit] | None
    ) -> dict[tuple[Any, ...], _UnitFit] | None:
        """Where a fit is kept: stage 1 in the engine (every pass shares it), a later stage
        in its pass's ``memo``. ADMM fits are never reused at later stages: each one moves
        the warm start of the next, so skipping one would change later results."""
        if sbank is None:
            return self.cache
        if self.est.solver == "exact" and self.est.loss == "epsilon_insensitive":
            return None
        return memo

    def _fit(
        self,
        sums: _Sums,
        blocks: Sequence[int],
        k: int,
        unit: _Unit,
        sbank: _Bank | None,
        memo: dict[tuple[Any, ...], _UnitFit] | None = None,
    ) -> _UnitFit:
        """Weights for every C fitted on ``blocks``, kept for reuse (see ``_memo_of``):
        the refit of a chosen grid point on the same frames is then a look-up."""
        key = self._key(blocks, k, unit)
        store = self._memo_of(sbank, memo)
        if store is not None and key in store:
            return store[key]
        cx, cs = self._cols(k, unit, sbank)
        est = self.est
        G, r = sums.system(cx, cs) if est.solver == "exact" or est.calibrate else (None, None)
        rows = self._rows_of(blocks)
        if est.solver == "exact" and est.loss == "squared_epsilon_insensitive":
            assert G is not None and r is not None
            W = ridge_grid(G, r[:, unit.attrs], self.Cs)
        elif est.solver == "exact":
            assert G is not None
            # warm start from the last reach fitted on these frames (ADMM state is per frame)
            wkey = (frozenset(blocks), unit.inputs, unit.attrs.start, sbank is None)
            W, n_iter, self.warm[wkey] = lad_grid(
                _design(self.xbank.Z, None if sbank is None else sbank.Z, rows, cx, cs),
                G, self.Y[rows, unit.attrs], self.Cs, self.warm.get(wkey), self.blas_threads,
            )  # fmt: skip
            self.n_iter = max(self.n_iter, n_iter)
        else:
            self._liblinear([(blocks, k, unit)], sbank)
            W = self._liblinear_done.pop(key)
        fit = self._finish(W, G, sums, unit)
        if store is not None:
            store[key] = fit
        return fit

    def _finish(
        self, W: np.ndarray, G: np.ndarray | None, sums: _Sums, unit: _Unit
    ) -> _UnitFit:
        n_attrs = unit.attrs.stop - unit.attrs.start
        if self.est.calibrate:
            assert G is not None
            gain, shift = calibration(G, W, sums.ystats[:, unit.attrs])
        else:
            gain, shift = np.ones((self.Cs.size, n_attrs)), np.zeros((self.Cs.size, n_attrs))
        return _UnitFit(W=W, gain=gain, shift=shift)

    def _liblinear(
        self, cells: Sequence[tuple[Sequence[int], int, _Unit]], sbank: _Bank | None
    ) -> None:
        """Fit every C and attribute of each (blocks, k, unit) cell with the published
        solver in ONE pool of processes, into ``_liblinear_done`` (weights by cell key).

        Why one pool for the whole grid of a stage: fits of one k alone (C x attributes)
        leave a worker idle at the end of every k; here the longest fits (largest C) of
        all k start first. Why processes: liblinear draws its coordinate order from one
        global Mersenne twister per process (sklearn's newrand.h) with the GIL released, so
        fits in threads interleave their draws and random_state no longer fixes the result
        (the published recipe's liking moved 0.189-0.214). Each fit is seeded by
        ``random_state`` alone, so the order and the worker change nothing: the result is
        bitwise that of the sequential run (``n_jobs=1``; tests/test_fusion.py). The
        windows go to the workers once per stage as memory-mapped files, not once per fit.
        """
        est = self.est
        params = {
            "loss": est.loss, "max_iter": est.max_iter, "tol": est.tol,
            "random_state": est.random_state,
        }  # fmt: skip
        jobs = []
        for blocks, k, unit in cells:
            cx, cs = self._cols(k, unit, sbank)
            rows = self._rows_of(blocks)
            for ci in range(self.Cs.size):
                for a in range(unit.attrs.start, unit.attrs.stop):
                    jobs.append((self._key(blocks, k, unit), ci, rows, cx, cs, a))
        # largest C first: those fits run longest, so both workers stay busy to the end
        order = sorted(range(len(jobs)), key=lambda i: -self.Cs[jobs[i][1]])
        with _shared(est.n_jobs, self.xbank.Z, None if sbank is None else sbank.Z) as (zx, zs):
            done = Parallel(n_jobs=est.n_jobs, backend="loky")(
                delayed(_liblinear_cell)(
                    zx, zs, jobs[i][2], jobs[i][3], jobs[i][4], self.Y[jobs[i][2], jobs[i][5]],
                    float(self.Cs[jobs[i][1]]), params,
                )
                for i in order
            )  # fmt: skip
        fits = dict(zip(order, done, strict=True))
        self.n_iter = max(self.n_iter, *(it for _, it in done))
        for blocks, k, unit in cells:
            key = self._key(blocks, k, unit)
            mine = [fits[i][0] for i in range(len(jobs)) if jobs[i][0] == key]
            n_attrs = unit.attrs.stop - unit.attrs.start
            W = np.stack(mine).reshape(self.Cs.size, n_attrs, -1).transpose(0, 2, 1)
            self._liblinear_done[key] = W

    def _prefetch(
        self,
        splits: Sequence[tuple[Sequence[int], Sequence[int]]],
        split_sums: Sequence[_Sums],
        sbank: _Bank | None,
        memo: dict[tuple[Any, ...], _UnitFit],
    ) -> None:
        """Under the published solver, fit the whole grid of a stage at once (``_liblinear``)
        and keep each fit where ``_fit`` will look for it."""
        if self.est.solver != "liblinear":
            return
        store = self._memo_of(sbank, memo)
        assert store is not None
        cells: list[tuple[Sequence[int], int, _Unit, _Sums]] = []
        seen: set[tuple[Any, ...]] = set()
        for sel in self.selections:
            for unit in self.units[sel]:
                for k in self.ks.tolist():
                    for (fit_blocks, _), sums in zip(splits, split_sums, strict=True):
                        key = self._key(fit_blocks, k, unit)
                        if key not in store and key not in seen:
                            seen.add(key)
                            cells.append((fit_blocks, k, unit, sums))
        if not cells:
            return
        self._liblinear([(b, k, u) for b, k, u, _ in cells], sbank)
        for blocks, k, unit, sums in cells:
            key = self._key(blocks, k, unit)
            cx, cs = self._cols(k, unit, sbank)
            G = sums.system(cx, cs)[0] if self.est.calibrate else None
            store[key] = self._finish(self._liblinear_done.pop(key), G, sums, unit)

    def _apply(
        self, fit: _UnitFit, k: int, unit: _Unit, b: int, sbank: _Bank | None
    ) -> np.ndarray:
        """Outputs (rows of block b, n_C, n_attrs) of every C."""
        n_c, d, n_attrs = fit.W.shape
        cx, cs = self._cols(k, unit, sbank)
        dx = _ncols(cx)
        rows = self.rows(b)
        flat = fit.W.transpose(1, 0, 2).reshape(d, n_c * n_attrs)
        out = _times(self.xbank.Z[rows], cx, flat[1 : 1 + dx])
        if sbank is not None and cs is not None:
            out += _times(sbank.Z[rows], cs, flat[1 + dx :])
        out = out.reshape(-1, n_c, n_attrs) + fit.W[:, 0, :][None]
        return out * fit.gain[None] + fit.shift[None]

    def run(
        self, train: Sequence[int], test: Sequence[int], *, in_sample: bool, keep_models: bool
    ) -> _Run:
        """Every stage of :meth:`stages` at once."""
        res = _Run()
        for done in self.stages(train, test, in_sample=in_sample, keep_models=keep_models):
            res = done
        return res

    def stages(
        self, train: Sequence[int], test: Sequence[int], *, in_sample: bool, keep_models: bool
    ) -> Iterator[_Run]:
        """Fit the stages one by one on the ``train`` folds and predict the ``test`` folds.

        Yields the same growing ``_Run`` after each stage, so a caller can stop once a
        further stage no longer pays (``prune_stages``).

        Under ``in_sample`` each stage is fitted, chosen and scored on all training frames
        and hands its in-sample output on (paper). Otherwise the grid point is chosen on
        out-of-fold outputs over the training folds and the chosen models are refit on
        all training folds to predict ``test``; the next stage is trained on the
        out-of-fold outputs (``stage_inputs='oof'``) or on the refit models' in-sample
        outputs (``'insample'``). With a single training fold (the innermost level of the
        recipe choice when ``n_splits=3``) k and C are chosen in-sample on it.
        """
        ks, Cs, A = self.ks, self.Cs, self.n_out
        train, test = list(train), list(test)
        if not train:
            raise ValueError("cross-validation needs at least one training fold")
        one_fold = in_sample or len(train) < 2
        train_rows = self._rows_of(train)
        y_train = self.Y[train_rows]
        n_test = sum(self.rows(b).stop - self.rows(b).start for b in test)
        insample_inputs = not in_sample and self.est.stage_inputs == "insample"
        res = _Run()
        S: np.ndarray | None = None  # previous stage's outputs, all frames, fold order
        for stage in range(self.est.n_stages):
            started = time.perf_counter()
            sbank = (
                None
                if S is None
                else _bank(S, self.fit_codes, ks, self.est.context, self.published)
            )
            block_sums: dict[int, _Sums] = {}
            for b in train:
                rows = self.rows(b)
                block_sums[b] = (
                    self.xsums[b]
                    if sbank is None
                    else _with_s(self.xsums[b], self.xbank.Z[rows], sbank.Z[rows], self.Y[rows])
                )

            def total(blocks: Sequence[int], sums: dict[int, _Sums] = block_sums) -> _Sums:
                out = sums[blocks[0]]
                for b in blocks[1:]:
                    out = out + sums[b]
                return out

            if one_fold:
                splits = [(train, train)]
            else:
                splits = [([b for b in train if b != g], [g]) for g in train]
            split_sums = [total(fit_blocks) for fit_blocks, _ in splits]
            all_sums = split_sums[0] if one_fold else total(train)

            memo: dict[tuple[Any, ...], _UnitFit] = {}  # this stage's fits (see _fit)
            self._prefetch(splits, split_sums, sbank, memo)
            grid = np.full((len(self.selections), ks.size, train_rows.size, Cs.size, A), np.nan)
            for si, sel in enumerate(self.selections):
                for unit in self.units[sel]:
                    for ki, k in enumerate(ks.tolist()):
                        pos = 0
                        for (fit_blocks, eval_blocks), sums in zip(
                            splits, split_sums, strict=True
                        ):
                            fit = self._fit(sums, fit_blocks, k, unit, sbank, memo)
                            for b in eval_blocks:
                                out = self._apply(fit, k, unit, b, sbank)
                                grid[si, ki, pos : pos + out.shape[0], :, unit.attrs] = out
                                pos += out.shape[0]
                        if self.est.verbose > 1 and keep_models:
                            self._say(
                                f"stage {stage + 1}/{self.est.n_stages}: inputs {sel}, k={k} "
                                f"fitted for {Cs.size} C value{'s' * (Cs.size != 1)} "
                                f"({time.perf_counter() - started:.1f} s into the stage)"
                            )

            scores = np.empty(grid.shape[:2] + (Cs.size, A))
            for idx in np.ndindex(*scores.shape):
                si, ki, ci, a = idx
                allowed = self.selections[si] in self.allowed[a]
                scores[idx] = ccc(grid[si, ki, :, ci, a], y_train[:, a]) if allowed else np.nan

            S_new = np.zeros((self.X.shape[0], A))
            chosen: list[tuple[str, int, float]] = []
            best = np.empty(A)
            models: list[StageModel] = []
            test_out = np.empty((n_test, A))
            for a in range(A):
                flat = scores[..., a].ravel()
                # first best in grid order, as the published strict '>' scan; NaN never wins
                i = int(np.nanargmax(flat)) if np.isfinite(flat).any() else 0
                si, ki, ci = (int(v) for v in np.unravel_index(i, scores.shape[:3]))
                sel, k = self.selections[si], int(ks[ki])
                unit = next(u for u in self.units[sel] if u.attrs.start <= a < u.attrs.stop)
                j = a - unit.attrs.start
                chosen.append((sel, k, float(Cs[ci])))
                best[a] = flat[i]
                S_new[train_rows, a] = grid[si, ki, :, ci, a]
                if not (test or keep_models or insample_inputs):
                    continue
                fit = self._fit(all_sums, train, k, unit, sbank, memo)
                if insample_inputs:
                    for b in train:
                        S_new[self.rows(b), a] = self._apply(fit, k, unit, b, sbank)[:, ci, j]
                pos = 0
                for b in test:
                    out = self._apply(fit, k, unit, b, sbank)[:, ci, j]
                    S_new[self.rows(b), a] = out
                    test_out[pos : pos + out.size, a] = out
                    pos += out.size
                if keep_models:
                    models.append(self._stage_model(fit, k, ci, j, unit, sbank))
            res.scores.append(scores)
            res.chosen.append(chosen)
            res.best.append(best)
            if in_sample:  # only the paper protocol reports them; spare the memory
                res.train_out.append(S_new[train_rows])
            res.test_out.append(test_out)
            res.models.append(models)
            res.seconds.append(time.perf_counter() - started)
            if self.est.verbose > 1 or (self.est.verbose and keep_models):
                where = "all frames" if keep_models else f"held-out fold {test[0] + 1}"
                self._say(
                    f"stage {stage + 1}/{self.est.n_stages} on {where} done in "
                    f"{res.seconds[-1]:.1f} s"
                )
            S = S_new
            # a suspended pass keeps only S: the recipe choice holds dozens of them
            del sbank, block_sums, split_sums, all_sums, grid, total, memo
            yield res

    @staticmethod
    def _say(line: str) -> None:
        print(f"[fusion] {line}", flush=True)

    def _stage_model(
        self, fit: _UnitFit, k: int, ci: int, j: int, unit: _Unit, sbank: _Bank | None
    ) -> StageModel:
        """Package one refit model with its weights in the public column order."""
        w = fit.W[ci, :, j]
        p = self.X.shape[1]
        xcols = np.arange(p) if unit.xsub is None else unit.xsub
        dx = _ncols(self.xbank.cols(k, unit.xsub))
        parts = [self._natural(w[1 : 1 + dx], k, xcols.size)]
        columns = [xcols]
        if sbank is not None:
            scols = np.arange(self.n_out) if unit.ssub is None else unit.ssub
            parts.append(self._natural(w[1 + dx :], k, scols.size))
            columns.append(p + scols)
        return StageModel(
            k=k,
            C=float(self.Cs[ci]),
            inputs=unit.inputs,
            columns=np.concatenate(columns),
            coef=np.hstack(parts),
            intercept=float(w[0]),
            gain=float(fit.gain[ci, j]),
            shift=float(fit.shift[ci, j]),
        )

    def _natural(self, w: np.ndarray, k: int, width: int) -> np.ndarray:
        """Bank-order weights -> (2k+1, width) for offsets -k..k, or (2, width) for 'mean'."""
        if self.est.context == "mean":
            return w.reshape(2, width).copy()
        reach = k - 1 if self.published else k
        rows = w.reshape(2 * reach + 1, width)
        out = np.zeros((2 * k + 1, width))
        out[_nested_offsets(reach) + k] = rows
        if self.published:  # the bank's centre column is sqrt(3) x the frame
            out[k] *= _CENTRE_SCALE
        return out


# --------------------------------------------------------------------------- recipe choice


@dataclass
class _Lazy:
    """One pass of the procedure (``_Engine.stages``), advanced only as far as asked."""

    gen: Iterator[_Run]
    res: _Run = field(default_factory=_Run)
    done: int = 0

    def upto(self, stage: int) -> _Run:
        while self.done < stage:
            self.res = next(self.gen)
            self.done += 1
        return self.res


@dataclass
class _Choice:
    """What an inner cross-validation over some training folds decided.

    ``recipe[m][a]`` and ``stage[m][a]``: for at most m+1 stages, attribute a's recipe and
    the stages it keeps; ``scores[r]``: inner CCC per stage computed (rows) and attribute;
    ``kept[r]``: stages recipe r keeps per attribute; ``test_out``: the held-out folds'
    predictions (n_stages, n_test, A).
    """

    recipe: list[list[str]]
    stage: list[list[int]]
    scores: dict[str, np.ndarray]
    kept: dict[str, np.ndarray]
    test_out: np.ndarray | None = None

    def summary(self) -> list[dict[str, Any]]:
        """Per attribute, the final choice (at most ``n_stages``) and the inner scores."""
        return [
            {
                "recipe": self.recipe[-1][a],
                "stages": int(self.stage[-1][a]),
                "inner_ccc": {
                    r: [round(float(v), 4) for v in sc[:, a]] for r, sc in self.scores.items()
                },
            }
            for a in range(len(self.recipe[-1]))
        ]


class _Selector:
    """Recipe and stage count chosen by an inner cross-validation grouped by recording.

    For training folds T, every recipe runs the whole multistage procedure once per fold
    g of T, fitted on T without g and scored on g (that procedure chooses k and C by its
    own inner CV). The pooled out-of-fold CCC of stage s decides: stage s+1 is kept while
    it beats stage s (``prune``), and each attribute takes the recipe with the best score
    at its kept stage. Only T's labels are read, never those of the folds predicted.
    Passes are memoised: the procedure on the outer training folds is both the prediction
    of an outer fold and one inner fold of the final model's choice.
    """

    def __init__(
        self, engines: dict[str, _Engine], n_stages: int, prune: bool, min_gain: float
    ) -> None:
        self.engines, self.n_stages, self.prune = engines, n_stages, prune
        self.min_gain = min_gain
        self.memo: dict[tuple[Any, ...], _Lazy] = {}
        self.lock = threading.Lock()

    def passes(self) -> list[_Lazy]:
        return list(self.memo.values())

    def get(
        self, name: str, train: Sequence[int], test: Sequence[int], keep_models: bool = False
    ) -> _Lazy:
        key = (name, tuple(train), tuple(test), keep_models)
        with self.lock:
            if key not in self.memo:
                gen = self.engines[name].stages(
                    list(train), list(test), in_sample=False, keep_models=keep_models
                )
                self.memo[key] = _Lazy(gen)
            return self.memo[key]

    def choose(self, train: list[int], test: list[int]) -> _Choice:
        eng = next(iter(self.engines.values()))
        y_in = np.concatenate([eng.Y[eng.rows(g)] for g in train])
        A = y_in.shape[1]
        scores: dict[str, np.ndarray] = {}
        kept: dict[str, np.ndarray] = {}
        for name in self.engines:
            rows: list[np.ndarray] = []
            keep = np.ones(A, dtype=np.int64)
            improving = np.ones(A, dtype=bool)
            for s in range(1, self.n_stages + 1):
                if s > 1 and self.prune and not improving.any():
                    break  # no attribute gains from a further stage: do not fit it
                out = np.concatenate(
                    [
                        self.get(name, [b for b in train if b != g], [g]).upto(s).test_out[s - 1]
                        for g in train
                    ]
                )
                sc = np.array([ccc(out[:, a], y_in[:, a]) for a in range(A)])
                if s > 1:
                    gain = sc - rows[-1]
                    better = improving & (gain > self.min_gain) if self.prune else improving
                    keep[better] = s
                    improving &= better
                rows.append(sc)
            scores[name], kept[name] = np.stack(rows), keep
        names = list(self.engines)
        recipe: list[list[str]] = []
        stage: list[list[int]] = []
        for m in range(1, self.n_stages + 1):
            rr, ss = [], []
            for a in range(A):
                eff = [min(m, int(kept[n][a])) for n in names]
                vals = np.array([scores[n][e - 1, a] for n, e in zip(names, eff, strict=True)])
                # first best in the documented order; NaN never wins
                i = int(np.nanargmax(vals)) if np.isfinite(vals).any() else 0
                rr.append(names[i])
                ss.append(eff[i])
            recipe.append(rr)
            stage.append(ss)
        choice = _Choice(recipe=recipe, stage=stage, scores=scores, kept=kept)
        if test:
            n_test = sum(eng.rows(b).stop - eng.rows(b).start for b in test)
            choice.test_out = np.empty((self.n_stages, n_test, A))
            for m in range(self.n_stages):
                for a in range(A):
                    st = stage[m][a]
                    run = self.get(recipe[m][a], train, test).upto(st)
                    choice.test_out[m, :, a] = run.test_out[st - 1][:, a]
        return choice


# --------------------------------------------------------------------------- estimator


class MultistageSVRFusion(RegressorMixin, BaseEstimator):
    """Multistage late fusion: per stage, one context-window linear SVR per attribute.

    Args:
        n_stages: number of stages; stage s+1 gets the original inputs plus the outputs
            of stage s (all attributes), windowed like the inputs.
        contexts: context reaches k to choose from, per attribute and stage.
        complexities: SVR C values to choose from, per attribute and stage.
        protocol: ``"cv"``: within the training frames, k and C are chosen on out-of-fold
            CCC with folds grouped by recording, and the chosen models are refit on all
            training frames. The reported scores come from running that whole procedure
            once per outer fold on the other folds and scoring the held-out fold (nested;
            see the module docstring); ``predict`` uses the procedure fitted on all
            frames. ``"paper"``: fit, choose and score on the same frames (in-sample), as
            published.
        n_splits: folds (recordings grouped) for ``protocol="cv"``; at least 3 so that the
            nested inner level still has two folds. With ``groups=None`` (one recording)
            the folds are contiguous blocks of frames.
        solver: ``"exact"`` solves the SVR primal to its optimum for the whole grid from
            per-fold Gram matrices: in closed form for the squared loss, by ADMM for the
            absolute loss. ``"liblinear"`` fits ``sklearn.svm.LinearSVR`` (dual coordinate
            descent) per grid point, the published solver (slow).
        loss: LinearSVR loss (epsilon = 0): ``"squared_epsilon_insensitive"`` (squared
            error, seconds per stage) or ``"epsilon_insensitive"`` (absolute error, the
            published loss).
        max_iter, tol: liblinear's stopping rule (the published script used the default
            1000 iterations and stopped unconverged); ``solver="exact"`` ignores them.
        context: ``"frames"`` (paper) uses every frame of the window as features;
            ``"mean"`` uses the centre frame and the window mean, 2p instead of (2k+1)p
            columns, which generalises better across recordings.
        windows: ``"clean"``: frames t-k..t+k of the frame's own recording, edges
            repeating its first/last frame. ``"published"``: the AVEC ``fuse_results.py``
            windows, offsets -(k-1)..k-1 with the centre frame three times, crossing
            recording boundaries in the order the frames are stacked while fitting (within
            each fold under cv) and per recording when predicting. Needs
            ``context="frames"`` and k >= 1. Under ``protocol="paper"``, the reported
            predictions are the per-recording ones (what the published files hold).
        calibrate: rescale each SVR's output so that its mean and std match the target's
            on the frames it was fitted on (in-fold under cv). A squared-error fit shrinks
            its output's variance and CCC punishes that; off reproduces the paper.
        input_selection: columns each attribute's SVR reads: ``"all"`` (paper: every
            system's prediction of every attribute), ``"same"`` (only the predictions of
            that attribute, and the previous stage's output for it; needs X laid out
            system-major, M blocks of A columns, as ``stack_recordings`` writes it) or
            ``"auto"`` (chosen per attribute and stage like k and C). One value for all
            attributes or one per attribute, e.g. ``("same", "same", "all")``.
        stage_inputs: what the next stage is trained on under cv: ``"oof"`` the
            out-of-fold outputs (stacking) or ``"insample"`` the outputs of the stage
            refit on all training frames, which is what it sees at predict time.
            Out-of-fold outputs carry each fold's label mean through the fold models'
            intercepts, which a later stage learns to exploit and which does not carry
            over to new recordings (measured: liking falls at stage 2).
        n_jobs: parallel threads for the outer folds of ``protocol="cv"`` and for
            ``solver="liblinear"`` fits. Fitting runs with one BLAS thread per task:
            multi-threaded LAPACK on these systems was 3-10x slower on a shared 2-core
            machine. The one exception: under ``protocol="paper"`` the absolute loss's
            products with the frames (nothing else runs then) use ``n_jobs`` threads.
        recipes: under ``protocol="cv"``, the recipes to choose among per outer fold and
            attribute by an inner cross-validation grouped by recording (see
            ``RECIPES``): ``"auto"`` (``AUTO_RECIPES``; those reading frame windows only under
            ``windows="published"``, those reading one attribute's columns only when X is
            laid out system-major with more than one attribute; when none is left, the
            estimator's own parameters), a sequence of names, or
            None: one recipe, the estimator's own ``context``, ``calibrate``,
            ``input_selection`` and ``stage_inputs``. ``protocol="paper"`` always uses its
            own parameters (the published behaviour).
        prune_stages: under ``protocol="cv"``, ``n_stages`` is a maximum: stage s+1 is
            fitted and kept for an attribute only while the inner cross-validation scores
            it above stage s by more than ``min_stage_gain``. With ``recipes=None`` and
            ``prune_stages=False`` the fit is the fixed-recipe procedure of before (no
            inner choice).
        min_stage_gain: the inner-CV CCC gain a further stage must exceed to be kept.
            Why not 0: on the AVEC set, keeping stages on inner gains of a few thousandths
            cost 0.02-0.03 CCC out of fold (valence, liking; at most 5 stages measured
            0.595 / 0.572 / 0.160 against 0.595 / 0.594 / 0.194 with one stage).
        random_state: seed of LinearSVR's coordinate descent (liblinear only; the fits
            run in separate processes, so the seed fixes the result for any ``n_jobs``).
        verbose: progress lines on stdout: 1, one per stage of the fit on all frames; 2,
            also one per context reach of it and one per stage of each outer fold (the
            published solver takes tens of minutes per stage).

    Attributes:
        stages_: per stage, per attribute, the ``StageModel`` refit on all frames (None
            beyond the stages an attribute kept).
        chosen_: per stage, per attribute, the chosen ``(k, C)`` (None beyond the stages
            kept).
        chosen_inputs_: per stage, per attribute, the chosen ``input_selection``.
        recipes_: per attribute, the recipe of the final model (``"flags"``: the
            estimator's own parameters).
        stages_kept_: per attribute, the stages the final model uses.
        fold_choices_: under cv with a recipe choice, per outer fold and attribute a dict
            with the recipe, the stages kept and the inner CCC of every recipe and stage.
        final_choice_: the same for the final model (its inner folds are the outer folds).
        stage_scores_: CCC per stage and attribute (n_stages, A): nested out-of-fold under
            cv, in-sample under paper. With a recipe choice, row m is the fusion with at
            most m+1 stages (recipe and stages chosen per outer fold).
        selection_scores_: the CCC each choice was made on (n_stages, A): out-of-fold over
            all frames under cv (honest for stage 1, optimistic later), in-sample under
            paper.
        grid_scores_: CCC of every grid point (n_stages, n_contexts, n_C, A) as used for
            the choice of the final models.
        stage_predictions_: per stage the fused frames (n_stages, n_frames, A) in input
            order, scored in ``stage_scores_``: nested out-of-fold under cv (honest devel
            predictions), in-sample under paper.
        n_features_in_: number of input columns.
        n_outputs_: number of attributes A.
        stage_seconds_: seconds spent on each stage (n_stages,), summed over the procedure
            on all frames and, under cv, the outer folds (with ``n_jobs`` > 1 these overlap
            in wall time); stage 1 includes the windows and Gram blocks of the inputs.
        n_iter_: most iterations of any fit: liblinear passes (reaching ``max_iter``
            means it stopped unconverged, as in the published script), ADMM iterations for
            the exact absolute loss, 1 for the squared loss (one solve).
    """

    def __init__(
        self,
        *,
        n_stages: int = 5,
        contexts: Sequence[int] = (11, 13, 15, 17, 19),
        complexities: Sequence[float] = (0.001, 0.01, 0.1, 1.0),
        protocol: Protocol = "cv",
        n_splits: int = 5,
        solver: Solver = "exact",
        loss: str = "squared_epsilon_insensitive",
        max_iter: int = 1000,
        tol: float = 1e-4,
        context: Context = "frames",
        windows: Windows = "clean",
        calibrate: bool = False,
        input_selection: Selection = "all",
        stage_inputs: StageInputs = "oof",
        n_jobs: int | None = None,
        recipes: str | Sequence[str] | None = "auto",
        prune_stages: bool = True,
        min_stage_gain: float = 0.01,
        random_state: int | None = 0,
        verbose: int = 0,
    ) -> None:
        self.n_stages = n_stages
        self.contexts = contexts
        self.complexities = complexities
        self.protocol = protocol
        self.n_splits = n_splits
        self.solver = solver
        self.loss = loss
        self.max_iter = max_iter
        self.tol = tol
        self.context = context
        self.windows = windows
        self.calibrate = calibrate
        self.input_selection = input_selection
        self.stage_inputs = stage_inputs
        self.n_jobs = n_jobs
        self.recipes = recipes
        self.prune_stages = prune_stages
        self.min_stage_gain = min_stage_gain
        self.random_state = random_state
        self.verbose = verbose

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags

    # ------------------------------------------------------------------ validation

    def _check_params(self) -> tuple[np.ndarray, np.ndarray]:
        def is_int(v: Any) -> bool:
            return isinstance(v, int | np.integer) and not isinstance(v, bool)

        if not is_int(self.n_stages) or self.n_stages < 1:
            raise ValueError(f"n_stages: expected a positive integer, got {self.n_stages!r}")
        try:
            ks = np.asarray(list(self.contexts), dtype=np.float64)
            Cs = np.asarray(list(self.complexities), dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(
                "contexts and complexities: expected sequences of numbers, got "
                f"{self.contexts!r} and {self.complexities!r}"
            ) from None
        if ks.size == 0:
            raise ValueError("contexts: the grid is empty; give at least one context reach k")
        if (
            ks.ndim != 1
            or not np.all(np.isfinite(ks))
            or np.any(ks != np.round(ks))
            or (np.any(ks < 0))
        ):
            raise ValueError(f"contexts: expected non-negative integers, got {self.contexts!r}")
        if Cs.size == 0:
            raise ValueError("complexities: the grid is empty; give at least one C > 0")
        if Cs.ndim != 1 or not np.all(np.isfinite(Cs)) or np.any(Cs <= 0):
            raise ValueError(
                f"complexities: expected finite values C > 0, got {self.complexities!r}"
            )
        if self.protocol not in _PROTOCOLS:
            raise ValueError(f"protocol: expected one of {_PROTOCOLS}, got {self.protocol!r}")
        if self.solver not in _SOLVERS:
            raise ValueError(f"solver: expected one of {_SOLVERS}, got {self.solver!r}")
        if self.loss not in _LOSSES:
            raise ValueError(f"loss: expected one of {_LOSSES}, got {self.loss!r}")
        if self.context not in _CONTEXTS:
            raise ValueError(f"context: expected one of {_CONTEXTS}, got {self.context!r}")
        if self.windows not in _WINDOWS:
            raise ValueError(f"windows: expected one of {_WINDOWS}, got {self.windows!r}")
        if self.windows == "published" and self.context != "frames":
            raise ValueError(
                f"windows='published' describes frame windows; it needs context='frames', "
                f"got context={self.context!r}"
            )
        if self.windows == "published" and np.any(ks < 1):
            raise ValueError(
                f"contexts: windows='published' needs every k >= 1 (reach k-1 plus the "
                f"centre frame three times), got {self.contexts!r}"
            )
        sels = (
            [self.input_selection]
            if isinstance(self.input_selection, str)
            else list(self.input_selection)
        )
        if not sels or any(sel not in _SELECTIONS for sel in sels):
            raise ValueError(
                f"input_selection: expected one of {_SELECTIONS} or one per attribute, "
                f"got {self.input_selection!r}"
            )
        if self.stage_inputs not in _STAGE_INPUTS:
            raise ValueError(
                f"stage_inputs: expected one of {_STAGE_INPUTS}, got {self.stage_inputs!r}"
            )
        if self.recipes is not None and self.recipes != "auto":
            names = [self.recipes] if isinstance(self.recipes, str) else list(self.recipes)
            unknown = [n for n in names if n not in RECIPES]
            if not names or unknown:
                raise ValueError(
                    f"recipes: expected 'auto', None or names from {tuple(RECIPES)}, "
                    f"got {self.recipes!r}"
                )
            if self.windows == "published" and any(
                RECIPES[n]["context"] != "frames" for n in names
            ):
                raise ValueError(
                    f"recipes: windows='published' describes frame windows; "
                    f"{[n for n in names if RECIPES[n]['context'] != 'frames']} read window "
                    "means"
                )
        if not isinstance(self.min_stage_gain, int | float | np.number) or not (
            0.0 <= float(self.min_stage_gain) < 1.0
        ):
            raise ValueError(
                f"min_stage_gain: expected a CCC gain in [0, 1), got {self.min_stage_gain!r}"
            )
        if not isinstance(self.prune_stages, bool | np.bool_):
            raise ValueError(f"prune_stages: expected True or False, got {self.prune_stages!r}")
        if self.protocol == "cv" and (not is_int(self.n_splits) or self.n_splits < 3):
            raise ValueError(
                f"n_splits: expected an integer >= 3 for nested cross-validation, "
                f"got {self.n_splits!r}"
            )
        return ks.astype(np.int64), Cs

    def _folds(self, codes: np.ndarray, grouped: bool) -> list[np.ndarray]:
        n = codes.shape[0]
        if self.protocol == "paper":
            return [np.arange(n)]
        if not grouped:
            if n < self.n_splits:
                raise ValueError(
                    f"protocol='cv' needs at least n_splits={self.n_splits} frames, "
                    f"got n_samples={n}"
                )
            # one recording: contiguous blocks, as shuffled frames would leak through the
            # autocorrelation of neighbouring frames
            return np.array_split(np.arange(n), self.n_splits)
        n_groups = int(codes.max()) + 1
        if n_groups < self.n_splits:
            raise ValueError(
                f"protocol='cv' needs at least n_splits={self.n_splits} recordings "
                f"(distinct groups), got {n_groups}"
            )
        splitter = GroupKFold(n_splits=self.n_splits)
        return [np.sort(test) for _, test in splitter.split(codes, groups=codes)]

    def _selection_per_attribute(self, n_out: int) -> list[str]:
        if isinstance(self.input_selection, str):
            return [self.input_selection] * n_out
        sels = [str(v) for v in self.input_selection]
        if len(sels) != n_out:
            raise ValueError(
                f"input_selection: expected one value per attribute ({n_out}), got {sels!r}"
            )
        return sels

    # ------------------------------------------------------------------ fit / predict

    def fit(self, X: Any, y: Any, groups: Any = None) -> MultistageSVRFusion:
        """Fit all stages.

        Args:
            X: system predictions per frame, (n_frames, M*A) (any column layout works).
            y: gold labels (n_frames, A) or (n_frames,).
            groups: recording id per frame; None means one recording. Recordings may be
                interleaved; frames of one recording are taken in their order of
                appearance.

        Returns:
            self.

        Raises:
            ValueError: bad parameters, NaN/inf, mismatched lengths, too few recordings
                for the folds.
        """
        ks, Cs = self._check_params()
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True, dtype=np.float64)
        Y = np.asarray(y, dtype=np.float64)
        y_ndim = Y.ndim
        if Y.ndim == 1:
            Y = Y[:, None]
        if set(self._selection_per_attribute(Y.shape[1])) != {"all"} and X.shape[1] % Y.shape[1]:
            raise ValueError(
                f"input_selection={self.input_selection!r} needs X columns laid out as "
                f"systems x {Y.shape[1]} attributes (system-major), but X has "
                f"{X.shape[1]} columns"
            )
        codes = group_codes(groups, X.shape[0])
        folds = self._folds(codes, grouped=groups is not None)
        perm = np.concatenate(folds)  # rows in fold order: each fold is one block
        inv = np.empty_like(perm)
        inv[perm] = np.arange(perm.size)
        bounds = np.cumsum([0] + [f.size for f in folds])
        blocks = list(range(len(folds)))
        in_sample = self.protocol == "paper"
        names = self._recipe_names(X.shape[1], Y.shape[1])
        choose = not in_sample and (self.recipes is not None or bool(self.prune_stages))
        # liblinear fits run in processes (see _Engine._fit); folds stay in this one
        outer_jobs = 1 if self.solver == "liblinear" else self.n_jobs
        self._y_ndim = y_ndim
        self.n_outputs_ = Y.shape[1]
        # One BLAS thread per task: multi-threaded LAPACK on these ~1000-column systems
        # ran 3-10x slower on a shared 2-core machine; parallelism comes from n_jobs.
        with threadpool_limits(limits=1, user_api="blas"), warnings.catch_warnings():
            # liblinear warns once per unconverged fit (dozens); one summary follows
            warnings.simplefilter("ignore", ConvergenceWarning)
            started = time.perf_counter()
            if choose:
                n_iter = self._fit_choice(
                    names, X[perm], Y[perm], codes[perm], bounds, ks, Cs, inv, outer_jobs
                )
            else:
                engine = _Engine(self, X[perm], Y[perm], codes[perm], bounds, ks, Cs)
                setup = time.perf_counter() - started

            def task(f: int | None) -> _Run:
                if f is None:  # the procedure on all frames: the fitted models
                    return engine.run(blocks, [], in_sample=in_sample, keep_models=True)
                rest = [b for b in blocks if b != f]
                return engine.run(rest, [f], in_sample=False, keep_models=False)

            if not choose:
                outer: list[int | None] = [] if in_sample else list(blocks)
                runs = Parallel(n_jobs=outer_jobs, prefer="threads")(
                    delayed(task)(f) for f in [None, *outer]
                )
                n_iter = engine.n_iter
        if self.solver == "liblinear" and n_iter >= self.max_iter:
            warnings.warn(
                f"LinearSVR stopped at max_iter={self.max_iter} passes before converging (the "
                "published script stopped so at its default 1000): the scores are those of "
                "unconverged fits",
                ConvergenceWarning,
                stacklevel=2,
            )
        if choose:
            self.n_iter_ = n_iter
            return self
        final = runs[0]
        A = Y.shape[1]
        self.recipes_ = [FLAGS_RECIPE] * A
        self.stages_kept_ = [self.n_stages] * A
        self.pipelines_ = {FLAGS_RECIPE: (self.context, final.models)}
        self.fold_choices_: list[list[dict[str, Any]]] = []
        self.final_choice_: list[dict[str, Any]] = []
        if in_sample and self.windows == "published":
            self.stages_ = final.models  # per-recording windows, as the published files
            preds = np.stack(self.stage_outputs(X, codes))
            scores = np.array([[ccc(p[:, a], Y[:, a]) for a in range(Y.shape[1])] for p in preds])
        elif in_sample:
            preds = np.stack(final.train_out)
            scores = np.stack(final.best)
        else:
            # outer fold f's held-out predictions; blocks are in row order
            preds = np.concatenate([np.stack(r.test_out) for r in runs[1:]], axis=1)
            scores = np.array(
                [
                    [ccc(preds[s, :, a], Y[perm, a]) for a in range(Y.shape[1])]
                    for s in range(self.n_stages)
                ]
            )
        self.stages_ = final.models
        self.chosen_: list[list[tuple[int, float] | None]] = [
            [(k, C) for _, k, C in stage] for stage in final.chosen
        ]
        self.chosen_inputs_: list[list[str | None]] = [
            [sel for sel, _, _ in stage] for stage in final.chosen
        ]
        self.grid_scores_ = np.stack(final.scores)
        self.selection_scores_ = np.stack(final.best)
        self.stage_scores_ = scores
        self.stage_predictions_ = preds[:, inv]
        self.n_iter_ = n_iter
        seconds = np.sum([r.seconds for r in runs], axis=0)
        seconds[0] += setup
        self.stage_seconds_ = seconds
        return self

    def predict(self, X: Any, groups: Any = None) -> np.ndarray:
        """Fused predictions of the last stage.

        Args:
            X: system predictions per frame, columns as in ``fit``.
            groups: recording id per frame (None: one recording).

        Returns:
            (n_frames, A), or (n_frames,) when ``fit`` got a 1-D y.

        Raises:
            sklearn.exceptions.NotFittedError: before ``fit``.
            ValueError: wrong number of columns, NaN/inf, mismatched groups.
        """
        check_is_fitted(self, "stages_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        codes = group_codes(groups, X.shape[0])
        out = self.stage_outputs(X, codes)[-1]
        return out[:, 0] if self._y_ndim == 1 else out

    def stage_outputs(self, X: np.ndarray, codes: np.ndarray) -> list[np.ndarray]:
        """Outputs (n, A) of every stage for validated X and integer recording codes.

        Each attribute comes from its recipe's pipeline; beyond the stages it kept, an
        attribute repeats its last kept stage.
        """
        check_is_fitted(self, "pipelines_")
        per: dict[str, list[np.ndarray]] = {}
        for name, (context, stages) in self.pipelines_.items():
            outs: list[np.ndarray] = []
            inputs = X
            for models in stages:
                outs.append(_predict_stage(models, inputs, codes, context))
                inputs = np.hstack((X, outs[-1]))
            per[name] = outs
        rows = []
        for m in range(max(self.stages_kept_)):
            out = np.empty((X.shape[0], self.n_outputs_))
            for a, (name, kept) in enumerate(zip(self.recipes_, self.stages_kept_, strict=True)):
                out[:, a] = per[name][min(m + 1, kept) - 1][:, a]
            rows.append(out)
        return rows

    # ------------------------------------------------------------------ recipe choice

    def _recipe_names(self, p: int, n_out: int) -> list[str]:
        """The candidate recipes of a cv fit on p columns and n_out attributes."""
        if self.recipes is None:
            return [FLAGS_RECIPE]
        auto = isinstance(self.recipes, str) and self.recipes == "auto"
        if auto:
            names = list(AUTO_RECIPES)
        elif isinstance(self.recipes, str):
            names = [self.recipes]
        else:
            names = list(self.recipes)
        same_ok = n_out > 1 and p % n_out == 0
        if auto:
            if self.windows == "published":
                names = [n for n in names if RECIPES[n]["context"] == "frames"]
            if not same_ok:
                names = [n for n in names if RECIPES[n]["input_selection"] == "all"]
            # e.g. published windows on one attribute: no auto recipe applies, so the
            # estimator's own parameters are the one candidate (stages still chosen)
            names = names or [FLAGS_RECIPE]
        elif not same_ok and any(RECIPES[n]["input_selection"] != "all" for n in names):
            raise ValueError(
                f"recipes={self.recipes!r}: the '-same' recipes need X columns laid out as "
                f"systems x {n_out} attributes (system-major, more than one attribute), but "
                f"X has {p} columns"
            )
        return names

    def _recipe_estimator(self, name: str) -> MultistageSVRFusion:
        """The parameters one recipe's engine runs with."""
        if name == FLAGS_RECIPE:
            return self
        est = clone(self)
        est.set_params(stage_inputs="insample", **RECIPES[name])
        return est

    def _fit_choice(
        self,
        names: list[str],
        X: np.ndarray,
        Y: np.ndarray,
        codes: np.ndarray,
        bounds: np.ndarray,
        ks: np.ndarray,
        Cs: np.ndarray,
        inv: np.ndarray,
        outer_jobs: int | None,
    ) -> int:
        """Recipe and stages chosen per outer fold by an inner grouped CV (rows in fold
        order); sets the fitted attributes and returns the most iterations of any fit."""
        A = Y.shape[1]
        blocks = list(range(bounds.size - 1))
        banks: dict[str, tuple[_Bank, list[_Sums]]] = {}
        engines = {
            n: _Engine(self._recipe_estimator(n), X, Y, codes, bounds, ks, Cs, banks)
            for n in names
        }
        selector = _Selector(
            engines, self.n_stages, bool(self.prune_stages), float(self.min_stage_gain)
        )

        def outer(f: int) -> _Choice:
            choice = selector.choose([b for b in blocks if b != f], [f])
            if self.verbose:
                picks = ", ".join(
                    f"{r}/{st}" for r, st in zip(choice.recipe[-1], choice.stage[-1], strict=True)
                )
                _Engine._say(f"outer fold {f + 1}/{len(blocks)}: recipe/stages {picks}")
            return choice

        folds = Parallel(n_jobs=outer_jobs, prefer="threads")(delayed(outer)(f) for f in blocks)
        final = selector.choose(blocks, [])
        need: dict[str, int] = {}
        for name, st in zip(final.recipe[-1], final.stage[-1], strict=True):
            need[name] = max(need.get(name, 0), st)
        self.pipelines_ = {
            name: (
                engines[name].est.context,
                selector.get(name, blocks, [], keep_models=True).upto(st).models[:st],
            )
            for name, st in need.items()
        }
        self.recipes_ = list(final.recipe[-1])
        self.stages_kept_ = [int(v) for v in final.stage[-1]]
        runs = {name: self.pipelines_[name][1] for name in need}
        depth = max(self.stages_kept_)
        self.stages_ = [
            [
                runs[self.recipes_[a]][s][a] if s < self.stages_kept_[a] else None
                for a in range(A)
            ]
            for s in range(depth)
        ]
        self.chosen_ = [
            [None if m is None else (m.k, m.C) for m in st] for st in self.stages_
        ]
        self.chosen_inputs_ = [
            [None if m is None else m.inputs for m in st] for st in self.stages_
        ]
        self.fold_choices_ = [c.summary() for c in folds]
        self.final_choice_ = final.summary()
        self.selection_scores_ = np.array(
            [
                [final.scores[final.recipe[m][a]][final.stage[m][a] - 1, a] for a in range(A)]
                for m in range(self.n_stages)
            ]
        )
        preds = np.concatenate([c.test_out for c in folds], axis=1)  # blocks in row order
        self.stage_scores_ = np.array(
            [[ccc(preds[m, :, a], Y[:, a]) for a in range(A)] for m in range(self.n_stages)]
        )
        self.stage_predictions_ = preds[:, inv]
        seconds = np.zeros(self.n_stages)
        for lazy in selector.passes():
            done = lazy.res.seconds
            seconds[: len(done)] += done
        self.stage_seconds_ = seconds
        return max(e.n_iter for e in engines.values())
