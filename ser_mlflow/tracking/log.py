"""Thin logging wrappers on the active run: params, metrics, tags, artifacts, datasets."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient


def log_dataset(
    *,
    name: str,
    source: str | Path,
    digest: str,
    context: str,
    tags: Mapping[str, str] | None = None,
) -> None:
    """Record a dataset read from disk by its content digest (no copy of the data)."""
    import warnings

    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    with warnings.catch_warnings():  # local paths match two equivalent source types
        warnings.simplefilter("ignore", UserWarning)
        src = resolve_dataset_source(Path(source).resolve().as_uri())
    ds = MetaDataset(source=src, name=name, digest=digest[:36])  # type: ignore[abstract]
    mlflow.log_input(ds, context=context, tags=dict(tags or {}))


def log_artifact_dir(local_dir: str | Path, artifact_path: str) -> None:
    mlflow.log_artifacts(str(local_dir), artifact_path=artifact_path)


def log_figure(fig: Any, artifact_file: str) -> None:
    mlflow.log_figure(fig, artifact_file)


def log_text(text: str, artifact_file: str) -> None:
    mlflow.log_text(text, artifact_file)


def log_metrics(
    metrics: Mapping[str, float], *, step: int | None = None, model_id: str | None = None
) -> None:
    mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step, model_id=model_id)


def log_metrics_to(run_id: str, metrics: Mapping[str, float]) -> None:
    """Log metrics on any run by id (e.g. figures derived later for a finished parent)."""
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    MlflowClient().log_batch(
        run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()]
    )


def log_params(params: Mapping[str, Any]) -> None:
    """Log params; keep values ``mlflow run`` already logged from the entry point.

    ``mlflow run`` records the raw entry-point values (e.g. ``alpha=''`` for a preset
    loss) and MLflow forbids changing a param, so a resolved value that differs is logged
    as ``<key>_effective`` beside the raw one.
    """
    active = mlflow.active_run()
    existing = MlflowClient().get_run(active.info.run_id).data.params if active else {}
    out = {}
    for k, v in params.items():
        value = str(v)
        if k not in existing:
            out[k] = value
        elif existing[k] != value:
            out[f"{k}_effective"] = value
    if out:
        mlflow.log_params(out)


def metric_steps(run_id: str, key: str) -> set[int]:
    """The steps at which a run has logged ``key``."""
    return {m.step for m in MlflowClient().get_metric_history(run_id, key)}


def set_tags(tags: Mapping[str, Any]) -> None:
    mlflow.set_tags({k: str(v) for k, v in tags.items()})


def log_table(df: Any, name: str) -> None:
    """CSV + Markdown artifacts of a result table."""
    log_text(df.to_csv(index=False), f"{name}.csv")
    log_text(
        df.to_markdown(index=False, floatfmt=".3f") if _has_tabulate() else _markdown(df),
        f"{name}.md",
    )


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


def _markdown(df: Any) -> str:
    def cell(v: Any) -> str:
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    head = "| " + " | ".join(df.columns) + " |"
    sep = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, sep, *body]) + "\n"
