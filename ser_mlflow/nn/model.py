"""The paper network, built from config: stacked LSTMs, dropout, one Dense(1) head per attribute.

No I/O and no logging here: ``train`` owns both. Sequences are post-padded and the forward
LSTMs never see the padded tail at valid frames, so no Keras masking is needed; the loss
masks instead (see ``losses``), which keeps the fast non-masked LSTM kernels.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np

from ser_mlflow.nn.losses import MultitaskCCCLoss
from ser_mlflow.settings import LossConfig, ModelConfig


def build_model(n_features: int, attributes: Sequence[str], config: ModelConfig) -> keras.Model:
    """Return the uncompiled network mapping (B, T, n_features) to (B, T, len(attributes))."""
    inputs = keras.Input(shape=(None, n_features), name="features")
    x = inputs
    for i, units in enumerate(config.units, start=1):
        x = keras.layers.LSTM(units, return_sequences=True, name=f"lstm_{i}")(x)
        x = keras.layers.Dropout(config.dropout, name=f"dropout_{i}")(x)
    heads = [keras.layers.Dense(1, name=f"head_{a}")(x) for a in attributes]
    outputs = heads[0] if len(heads) == 1 else keras.layers.Concatenate(name="attributes")(heads)
    return keras.Model(inputs, outputs, name="ser_lstm")


def compile_model(model: keras.Model, model_cfg: ModelConfig, loss_cfg: LossConfig) -> None:
    """Attach the optimiser of the paper (RMSprop, lr 5e-4 by default) and the CCC loss."""
    if model_cfg.optimizer == "rmsprop":
        opt: keras.optimizers.Optimizer = keras.optimizers.RMSprop(learning_rate=model_cfg.lr)
    else:
        opt = keras.optimizers.Adam(learning_rate=model_cfg.lr)
    model.compile(optimizer=opt, loss=MultitaskCCCLoss(loss_cfg.weights))


def predict_sequences(
    model: keras.Model, sequences: Sequence[np.ndarray], *, batch_size: int = 34
) -> list[np.ndarray]:
    """Predict variable-length (T_i, F) sequences; returns (T_i, A) arrays in input order.

    Sequences are sorted by length and each batch is padded only to its own longest
    member, which saves work without changing the valid frames' outputs (forward LSTMs
    with post-padding never see the tail).
    """
    order = np.argsort([len(s) for s in sequences], kind="stable")
    out: list[np.ndarray | None] = [None] * len(sequences)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        longest = max(len(sequences[i]) for i in idx)
        batch = np.zeros((len(idx), longest, sequences[idx[0]].shape[1]), dtype=np.float32)
        for row, i in enumerate(idx):
            batch[row, : len(sequences[i])] = sequences[i]
        pred = np.asarray(model.predict_on_batch(batch))
        if pred.ndim == 2:
            pred = pred[..., None]
        for row, i in enumerate(idx):
            out[i] = pred[row, : len(sequences[i])].astype(np.float64)
    return [o for o in out if o is not None]
