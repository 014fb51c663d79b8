"""One training run: data -> network -> per-epoch devel CCC -> a complete MLflow run.

The run holds params, tags and metrics per DESIGN.md §5, the datasets with digests, AVEC
prediction files, plots and a self-contained pyfunc model. Scores are on Devel (and on
Test when it has labels): frames the network never fitted.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ser_mlflow import tracking
from ser_mlflow.data import (
    Recording,
    unshift_predictions,
    write_avec_csv,
    write_synthetic_corpus,
)
from ser_mlflow.data.fingerprint import corpus_fingerprint
from ser_mlflow.models.metadata import ModelMetadata
from ser_mlflow.nn.fit import (
    CHECKPOINT_STATE,
    EpochCallback,
    Prepared,
    fit_network,
    predict_partition,
    prepare,
    score_partition,
)
from ser_mlflow.settings import DEFAULT_DATA_ROOT, TrainConfig
from ser_mlflow.tracking.tags import TAG_MODEL_INPUT


@dataclass
class TrainResult:
    run_id: str
    metrics: dict[str, float]
    best_epoch: int
    history: list[dict[str, float]] = field(default_factory=list)
    model_uri: str | None = None


def ensure_default_corpus(root: Path, *, echo: Callable[[str], None] = print) -> None:
    """Synthesise the full-scale corpus when the *default* data root does not exist yet."""
    if root.exists() or Path(root) != DEFAULT_DATA_ROOT:
        return
    echo(
        f"Data root {root}/ does not exist yet: writing the synthetic corpus there first "
        "(full scale, seed 0; `ser-mlflow synthesize` does this explicitly)."
    )
    summary = write_synthetic_corpus(root, scale="full", seed=0, progress=True)
    echo(
        f"Synthetic corpus ready: {summary.n_frames} frames, "
        f"{summary.bytes_written / 1e6:.0f} MB in {root}/"
    )


CHECKPOINT_ENV = "SER_MLFLOW_CHECKPOINT_DIR"
DEFAULT_CHECKPOINT_DIR = "ser-checkpoints"


def checkpoint_root() -> Path:
    """Where runs keep their local checkpoints: ``$SER_MLFLOW_CHECKPOINT_DIR``, else
    ``./ser-checkpoints`` in the working directory (one folder per run id, removed when
    the run finishes)."""
    return Path(os.environ.get(CHECKPOINT_ENV) or DEFAULT_CHECKPOINT_DIR).resolve()


def checkpoint_dir(run_id: str) -> Path:
    return checkpoint_root() / run_id


_claimed: set[str] = set()


@contextlib.contextmanager
def claim_run(run_id: str) -> Any:
    """Hold the run for this process: a second trainer of the same run (a resume while it
    trains, or two resumes at once) is refused in one line. Re-entrant in one process.

    Raises:
        ValueError: another process on this machine holds the run.
    """
    from ser_mlflow.tracking.locks import LockBusy, file_lock

    if run_id in _claimed:
        yield
        return
    lock = checkpoint_root() / f".{run_id}.lock"
    try:
        with file_lock(lock, blocking=False):
            _claimed.add(run_id)
            try:
                yield
            finally:
                _claimed.discard(run_id)
                if not checkpoint_dir(run_id).exists():
                    with contextlib.suppress(OSError):
                        lock.unlink()
                        lock.parent.rmdir()  # only when no other run keeps a checkpoint
    except LockBusy:
        raise ValueError(
            f"resume_run_id: run {run_id} is being trained by another process on this "
            f"machine (lock {lock}); wait for it to end"
        ) from None


def _write_predictions(
    out: Path, data: Prepared, partition: str, preds: Mapping[str, np.ndarray]
) -> None:
    for rec in data.corpus.partition(partition):
        write_avec_csv(
            out / f"{rec.name}.csv", rec.name, rec.timestamps, preds[rec.name], data.attributes
        )


def default_stage(cfg: TrainConfig) -> str:
    return "unimodal" if len(cfg.feature_sets) == 1 else "bimodal"


def run_tags(cfg: TrainConfig, data: Prepared, *, stage: str) -> dict[str, str]:
    return {
        tracking.TAG_STAGE: stage,
        tracking.TAG_FEATURE_SETS: "+".join(cfg.feature_sets),
        tracking.TAG_LOSS: cfg.loss.name,
        tracking.TAG_DIGEST: corpus_fingerprint(cfg.data_root),
        tracking.TAG_CONTENT_DIGEST: data.corpus.digest,
        TAG_MODEL_INPUT: "raw",
    }


def train_in_active_run(
    cfg: TrainConfig,
    data: Prepared,
    *,
    stage: str | None = None,
    on_epoch: EpochCallback | None = None,
    progress: bool = True,
    echo: Callable[[str], None] = print,
    resume_from: Path | None = None,
) -> TrainResult:
    """Do the whole training inside the already active MLflow run."""
    run_id = tracking.active_run_id()
    stage = stage or default_stage(cfg)
    tracking.log_params(cfg.to_params())
    tracking.set_tags(run_tags(cfg, data, stage=stage))
    corpus = data.corpus
    tracking.log_dataset(
        name=f"{Path(cfg.data_root).name}:{'+'.join(cfg.feature_sets)}",
        source=cfg.data_root,
        digest=corpus.digest,
        context="training",
        tags={"partitions": "Train,Devel,Test"},
    )

    def log_epoch(epoch: int, row: Mapping[str, float]) -> None:
        tracking.log_metrics({f"epoch/{k}": v for k, v in row.items()}, step=epoch)
        if on_epoch is not None:
            on_epoch(epoch, row)

    with claim_run(run_id):
        if resume_from is not None:
            _backfill_epochs(run_id, resume_from)
        ckpt = checkpoint_dir(run_id)
        try:
            result = _fit_and_log(cfg, data, run_id=run_id, on_epoch=log_epoch,
                                  progress=progress, ckpt=ckpt, resume_from=resume_from)
        except BaseException as exc:
            shutil.rmtree(ckpt / ".writing", ignore_errors=True)
            _keep_checkpoint(exc, run_id, ckpt, echo)
            raise
        shutil.rmtree(ckpt, ignore_errors=True)  # the run is complete: nothing to resume
        return result


def _backfill_epochs(run_id: str, ckpt: Path) -> None:
    """Log the checkpointed epochs the dead process did not log (it saves the checkpoint
    before logging), so that the resumed run has exactly one point per epoch."""
    state = json.loads((ckpt / CHECKPOINT_STATE).read_text())
    logged = tracking.metric_steps(run_id, "epoch/devel_ccc_mean")
    for epoch, row in enumerate(state["history"], start=1):
        if epoch not in logged:
            tracking.log_metrics({f"epoch/{k}": v for k, v in row.items()}, step=epoch)


def _keep_checkpoint(exc: BaseException, run_id: str, ckpt: Path, echo: Callable[[str], None]
                     ) -> None:
    """After a failure: keep what was learnt for --resume-run-id (locally, and uploaded when
    the server still answers); a pruned Optuna trial is a planned stop with nothing to keep.

    Raises:
        TrackingLost: the server is gone (one line with the resume command).
    """
    resumable = (ckpt / CHECKPOINT_STATE).exists()
    if type(exc).__name__ == "TrialPruned" or not resumable:
        shutil.rmtree(ckpt, ignore_errors=True)
        if tracking.is_connection_loss(exc):
            tracking.stop_retrying()
            raise tracking.TrackingLost(tracking.lost_message(run_id)) from None
        return
    command = f"ser-mlflow train --resume-run-id {run_id}"
    if tracking.is_connection_loss(exc):
        tracking.stop_retrying()
        raise tracking.TrackingLost(tracking.lost_message(
            run_id, resume=f"checkpoint kept in {ckpt}; when the server is back, from this "
            f"folder: {command}")) from None
    with contextlib.suppress(Exception):
        tracking.log_artifact_dir(ckpt, "checkpoint")
    echo(f"checkpoint of the last finished epoch kept in {ckpt} and saved to run {run_id} "
         f"(continue with: {command})")


def _fit_and_log(
    cfg: TrainConfig,
    data: Prepared,
    *,
    run_id: str,
    on_epoch: EpochCallback,
    progress: bool,
    ckpt: Path,
    resume_from: Path | None,
) -> TrainResult:
    corpus = data.corpus
    model, best_epoch, history = fit_network(
        cfg,
        data,
        on_epoch=on_epoch,
        progress=progress,
        checkpoint_dir=ckpt,
        resume_from=resume_from,
    )

    preds = {
        p: predict_partition(model, data, p) for p in ("Devel", "Test") if corpus.partition(p)
    }
    metrics = score_partition(data, "Devel", preds["Devel"], prefix="devel_")
    if "Test" in preds:
        metrics.update(score_partition(data, "Test", preds["Test"], prefix="test_"))
    metrics["best_epoch"] = float(best_epoch)

    with tempfile.TemporaryDirectory(prefix="ser-mlflow-") as tmp:
        tmpdir = Path(tmp)
        for part, p in preds.items():
            _write_predictions(tmpdir / "predictions" / part.lower(), data, part, p)
        tracking.log_artifact_dir(tmpdir / "predictions", "predictions")
        from ser_mlflow.scoring import plots

        tracking.log_figure(
            plots.training_curves(history, best_epoch, data.attributes), "plots/ccc_per_epoch.png"
        )
        tracking.log_figure(
            plots.traces(data.corpus.partition("Devel"), preds["Devel"], data.attributes),
            "plots/devel_traces.png",
        )
        example = _input_example(data)
        model_info = tracking.log_ser_model(
            network=model,
            metadata=_preprocess_meta(cfg, data),
            example=example,
            example_output=_example_output(model, data, example),
            workdir=tmpdir,
            params=cfg.to_params(),
        )
    tracking.log_metrics(metrics, step=best_epoch, model_id=model_info.model_id)
    tracking.log_text(
        json.dumps(
            {"config": cfg.as_dict(), "best_epoch": best_epoch, "history": history},
            indent=2,
            default=str,
        ),
        "training_summary.json",
    )
    return TrainResult(run_id, metrics, best_epoch, history, model_info.model_uri)


def _preprocess_meta(cfg: TrainConfig, data: Prepared) -> ModelMetadata:
    return ModelMetadata(
        feature_sets=list(cfg.feature_sets),
        feature_columns=list(data.corpus.feature_columns),
        attributes=list(data.attributes),
        shift_frames=cfg.shift_frames,
        standardizer=data.standardizer.to_dict(),
        network={"units": list(cfg.model.units), "dropout": cfg.model.dropout},
        data_digest=data.corpus.digest,
    )


def _input_example(data: Prepared) -> Any:
    from ser_mlflow.models.pyfunc import recordings_frame

    rec: Recording = data.corpus.partition("Devel")[0]
    n = min(20, len(rec.features))
    return recordings_frame(
        [rec.name], [rec.timestamps[:n]], [rec.features[:n]], data.corpus.feature_columns
    )


def _example_output(model: Any, data: Prepared, example: Any) -> Any:
    """What the pyfunc returns for ``example`` (for the logged signature)."""
    from ser_mlflow.nn.model import predict_sequences

    feats = example[list(data.corpus.feature_columns)].to_numpy(dtype=np.float32)
    pred = predict_sequences(model, [data.standardizer.transform(feats)])[0]
    out = example[["name", "timestamp"]].copy()
    for j, attr in enumerate(data.attributes):
        out[attr] = unshift_predictions(pred, data.shift_frames)[:, j]
    return out


def run_training(
    cfg: TrainConfig,
    *,
    run_name: str | None = None,
    stage: str | None = None,
    extra_tags: Mapping[str, str] | None = None,
    nested: bool = False,
    progress: bool = True,
    echo: Callable[[str], None] = print,
    data: Prepared | None = None,
    on_epoch: EpochCallback | None = None,
    prepare_in_run: bool = False,
) -> TrainResult:
    """Open a run, train, and close it FINISHED (or FAILED/KILLED with the reason).

    Data are read before the run opens when not given, so a bad data root leaves no run;
    sweeps pass ``prepare_in_run=True`` so that a bad feature set shows up as a FAILED
    child with its error.

    Raises:
        DataError: bad input data.
    """
    ensure_default_corpus(Path(cfg.data_root), echo=echo)
    if data is None and not prepare_in_run:
        data = prepare(cfg)
    name = run_name or f"{'+'.join(cfg.feature_sets)}-{cfg.loss.name}-s{cfg.seed}"
    tags = {
        tracking.TAG_STAGE: stage or default_stage(cfg),
        tracking.TAG_FEATURE_SETS: "+".join(cfg.feature_sets),
        tracking.TAG_LOSS: cfg.loss.name,
        **(extra_tags or {}),
    }
    with tracking.run_context(
        experiment=cfg.experiment, run_name=name, tags=tags, nested=nested
    ) as run:
        if data is None:
            tracking.log_params(cfg.to_params())
            data = prepare(cfg)
        result = train_in_active_run(
            cfg, data, stage=stage, progress=progress, echo=echo, on_epoch=on_epoch
        )
        echo(f"run {run.info.run_id} ({name}) finished: best epoch {result.best_epoch}")
    return result


def resume_training(
    run_id: str, *, progress: bool = True, echo: Callable[[str], None] = print
) -> TrainResult:
    """Continue a KILLED, FAILED or dead RUNNING run from its checkpoint to its last epoch.

    The local checkpoint (``ser-checkpoints/<run_id>/``) is used when it is there, else the
    run's ``checkpoint/`` artifact. The run's own params rebuild the config, so the resumed
    run trains exactly what it started with. Only one process trains a run at a time.

    Raises:
        ValueError: unknown run, a FINISHED run, a run still alive in another process, a
            run without a checkpoint, or a run another process is resuming.
    """
    run = tracking.get_run_or_error(run_id)
    if run.info.status == "FINISHED":
        raise ValueError(f"resume_run_id: run {run_id} already FINISHED; nothing to resume")
    with claim_run(run_id):
        run = tracking.get_run(run_id)  # as it is now that this process holds it
        if run.info.status == "RUNNING":
            reason = tracking.stale_reason(run)
            if reason is None:
                tags = run.data.tags
                raise ValueError(
                    f"resume_run_id: run {run_id} is still RUNNING (process "
                    f"{tags.get(tracking.TAG_PID, '?')} on {tags.get(tracking.TAG_HOST, '?')}"
                    " is alive); stop it first or wait for it to end"
                )
            tracking.end_stale(run, reason, echo=echo)
        cfg = TrainConfig.from_params(run.data.params, experiment="")
        local = checkpoint_dir(run_id)
        if (local / CHECKPOINT_STATE).exists():
            ckpt = local
        else:
            try:
                ckpt = tracking.download_artifacts(run_id, "checkpoint")
            except Exception:
                raise ValueError(
                    f"resume_run_id: run {run_id} has no checkpoint: neither {local} (run "
                    "the resume in the folder it was trained in, or set "
                    f"${CHECKPOINT_ENV}) nor a checkpoint/ artifact"
                ) from None
        state = json.loads((ckpt / CHECKPOINT_STATE).read_text())
        echo(f"Resuming run {run_id} after epoch {state['epoch']} of {cfg.epochs} "
             f"(checkpoint {ckpt})")
        data = prepare(cfg)
        stage = run.data.tags.get(tracking.TAG_STAGE)
        with tracking.run_context(experiment="", resume_run_id=run_id) as active:
            result = train_in_active_run(
                cfg, data, stage=stage, progress=progress, echo=echo, resume_from=ckpt
            )
            echo(f"run {active.info.run_id} resumed and finished: best epoch "
                 f"{result.best_epoch}")
        return result
