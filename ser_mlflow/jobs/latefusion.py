"""Late-fusion use cases: import external predictions, fuse the top-ranked runs.

`fusion` asks the tracking server (not local state) for the top-N FINISHED runs by a
metric, downloads their ``predictions/`` artifacts with MLflow's artifact API, aligns them
by recording name, fits
:class:`~ser_mlflow.fusion.MultistageSVRFusion` on Devel and logs a
fusion run with its lineage. Under ``protocol=cv`` (default) every reported score is on
recordings the fusion did not fit; ``protocol=paper`` is in-sample, as published, and the
run's tags and printed output say so.
"""

from __future__ import annotations

import json
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ser_mlflow import tracking
from ser_mlflow.data import (
    LABELS_FOLDER,
    DataError,
    canonical_recording_name,
    read_avec_csv,
    write_avec_csv,
)
from ser_mlflow.data.fingerprint import corpus_fingerprint, labels_fingerprint
from ser_mlflow.scoring.metrics import (
    bootstrap_ccc,
    bootstrap_ccc_difference,
    ccc,
    score_recordings,
)
from ser_mlflow.settings import DEFAULT_DATA_ROOT
from ser_mlflow.tracking.tags import (
    TAG_IN_SAMPLE,
    TAG_INPUT_RUNS,
    TAG_LABELS_DIGEST,
    TAG_MODEL_INPUT,
    TAG_PROTOCOL,
    TAG_SKIPPED_RUNS,
)

Echo = Callable[[str], None]
DEFAULT_STAGES = ("unimodal", "bimodal", "external")


def read_folder(folder: Path, *, partition: str | None = None) -> dict[str, np.ndarray]:
    """Every ``<Partition>_<Culture>_<NN>.csv`` of a folder: recording -> (T, A) values.

    Raises:
        DataError: unreadable file, NaN/inf (names the file), duplicate recordings.
    """
    out: dict[str, np.ndarray] = {}
    files = sorted(folder.glob("*.csv"))
    for f in files:
        name = canonical_recording_name(f.stem, path=f)[0]
        if partition and not name.startswith(f"{partition}_"):
            continue
        if name in out:
            raise DataError(f"{f}: duplicate recording {name}")
        values = read_avec_csv(f)[1]
        if not np.all(np.isfinite(values)):
            raise DataError(f"{f}: NaN or inf in predictions")
        out[name] = values
    return out


def read_labels(
    labels: Path, partition: str = "Devel"
) -> tuple[dict[str, np.ndarray], tuple[str, ...], dict[str, np.ndarray]]:
    """Gold labels of a partition: (values, attribute names, timestamps) per recording.

    Raises:
        DataError: missing folder or no label file for the partition.
    """
    if not labels.is_dir():
        raise DataError(f"{labels}: labels folder does not exist")
    golds, times, attrs = {}, {}, None
    for f in sorted(labels.glob(f"{partition}_*.csv")):
        t, v, a = read_avec_csv(f)
        name = canonical_recording_name(f.stem, path=f)[0]
        golds[name], times[name] = v, t
        attrs = attrs or a
    if not golds or attrs is None:
        raise DataError(
            f"{labels}: no label files for partition {partition} "
            f"(expected {partition}_DE_01.csv ...)"
        )
    return golds, attrs, times


def import_predictions(
    *,
    predictions: str | Path,
    labels: str | Path,
    name: str,
    experiment: str = "ser-ces",
    echo: Echo = print,
) -> str:
    """Log a folder of AVEC-format predictions as a ``ser.stage=external`` run.

    Predictions longer than their labels are truncated (AVEC pads to 1768 frames).

    Returns:
        The run id.

    Raises:
        DataError: unreadable files, NaN, or recordings missing from the predictions.
    """
    pred_dir, label_dir = Path(predictions), Path(labels)
    if not pred_dir.is_dir():
        raise DataError(f"{pred_dir}: predictions folder does not exist")
    if not name or "+" in name:
        raise ValueError(f"name: expected a non-empty name without '+', got {name!r}")
    golds, attrs, _ = read_labels(label_dir, "Devel")
    preds = read_folder(pred_dir)
    aligned = _aligned(golds, preds, attrs, pred_dir, label_dir)
    metrics = score_recordings(
        aligned, golds, {r: canonical_recording_name(r)[2] for r in golds}, attrs
    )
    digest = corpus_fingerprint(label_dir.parent) if label_dir.name == LABELS_FOLDER else ""
    tags = {
        tracking.TAG_STAGE: "external",
        tracking.TAG_FEATURE_SETS: name,
        tracking.TAG_DIGEST: digest,
        TAG_LABELS_DIGEST: labels_fingerprint(label_dir),
        TAG_MODEL_INPUT: "predictions",
    }
    with tracking.run_context(experiment=experiment, run_name=name, tags=tags) as run:
        tracking.log_params(
            {
                "predictions": str(pred_dir.resolve()),
                "labels": str(label_dir.resolve()),
                "name": name,
            }
        )
        tracking.log_metrics(metrics)
        with tempfile.TemporaryDirectory() as tmp:
            _write_imported(Path(tmp), preds, golds, attrs)
            tracking.log_artifact_dir(tmp, "predictions")
    echo(
        f"Imported {name}: {len(preds)} prediction files, devel CCC "
        + " / ".join(f"{metrics[f'devel_ccc_{a}']:.3f}" for a in attrs)
        + f" (run {run.info.run_id})"
    )
    return run.info.run_id


def _aligned(
    golds: dict[str, np.ndarray],
    preds: dict[str, np.ndarray],
    attrs: tuple[str, ...],
    pred_dir: Path,
    label_dir: Path,
) -> dict[str, np.ndarray]:
    """Each labelled recording's predictions cut to its labels' length.

    Raises:
        DataError: a recording without predictions, too few frames or wrong attributes.
    """
    missing = sorted(set(golds) - set(preds))
    if missing:
        raise DataError(f"{pred_dir}: no predictions for {missing[:5]} (labels in {label_dir})")
    aligned = {}
    for rec, gold in golds.items():
        p = preds[rec]
        if len(p) < len(gold) or p.shape[1] != len(attrs):
            raise DataError(
                f"{pred_dir / (rec + '.csv')}: expected at least {len(gold)} frames "
                f"x {len(attrs)} attributes, got {p.shape}"
            )
        aligned[rec] = p[: len(gold)]
    return aligned


def _write_imported(
    folder: Path,
    preds: dict[str, np.ndarray],
    golds: dict[str, np.ndarray],
    attrs: tuple[str, ...],
) -> None:
    """Imported predictions as AVEC CSVs per partition (labelled ones cut to the labels)."""
    for part in ("Devel", "Test"):
        sub = {r: v for r, v in preds.items() if r.startswith(f"{part}_")}
        for rec, values in sub.items():
            t = np.arange(len(values)) / 10.0
            v = values[: len(golds[rec])] if rec in golds else values
            write_avec_csv(folder / part.lower() / f"{rec}.csv", rec, t[: len(v)], v, attrs)


@dataclass
class FusionResult:
    run_id: str
    input_runs: list[str]
    skipped: list[str]
    stage_scores: np.ndarray
    metrics: dict[str, float] = field(default_factory=dict)


def default_filters(data_root: str | Path) -> list[str]:
    """One filter per default stage (MLflow's tag filters have no IN).

    Trained runs are found by the data root they read; imported predictions also by the
    Devel labels they were scored on (``ser.labels_digest``), wherever that folder was.
    """
    digest = corpus_fingerprint(data_root)
    labels = Path(data_root) / LABELS_FOLDER
    by_labels = (
        [f"tags.`{tracking.TAG_STAGE}` = 'external' and tags.`{TAG_LABELS_DIGEST}` = "
         f"'{labels_fingerprint(labels)}'"] if labels.is_dir() else []
    )
    return [
        f"tags.`{tracking.TAG_STAGE}` = '{stage}' and tags.`{tracking.TAG_DIGEST}` = '{digest}'"
        for stage in DEFAULT_STAGES
    ] + by_labels


def _nothing_found(data_root: Path, rank_metric: str) -> str:
    """The default query found nothing: say what it looked for and how to get inputs."""
    return (
        f"data_root: no FINISHED unimodal, bimodal or imported run with {rank_metric!r} on "
        f"{data_root} (trained runs are matched by the data root, imported predictions by "
        f"the Devel labels in {data_root / LABELS_FOLDER}); train some (`ser-mlflow "
        f"unimodal --data-root {data_root}`), import predictions scored on those labels "
        f"(`ser-mlflow import-predictions --labels {data_root / LABELS_FOLDER} ...`), or "
        "pick runs with --filter"
    )


def _parse_grid(values: str | Sequence[float], cast: Callable[[str], Any], name: str) -> list:
    if isinstance(values, str):
        try:
            out = [cast(v) for v in values.split(",") if v.strip()]
        except ValueError:
            raise ValueError(f"{name}: expected numbers joined by ',', got {values!r}") from None
    else:
        out = list(values)
    if not out:
        raise ValueError(f"{name}: the grid is empty")
    return out


def _raw_inputs(run_ids: list[str], labels: list[str]) -> list[dict[str, Any]] | None:
    """When every input run has a raw-feature model: what the fusion model packs inside."""
    runs = [tracking.get_run(r) for r in run_ids]
    if not all(r.data.tags.get(TAG_MODEL_INPUT) == "raw" for r in runs):
        return None
    specs = []
    for rid, label in zip(run_ids, labels, strict=True):
        uri = f"runs:/{rid}/model"
        meta = tracking.load_pyfunc(uri).unwrap_python_model().meta
        specs.append(
            {"system": label, "model_uri": uri, "feature_columns": list(meta.feature_columns)}
        )
    return specs


def _selection(value: str) -> Any:
    """``all``, ``same``, ``auto`` or one per attribute joined by ',' (``same,same,all``)."""
    parts = [p.strip() for p in value.split(",") if p.strip()]
    return parts[0] if len(parts) == 1 else tuple(parts)


# Over 80 lines because of its 24 keyword options and their docstring; the body is the
# sequence of steps below (inputs from the server, estimator, fit, log, report).
def run_fusion(
    *,
    data_root: str | Path = DEFAULT_DATA_ROOT,
    top_n: int = 11,
    rank_metric: str = "devel_ccc_mean",
    filter_string: str | None = None,
    protocol: str = "cv",
    n_stages: int | None = None,
    contexts: str | Sequence[int] = (11, 13, 15, 17, 19),
    complexities: str | Sequence[float] = (0.001, 0.01, 0.1, 1.0),
    n_splits: int = 5,
    calibrate: bool = False,
    context: str = "frames",
    input_selection: str = "all",
    stage_inputs: str = "oof",
    loss: str = "squared_epsilon_insensitive",
    solver: str = "exact",
    windows: str = "clean",
    max_iter: int = 1000,
    n_jobs: int = -1,
    recipes: str = "auto",
    prune_stages: bool = True,
    seed: int = 0,
    experiment: str = "ser-ces",
    echo: Echo = print,
) -> FusionResult:
    """Fuse the top-N runs' devel predictions and log a ``ser.stage=fusion`` run.

    ``n_stages``: None means 5 under ``paper`` (published) and 1 under ``cv``.
    ``recipes``: ``auto`` lets the cross-validation choose the recipe per fold and
    attribute among ``fusion.RECIPES``; ``flags`` fixes it to ``context``, ``calibrate``,
    ``input_selection`` and ``stage_inputs`` (chosen automatically when one of them is set
    away from its default); or recipe names joined by ','. ``seed`` seeds liblinear and the
    bootstrap intervals.

    Raises:
        ValueError: bad options, fewer than two usable inputs, recordings that differ
            between inputs (names the run and file), NaN predictions.
    """
    from ser_mlflow.fusion import stack_recordings

    if protocol not in ("cv", "paper"):
        raise ValueError(f"protocol: expected cv or paper, got {protocol!r}")
    if n_stages is None:
        # Five stages is the published procedure; under cv, later stages did not pay out of
        # fold on the AVEC set (README, "Fusion"), so one stage unless asked for more.
        n_stages = 5 if protocol == "paper" else 1
    if n_stages < 1:
        raise ValueError(f"n_stages: expected at least 1 stage, got {n_stages}")
    if top_n < 2:
        raise ValueError(f"top_n: fusion needs at least 2 inputs, got {top_n}")
    ks = _parse_grid(contexts, int, "contexts")
    cs = _parse_grid(complexities, float, "complexities")
    recipes = _recipes_by_flags(
        recipes, protocol, echo, context=context, calibrate=calibrate,
        input_selection=input_selection, stage_inputs=stage_inputs,
    )  # fmt: skip
    settings = {
        "top_n": top_n, "rank_metric": rank_metric, "protocol": protocol,
        "n_stages": n_stages, "contexts": ks, "complexities": cs, "n_splits": n_splits,
        "calibrate": calibrate, "context": context, "input_selection": input_selection,
        "stage_inputs": stage_inputs, "loss": loss, "solver": solver, "windows": windows,
        "max_iter": max_iter, "n_jobs": n_jobs, "recipes": recipes,
        "prune_stages": prune_stages, "seed": seed,
    }  # fmt: skip
    est = _estimator(settings)
    est._check_params()  # every option is refused before the store is asked for runs
    root = Path(data_root)
    golds, attrs, times = read_labels(root / LABELS_FOLDER, "Devel")
    inputs = _resolve_inputs(root, golds, filter_string, rank_metric, top_n, echo)
    X, y, groups = stack_recordings(golds, inputs.systems)
    raw_inputs = _raw_inputs(inputs.used, list(inputs.systems))
    note = _protocol_note(protocol, n_splits)
    _echo_plan(echo, settings, inputs, note)
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est.fit(X, y, groups=groups)
    fit_seconds = time.perf_counter() - started
    for message in dict.fromkeys(str(w.message) for w in caught):  # once each, one line
        echo(f"  note: {message}")
    fused = _Fused(est, X, y, groups, golds, attrs, times, fit_seconds)
    with tracking.run_context(
        experiment=experiment, run_name=f"fusion-{protocol}-{n_stages}st",
        tags=_fusion_tags(root, protocol, inputs, raw_inputs, note),
    ) as run:  # fmt: skip
        tracking.log_params(
            {k: v for k, v in settings.items() if k not in ("n_jobs", "contexts", "complexities")}
            | {"filter": inputs.filter, "contexts": ",".join(map(str, ks)),
               "complexities": ",".join(map(str, cs)), "data_root": str(root),
               "n_inputs": len(inputs.used)}
        )  # fmt: skip
        metrics = _log_scores(fused, settings)
        intervals = fusion_intervals(
            X, y, groups, est.stage_predictions_[-1], fused.cultures, list(inputs.systems),
            attrs, seed=seed,
        )  # fmt: skip
        tracking.log_metrics(intervals.metrics())
        _log_outputs(fused, inputs)
        _log_plots(fused, settings, intervals)
        tracking.log_fusion_model(
            est,
            system_labels=list(inputs.systems),
            attributes=list(attrs),
            input_runs=inputs.used,
            raw_inputs=raw_inputs,
        )
    _echo_scores(echo, est, attrs, protocol == "paper")
    for line in intervals.table():
        echo(line)
    in_sample = protocol == "paper"
    echo(f"fusion run {run.info.run_id} ({'in-sample, paper protocol' if in_sample else 'cv'})")
    from ser_mlflow import views

    for line in views.publish_fusion_view(run.info.run_id).lines():
        echo(line)
    metrics.update(intervals.metrics())
    scores = np.asarray(est.stage_scores_)
    return FusionResult(run.info.run_id, inputs.used, inputs.skipped, scores, metrics)


def _recipes_by_flags(recipes: str, protocol: str, echo: Echo, **flags: Any) -> str:
    """``auto`` becomes ``flags`` under cv when a recipe flag is set away from its default."""
    defaults = {
        "context": "frames", "calibrate": False, "input_selection": "all",
        "stage_inputs": "oof",
    }  # fmt: skip
    set_flags = [name for name, default in defaults.items() if flags[name] != default]
    if recipes == "auto" and set_flags and protocol == "cv":
        echo(f"Recipe fixed by {', '.join(set_flags)} (recipes=flags)")
        return "flags"
    return recipes


def _recipe_arg(recipes: str) -> Any:
    """The estimator's ``recipes``: None (the flags), 'auto' or a tuple of names."""
    if recipes in ("auto", "flags"):
        return None if recipes == "flags" else "auto"
    return tuple(r.strip() for r in recipes.split(",") if r.strip())


def _estimator(settings: dict[str, Any]) -> Any:
    """The fusion estimator of the settings (plain CLI strings; it validates every one)."""
    from ser_mlflow.fusion import MultistageSVRFusion

    slow = settings["solver"] == "liblinear" or settings["loss"] == "epsilon_insensitive"
    return MultistageSVRFusion(
        n_stages=settings["n_stages"],
        contexts=settings["contexts"],
        complexities=settings["complexities"],
        n_splits=settings["n_splits"],
        calibrate=settings["calibrate"],
        loss=settings["loss"],
        max_iter=settings["max_iter"],
        n_jobs=settings["n_jobs"],
        recipes=_recipe_arg(settings["recipes"]),
        prune_stages=settings["prune_stages"],
        random_state=settings["seed"],
        verbose=2 if slow else 1,
        protocol=settings["protocol"],
        context=settings["context"],
        input_selection=_selection(settings["input_selection"]),
        stage_inputs=settings["stage_inputs"],
        solver=settings["solver"],
        windows=settings["windows"],
    )


@dataclass
class _Inputs:
    """The runs fused: devel (and test) predictions per system label, in rank order."""

    filter: str
    systems: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    tests: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    used: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _resolve_inputs(
    root: Path,
    golds: dict[str, np.ndarray],
    filter_string: str | None,
    rank_metric: str,
    top_n: int,
    echo: Echo,
) -> _Inputs:
    """Ask the tracking server for the top-N FINISHED runs and read their predictions."""
    filters = [filter_string] if filter_string else default_filters(root)
    inputs = _Inputs(filter=" | ".join(filters))
    found = {
        r.info.run_id: r
        for f in filters
        for r in tracking.search_runs(filter_string=f"{f} and attributes.status = 'FINISHED'")
        if rank_metric in r.data.metrics and r.data.tags.get(tracking.TAG_STAGE) != "fusion"
    }
    runs = sorted(found.values(), key=lambda r: -r.data.metrics[rank_metric])
    if not runs and not filter_string:
        raise ValueError(_nothing_found(root, rank_metric))
    if not runs:
        raise ValueError(
            f"filter: no FINISHED run with metric {rank_metric!r} matches {inputs.filter!r}"
        )
    with tempfile.TemporaryDirectory() as tmp:
        for run in runs:
            if len(inputs.used) == top_n:
                break
            _read_run(run, Path(tmp), golds, inputs, echo)
    if len(inputs.used) < 2:
        raise ValueError(
            f"top_n: fusion needs at least 2 runs with predictions; found "
            f"{len(inputs.used)} matching {inputs.filter!r}"
        )
    return inputs


def _read_run(
    run: Any, tmp: Path, golds: dict[str, np.ndarray], inputs: _Inputs, echo: Echo
) -> None:
    """One ranked run's predictions into ``inputs`` (skipped with a warning without any)."""
    rid = run.info.run_id
    label = f"{run.data.tags.get(tracking.TAG_FEATURE_SETS, rid[:8])}#{rid[:6]}"
    try:
        folder = tracking.download_artifacts(rid, "predictions", tmp / rid)
    except Exception as exc:  # no artifacts: skip with a warning, as documented
        echo(f"  ! skipping run {rid} ({label}): no predictions/ artifacts ({exc})")
        inputs.skipped.append(rid)
        return
    try:
        devel = read_folder(folder / "devel", partition="Devel")
    except DataError as exc:
        raise ValueError(f"run {rid} ({label}): {exc}") from None
    missing = sorted(set(golds) - set(devel))
    if missing:
        raise ValueError(
            f"run {rid} ({label}): no devel predictions for {missing[:5]} "
            f"(expected {missing[0]}.csv under predictions/devel)"
        )
    inputs.systems[label] = devel
    if (folder / "test").is_dir():
        inputs.tests[label] = read_folder(folder / "test", partition="Test")
    inputs.used.append(rid)


def _protocol_note(protocol: str, n_splits: int) -> str:
    if protocol == "paper":
        return (
            "IN-SAMPLE (protocol=paper): fitted, chosen and scored on the same devel frames, "
            "as published; not an estimate of performance on new recordings"
        )
    return (
        f"cross-validated over recordings ({n_splits} folds, nested): every score is on "
        "recordings the fusion did not fit"
    )


def _echo_plan(echo: Echo, settings: dict[str, Any], inputs: _Inputs, note: str) -> None:
    echo(
        f"Fusing {len(inputs.used)} runs by {settings['rank_metric']}: "
        f"{', '.join(inputs.systems)}"
    )
    echo(f"Protocol: {note}")
    loss, solver, windows = settings["loss"], settings["solver"], settings["windows"]
    echo(f"SVR: loss {loss}, solver {solver}, windows {windows}")
    recipes, prune = settings["recipes"], settings["prune_stages"]
    if settings["protocol"] != "paper" and (_recipe_arg(recipes) is not None or prune):
        echo(
            f"Recipe: {'the flags' if _recipe_arg(recipes) is None else recipes} per outer "
            "fold and attribute by an inner CV grouped by recording"
            + (f"; at most {settings['n_stages']} stages, each kept only while the inner CV "
               "improves" if prune else "")
        )  # fmt: skip


def _fusion_tags(
    root: Path, protocol: str, inputs: _Inputs, raw_inputs: Any, note: str
) -> dict[str, str]:
    return {
        tracking.TAG_STAGE: "fusion",
        tracking.TAG_DIGEST: corpus_fingerprint(root),
        tracking.TAG_FEATURE_SETS: "fusion("
        + ",".join(s.split("#")[0] for s in inputs.systems)
        + ")",
        TAG_PROTOCOL: protocol,
        TAG_IN_SAMPLE: str(protocol == "paper").lower(),
        TAG_INPUT_RUNS: ",".join(inputs.used),
        TAG_SKIPPED_RUNS: ",".join(inputs.skipped) or "none",
        TAG_MODEL_INPUT: "raw" if raw_inputs else "predictions",
        "mlflow.note.content": note,
    }


@dataclass
class _Fused:
    """A fitted fusion and the devel data it was fitted on."""

    est: Any
    X: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    golds: dict[str, np.ndarray]
    attrs: tuple[str, ...]
    times: dict[str, np.ndarray]
    fit_seconds: float

    @property
    def cultures(self) -> dict[str, str]:
        return {r: canonical_recording_name(r)[2] for r in self.golds}


def _log_scores(fused: _Fused, settings: dict[str, Any]) -> dict[str, float]:
    """Chosen recipes and grid points as params, per-stage devel scores as metrics."""
    est, attrs = fused.est, fused.attrs
    tracking.log_params(
        {f"recipe_{a}": r for a, r in zip(attrs, est.recipes_, strict=True)}
        | {f"stages_kept_{a}": n for a, n in zip(attrs, est.stages_kept_, strict=True)}
    )
    for s, stage_choice in enumerate(est.chosen_):
        for a, kc in zip(attrs, stage_choice, strict=True):
            if kc is not None:  # None: beyond the stages this attribute kept
                name = f"stage{s + 1}_{a}"
                tracking.log_params({f"{name}_k": kc[0], f"{name}_C": kc[1]})
    metrics: dict[str, float] = {}
    for s in range(settings["n_stages"]):
        preds = {rec: est.stage_predictions_[s][fused.groups == rec] for rec in fused.golds}
        metrics = score_recordings(preds, fused.golds, fused.cultures, attrs, prefix="devel_")
        tracking.log_metrics(metrics, step=s + 1)
    # iterations: liblinear reaching max_iter means it stopped unconverged (published)
    tracking.log_metrics({"fusion_fit_seconds": fused.fit_seconds, "fusion_n_iter": est.n_iter_})
    return metrics


def _log_outputs(fused: _Fused, inputs: _Inputs) -> None:
    """The fused devel (and, when every input has them, test) predictions and reports."""
    est, attrs, systems = fused.est, fused.attrs, inputs.systems
    final = {rec: est.stage_predictions_[-1][fused.groups == rec] for rec in fused.golds}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "predictions"
        for rec, values in final.items():
            write_avec_csv(out / "devel" / f"{rec}.csv", rec, fused.times[rec], values, attrs)
        if len(inputs.tests) == len(systems) and inputs.tests:
            _write_test_predictions(est, inputs, out / "test", attrs)
        tracking.log_artifact_dir(out, "predictions")
        (Path(tmp) / "chosen.json").write_text(
            json.dumps(
                {
                    "chosen": [
                        [None if kc is None else list(map(float, kc)) for kc in st]
                        for st in est.chosen_
                    ],
                    "stage_scores": np.asarray(est.stage_scores_).tolist(),
                    "inputs": dict(zip(systems, inputs.used, strict=True)),
                },
                indent=1,
            )
        )
        tracking.log_text((Path(tmp) / "chosen.json").read_text(), "fusion/chosen.json")
        tracking.log_text(json.dumps(recipe_report(est, attrs), indent=1), "fusion/recipes.json")


def _write_test_predictions(est: Any, inputs: _Inputs, out: Path, attrs: tuple[str, ...]) -> None:
    """Fuse the Test recordings every input predicted (cut to the shortest input)."""
    tests, systems = inputs.tests, inputs.systems
    common = sorted(set.intersection(*(set(t) for t in tests.values())))
    if not common:
        return
    lengths = {r: min(len(t[r]) for t in tests.values()) for r in common}
    Xt = np.vstack([np.hstack([tests[s][r][: lengths[r]] for s in systems]) for r in common])
    gt = np.concatenate([np.full(lengths[r], r, dtype=object) for r in common])
    pt = est.predict(Xt, groups=gt)
    for r in common:
        write_avec_csv(out / f"{r}.csv", r, np.arange(lengths[r]) / 10.0, pt[gt == r], attrs)


def _log_plots(fused: _Fused, settings: dict[str, Any], intervals: FusionIntervals) -> None:
    from ser_mlflow.scoring import plots

    in_sample = settings["protocol"] == "paper"
    loss = "absolute" if settings["loss"] == "epsilon_insensitive" else "squared"
    tracking.log_figure(
        plots.fusion_stages(
            np.asarray(fused.est.stage_scores_),
            fused.attrs,
            title=(
                f"Multistage fusion, {'paper protocol (in-sample)' if in_sample else 'cv'}\n"
                f"{loss} loss, {settings['solver']} solver, {settings['windows']} windows"
            ),
        ),
        "plots/ccc_per_stage.png",
    )
    tracking.log_figure(
        plots.fusion_intervals(
            intervals,
            title=f"Fusion vs its inputs, {'in-sample' if in_sample else 'cv'}: 95% "
            "bootstrap over recordings",
        ),
        "plots/ccc_intervals.png",
    )


def _echo_scores(echo: Echo, est: Any, attrs: tuple[str, ...], in_sample: bool) -> None:
    scores = np.asarray(est.stage_scores_)
    echo(f"\n{'stage':<7}" + "".join(f"{a:>10}" for a in attrs) + f"{'mean':>10}")
    for s, row in enumerate(scores, start=1):
        echo(f"{s:<7}" + "".join(f"{v:>10.3f}" for v in row) + f"{row.mean():>10.3f}")
    if not in_sample and est.fold_choices_:
        echo("recipe / stages kept: " + ", ".join(
            f"{a} {r}/{n}" for a, r, n in zip(attrs, est.recipes_, est.stages_kept_, strict=True)
        ) + "  (per outer fold: fusion/recipes.json)")  # fmt: skip


@dataclass
class FusionIntervals:
    """Fused CCC and its paired gains over the best single input and the plain mean, each
    with a 95 % bootstrap interval over recordings resampled within culture."""

    attributes: tuple[str, ...]
    fused: np.ndarray  # (3, A): estimate, low, high
    best_single: np.ndarray  # (A,) CCC of the best single input
    best_names: list[str]
    mean: np.ndarray  # (A,) CCC of the plain mean of the inputs
    gain_best: np.ndarray  # (4, A): difference, low, high, p
    gain_mean: np.ndarray  # (4, A)
    n_boot: int
    seed: int

    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for j, a in enumerate(self.attributes):
            out[f"devel_ccc_{a}_ci_low"] = float(self.fused[1, j])
            out[f"devel_ccc_{a}_ci_high"] = float(self.fused[2, j])
            out[f"devel_best_single_ccc_{a}"] = float(self.best_single[j])
            out[f"devel_mean_inputs_ccc_{a}"] = float(self.mean[j])
            for ref, g in (("best_single", self.gain_best), ("mean", self.gain_mean)):
                key = f"devel_gain_{ref}_ccc_{a}"
                out[key] = float(g[0, j])
                out[f"{key}_ci_low"] = float(g[1, j])
                out[f"{key}_ci_high"] = float(g[2, j])
                out[f"{key}_p"] = float(g[3, j])
        return out

    def table(self) -> list[str]:
        """Console lines; a gain whose interval includes 0 says so."""
        w = 34  # room for "+0.000 [+0.000, +0.000] incl. 0" and a gap
        head = (
            f"\ndevel CCC, 95% bootstrap interval over recordings (resampled within culture, "
            f"{self.n_boot} resamples, seed {self.seed}):"
        )
        lines = [head, f"  {'':<22}" + "".join(f"{a:<{w}}" for a in self.attributes)]

        def cell(v: float, lo: float, hi: float, sign: str = "") -> str:
            return f"{v:{sign}.3f} [{lo:{sign}.3f}, {hi:{sign}.3f}]"

        lines.append(f"  {'fused':<22}" + "".join(
            f"{cell(*self.fused[:, j]):<{w}}" for j in range(len(self.attributes))))
        lines.append(f"  {'best single input':<22}" + "".join(
            f"{f'{v:.3f} ({n})':<{w}}" for v, n in zip(self.best_single, self.best_names,
                                                        strict=True)))
        lines.append(f"  {'mean of the inputs':<22}" + "".join(
            f"{v:<{w}.3f}" for v in self.mean))
        for label, g in (("gain vs best single", self.gain_best),
                         ("gain vs mean", self.gain_mean)):
            cells = []
            for j in range(len(self.attributes)):
                text = cell(g[0, j], g[1, j], g[2, j], "+")
                if g[1, j] <= 0.0 <= g[2, j]:
                    text += " incl. 0"
                cells.append(f"{text:<{w}}")
            lines.append(f"  {label:<22}" + "".join(cells))
        return [line.rstrip() for line in lines]  # fmt: skip


#: Bootstrap resamples of the intervals every fusion run logs.
N_BOOT = 2000


def fusion_intervals(
    X: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    fused: np.ndarray,
    cultures: dict[str, str],
    systems: list[str],
    attributes: Sequence[str],
    *,
    seed: int,
    n_boot: int = N_BOOT,
) -> FusionIntervals:
    """Intervals of the fused devel CCC and its gains, X laid out system-major.

    The best single input is, per attribute, the system whose own prediction of that
    attribute scores highest on these frames; the plain mean averages every system's
    prediction of it. Both are paired with the fused predictions on the same resamples.
    """
    A = y.shape[1]
    recs = list(dict.fromkeys(groups.tolist()))
    rows = [groups == r for r in recs]
    strata = [cultures[r] for r in recs]
    golds = [y[m] for m in rows]
    fused_r = [fused[m] for m in rows]
    n_sys = X.shape[1] // A
    single = np.array([[ccc(X[:, s * A + a], y[:, a]) for a in range(A)] for s in range(n_sys)])
    best = single.argmax(axis=0)
    best_pred = np.stack([X[:, best[a] * A + a] for a in range(A)], axis=1)
    mean_pred = np.stack([X[:, a::A].mean(axis=1) for a in range(A)], axis=1)
    kw = {"n_boot": n_boot, "seed": seed}
    fused_ci = np.stack(bootstrap_ccc(fused_r, golds, strata, **kw))
    gains = [
        np.stack(bootstrap_ccc_difference(fused_r, [ref[m] for m in rows], golds, strata, **kw))
        for ref in (best_pred, mean_pred)
    ]
    return FusionIntervals(
        attributes=tuple(attributes),
        fused=fused_ci,
        best_single=single.max(axis=0),
        best_names=[systems[int(i)].split("#")[0] for i in best],
        mean=np.array([ccc(mean_pred[:, a], y[:, a]) for a in range(A)]),
        gain_best=gains[0],
        gain_mean=gains[1],
        n_boot=n_boot,
        seed=seed,
    )


def recipe_report(est: Any, attributes: Sequence[str]) -> dict[str, Any]:
    """What the fusion chose, per outer fold and for the final model (JSON-ready)."""
    from ser_mlflow.fusion import RECIPES

    def named(choices: list[dict[str, Any]]) -> dict[str, Any]:
        return dict(zip(attributes, choices, strict=True))

    return {
        "final": {
            a: {"recipe": r, "stages": int(n)}
            for a, r, n in zip(attributes, est.recipes_, est.stages_kept_, strict=True)
        },
        "final_inner": named(est.final_choice_) if est.final_choice_ else {},
        "folds": [named(f) for f in est.fold_choices_],
        "recipes": RECIPES,
    }
