"""Model registry use cases: register the best run, promote a challenger, predict.

"Give me the best model we have and run it on these recordings": `register` picks the
best FINISHED run by a metric among runs whose model predicts from raw features, `promote`
moves the champion alias only to a better version, and `predict` runs any model URI on a
partition of an AVEC-layout data root.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ser_mlflow import tracking
from ser_mlflow.data.fingerprint import corpus_fingerprint

Echo = Callable[[str], None]
TAG_MODEL_INPUT = "ser.model_input"  # "raw": the model predicts from raw feature columns


def default_filter(data_root: str | Path) -> str:
    """FINISHED runs on this data root whose model takes raw features."""
    return (
        f"tags.`{tracking.TAG_DIGEST}` = '{corpus_fingerprint(data_root)}' "
        f"and tags.`{TAG_MODEL_INPUT}` = 'raw'"
    )


@dataclass(frozen=True)
class Registered:
    model_name: str
    version: str
    run_id: str
    metric: str
    value: float
    new_version: bool


def register_best(
    *,
    model_name: str = "ser-ces",
    metric: str = "devel_ccc_mean",
    filter_string: str | None = None,
    alias: str = "champion",
    data_root: str | Path = "data/synthetic",
    echo: Echo = print,
) -> Registered:
    """Register the best run's model and point ``alias`` at it.

    Raises:
        ValueError: no FINISHED run matches, or none has the metric.
    """
    tracking.check_registry_names(model_name, alias)
    flt = filter_string if filter_string else default_filter(data_root)
    full = f"{flt} and attributes.status = 'FINISHED'"
    runs = [
        r
        for r in tracking.search_runs(filter_string=full, order_by=[f"metrics.`{metric}` DESC"])
        if metric in r.data.metrics
        # an in-sample (paper protocol) fusion scores on frames it fitted: never a champion
        and not (not filter_string and r.data.tags.get("ser.in_sample") == "true")
    ]
    if not runs:
        raise ValueError(f"filter: no FINISHED run with metric {metric!r} matches {flt!r}")
    best = runs[0]
    before = {str(v.version) for v in tracking.model_versions(model_name)}
    version = str(tracking.register_run_model(best.info.run_id, model_name).version)
    value = float(best.data.metrics[metric])
    tracking.set_version_tags(model_name, version, {metric: value, "ser.run_id": best.info.run_id})
    tracking.set_alias(model_name, alias, version)
    is_new = version not in before
    echo(
        f"{'Registered' if is_new else 'Already registered:'} {model_name} version {version} "
        f"from run {best.info.run_id} ({best.data.tags.get(tracking.TAG_FEATURE_SETS, '?')}, "
        f"{metric}={value:.4f}); alias @{alias} -> version {version}"
    )
    return Registered(model_name, version, best.info.run_id, metric, value, is_new)


@dataclass(frozen=True)
class Promotion:
    promoted: bool
    reason: str
    champion_version: str


def _version_metric(model_name: str, version: Any, metric: str) -> float:
    run = tracking.get_run(version.run_id)
    if metric not in run.data.metrics:
        raise ValueError(
            f"metric: version {version.version} of {model_name!r} (run {version.run_id}) "
            f"has no metric {metric!r}"
        )
    return float(run.data.metrics[metric])


def promote(
    *,
    model_name: str = "ser-ces",
    challenger: str = "challenger",
    champion: str = "champion",
    metric: str = "devel_ccc_mean",
    force: bool = False,
    echo: Echo = print,
) -> Promotion:
    """Move ``champion`` to the challenger's version when its metric is higher (or forced).

    Records the previous version, both metric values and the time as tags on the new
    champion version. A refused promotion changes nothing.

    Raises:
        ValueError: unknown model or alias, or a name MLflow would refuse.
    """
    tracking.check_registry_names(model_name, challenger, champion)
    new = tracking.model_version_by_alias(model_name, challenger)
    try:
        old = tracking.model_version_by_alias(model_name, champion)
    except ValueError:
        old = None
    new_value = _version_metric(model_name, new, metric)
    old_value = _version_metric(model_name, old, metric) if old is not None else float("-inf")
    if old is not None and old.version == new.version:
        reason = f"@{challenger} and @{champion} are the same version {new.version}"
        echo(f"Nothing to promote: {reason}")
        return Promotion(False, reason, old.version)
    if not force and not new_value > old_value:
        reason = (
            f"challenger version {new.version} has {metric}={new_value:.4f}, not higher than "
            f"champion version {old.version if old else '-'} ({old_value:.4f}); use --force to "
            "promote anyway"
        )
        echo(f"Promotion refused: {reason}")
        return Promotion(False, reason, old.version if old else "")
    tracking.set_alias(model_name, champion, new.version)
    tracking.set_version_tags(
        model_name,
        new.version,
        {
            "ser.promoted_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "ser.previous_version": old.version if old else "none",
            f"ser.previous_{metric}": old_value if old else "none",
            f"ser.promoted_{metric}": new_value,
            "ser.promotion_forced": str(force).lower(),
        },
    )
    reason = (
        f"version {new.version} ({metric}={new_value:.4f}) replaces version "
        f"{old.version if old else 'none'} ({old_value:.4f})" + (" [forced]" if force else "")
    )
    echo(f"Promoted @{champion}: {reason}")
    return Promotion(True, reason, new.version)


@dataclass(frozen=True)
class Prediction:
    run_id: str
    out: Path
    n_recordings: int
    model_version: tuple[str, str] | None
    metrics: dict[str, float]


def predict(
    *,
    model_uri: str,
    data_root: str | Path,
    partition: str = "Test",
    out: str | Path = "predictions",
    experiment: str = "ser-ces",
    echo: Echo = print,
) -> Prediction:
    """Run a logged model on one partition; write AVEC CSVs and log a ``predict`` run.

    Labels are not needed; when the partition has them, CCC is logged too.

    Raises:
        ValueError: unknown model/alias, or data that do not match the model's features.
        DataError: unreadable data (names the file).
    """
    import numpy as np

    from ser_mlflow.data import DataError, load_corpus, write_avec_csv
    from ser_mlflow.metrics import score_recordings
    from ser_mlflow.pyfunc import recordings_frame

    version = tracking.resolve_model_version(model_uri)  # fails early on a bad alias
    model = tracking.load_pyfunc(model_uri)
    meta = model.unwrap_python_model().meta
    # a fusion over trained runs takes the union of its input models' raw columns
    columns = meta.get("raw_columns") or meta["feature_columns"]
    sets = meta.get("feature_sets") or list(dict.fromkeys(c.split(":", 1)[0] for c in columns))
    try:
        corpus = load_corpus(data_root, sets, partitions=(partition,), labelled=(partition,))
        labelled = True
    except DataError as exc:
        if "label" not in str(exc).lower():
            raise
        corpus = load_corpus(data_root, sets, partitions=(partition,), labelled=())
        labelled = False
    if tuple(corpus.feature_columns) != tuple(columns):
        missing = [c for c in columns if c not in corpus.feature_columns][:5]
        extra = [c for c in corpus.feature_columns if c not in columns][:5]
        raise ValueError(
            f"{data_root}: feature columns of {'+'.join(sets)} differ from the model's "
            f"({len(columns)} expected, {len(corpus.feature_columns)} found; missing {missing}, "
            f"unexpected {extra})"
        )
    recs = corpus.partition(partition)
    frame = recordings_frame(
        [r.name for r in recs],
        [r.timestamps for r in recs],
        [r.features for r in recs],
        corpus.feature_columns,
    )
    result = model.predict(frame)
    attrs = list(meta["attributes"])
    out = Path(out)
    preds: dict[str, np.ndarray] = {}
    for rec in recs:
        part = result[result["name"] == rec.name]
        preds[rec.name] = part[attrs].to_numpy(dtype=np.float64)
        write_avec_csv(out / f"{rec.name}.csv", rec.name, rec.timestamps, preds[rec.name], attrs)
    metrics: dict[str, float] = {}
    if labelled:
        metrics = score_recordings(
            preds,
            {r.name: r.labels for r in recs if r.labels is not None},
            {r.name: r.culture for r in recs},
            attrs,
            prefix=f"{partition.lower()}_",
        )
    tags = {
        tracking.TAG_STAGE: "predict",
        tracking.TAG_FEATURE_SETS: "+".join(sets),
        tracking.TAG_DIGEST: corpus_fingerprint(data_root),
        "ser.model_uri": model_uri,
    }
    if version:
        tags.update({"ser.model_name": version[0], "ser.model_version": version[1]})
    with tracking.run_context(
        experiment=experiment, run_name=f"predict-{partition.lower()}", tags=tags
    ) as run:
        tracking.log_params(
            {
                "model_uri": model_uri,
                "data_root": str(data_root),
                "partition": partition,
                "out": str(out),
            }
        )
        if metrics:
            tracking.log_metrics(metrics)
        tracking.log_artifact_dir(out, f"predictions/{partition.lower()}")
    where = f" (version {version[1]} of {version[0]})" if version else ""
    echo(
        f"Wrote {len(recs)} prediction files to {out}/ with {model_uri}{where}; "
        f"run {run.info.run_id}"
    )
    return Prediction(run.info.run_id, out, len(recs), version, metrics)
