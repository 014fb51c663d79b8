"""The fit loop, without MLflow: standardised arrays, length-bucketed batches, per-epoch
devel CCC, the best epoch's weights, checkpoints, and early stopping.

The training job (``jobs/train.py``) logs what this loop reports through ``on_epoch``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ser_mlflow.data import (
    Corpus,
    DataError,
    Standardizer,
    load_corpus,
    shift_labels,
    unshift_predictions,
)
from ser_mlflow.data.fingerprint import corpus_fingerprint
from ser_mlflow.scoring.metrics import score_recordings
from ser_mlflow.settings import TrainConfig

EpochCallback = Callable[[int, Mapping[str, float]], None]


@dataclass
class Prepared:
    """Standardised arrays of one corpus, reusable across runs (e.g. Optuna trials)."""

    corpus: Corpus
    standardizer: Standardizer
    features: dict[str, list[np.ndarray]]  # partition -> standardised (T, F) per recording
    train_targets: list[np.ndarray]  # shifted labels (T, A)
    train_valid: list[np.ndarray]  # (T,) bool, False where the shift ran out of labels
    shift_frames: int

    @property
    def attributes(self) -> tuple[str, ...]:
        return self.corpus.attributes


def prepare(cfg: TrainConfig) -> Prepared:
    """Read the corpus, fit standardisation on Train frames only, shift training labels.

    Raises:
        DataError: bad or missing data (names the file and the problem).
    """
    corpus = load_corpus(cfg.data_root, cfg.feature_sets)
    corpus_fingerprint(cfg.data_root)  # the run's tag reads every folder: fail before the run
    shortest = min(corpus.partition("Train"), key=lambda r: r.n_frames)
    if cfg.shift_frames >= shortest.n_frames:
        raise DataError(
            f"shift_frames: {cfg.shift_frames} frames leave no label to train on in "
            f"{shortest.name} ({shortest.n_frames} frames, the shortest Train recording); "
            f"expected fewer than {shortest.n_frames} (the paper shifts 1 frame)"
        )
    if len(corpus.attributes) != 3:
        raise DataError(
            f"{Path(cfg.data_root) / 'labels'}: the alpha/beta/gamma loss needs exactly 3 "
            f"attributes (arousal, valence, liking); the label header has {corpus.attributes}"
        )
    train = corpus.partition("Train")
    std = Standardizer().fit(train)
    feats = {
        p: [std.transform(r.features) for r in corpus.partition(p)]
        for p in ("Train", "Devel", "Test")
    }
    targets, valid = [], []
    for rec in train:
        assert rec.labels is not None  # load_corpus guarantees labels for Train
        y, ok = shift_labels(rec.labels, cfg.shift_frames)
        targets.append(y.astype(np.float32))
        valid.append(ok)
    return Prepared(corpus, std, feats, targets, valid, cfg.shift_frames)


def _batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Length-bucketed batches that still vary between epochs.

    Sorting by length with a random jitter of about one batch's length spread keeps the
    padding small (work on padding is wasted) while batch composition and order change.
    """
    n = len(lengths)
    spread = (lengths.max() - lengths.min() + 1) * min(1.0, batch_size / max(n, 1))
    keys = lengths + rng.uniform(-0.5, 0.5, size=n) * spread
    order = np.argsort(keys, kind="stable")
    batches = [order[i : i + batch_size] for i in range(0, n, batch_size)]
    rng.shuffle(batches)  # type: ignore[arg-type]
    return batches


def _pad_batch(
    idx: np.ndarray, feats: list[np.ndarray], targets: list[np.ndarray], valid: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    from ser_mlflow.nn.losses import pack_targets

    longest = max(len(feats[i]) for i in idx)
    x = np.zeros((len(idx), longest, feats[idx[0]].shape[1]), dtype=np.float32)
    y = np.zeros((len(idx), longest, targets[idx[0]].shape[1]), dtype=np.float32)
    m = np.zeros((len(idx), longest), dtype=np.float32)
    for row, i in enumerate(idx):
        t = len(feats[i])
        x[row, :t] = feats[i]
        y[row, :t] = targets[i]
        m[row, :t] = valid[i]
    return x, pack_targets(y, m)


def predict_partition(model: Any, data: Prepared, partition: str) -> dict[str, np.ndarray]:
    """Predictions per recording, shifted back so that they align with the labels."""
    from ser_mlflow.nn.model import predict_sequences

    recs = data.corpus.partition(partition)
    preds = predict_sequences(model, data.features[partition])
    return {
        r.name: unshift_predictions(p, data.shift_frames) for r, p in zip(recs, preds, strict=True)
    }


def score_partition(
    data: Prepared, partition: str, preds: Mapping[str, np.ndarray], *, prefix: str
) -> dict[str, float]:
    recs = [r for r in data.corpus.partition(partition) if r.labels is not None]
    if not recs:
        return {}
    golds = {r.name: np.asarray(r.labels, dtype=np.float64) for r in recs}
    return score_recordings(
        {r.name: preds[r.name] for r in recs},
        golds,
        {r.name: r.culture for r in recs},
        data.attributes,
        prefix=prefix,
    )


CHECKPOINT_MODEL = "last.keras"
CHECKPOINT_BEST = "best_weights.npz"
CHECKPOINT_STATE = "state.json"


def save_checkpoint(
    folder: Path, model: Any, best_weights: list[np.ndarray], state: dict[str, Any]
) -> None:
    """Last full model (optimizer included), best weights and progress, for --resume-run-id.

    Written to a scratch folder first and moved in file by file, state last: a signal in
    the middle of a save leaves the previous epoch's checkpoint intact and consistent.
    """
    scratch = folder / ".writing"
    scratch.mkdir(parents=True, exist_ok=True)
    model.save(scratch / CHECKPOINT_MODEL)
    np.savez(scratch / CHECKPOINT_BEST, *best_weights)
    (scratch / CHECKPOINT_STATE).write_text(json.dumps(state, default=float))
    with _signals_deferred():
        for name in (CHECKPOINT_MODEL, CHECKPOINT_BEST, CHECKPOINT_STATE):
            os.replace(scratch / name, folder / name)


@contextlib.contextmanager
def _signals_deferred() -> Any:
    """Hold SIGINT/SIGTERM during the three renames, then deliver them."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []
    old = {
        s: signal.signal(s, lambda n, f: got.append(n)) for s in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        for n in got:
            signal.raise_signal(n)


def _start(cfg: TrainConfig, data: Prepared, resume_from: Path | None
           ) -> tuple[Any, int, float, int, list[np.ndarray], list[dict[str, float]]]:
    """(model, first epoch, best devel CCC, its epoch, its weights, history): new, or
    as a checkpoint left them."""
    import keras

    from ser_mlflow.nn.model import build_model, compile_model

    if resume_from is not None:
        state = json.loads((resume_from / CHECKPOINT_STATE).read_text())
        model = keras.saving.load_model(resume_from / CHECKPOINT_MODEL)
        with np.load(resume_from / CHECKPOINT_BEST) as f:
            best_weights = [f[f"arr_{i}"] for i in range(len(f.files))]
        return (model, state["epoch"] + 1, state["best"], state["best_epoch"], best_weights,
                state["history"])
    model = build_model(data.corpus.n_features, data.attributes, cfg.model)
    compile_model(model, cfg.model, cfg.loss)
    return model, 1, -np.inf, 0, model.get_weights(), []


def _train_epoch(model: Any, data: Prepared, batch_size: int, rng: np.random.Generator,
                 epoch: int) -> dict[str, float]:
    """One pass over Train, then devel CCC: the epoch's figures."""
    feats = data.features["Train"]
    lengths = np.array([len(f) for f in feats])
    t0 = time.perf_counter()
    losses = []
    for idx in _batches(lengths, batch_size, rng):
        x, y = _pad_batch(idx, feats, data.train_targets, data.train_valid)
        losses.append(float(np.asarray(model.train_on_batch(x, y))))
    train_seconds = time.perf_counter() - t0
    scores = score_partition(data, "Devel", predict_partition(model, data, "Devel"),
                             prefix="devel_")
    row = {
        "train_loss": float(np.mean(losses)),
        "epoch_seconds": train_seconds,
        **{k: v for k, v in scores.items() if k.startswith("devel_ccc_")},
    }
    if not np.isfinite(row["train_loss"]):
        raise FloatingPointError(f"epoch {epoch}: training loss is {row['train_loss']}")
    return row


def fit_network(
    cfg: TrainConfig,
    data: Prepared,
    *,
    on_epoch: EpochCallback | None = None,
    progress: bool = True,
    checkpoint_dir: Path | None = None,
    resume_from: Path | None = None,
) -> tuple[Any, int, list[dict[str, float]]]:
    """Train with per-epoch devel CCC; restore the best epoch's weights (devel CCC mean).

    No MLflow here: ``on_epoch`` receives each epoch's figures (the caller logs them, or
    prunes by raising). With ``checkpoint_dir`` the state after every epoch is saved there;
    ``resume_from`` continues from such a folder.

    Returns:
        (model, best_epoch, history) where history[i] holds epoch i+1's figures.
    """
    import keras
    from tqdm.auto import tqdm

    keras.utils.set_random_seed(cfg.seed)
    model, start, best, best_epoch, best_weights, history = _start(cfg, data, resume_from)
    # a resumed run draws the batches it would have drawn from its epoch on
    rng = np.random.default_rng([cfg.seed, start])
    bar = tqdm(
        range(start, cfg.epochs + 1),
        desc="epochs",
        unit="ep",
        disable=not progress,
        file=sys.stderr,
        dynamic_ncols=True,
        initial=start - 1,
        total=cfg.epochs,
    )
    for epoch in bar:
        row = _train_epoch(model, data, cfg.batch_size, rng, epoch)
        history.append(row)
        if row["devel_ccc_mean"] > best:
            best, best_epoch, best_weights = row["devel_ccc_mean"], epoch, model.get_weights()
        if checkpoint_dir is not None:
            save_checkpoint(
                checkpoint_dir,
                model,
                best_weights,
                {"epoch": epoch, "best": best, "best_epoch": best_epoch, "history": history},
            )
        bar.set_postfix(
            loss=f"{row['train_loss']:.3f}",
            ccc=f"{row['devel_ccc_mean']:.3f}",
            best=f"{best:.3f}@{best_epoch}",
        )
        if on_epoch is not None:
            on_epoch(epoch, row)
        if cfg.patience and epoch - best_epoch >= cfg.patience:
            break  # early stopping: the best epoch's weights are restored below
    bar.close()
    model.set_weights(best_weights)
    return model, best_epoch, history
