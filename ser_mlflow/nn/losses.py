"""Masked, weighted multitask CCC loss for Keras.

The mask travels inside ``y_true`` as its last channel, because a CCC is not a mean of
per-frame terms: Keras' ``sample_weight`` cannot express "leave these frames out of the
moments". Each attribute's CCC is computed over all valid frames of the batch concatenated
(the AVEC convention the reported metrics use), then

    loss = alpha * (1 - CCC_aro) + beta * (1 - CCC_val) + gamma * (1 - CCC_lik).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

_EPS = 1e-8


def pack_targets(labels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Append the frame mask to padded labels: (N, T, A) + (N, T) -> (N, T, A + 1)."""
    return np.concatenate([labels, mask[..., None].astype(labels.dtype)], axis=-1)


def masked_ccc(y_true: Any, y_pred: Any) -> Any:
    """Per-attribute CCC over the unmasked frames of a batch.

    Args:
        y_true: (B, T, A + 1) labels with the mask as last channel.
        y_pred: (B, T, A) predictions.

    Returns:
        (A,) tensor of CCC values.
    """
    n_attr = ops.shape(y_pred)[-1]
    gold = ops.reshape(y_true[..., :n_attr], (-1, n_attr))
    pred = ops.reshape(ops.cast(y_pred, gold.dtype), (-1, n_attr))
    w = ops.reshape(y_true[..., n_attr], (-1, 1))
    n = ops.maximum(ops.sum(w), 1.0)
    mean_g = ops.sum(w * gold, axis=0) / n
    mean_p = ops.sum(w * pred, axis=0) / n
    dg = gold - mean_g
    dp = pred - mean_p
    var_g = ops.sum(w * dg * dg, axis=0) / n
    var_p = ops.sum(w * dp * dp, axis=0) / n
    cov = ops.sum(w * dg * dp, axis=0) / n
    return 2.0 * cov / (var_g + var_p + ops.square(mean_g - mean_p) + _EPS)


@keras.saving.register_keras_serializable(package="ser_mlflow")
class MultitaskCCCLoss(keras.losses.Loss):
    """alpha/beta/gamma-weighted sum of (1 - CCC) per attribute over valid frames."""

    def __init__(
        self, weights: Sequence[float] = (0.7, 0.2, 1.0), name: str = "multitask_ccc", **kw: Any
    ) -> None:
        super().__init__(name=name, **kw)
        self.weights = tuple(float(w) for w in weights)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        ccc = masked_ccc(y_true, y_pred)
        w = ops.convert_to_tensor(np.asarray(self.weights, dtype="float32"), dtype=ccc.dtype)
        return ops.sum(w * (1.0 - ccc))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "weights": list(self.weights)}
