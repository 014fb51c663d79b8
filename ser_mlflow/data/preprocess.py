"""Array helpers every use case needs the same way: zero post-padding with a mask, z-score
standardisation fitted on training frames, the annotator-delay shift and its inverse."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ser_mlflow.data.corpus import Recording

_STD_FLOOR = 1e-8

# ---------------------------------------------------------------------------------------
# arrays


class Standardizer:
    """Z-score standardisation fitted on the valid (unpadded) frames of training data.

    Fitting on Train only keeps development scores honest; fitting on unpadded frames
    keeps the zeros of padding out of the statistics. Columns whose standard deviation
    is below 1e-8 (constant) get a std of 1.0 so they map to zero instead of inf.
    Transform before padding: padded frames are zeros in the model's input space.

    Attributes:
        mean_: (F,) float64 column means.
        std_: (F,) float64 column standard deviations (population), floored.
    """

    mean_: np.ndarray
    std_: np.ndarray

    def fit(self, recordings: Sequence[Recording | np.ndarray]) -> Standardizer:
        """Learn column means and standard deviations.

        Args:
            recordings: training recordings (their ``features``) or (T, F) arrays.

        Returns:
            self.

        Raises:
            ValueError: no frames, arrays of different widths, or non-finite values.
        """
        arrays = [
            np.asarray(r.features if isinstance(r, Recording) else r, dtype=np.float64)
            for r in recordings
        ]
        if not arrays or any(a.ndim != 2 for a in arrays):
            raise ValueError("Standardizer.fit: expected one or more (T, F) feature arrays")
        widths = {a.shape[1] for a in arrays}
        if len(widths) != 1:
            raise ValueError(f"Standardizer.fit: arrays differ in width: {sorted(widths)}")
        x = np.concatenate(arrays, axis=0)
        if x.shape[0] == 0:
            raise ValueError("Standardizer.fit: zero frames to fit on")
        if not np.isfinite(x).all():
            raise ValueError("Standardizer.fit: features contain NaN or inf")
        self.mean_ = x.mean(axis=0)
        std = x.std(axis=0)
        self.std_ = np.where(std < _STD_FLOOR, 1.0, std)
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "mean_"):
            raise ValueError("Standardizer is not fitted: call fit() or from_dict() first")

    def transform(self, features: np.ndarray) -> np.ndarray:
        """Standardise (..., F) features.

        Returns:
            float32 array of the same shape.

        Raises:
            ValueError: when not fitted or the last dimension is not F.
        """
        self._check_fitted()
        x = np.asarray(features, dtype=np.float64)
        if x.ndim == 0 or x.shape[-1] != self.mean_.shape[0]:
            raise ValueError(
                f"Standardizer.transform: expected (..., {self.mean_.shape[0]}) features, "
                f"got shape {x.shape}"
            )
        return ((x - self.mean_) / self.std_).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able parameters (``mean``, ``std`` lists), for logging with the model."""
        self._check_fitted()
        return {"mean": self.mean_.tolist(), "std": self.std_.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Standardizer:
        """Rebuild from :meth:`to_dict` output.

        Raises:
            ValueError: missing keys, lengths that differ, non-finite values or std <= 0.
        """
        try:
            mean = np.asarray(d["mean"], dtype=np.float64)
            std = np.asarray(d["std"], dtype=np.float64)
        except (KeyError, TypeError) as exc:
            raise ValueError(
                f"Standardizer.from_dict: expected 'mean' and 'std' lists: {exc}"
            ) from None
        if mean.ndim != 1 or mean.shape != std.shape or mean.size == 0:
            raise ValueError(
                f"Standardizer.from_dict: mean and std must be equal-length lists, got "
                f"{mean.shape} and {std.shape}"
            )
        if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
            raise ValueError("Standardizer.from_dict: expected finite mean and positive std")
        out = cls()
        out.mean_, out.std_ = mean, std
        return out


def pad_sequences(
    arrays: Sequence[np.ndarray], length: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Zero post-padding to a common length, with a mask of real frames.

    Post-padding matters: a forward LSTM's outputs at real frames never see the padded
    tail, so masking the loss and metrics is all correctness needs (DESIGN.md section 7).

    Args:
        arrays: (T_i, D) arrays (or (T_i,) arrays, read as D = 1).
        length: padded length L; default the longest T_i.

    Returns:
        (N, L, D) float32 padded array and (N, L) bool mask, True on real frames.

    Raises:
        ValueError: no arrays, differing D, or an array longer than ``length``.
    """
    arrs = [np.asarray(a) for a in arrays]
    if not arrs:
        raise ValueError("pad_sequences: expected at least one array")
    arrs = [a[:, None] if a.ndim == 1 else a for a in arrs]
    if any(a.ndim != 2 for a in arrs):
        raise ValueError("pad_sequences: expected (T, D) or (T,) arrays")
    dims = {a.shape[1] for a in arrs}
    if len(dims) != 1:
        raise ValueError(f"pad_sequences: arrays differ in width D: {sorted(dims)}")
    longest = max(a.shape[0] for a in arrs)
    if length is None:
        length = longest
    elif length < 0:
        raise ValueError(f"pad_sequences: length must be >= 0, got {length}")
    elif longest > length:
        raise ValueError(
            f"pad_sequences: an array has {longest} frames, longer than length={length}"
        )
    out = np.zeros((len(arrs), length, dims.pop()), dtype=np.float32)
    mask = np.zeros((len(arrs), length), dtype=bool)
    for i, a in enumerate(arrs):
        out[i, : a.shape[0]] = a
        mask[i, : a.shape[0]] = True
    return out, mask


def _check_shift(n: int, fn: str) -> int:
    if isinstance(n, bool) or int(n) != n or n < 0:
        raise ValueError(f"{fn}: expected a shift of 0 or more frames, got {n!r}")
    return int(n)


def shift_labels(labels: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Shift training labels ``n`` frames to the front: ``y'[t] = y[t + n]``.

    Annotators react about 0.1 s late, so the label at t + n describes the features at t.
    The last n frames have no label to take: they repeat the last label and are marked
    invalid so the loss ignores them.

    Args:
        labels: (T, A) or (T,) labels.
        n: frames to shift (0 = identity).

    Returns:
        (shifted labels, same shape and dtype; valid (T,) bool, False on the last n).

    Raises:
        ValueError: negative or non-integer n.
    """
    n = _check_shift(n, "shift_labels")
    y = np.asarray(labels)
    t = y.shape[0]
    valid = np.zeros(t, dtype=bool)
    out = y.copy()
    if t == 0 or n == 0:
        valid[:] = True
        return out, valid
    keep = max(t - n, 0)
    out[:keep] = y[n:]
    out[keep:] = y[-1]
    valid[:keep] = True
    return out, valid


def unshift_predictions(pred: np.ndarray, n: int) -> np.ndarray:
    """Undo :func:`shift_labels` on model output: ``out[t] = pred[t - n]``.

    The first n frames have no earlier prediction and repeat ``pred[0]``.

    Args:
        pred: (T, A) or (T,) predictions.
        n: frames the training labels were shifted (0 = identity).

    Returns:
        Array of the same shape and dtype.

    Raises:
        ValueError: negative or non-integer n.
    """
    n = _check_shift(n, "unshift_predictions")
    p = np.asarray(pred)
    out = p.copy()
    t = p.shape[0]
    if t == 0 or n == 0:
        return out
    keep = max(t - n, 0)
    out[t - keep :] = p[:keep]
    out[: t - keep] = p[0]
    return out
