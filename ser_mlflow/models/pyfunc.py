"""The MLflow pyfunc every training run logs: raw AVEC features in, predictions out.

The model carries all that prediction needs (feature-set names and column order, the
standardisation fitted on training frames, the label shift, attribute names, the network),
so ``mlflow.pyfunc.load_model(uri).predict(df)`` works in a fresh process from the URI.

Input frame: one row per frame, columns ``name`` (recording), ``timestamp`` and every
feature column as ``<feature_set>:<column>`` — the prefix tells the columns of two feature
sets apart in bimodal models (e.g. ``egemaps:F0semitone`` next to ``fau:AU01_r``). Rows of
one recording must be contiguous; within a recording they are sorted by ``timestamp``
(the network reads a sequence, so row order is time order) and the output comes in that
order. Values must be finite in float32, the precision the network computes in. Output:
``name``, ``timestamp`` and one column per attribute, shifted back by the training label
shift (aligned with the labels).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.pyfunc.model import PythonModel

from ser_mlflow.models.metadata import ARTIFACT, ModelMetadata

NAME_COL = "name"
TIME_COL = "timestamp"


class InputError(ValueError):
    """The frame given to predict does not match what the model was trained on."""


def split_recordings(
    df: pd.DataFrame, feature_columns: Sequence[str]
) -> tuple[list[str], list[np.ndarray], list[np.ndarray]]:
    """Validate a prediction frame and cut it into per-recording (T, F) arrays.

    Raises:
        InputError: missing id columns, missing or extra feature columns, NaN/inf,
            an empty frame, or a recording whose rows are not contiguous.
    """
    values = _feature_values(df, feature_columns)
    order, starts, ends = _recording_blocks(df)
    times = _timestamps(df)
    feats, stamps = [], []
    for name, s, e in zip(order, starts, ends, strict=True):
        idx = s + np.argsort(times[s:e], kind="stable")  # time order within the recording
        stamp = times[idx]
        if np.any(np.diff(stamp) == 0):
            raise InputError(f"input: recording {name!r} has two rows with timestamp "
                             f"{stamp[np.flatnonzero(np.diff(stamp) == 0)[0]]:g}")
        feats.append(values[idx].astype(np.float32))
        stamps.append(stamp)
    return order, feats, stamps


def _feature_values(df: pd.DataFrame, feature_columns: Sequence[str]) -> np.ndarray:
    """The feature columns as float64, checked: id columns present, exactly the model's
    feature columns, every value finite in float32."""
    _check_columns(df, feature_columns)
    values = df.loc[:, list(feature_columns)].to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(values) | (np.abs(values) > _FLOAT32_MAX)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise InputError(
            f"input: non-finite value {values[r, c]} at row {r}, column "
            f"{feature_columns[c]!r} (in float32, the network's precision); expected finite "
            f"|x| <= {_FLOAT32_MAX:.3g}"
        )
    return values


def _check_columns(df: pd.DataFrame, feature_columns: Sequence[str]) -> None:
    if not isinstance(df, pd.DataFrame) or len(df) == 0:
        raise InputError("input: expected a non-empty DataFrame with one row per frame")
    for col in (NAME_COL, TIME_COL):
        if col not in df.columns:
            raise InputError(
                f"input: missing column {col!r}; expected '{NAME_COL}', "
                f"'{TIME_COL}' and {len(feature_columns)} feature columns"
            )
    have = [c for c in df.columns if c not in (NAME_COL, TIME_COL)]
    missing = [c for c in feature_columns if c not in set(have)]
    extra = [c for c in have if c not in set(feature_columns)]
    if missing or extra:
        sets = sorted({c.split(":", 1)[0] for c in feature_columns})
        raise InputError(
            f"input: feature columns differ from the model's ({len(feature_columns)} columns "
            f"of feature sets {'+'.join(sets)}): missing {_first5(missing)}, unexpected "
            f"{_first5(extra)}"
        )


def _first5(names: Sequence[str]) -> str:
    return f"{list(names[:5])}{' ...' if len(names) > 5 else ''}"


def _recording_blocks(df: pd.DataFrame) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(names, start rows, end rows) of the recordings, which must be contiguous."""
    names = df[NAME_COL].astype(str).str.strip("'").to_numpy()
    change = np.flatnonzero(names[1:] != names[:-1]) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [len(names)]])
    order = [str(names[s]) for s in starts]
    if len(set(order)) != len(order):
        raise InputError("input: the rows of each recording must be contiguous")
    return order, starts, ends


def _timestamps(df: pd.DataFrame) -> np.ndarray:
    try:
        times = df[TIME_COL].to_numpy(dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"input: column {TIME_COL!r} must hold numbers (seconds)") from None
    if not np.isfinite(times).all():
        raise InputError(f"input: non-finite {TIME_COL!r} at row "
                         f"{int(np.flatnonzero(~np.isfinite(times))[0])}")
    return times


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def time_ordered(df: pd.DataFrame) -> pd.DataFrame:
    """The frame with each recording's (contiguous) rows sorted by timestamp."""
    names = df[NAME_COL].astype(str).str.strip("'")
    block = (names != names.shift()).cumsum().to_numpy()
    return (df.assign(_block=block).sort_values(["_block", TIME_COL], kind="stable")
            .drop(columns="_block").reset_index(drop=True))


class SERModel(PythonModel):
    """Two kinds behind one class (one models-from-code entry file):

    - ``network``: standardise -> network -> undo the label shift, per recording;
    - ``fusion``: the multistage SVR over columns ``<system>:<attribute>`` holding the
      input systems' predictions, per recording (input = predictions, not features);
    - ``fusion`` with ``inputs``: the input runs' own models travel inside this one, so
      raw feature columns go in, each input model predicts from its columns, and the
      fusion combines them (raw features in, fused predictions out).
    """

    def load_context(self, context: Any) -> None:
        meta = ModelMetadata.read(context.artifacts[ARTIFACT])
        self.meta = meta
        if meta.kind == "fusion":
            import joblib

            self.fusion = joblib.load(context.artifacts["fusion"])
            self.inputs = [
                mlflow.pyfunc.load_model(context.artifacts[f"input_{i}"])
                for i in range(len(meta.inputs))
            ]
            return
        from ser_mlflow._quiet import import_tensorflow_quietly

        import_tensorflow_quietly()  # no C++ start-up lines in a serving or loading process
        import keras

        from ser_mlflow.data import Standardizer

        self.standardizer = Standardizer.from_dict(meta.standardizer)
        self.network = keras.saving.load_model(context.artifacts["network"], compile=False)

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        if self.meta.kind == "fusion":
            return self._predict_fusion(model_input)
        from ser_mlflow.data import unshift_predictions
        from ser_mlflow.nn.model import predict_sequences

        meta = self.meta
        names, feats, stamps = split_recordings(model_input, meta.feature_columns)
        preds = predict_sequences(self.network, [self.standardizer.transform(f) for f in feats])
        frames = []
        for name, stamp, pred in zip(names, stamps, preds, strict=True):
            pred = unshift_predictions(pred, meta.shift_frames)
            part = pd.DataFrame(pred, columns=list(meta.attributes))
            part.insert(0, TIME_COL, stamp)
            part.insert(0, NAME_COL, name)
            frames.append(part)
        return pd.concat(frames, ignore_index=True)

    def _input_predictions(self, model_input: pd.DataFrame) -> pd.DataFrame:
        """Run every input model on its own raw feature columns -> ``<system>:<attr>``."""
        meta = self.meta
        split_recordings(model_input, meta.raw_columns)  # validate once, clearly
        model_input = time_ordered(model_input)  # the input models answer in time order
        out = model_input[[NAME_COL, TIME_COL]].reset_index(drop=True)
        for spec, model in zip(meta.inputs, self.inputs, strict=True):
            cols = [NAME_COL, TIME_COL, *spec.feature_columns]
            pred = model.predict(model_input[cols])
            for a in meta.attributes:
                out[f"{spec.system}:{a}"] = pred[a].to_numpy()
        return out

    def _predict_fusion(self, model_input: pd.DataFrame) -> pd.DataFrame:
        import numpy as np

        meta = self.meta
        if meta.inputs:
            model_input = self._input_predictions(model_input)
        names, values, stamps = split_recordings(model_input, meta.feature_columns)
        X = np.vstack(values).astype(np.float64)
        groups = np.concatenate(
            [np.full(len(v), n, dtype=object) for n, v in zip(names, values, strict=True)]
        )
        fused = self.fusion.predict(X, groups=groups)
        if fused.ndim == 1:
            fused = fused[:, None]
        out = pd.DataFrame(fused, columns=list(meta.attributes))
        out.insert(0, TIME_COL, np.concatenate(stamps))
        out.insert(
            0, NAME_COL, np.concatenate([[n] * len(v) for n, v in zip(names, values, strict=True)])
        )
        return out


def recordings_frame(
    names: Sequence[str],
    timestamps: Sequence[np.ndarray],
    features: Sequence[np.ndarray],
    feature_columns: Sequence[str],
) -> pd.DataFrame:
    """The input layout :class:`SERModel` expects, built from per-recording arrays."""
    parts = []
    for name, stamp, feat in zip(names, timestamps, features, strict=True):
        part = pd.DataFrame(np.asarray(feat, dtype=np.float64), columns=list(feature_columns))
        part.insert(0, TIME_COL, np.asarray(stamp, dtype=np.float64))
        part.insert(0, NAME_COL, name)
        parts.append(part)
    return pd.concat(parts, ignore_index=True)
