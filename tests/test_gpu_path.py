"""The network qualifies for Keras' cuDNN LSTM kernel when a GPU is present.

Keras (TensorFlow backend) runs an LSTM on cuDNN only when its activation is tanh, its
recurrent activation sigmoid, it is not unrolled, it has a bias, it has no recurrent
dropout, ``use_cudnn`` allows it, and any mask is right-padded. The model has no mask at
all: sequences are post-padded (right-padded) and the forward LSTMs never see the padded
tail at valid frames, which the last test checks numerically. Tested on the CPU: no GPU
is needed to see that the configuration qualifies.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from ser_mlflow.nn.model import build_model
from ser_mlflow.settings import ModelConfig

ATTRS = ("arousal", "valence", "liking")


@pytest.fixture(scope="module")
def model() -> keras.Model:
    return build_model(12, ATTRS, ModelConfig(units=(16, 8, 4), dropout=0.4))


def _lstms(model: keras.Model) -> list:
    return [layer for layer in model.layers if isinstance(layer, keras.layers.LSTM)]


def test_every_lstm_meets_the_cudnn_conditions(model: keras.Model) -> None:
    from keras.src.backend.tensorflow.rnn import _do_lstm_arguments_support_cudnn

    lstms = _lstms(model)
    assert len(lstms) == 3
    for layer in lstms:
        cfg = layer.get_config()
        assert cfg["activation"] == "tanh" and cfg["recurrent_activation"] == "sigmoid"
        assert cfg["recurrent_dropout"] == 0 and cfg["unroll"] is False
        assert cfg["use_bias"] is True and cfg["go_backwards"] is False
        assert cfg.get("use_cudnn", "auto") in ("auto", True)
        # Keras' own test of the arguments (it adds "and a GPU is present")
        cell = layer.cell
        assert _do_lstm_arguments_support_cudnn(
            cell.activation, cell.recurrent_activation, layer.unroll, cell.use_bias)


def test_no_mask_reaches_the_lstms(model: keras.Model) -> None:
    """No Masking/Embedding layer: cuDNN's right-padded-mask condition holds trivially."""
    assert not any(isinstance(layer, (keras.layers.Masking, keras.layers.Embedding))
                   for layer in model.layers)


def test_right_padding_leaves_the_valid_frames_unchanged(model: keras.Model) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 30, 12)).astype(np.float32)
    padded = np.concatenate([x, np.zeros((1, 20, 12), dtype=np.float32)], axis=1)
    short = np.asarray(model.predict_on_batch(x))
    long = np.asarray(model.predict_on_batch(padded))
    np.testing.assert_allclose(long[:, :30], short, rtol=1e-5, atol=1e-6)
