"""A finished run's development predictions and the gold labels they are scored against.

Shared by the steps that re-score runs from their artifacts (``report``, ``compare``'s
intervals, the delay sweep): any run with ``predictions/devel`` counts, trained, fused or
imported. Gold comes from the run's own ``data_root`` (or ``labels``) param unless the
caller names a labels folder.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ser_mlflow import tracking
from ser_mlflow.data import LABELS_FOLDER, DataError, canonical_recording_name, read_avec_csv
from ser_mlflow.tracking.tags import TAG_CHILDREN, TAG_RUN_NAME

PREDICTIONS_DEVEL = "predictions/devel"


@dataclass
class RunPredictions:
    """One run's devel predictions, recording name -> (T, A), and what identifies it."""

    run_id: str
    name: str
    tags: dict[str, str]
    params: dict[str, str]
    metrics: dict[str, float]
    experiment_id: str
    attributes: tuple[str, ...]
    preds: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def seed(self) -> str:
        return self.params.get("seed", "")


@dataclass
class Gold:
    """Gold labels of the development recordings: values, cultures, timestamps."""

    folder: Path
    attributes: tuple[str, ...]
    values: dict[str, np.ndarray]
    cultures: dict[str, str]
    times: dict[str, np.ndarray]


def find_runs(
    *,
    parent_run_id: str = "",
    filter_string: str = "",
    run_ids: Sequence[str] = (),
) -> list[Any]:
    """Runs named by exactly one of: a parent (its children and reused runs), a filter, ids.

    Only FINISHED runs count; the parent itself is left out.

    Raises:
        ValueError: none or several selectors, an unknown run id, or nothing found.
    """
    given = [bool(parent_run_id), bool(filter_string), bool(run_ids)]
    if sum(given) != 1:
        raise ValueError("runs: give exactly one of --parent-run-id, --filter, --run-ids")
    if run_ids:
        runs = [tracking.get_run_or_error(r) for r in run_ids]
        what = f"run ids {', '.join(run_ids)}"
    elif parent_run_id:
        parent = tracking.get_run_or_error(parent_run_id)
        ids = [r for r in parent.data.tags.get(TAG_CHILDREN, "").split(",") if r]
        if ids:
            runs = [tracking.get_run(r) for r in ids]
        else:
            runs = tracking.search_runs(
                filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}'",
                order_by=["attributes.start_time ASC"],
            )
        what = f"children of run {parent_run_id}"
    else:
        runs = tracking.search_runs(filter_string=filter_string,
                                    order_by=["attributes.start_time ASC"])
        what = f"filter {filter_string!r}"
    runs = [r for r in runs if r.info.status == "FINISHED"]
    if not runs:
        raise ValueError(f"runs: no FINISHED runs among the {what}")
    return runs


def load_predictions(run: Any, *, partition: str = "devel") -> RunPredictions:
    """Download and read ``predictions/<partition>/*.csv`` of a run.

    Raises:
        ValueError: the run has no such folder (names the run), or a file is malformed.
    """
    rid = run.info.run_id
    label = run.data.tags.get(TAG_RUN_NAME, rid)
    try:
        folder = tracking.download_artifacts(rid, f"predictions/{partition}")
    except Exception:
        raise ValueError(
            f"run {rid} ({label}): no predictions/{partition}/ artifact; only runs that wrote "
            "development predictions (trained, fusion, imported) can be reported"
        ) from None
    files = sorted(Path(folder).glob("*.csv"))
    if not files:
        raise ValueError(f"run {rid} ({label}): predictions/{partition}/ holds no CSV files")
    preds: dict[str, np.ndarray] = {}
    attrs: tuple[str, ...] = ()
    for f in files:
        _, values, names = read_avec_csv(f)
        if attrs and names != attrs:
            raise DataError(f"{f}: attributes {names} differ from {attrs} in the same run")
        attrs = names
        preds[f.stem] = values
    return RunPredictions(
        run_id=rid, name=label, tags=dict(run.data.tags), params=dict(run.data.params),
        metrics=dict(run.data.metrics), experiment_id=run.info.experiment_id,
        attributes=attrs, preds=preds,
    )


def labels_folder(run: RunPredictions, override: str | Path | None = None) -> Path:
    """Where the run's gold labels live: ``override``, ``<data_root>/labels`` or ``labels``.

    Raises:
        ValueError: the run names none and no override was given.
    """
    if override:
        return Path(override)
    if run.params.get("data_root"):
        return Path(run.params["data_root"]) / LABELS_FOLDER
    if run.params.get("labels"):
        return Path(run.params["labels"])
    raise ValueError(
        f"run {run.run_id} ({run.name}): no data_root or labels param says where its gold "
        "labels are; pass --labels"
    )


def read_gold(folder: Path, names: Sequence[str], attributes: Sequence[str]) -> Gold:
    """Gold labels of the named recordings.

    Raises:
        DataError: missing folder or file, or attributes the files lack.
    """
    if not folder.is_dir():
        raise DataError(f"{folder}: labels folder does not exist")
    values, cultures, times = {}, {}, {}
    for n in names:
        path = folder / f"{n}.csv"
        if not path.is_file():
            raise DataError(f"{path}: no gold labels for recording {n}")
        t, v, _ = read_avec_csv(path, attributes=attributes)
        values[n], times[n] = v, t
        cultures[n] = canonical_recording_name(n, path=path)[2]
    return Gold(folder, tuple(attributes), values, cultures, times)


def aligned(preds: Mapping[str, np.ndarray], gold: Gold, names: Sequence[str]) -> list[np.ndarray]:
    """Predictions cut to their gold length (AVEC pads files to 1768 frames).

    Raises:
        DataError: a prediction shorter than its gold.
    """
    out = []
    for n in names:
        p, g = preds[n], gold.values[n]
        if len(p) < len(g):
            raise DataError(f"{n}: {len(p)} predicted frames, fewer than the {len(g)} gold frames")
        out.append(p[: len(g)])
    return out
