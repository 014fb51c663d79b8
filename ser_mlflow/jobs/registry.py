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
from ser_mlflow.settings import DEFAULT_DATA_ROOT
from ser_mlflow.tracking.tags import (
    TAG_IN_SAMPLE,
    TAG_MODEL_INPUT,
    TAG_MODEL_NAME,
    TAG_MODEL_URI,
    TAG_MODEL_VERSION,
    TAG_PREVIOUS_PREFIX,
    TAG_PREVIOUS_VERSION,
    TAG_PROMOTED_AT,
    TAG_PROMOTED_PREFIX,
    TAG_PROMOTION_FORCED,
    TAG_RUN_ID,
)

Echo = Callable[[str], None]


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
    alias: str = "champion"  # the alias the version got: the champion's, or the challenger's
    champion_version: str = ""  # the champion after the call
    previous_value: float | None = None  # the champion's metric before, when there was one


def _best_run(metric: str, filter_string: str | None, data_root: str | Path) -> Any:
    """The FINISHED run with the highest ``metric`` among those the filter selects.

    Raises:
        ValueError: no FINISHED run matches, or none has the metric.
    """
    flt = filter_string if filter_string else default_filter(data_root)
    full = f"{flt} and attributes.status = 'FINISHED'"
    runs = [
        r
        for r in tracking.search_runs(filter_string=full, order_by=[f"metrics.`{metric}` DESC"])
        if metric in r.data.metrics
        # an in-sample (paper protocol) fusion scores on frames it fitted: never a champion
        and not (not filter_string and r.data.tags.get(TAG_IN_SAMPLE) == "true")
    ]
    if not runs:
        raise ValueError(f"filter: no FINISHED run with metric {metric!r} matches {flt!r}")
    return runs[0]


def register_best(
    *,
    model_name: str = "ser-ces",
    metric: str = "devel_ccc_mean",
    filter_string: str | None = None,
    alias: str = "champion",
    challenger: str = "challenger",
    force: bool = False,
    data_root: str | Path = DEFAULT_DATA_ROOT,
    echo: Echo = print,
) -> Registered:
    """Register the best run's model; it becomes ``alias`` only if it beats the holder.

    When ``alias`` already points to a version, the new one takes it only with a strictly
    higher ``metric`` (or ``force``, recorded on the version like a forced promotion);
    otherwise it gets ``challenger`` and the output gives both values, so a rerun never
    demotes the champion by accident.

    Raises:
        ValueError: no FINISHED run matches, or none has the metric.
    """
    tracking.check_registry_names(model_name, alias)
    best = _best_run(metric, filter_string, data_root)
    before = {str(v.version) for v in tracking.model_versions(model_name)}
    version = str(tracking.register_run_model(best.info.run_id, model_name).version)
    value = float(best.data.metrics[metric])
    tracking.set_version_tags(model_name, version, {metric: value, TAG_RUN_ID: best.info.run_id})
    is_new = version not in before
    sets = best.data.tags.get(tracking.TAG_FEATURE_SETS, "?")
    echo(
        f"{'Registered' if is_new else 'Already registered:'} {model_name} version {version} "
        f"from run {best.info.run_id} ({sets}, {metric}={value:.4f})"
    )
    try:
        holder = tracking.model_version_by_alias(model_name, alias)
    except ValueError:
        holder = None
    if holder is None or str(holder.version) == version:
        tracking.set_alias(model_name, alias, version)
        echo(f"@{alias} -> version {version}")
        return Registered(model_name, version, best.info.run_id, metric, value, is_new, alias,
                          version)
    try:
        held = _version_metric(model_name, holder, metric)
    except ValueError:
        held = float("nan")  # cannot be compared: only --force moves the alias
    if force or value > held:
        tracking.set_alias(model_name, alias, version)
        _record_promotion(model_name, version, holder.version, held, value, metric, force)
        echo(
            f"@{alias} -> version {version}: {metric} {value:.4f} > {held:.4f} of version "
            f"{holder.version}" + (" [forced]" if force and not value > held else "")
        )
        return Registered(model_name, version, best.info.run_id, metric, value, is_new, alias,
                          version, held)
    tracking.set_alias(model_name, challenger, version)
    echo(
        f"@{alias} stays on version {holder.version} ({metric}={held:.4f}); version {version} "
        f"({metric}={value:.4f}) is not better and is now @{challenger} "
        f"(`ser-mlflow promote` compares them; --force registers it as @{alias} anyway)"
    )
    return Registered(model_name, version, best.info.run_id, metric, value, is_new, challenger,
                      str(holder.version), held)


def _record_promotion(model_name: str, version: str, old_version: str | None, old_value: float,
                      new_value: float, metric: str, force: bool) -> None:
    """What a moved champion alias leaves on the new version: who it replaced and why."""
    tracking.set_version_tags(
        model_name,
        version,
        {
            TAG_PROMOTED_AT: time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            TAG_PREVIOUS_VERSION: old_version or "none",
            f"{TAG_PREVIOUS_PREFIX}{metric}": old_value if old_version else "none",
            f"{TAG_PROMOTED_PREFIX}{metric}": new_value,
            TAG_PROMOTION_FORCED: str(force).lower(),
        },
    )


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
    _record_promotion(model_name, new.version, old.version if old else None, old_value,
                      new_value, metric, force)
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

    from ser_mlflow.data import write_avec_csv
    from ser_mlflow.scoring.metrics import score_recordings

    version = tracking.resolve_model_version(model_uri)  # fails early on a bad alias
    model = tracking.load_pyfunc(model_uri)
    meta = model.unwrap_python_model().meta
    frame, corpus, labelled = _model_frames(model, data_root, partition)
    sets = list(dict.fromkeys(c.split(":", 1)[0] for c in corpus.feature_columns))
    recs = corpus.partition(partition)
    result = model.predict(frame)
    attrs = list(meta.attributes)
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
        TAG_MODEL_URI: model_uri,
    }
    if version:
        tags.update({TAG_MODEL_NAME: version[0], TAG_MODEL_VERSION: version[1]})
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


def model_input(model: Any, data_root: str | Path, partition: str = "Test") -> Any:
    """The frames a ser_mlflow model predicts from, read from an AVEC-layout folder.

    One row per frame: ``name``, ``timestamp`` and every feature column the model was
    trained on as ``<feature_set>:<column>``, in its order. For
    ``mlflow.pyfunc.load_model(uri).predict`` or, as JSON, ``mlflow models serve``.

    Args:
        model: a loaded ser_mlflow pyfunc (a trained run's model, or a fusion over trained
            runs, whose input is the union of its input models' columns).
        data_root: ``<root>/<feature_set>/<Partition>_<Culture>_<NN>.csv``.
        partition: Train, Devel or Test.

    Raises:
        ValueError: the model takes predictions (a fusion over imported predictions), or the
            folder's columns differ from the model's (names them).
        DataError: unreadable data (names the file).
    """
    return _model_frames(model, data_root, partition)[0]


def _model_frames(model: Any, data_root: str | Path, partition: str) -> tuple[Any, Any, bool]:
    """(frames, corpus, labelled) for :func:`model_input` and :func:`predict`."""
    from ser_mlflow.data import DataError, load_corpus
    from ser_mlflow.models.pyfunc import recordings_frame

    meta = model.unwrap_python_model().meta
    if meta.takes_predictions:
        raise ValueError(
            "model: this fusion takes its systems' predictions (columns "
            f"{meta.feature_columns[:3]} ...), not features; give it the prediction "
            "files of those systems (see the README, 'Model registry')"
        )
    # a fusion over trained runs takes the union of its input models' raw columns
    columns = meta.input_columns
    sets = meta.input_feature_sets
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
    return frame, corpus, labelled
