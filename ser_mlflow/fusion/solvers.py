"""Linear SVR solvers for the multistage fusion (LinearSVR with epsilon = 0).

Each solver fits one context-window configuration for a whole grid of C values and
several targets at once, from the augmented Gram matrix ``[1 Z]'[1 Z]`` that the fusion
engine accumulates per fold. liblinear appends a constant feature, so the intercept is
penalised like any weight; these solvers do the same:

- ``ridge_grid``: squared loss, closed form;
- ``lad_grid``: absolute loss (the published one), exact by ADMM;
- ``liblinear_fit``: ``sklearn.svm.LinearSVR`` itself, the published solver;
- ``calibration``: output gain and shift matching the target's mean and std.

No TensorFlow or MLflow imports.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from joblib import effective_n_jobs
from scipy.linalg import cho_factor, cho_solve
from sklearn.exceptions import ConvergenceWarning
from sklearn.svm import LinearSVR
from threadpoolctl import threadpool_limits


def ridge_grid(G: np.ndarray, r: np.ndarray, Cs: np.ndarray) -> np.ndarray:
    """Exact LinearSVR(squared eps-insensitive, eps=0, penalised intercept) for every C.

    The primal ``0.5*|w|^2 + C*sum(res^2)`` is minimised by ``(G + I/(2C)) w = r``.
    Returns weights (n_C, d, A), intercept in row 0.
    """
    d = G.shape[0]
    diag = np.arange(d)
    W = np.empty((Cs.size, d, r.shape[1]))
    A = G.copy()
    for i, C in enumerate(Cs):  # single solves use BLAS threads better than a batch
        A[diag, diag] = G[diag, diag] + 1.0 / (2.0 * C)
        W[i] = np.linalg.solve(A, r)
    return W


#: ADMM settings of the exact absolute-error solver: over-relaxation, the primal
#: objective is checked every ``_ADMM_CHECK`` iterations and the fit stops once no
#: column improved it by more than ``_ADMM_TOL`` (relative) over that span.
_ADMM_RELAX = 1.6
_ADMM_CHECK = 10
_ADMM_TOL = 1e-6
_ADMM_MAX_ITER = 2000
_ADMM_RHO = 2.0


# Over 80 lines on purpose: one ADMM loop whose iterates (w, r, u, the active columns and
# the float32 copies) are shared by every step; split up, each piece would take them all.
def lad_grid(
    Z: np.ndarray,
    G: np.ndarray,
    Y: np.ndarray,
    Cs: np.ndarray,
    state: tuple[np.ndarray, np.ndarray] | None = None,
    threads: int = 1,
) -> tuple[np.ndarray, int, tuple[np.ndarray, np.ndarray]]:
    """Exact LinearSVR(eps-insensitive, eps=0, penalised intercept) for every C, by ADMM.

    Minimises ``0.5*|w|^2 + C*sum(|y - [1 Z] w|)`` for all C and all columns of Y at
    once. Splitting r = y - [1 Z] w, the w-step solves ``(I + rho*G) w = rho*[1 Z]'(y - r
    - u)`` with one Cholesky factor per C (G is the augmented Gram the squared loss uses),
    and the r-step is a soft threshold; the two products with Z per iteration are
    batched over every C and column and run in float32, the solves in float64. Why not
    liblinear: its dual coordinate descent is one sequential pass per sample and stopped
    unconverged after 1000 passes in the published script (DESIGN section 7).

    Args:
        Z: features without the constant column, (n, d-1).
        G: augmented Gram matrix of [1 Z], (d, d).
        Y: targets (n, A).
        Cs: complexities (n_C,).
        state: the (residual, scaled dual) pair returned by a fit on the same frames and
            targets, e.g. of the previous context reach: a warm start, which needs a
            fraction of the iterations (the optimum does not depend on it).
        threads: BLAS threads for the products with Z (only when nothing else runs in
            parallel: the limit is process-wide).

    Returns:
        Weights (n_C, d, A) with the intercept in row 0, the iterations run and the
        final (residual, scaled dual) pair for a warm start.
    """
    n, A = Y.shape
    d = G.shape[0]
    nc = Cs.size
    # rho ~ C / (typical absolute residual) balances the primal and dual residuals
    spread = float(np.mean(np.abs(Y - np.median(Y, axis=0))))
    rho = _ADMM_RHO * Cs / max(spread, 1e-12)
    factors = []
    eye = np.eye(d)
    for r in rho:
        factors.append(cho_factor(eye + r * G, lower=False, check_finite=False))
    Z32 = np.ascontiguousarray(Z, dtype=np.float32)
    m = nc * A
    YY = np.tile(Y, (1, nc))  # columns C-major: C0's A attributes, then C1's ...
    col_c = np.repeat(np.arange(nc), A)  # the C of each column
    rho_col = rho[col_c]
    C_col = Cs[col_c]
    if state is None:
        R = YY.copy()  # residual variable r
        U = np.zeros_like(YY)  # scaled dual
    else:
        R, U = state[0].copy(), state[1].copy()
    W = np.zeros((d, m))
    # Columns stop one by one (small C converges in a fraction of the iterations of
    # C = 1); the products then shrink to the columns still running.
    act = np.arange(m)
    Ya, Ra, Ua, Wa = YY, R, U, W
    prev = np.full(m, np.inf)
    it = 0
    with threadpool_limits(limits=threads, user_api="blas"):
        for it in range(1, _ADMM_MAX_ITER + 1):
            V = Ya - Ra - Ua
            rhs = np.empty((d, act.size))
            rhs[0] = V.sum(axis=0)
            rhs[1:] = (V.T.astype(np.float32) @ Z32).T  # this operand order ran fastest
            rhs *= rho_col[act]
            for c in np.unique(col_c[act]):
                cols = np.flatnonzero(col_c[act] == c)
                Wa[:, cols] = cho_solve(factors[c], rhs[:, cols], check_finite=False)
            fitted = (Z32 @ Wa[1:].astype(np.float32)).astype(np.float64) + Wa[0]
            hat = _ADMM_RELAX * fitted + (1.0 - _ADMM_RELAX) * (Ya - Ra)
            T = Ya - hat - Ua
            Ra = np.sign(T) * np.maximum(np.abs(T) - C_col[act] / rho_col[act], 0.0)
            Ua += hat + Ra - Ya
            if it % _ADMM_CHECK:
                continue
            obj = 0.5 * (Wa**2).sum(axis=0) + C_col[act] * np.abs(Ya - fitted).sum(axis=0)
            done = prev[act] - obj <= _ADMM_TOL * np.abs(obj)
            prev[act] = obj
            if not done.any():
                continue
            W[:, act], R[:, act], U[:, act] = Wa, Ra, Ua  # write back, then drop the done
            act = act[~done]
            if act.size == 0:
                break
            Ya, Ra, Ua, Wa = YY[:, act], R[:, act], U[:, act], W[:, act]
    if act.size:
        W[:, act], R[:, act], U[:, act] = Wa, Ra, Ua
    return W.reshape(d, nc, A).transpose(1, 0, 2).copy(), it, (R, U)


def calibration(
    G: np.ndarray, W: np.ndarray, ystats: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Gain and shift matching the fitted outputs' mean/std to the target's, from the Gram.

    Why: a squared-error fit shrinks its output's variance by about R^2 and CCC punishes
    that mismatch; matching both moments on the training frames is a cheap in-fold fix.
    Returns arrays (n_C, A).
    """
    n = ystats[2]
    mean_p = np.einsum("d,cda->ca", G[0], W) / n
    second = (W * np.matmul(G, W)).sum(axis=1) / n  # w'Gw per C and attribute, via BLAS
    std_p = np.sqrt(np.maximum(second - mean_p**2, 0.0))
    mean_y = ystats[0] / n
    std_y = np.sqrt(np.maximum(ystats[1] / n - mean_y**2, 0.0))
    ok = std_p > 1e-12 * np.maximum(std_y, 1e-300)
    gain = np.where(ok, std_y / np.where(ok, std_p, 1.0), 1.0)
    shift = np.where(ok, mean_y - gain * mean_p, 0.0)
    return gain, shift


def liblinear_fit(
    Z: np.ndarray, y: np.ndarray, C: float, params: dict[str, Any]
) -> tuple[np.ndarray, int]:
    """Weights (d,), intercept first, and iterations of one LinearSVR fit (published solver)."""
    svr = LinearSVR(C=C, epsilon=0.0, **params).fit(Z, y)
    return np.concatenate((np.atleast_1d(svr.intercept_), svr.coef_)), int(svr.n_iter_)


def design(
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
def shared_banks(
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


def liblinear_cell(
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
    with warnings.catch_warnings():
        # one warning per unconverged fit, from every worker; the estimator sums them up
        # from the iteration counts in one warning
        warnings.simplefilter("ignore", ConvergenceWarning)
        return liblinear_fit(design(zx, zs, rows, cx, cs), y, C, params)
