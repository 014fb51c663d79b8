"""Window banks (every context reach in one matrix) and their per-fold Gram sums."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ser_mlflow.fusion.windows import CENTRE_SCALE, nested_offsets, window_index, window_means

# --------------------------------------------------------------------------- solver core


@dataclass
class Bank:
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


def make_bank(
    V: np.ndarray, codes: np.ndarray, ks: np.ndarray, context: str, published: bool = False
) -> Bank:
    n, p = V.shape
    if context == "frames":
        reach = int(ks.max()) - 1 if published else int(ks.max())
        Z = V[window_index(codes, nested_offsets(reach))].reshape(n, -1)
        if published:
            Z[:, :p] *= CENTRE_SCALE
        return Bank(Z=Z, width=p, context=context, ks=[], published=published)
    uniq = sorted({int(k) for k in ks})
    Z = np.hstack([V] + [window_means(V, codes, k) for k in uniq])
    return Bank(Z=Z, width=p, context=context, ks=uniq)


def times(Z: np.ndarray, cols: slice | np.ndarray, W: np.ndarray) -> np.ndarray:
    """``Z[:, cols] @ W`` without copying scattered columns out of a large Z."""
    if isinstance(cols, slice):
        return Z[:, cols] @ W
    full = np.zeros((Z.shape[1], W.shape[1]))
    full[cols] = W
    return Z @ full


def ncols(c: slice | np.ndarray) -> int:
    return c.stop - c.start if isinstance(c, slice) else int(c.size)


def sub(M: np.ndarray, r: slice | np.ndarray, c: slice | np.ndarray) -> np.ndarray:
    if isinstance(r, slice) and isinstance(c, slice):
        return M[r, c]
    rr = np.arange(M.shape[0])[r] if isinstance(r, slice) else r
    cc = np.arange(M.shape[1])[c] if isinstance(c, slice) else c
    return M[np.ix_(rr, cc)]


@dataclass
class Sums:
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

    def __add__(self, other: Sums) -> Sums:
        def add(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
            return None if a is None or b is None else a + b

        return Sums(
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
        dx = ncols(cx)
        ds = 0 if cs is None else ncols(cs)
        d = 1 + dx + ds
        G = np.empty((d, d))
        r = np.empty((d, self.rx.shape[1]))
        G[0, 0] = self.n
        G[0, 1 : 1 + dx] = self.sx[cx]
        G[1 : 1 + dx, 0] = self.sx[cx]
        G[1 : 1 + dx, 1 : 1 + dx] = sub(self.Gxx, cx, cx)
        r[0] = self.ysum
        r[1 : 1 + dx] = self.rx[cx]
        if cs is not None:
            if self.ss is None or self.Gxs is None or self.Gss is None or self.rs is None:
                raise RuntimeError("stage-output statistics missing")  # internal misuse
            G[0, 1 + dx :] = self.ss[cs]
            G[1 + dx :, 0] = self.ss[cs]
            cross = sub(self.Gxs, cx, cs)
            G[1 : 1 + dx, 1 + dx :] = cross
            G[1 + dx :, 1 : 1 + dx] = cross.T
            G[1 + dx :, 1 + dx :] = sub(self.Gss, cs, cs)
            r[1 + dx :] = self.rs[cs]
        return G, r

    @property
    def ystats(self) -> np.ndarray:
        """(3, A): sum y, sum y^2, n."""
        return np.vstack((self.ysum, self.yy, np.full(self.ysum.shape, self.n)))


def x_sums(Z: np.ndarray, Y: np.ndarray) -> Sums:
    return Sums(
        n=float(Z.shape[0]),
        sx=Z.sum(axis=0),
        Gxx=Z.T @ Z,  # numpy hands Z.T @ Z to BLAS syrk
        rx=Z.T @ Y,
        ysum=Y.sum(axis=0),
        yy=(Y**2).sum(axis=0),
    )


def with_s(base: Sums, Zx: np.ndarray, Zs: np.ndarray, Y: np.ndarray) -> Sums:
    """Add the stage-output pieces; the costly Zx'Zx block is reused from stage 1."""
    return Sums(
        base.n, base.sx, base.Gxx, base.rx, base.ysum, base.yy,
        ss=Zs.sum(axis=0), Gxs=Zx.T @ Zs, Gss=Zs.T @ Zs, rs=Zs.T @ Y,
    )  # fmt: skip
