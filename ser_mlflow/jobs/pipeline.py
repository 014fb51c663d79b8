"""Sweeps: unimodal, bimodal, compare, delay; the reuse keys every step is found by.

Every step is a parent run (``ser.stage=pipeline``) whose children are ordinary training
runs. A training run is identified by a key over entry point, string-normalised params,
code version and corpus fingerprint (``ser.run_key``); a step by the same over its own
params (``ser.step_key``). Finished runs with the same key are reused instead of rerun,
unless ``force``. The corpus fingerprint is part of every query, so runs of different
data roots never mix.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ser_mlflow import tracking, views
from ser_mlflow.data import list_feature_sets
from ser_mlflow.data.fingerprint import corpus_fingerprint
from ser_mlflow.settings import LOSS_PRESETS, LossConfig, TrainConfig
from ser_mlflow.tracking.tags import (
    TAG_CHILDREN,
    TAG_CODE_VERSION,
    TAG_FAILURES,
    TAG_INTERVALS_ERROR,
    TAG_PARENT_STEP,
    TAG_REUSED_RUNS,
    TAG_RUN_KEY,
    TAG_STEP,
    TAG_STEP_KEY,
)

Echo = Callable[[str], None]
ATTRS_DEFAULT = ("arousal", "valence", "liking")


#: Modules whose source determines what a training run produces.
TRAINING_CODE = (
    "settings.py",
    "data",
    "nn",
    "scoring/metrics.py",
    "models/pyfunc.py",
    "jobs/train.py",
)


#: Modules whose source determines what a fusion run produces (with the data readers).
FUSION_CODE = ("data", "fusion", "jobs/latefusion.py", "scoring/metrics.py")


@functools.cache
def code_version(modules: tuple[str, ...] = TRAINING_CODE) -> str:
    """Hash of the source that trains and scores: a change there invalidates reuse.

    Computed once per process: what counts is the code this process imported and runs.
    Orchestration, CLI and plotting code are left out on purpose: editing them does not
    change a run's numbers, so it should not force hours of retraining.
    """
    h = hashlib.sha256()
    pkg = Path(__file__).parent.parent
    for name in modules:
        if not (pkg / name).exists():  # a moved module must not silently leave the hash
            raise FileNotFoundError(f"code_version: {pkg / name} is gone; update the list")
        for path in sorted((pkg / name).rglob("*.py")) if (pkg / name).is_dir() else [pkg / name]:
            h.update(path.relative_to(pkg).as_posix().encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


def normalise_params(params: Mapping[str, Any]) -> dict[str, str]:
    """Params as the strings MLflow stores, with numbers in one canonical spelling."""
    out = {}
    for k, v in sorted(params.items()):
        if isinstance(v, bool):
            out[k] = str(v).lower()
            continue
        try:
            f = float(v)
            out[k] = repr(int(f)) if f.is_integer() and "." not in str(v) else repr(f)
        except (TypeError, ValueError):
            out[k] = str(v)
    return out


def make_key(entry_point: str, params: Mapping[str, Any], fingerprint: str) -> str:
    blob = json.dumps(
        {
            "entry_point": entry_point,
            "params": normalise_params(params),
            "code": code_version(),
            "data": fingerprint,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def find_finished(key_tag: str, key: str, experiment_id: str | None = None) -> str | None:
    """Id of the newest FINISHED run carrying ``key_tag = key`` (paged search).

    With ``experiment_id`` only runs of that experiment count: a step reuses runs of its
    own experiment, so its view (one experiment's runs page) shows every run it used.
    """
    runs = tracking.search_runs(
        experiment_ids=[experiment_id] if experiment_id else None,
        filter_string=f"tags.`{key_tag}` = '{key}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


@dataclass
class ChildOutcome:
    label: str
    cfg: TrainConfig
    run_id: str | None
    status: str  # FINISHED, REUSED, FAILED
    metrics: dict[str, float] = field(default_factory=dict)
    error: str = ""


def train_child(
    cfg: TrainConfig,
    *,
    stage: str,
    fingerprint: str,
    force: bool,
    label: str,
    extra_tags: Mapping[str, str] | None = None,
    echo: Echo = print,
) -> ChildOutcome:
    """Train one child run under the active parent, or reuse an identical finished run.

    A failure is recorded on the child (FAILED, with the error) and returned, not raised,
    so that a sweep goes on; Ctrl-C still stops everything.
    """
    if not force and (reused := reused_child(cfg, stage=stage, fingerprint=fingerprint,
                                             label=label)):
        return reused
    return train_new_child(cfg, stage=stage, fingerprint=fingerprint, label=label,
                           extra_tags=extra_tags, echo=echo)


def _child_key(cfg: TrainConfig, stage: str, fingerprint: str) -> str:
    return make_key("train", {**cfg.to_params(), "stage": stage}, fingerprint)


def reused_child(cfg: TrainConfig, *, stage: str, fingerprint: str, label: str
                 ) -> ChildOutcome | None:
    """The newest FINISHED identical run of the parent's experiment, if there is one."""
    experiment_id = tracking.experiment_for(cfg.experiment)  # the parent's
    rid = find_finished(TAG_RUN_KEY, _child_key(cfg, stage, fingerprint), experiment_id)
    if not rid:
        return None
    return ChildOutcome(label, cfg, rid, "REUSED", dict(tracking.get_run(rid).data.metrics))


def train_new_child(
    cfg: TrainConfig,
    *,
    stage: str,
    fingerprint: str,
    label: str,
    extra_tags: Mapping[str, str] | None = None,
    echo: Echo = print,
) -> ChildOutcome:
    """Train one child run (nested under the active run, or under ``mlflow.parentRunId``
    of ``extra_tags`` in a child process); a failure comes back as a FAILED outcome."""
    from ser_mlflow.jobs.train import run_training

    key = _child_key(cfg, stage, fingerprint)
    tags = {
        TAG_RUN_KEY: key,
        tracking.TAG_DIGEST: fingerprint,
        TAG_CODE_VERSION: code_version(),
        **(extra_tags or {}),
    }
    try:
        res = run_training(
            cfg,
            run_name=label,
            stage=stage,
            extra_tags=tags,
            nested=True,
            progress=False,
            echo=lambda s: None,
            prepare_in_run=True,
        )
        return ChildOutcome(label, cfg, res.run_id, "FINISHED", res.metrics)
    except Exception as exc:  # a failed child must not stop the sweep
        msg = f"{type(exc).__name__}: {exc}"
        echo(f"  ! {label} failed: {msg}")
        return ChildOutcome(label, cfg, _failed_run(key), "FAILED", error=msg)


def _failed_run(key: str) -> str | None:
    failed = tracking.search_runs(
        filter_string=f"tags.`ser.run_key` = '{key}' and attributes.status = 'FAILED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return failed[0].info.run_id if failed else None


def _train_in_process(cfg: TrainConfig, stage: str, fingerprint: str, label: str,
                      extra_tags: dict[str, str]) -> ChildOutcome:
    """One child in its own process (:mod:`children`); module-level so it pickles."""
    return train_new_child(cfg, stage=stage, fingerprint=fingerprint, label=label,
                           extra_tags=extra_tags, echo=lambda s: None)


def outcomes_table(outcomes: Sequence[ChildOutcome], *, rank_metric: str) -> pd.DataFrame:
    """One row per child with the devel CCC columns, ranked by ``rank_metric``."""
    rows = []
    for o in outcomes:
        row: dict[str, Any] = {
            "run": o.label,
            "feature_sets": "+".join(o.cfg.feature_sets),
            "loss": o.cfg.loss.name,
            "seed": o.cfg.seed,
            "status": o.status,
            "run_id": o.run_id or "",
        }
        for a in (*ATTRS_DEFAULT, "mean"):
            row[f"devel_ccc_{a}"] = o.metrics.get(f"devel_ccc_{a}", np.nan)
        if rank_metric not in row:
            row[rank_metric] = o.metrics.get(rank_metric, np.nan)
        row["error"] = o.error
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    df = df.sort_values(rank_metric, ascending=False, na_position="last").reset_index(drop=True)
    df.insert(0, "rank", range(1, len(df) + 1))
    return df


def print_table(df: pd.DataFrame, echo: Echo, columns: Sequence[str]) -> None:
    cols = [c for c in columns if c in df.columns]
    echo(df[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))


@dataclass
class StepResult:
    step: str
    parent_run_id: str
    table: pd.DataFrame
    outcomes: list[ChildOutcome]
    reused: bool = False

    @property
    def failures(self) -> list[ChildOutcome]:
        return [o for o in self.outcomes if o.status == "FAILED"]


def _sweep(
    step: str,
    configs: Sequence[tuple[str, TrainConfig, str]],
    *,
    base: TrainConfig,
    step_params: Mapping[str, Any],
    rank_metric: str,
    force: bool,
    echo: Echo,
    after: Callable[[StepResult], None] | None = None,
    jobs: int = 1,
) -> StepResult:
    """Run children (label, config, stage) under one parent run; log the ranking.

    ``jobs`` > 1 trains that many children at once, each in its own process
    (:mod:`ser_mlflow.jobs.children`); the runs logged are the same as with 1.
    """
    fingerprint = corpus_fingerprint(base.data_root)
    step_key = make_key(step, step_params, fingerprint)
    # under `mlflow run` the run MLflow created decides (a conflicting name is refused here,
    # before anything trains); parent, children and view all live in this experiment
    experiment_id = tracking.experiment_for(base.experiment)
    if not force and (rid := find_finished(TAG_STEP_KEY, step_key, experiment_id)):
        return _reuse_step(step, rid, rank_metric=rank_metric, echo=echo)
    tags = {
        tracking.TAG_STAGE: "pipeline",
        TAG_STEP: step,
        TAG_STEP_KEY: step_key,
        tracking.TAG_DIGEST: fingerprint,
        TAG_CODE_VERSION: code_version(),
    }
    with tracking.run_context(experiment=base.experiment, run_name=f"{step}", tags=tags) as run:
        tracking.log_params(
            {k: v for k, v in step_params.items() if k != "data_root"}
            | {"data_root": str(base.data_root)}
        )
        outcomes = _train_children(step, configs, fingerprint=fingerprint, force=force,
                                   echo=echo, jobs=jobs, parent_run_id=run.info.run_id)
        table = _log_step(outcomes, rank_metric=rank_metric)
        result = StepResult(step, run.info.run_id, table, outcomes)
        if after is not None:
            after(result)
        # a saved MLflow UI view of this step (never raises: a view is a convenience)
        published = views.publish_step_view(step, result.parent_run_id, rank_metric=rank_metric)
    _echo_step(result, echo)
    for line in published.lines():
        echo(line)
    return result


def _reuse_step(step: str, rid: str, *, rank_metric: str, echo: Echo) -> StepResult:
    table = pd.read_csv(tracking.download_artifacts(rid, "ranking.csv"))
    echo(f"[{step}] reusing finished run {rid} (same params, code and data)")
    lines = views.publish_step_view(step, rid, rank_metric=rank_metric).lines()
    for line in lines:
        echo(line)
    tracking.note_launched_reuse(rid, step=step, lines=lines)
    return StepResult(step, rid, table, [], reused=True)


def _train_children(
    step: str,
    configs: Sequence[tuple[str, TrainConfig, str]],
    *,
    fingerprint: str,
    force: bool,
    echo: Echo,
    jobs: int,
    parent_run_id: str,
) -> list[ChildOutcome]:
    """Every child's outcome, in ``configs`` order: reused, or trained here or in processes."""
    from tqdm.auto import tqdm

    tags = {TAG_PARENT_STEP: step}
    outcomes: list[ChildOutcome | None] = [
        None if force else reused_child(cfg, stage=stage, fingerprint=fingerprint, label=label)
        for label, cfg, stage in configs
    ]
    todo = [i for i, o in enumerate(outcomes) if o is None]
    bar = tqdm(total=len(todo), desc=step, unit="run", file=sys.stderr, dynamic_ncols=True)
    if jobs <= 1 or len(todo) < 2:
        for i in todo:
            label, cfg, stage = configs[i]
            bar.set_postfix_str(label)
            outcomes[i] = train_new_child(cfg, stage=stage, fingerprint=fingerprint,
                                          label=label, extra_tags=tags, echo=echo)
            bar.update()
    else:
        _train_in_processes(configs, todo, outcomes, fingerprint=fingerprint, echo=echo,
                            jobs=jobs, tags={**tags, "mlflow.parentRunId": parent_run_id},
                            bar=bar)
    bar.close()
    return [o for o in outcomes if o is not None]


def _train_in_processes(
    configs: Sequence[tuple[str, TrainConfig, str]],
    todo: Sequence[int],
    outcomes: list[ChildOutcome | None],
    *,
    fingerprint: str,
    echo: Echo,
    jobs: int,
    tags: dict[str, str],
    bar: Any,
) -> None:
    """Fill ``outcomes[i]`` for ``i`` in ``todo`` with ``jobs`` child processes at once."""
    from ser_mlflow.jobs import children

    # a child process has no active run: it names the parent's experiment and parent run
    experiment = tracking.experiment_name_of(tags["mlflow.parentRunId"])
    tasks = [
        (replace(configs[i][1], experiment=experiment), configs[i][2], fingerprint,
         configs[i][0], tags)
        for i in todo
    ]

    def done(k: int, result: Any) -> None:
        label, cfg, stage = configs[todo[k]]
        if isinstance(result, children.ProcessDied):
            msg = f"child process ended without a result (exit code {result.exitcode})"
            result = ChildOutcome(label, cfg, _failed_run(_child_key(cfg, stage, fingerprint)),
                                  "FAILED", error=msg)
        else:
            result.cfg = cfg
        if result.status == "FAILED":
            echo(f"  ! {label} failed: {result.error}")
        outcomes[todo[k]] = result
        bar.set_postfix_str(label)
        bar.update()

    children.map_processes(_train_in_process, tasks, jobs=jobs, on_result=done)


def _log_step(outcomes: Sequence[ChildOutcome], *, rank_metric: str) -> pd.DataFrame:
    """The parent's ranking artifacts, children tags, counts and best metric."""
    table = outcomes_table(outcomes, rank_metric=rank_metric)
    tracking.log_table(table, "ranking")
    reused = [o.run_id for o in outcomes if o.status == "REUSED"]
    failed = [o for o in outcomes if o.status == "FAILED"]
    tracking.set_tags(
        {
            TAG_CHILDREN: ",".join(o.run_id or "" for o in outcomes),
            TAG_REUSED_RUNS: ",".join(r or "" for r in reused),
            TAG_FAILURES: "; ".join(f"{o.label}: {o.error}" for o in failed) or "none",
        }
    )
    tracking.log_metrics(
        {"n_runs": len(outcomes), "n_failed": len(failed), "n_reused": len(reused)}
    )
    ok = table[table["status"] != "FAILED"] if not table.empty else table
    if not ok.empty:
        from ser_mlflow.scoring import plots

        tracking.log_figure(plots.ranking_bars(ok, rank_metric), "plots/ranking.png")
        tracking.log_metrics({f"best_{rank_metric}": float(ok[rank_metric].max())})
    return table


def _echo_step(result: StepResult, echo: Echo) -> None:
    outcomes = result.outcomes
    n_reused = sum(o.status == "REUSED" for o in outcomes)
    echo(
        f"\n[{result.step}] {len(outcomes)} runs ({n_reused} reused, {len(result.failures)} "
        f"failed), parent run {result.parent_run_id}"
    )
    print_table(
        result.table,
        echo,
        [
            "rank",
            "run",
            "status",
            "devel_ccc_arousal",
            "devel_ccc_valence",
            "devel_ccc_liking",
            "devel_ccc_mean",
        ],
    )
    for o in result.failures:
        echo(f"  FAILED {o.label}: {o.error}")


def unimodal(
    base: TrainConfig,
    *,
    feature_sets: Sequence[str] | None = None,
    force: bool = False,
    rank_metric: str = "devel_ccc_mean",
    echo: Echo = print,
    jobs: int = 1,
) -> StepResult:
    """One child per feature set (all found in the data root by default)."""
    sets = list(feature_sets) if feature_sets else list(list_feature_sets(base.data_root))
    configs = [(s, replace(base, feature_sets=(s,)), "unimodal") for s in sets]
    params = {**base.to_params(), "feature_sets": ",".join(sets), "rank_metric": rank_metric}
    return _sweep(
        "unimodal",
        configs,
        base=base,
        step_params=params,
        rank_metric=rank_metric,
        force=force,
        echo=echo,
        jobs=jobs,
    )


def top_runs(
    *,
    stage: str,
    fingerprint: str,
    rank_metric: str,
    k: int,
    extra_filter: str = "",
) -> list[Any]:
    """The tracking server's top-k FINISHED runs of a stage on this corpus, one per set."""
    flt = (
        f"tags.`ser.stage` = '{stage}' and tags.`ser.data_digest` = '{fingerprint}'"
        f" and attributes.status = 'FINISHED'"
    )
    if extra_filter:
        flt += f" and {extra_filter}"
    runs = tracking.search_runs(filter_string=flt, order_by=[f"metrics.`{rank_metric}` DESC"])
    best: dict[str, Any] = {}
    for r in runs:  # several runs of one feature set: the best one represents it
        fs = r.data.tags.get(tracking.TAG_FEATURE_SETS, "")
        if fs not in best and rank_metric in r.data.metrics:
            best[fs] = r
    return sorted(best.values(), key=lambda r: -r.data.metrics[rank_metric])[:k]


def bimodal(
    base: TrainConfig,
    *,
    top_k: int = 7,
    rank_metric: str = "devel_ccc_mean",
    force: bool = False,
    echo: Echo = print,
    jobs: int = 1,
) -> StepResult:
    """Every pair of the top-k unimodal feature sets, by concatenation.

    Raises:
        ValueError: fewer than two unimodal runs on this corpus, or ``top_k`` < 2.
    """
    if top_k < 2:
        raise ValueError(f"top_k: expected at least 2 feature sets to pair, got {top_k}")
    fingerprint = corpus_fingerprint(base.data_root)
    runs = top_runs(
        stage="unimodal",
        fingerprint=fingerprint,
        rank_metric=rank_metric,
        k=top_k,
        extra_filter=f"params.loss = '{base.loss.name}'",
    )
    if len(runs) < 2:
        raise ValueError(
            f"top_k: bimodal needs at least 2 finished unimodal runs with loss "
            f"{base.loss.name} on {base.data_root} (metric {rank_metric}); found {len(runs)}. "
            "Run `ser-mlflow unimodal` first."
        )
    if len(runs) < top_k:
        found = ", ".join(r.data.tags.get(tracking.TAG_FEATURE_SETS, "?") for r in runs)
        raise ValueError(
            f"top_k: asked for the top {top_k} unimodal feature sets, but only {len(runs)} have "
            f"finished unimodal runs with loss {base.loss.name} on {base.data_root} ({found}); "
            "lower --top-k or run `ser-mlflow unimodal` on more feature sets"
        )
    sets = [r.data.tags[tracking.TAG_FEATURE_SETS] for r in runs]
    echo(f"[bimodal] top {len(sets)} by {rank_metric}: {', '.join(sets)}")
    pairs = list(itertools.combinations(sets, 2))
    configs = [(f"{a}+{b}", replace(base, feature_sets=(a, b)), "bimodal") for a, b in pairs]
    params = {
        **base.to_params(),
        "feature_sets": ",".join(sets),
        "top_k": top_k,
        "rank_metric": rank_metric,
    }
    return _sweep(
        "bimodal",
        configs,
        base=base,
        step_params=params,
        rank_metric=rank_metric,
        force=force,
        echo=echo,
        jobs=jobs,
    )


COMPARE_LOSSES = ("STL1", "STL2", "STL3", "MTL1", "MTL2")


def compare_table(outcomes: Sequence[ChildOutcome]) -> pd.DataFrame:
    """The paper's Table 2: mean ± std over seeds per loss, per attribute and average."""
    rows = []
    for loss in COMPARE_LOSSES:
        ok = [o for o in outcomes if o.cfg.loss.name == loss and o.status != "FAILED"]
        row: dict[str, Any] = {"loss": loss, "n_seeds": len(ok)}
        for a in (*ATTRS_DEFAULT, "mean"):
            vals = np.array([o.metrics.get(f"devel_ccc_{a}", np.nan) for o in ok], dtype=float)
            row[f"{a}_mean"] = float(np.mean(vals)) if len(vals) else np.nan
            row[f"{a}_std"] = float(np.std(vals, ddof=1)) if len(vals) > 1 else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def format_compare(df: pd.DataFrame) -> str:
    cols = [*ATTRS_DEFAULT, "mean"]
    lines = [f"{'loss':<6}{'seeds':>6}" + "".join(f"{c:>17}" for c in cols)]
    for r in df.itertuples(index=False):
        d = r._asdict()
        lines.append(
            f"{d['loss']:<6}{d['n_seeds']:>6}"
            + "".join(f"{d[c + '_mean']:>10.3f} ± {d[c + '_std']:<4.3f}" for c in cols)
        )
    return "\n".join(lines)


def compare(
    base: TrainConfig,
    *,
    feature_set: str = "fau",
    seeds: Sequence[int] = (0, 1, 2),
    force: bool = False,
    echo: Echo = print,
    jobs: int = 1,
) -> StepResult:
    """STL1, STL2, STL3, MTL1 and MTL2 on one feature set over several seeds."""
    configs = [
        (
            f"{loss}-s{seed}",
            replace(
                base, feature_sets=(feature_set,), seed=int(seed), loss=LossConfig.from_name(loss)
            ),
            "compare",
        )
        for seed in seeds
        for loss in LOSS_PRESETS
    ]
    params = {
        **base.to_params(),
        "feature_sets": feature_set,
        "seeds": ",".join(str(s) for s in seeds),
    }
    params.pop("loss"), params.pop("alpha"), params.pop("beta"), params.pop("gamma")

    def log_comparison(result: StepResult) -> None:
        from ser_mlflow.scoring import plots

        for o in result.outcomes:  # the view's group rows: "Group: MTL2 mean"
            if o.run_id:
                tracking.set_run_tags(o.run_id, {tracking.TAG_LOSS_GROUP: views.loss_group(
                    o.cfg.loss.name)})
        table = compare_table(result.outcomes)
        tracking.log_table(table, "comparison")
        tracking.log_figure(plots.compare_bars(table), "plots/comparison.png")
        for r in table.itertuples(index=False):
            d = r._asdict()
            tracking.log_metrics(
                {
                    f"{d['loss']}_devel_ccc_{a}": d[f"{a}_mean"]
                    for a in (*ATTRS_DEFAULT, "mean")
                    if d[f"{a}_mean"] == d[f"{a}_mean"]
                }
            )
        log_compare_intervals(result, echo=echo)
        echo("\n" + format_compare(table))

    result = _sweep(
        "compare",
        configs,
        base=base,
        step_params=params,
        rank_metric="devel_ccc_mean",
        force=force,
        echo=echo,
        jobs=jobs,
        after=log_comparison,
    )
    if result.reused:
        log_compare_intervals(result, echo=echo)
    return result


def delay_sweep(
    base: TrainConfig,
    *,
    shifts: Sequence[int],
    force: bool = False,
    echo: Echo = print,
    jobs: int = 1,
) -> StepResult:
    """One child per label shift (``shift_frames``) on the base config; the delay curve.

    Children are ordinary training runs (``ser.stage=delay``), reused like every sweep's.
    The parent logs the curve of devel CCC against the delay in seconds, the optimum per
    attribute, and beside it the linear and run-lag estimates (``delay``).
    """
    configs = [
        (f"shift{s}", replace(base, shift_frames=int(s)), "delay") for s in sorted(set(shifts))
    ]
    params = {**base.to_params(), "shifts": ",".join(str(s) for s in sorted(set(shifts)))}
    params.pop("shift_frames")

    def log_curve(result: StepResult) -> None:
        from ser_mlflow.jobs import delay

        ok = [tracking.get_run(o.run_id) for o in result.outcomes
              if o.status != "FAILED" and o.run_id]
        if not ok:
            return
        summary = delay.summarise(ok, data_root=base.data_root,
                                  feature_sets=base.feature_sets, lags=list(range(0, max(
                                      max(shifts), 1) + 1)))
        delay.log_summary(summary, title=f"Label delay sweep: {'+'.join(base.feature_sets)}, "
                          f"{base.loss.name}, {base.epochs} epochs", echo=echo)

    return _sweep(
        "delay",
        configs,
        base=base,
        step_params=params,
        rank_metric="devel_ccc_mean",
        force=force,
        echo=echo,
        jobs=jobs,
        after=log_curve,
    )


def compare_interval_metrics(run_ids: Sequence[str], *, n_boot: int = 1000) -> dict[str, float]:
    """``<loss>_devel_ccc_<attr>_ci_low/_ci_high`` of a compare's children.

    The interval of each loss's mean over seeds resamples recordings (within culture) and
    seeds together, from the children's prediction files (``report`` computes the same,
    with the per-culture scopes and the paired tests).
    """
    from ser_mlflow.jobs import report
    from ser_mlflow.tracking import runpreds

    runs = runpreds.find_runs(run_ids=list(run_ids))
    data = report.build(runs, group_by=[f"tags.{tracking.TAG_LOSS}"], n_boot=n_boot,
                        with_pairs=False)
    return {k: v for k, v in report.interval_metrics(data).items() if "_ci_" in k}


def log_compare_intervals(result: StepResult, *, echo: Echo = print) -> None:
    """Log the loss groups' intervals on the compare parent.

    A reused parent from before intervals existed gets them added. An interval that cannot
    be computed is reported and tagged; the comparison itself stands.
    """
    if result.reused:
        parent = tracking.get_run(result.parent_run_id)
        if any(k.endswith("_ci_low") for k in parent.data.metrics):
            return
        ids = [r for r in parent.data.tags.get(TAG_CHILDREN, "").split(",") if r]
    else:
        ids = [o.run_id for o in result.outcomes if o.status != "FAILED" and o.run_id]
    if not ids:
        return
    try:
        found = compare_interval_metrics(ids)
    except (ValueError, OSError) as exc:
        echo(f"  (no intervals on the compare parent: {exc})")
        tags = {TAG_INTERVALS_ERROR: str(exc)[:500]}
        if result.reused:
            tracking.set_run_tags(result.parent_run_id, tags)
        else:
            tracking.set_tags(tags)
        return
    if result.reused:
        tracking.log_metrics_to(result.parent_run_id, found)
        echo(f"[compare] added the loss groups' 95% intervals to run {result.parent_run_id}")
    else:
        tracking.log_metrics(found)


def fusion_candidates(
    data_root: str | Path, *, rank_metric: str = "devel_ccc_mean", filter_string: str = ""
) -> list[str]:
    """Ids of the runs `fusion` would rank, best first: what a fusion's inputs depend on.

    The same query as :func:`ser_mlflow.jobs.latefusion.run_fusion` (its default filters, or
    ``filter_string``); every candidate is listed, not only the top N, so that a run that
    would replace an input without predictions also changes the key.
    """
    from ser_mlflow.jobs import latefusion

    filters = [filter_string] if filter_string else latefusion.default_filters(data_root)
    found = {
        r.info.run_id: r
        for f in filters
        for r in tracking.search_runs(filter_string=f"{f} and attributes.status = 'FINISHED'")
        if rank_metric in r.data.metrics and r.data.tags.get(tracking.TAG_STAGE) != "fusion"
    }
    return sorted(found, key=lambda rid: (-found[rid].data.metrics[rank_metric], rid))


def reusable_fusion(
    base: TrainConfig,
    opts: Mapping[str, Any],
    *,
    force: bool,
    run: Callable[..., Any],
    echo: Echo = print,
) -> Any:
    """The chain's `fusion` step, reused like a training step.

    Key: the step's options, its candidate input runs (:func:`fusion_candidates`), the
    fusion code and the data. A FINISHED fusion run of this experiment with that key is
    reused (its id returned) unless ``force``; otherwise ``run`` fits a new one, which is
    tagged with the key.
    """
    fingerprint = corpus_fingerprint(base.data_root)
    experiment_id = tracking.experiment_for(base.experiment)
    candidates = fusion_candidates(
        base.data_root,
        rank_metric=str(opts.get("rank_metric", "devel_ccc_mean")),
        filter_string=str(opts.get("filter_string") or ""),
    )
    params = {
        **{k: str(v) for k, v in opts.items()},
        "inputs": ",".join(candidates),
        "fusion_code": code_version(FUSION_CODE),
    }
    key = make_key("fusion", params, fingerprint)
    if not force and (rid := find_finished(TAG_STEP_KEY, key, experiment_id)):
        echo(f"[fusion] reusing finished fusion run {rid} (same options, inputs, code and data)")
        return rid
    result = run()
    tracking.set_run_tags(result.run_id, {TAG_STEP_KEY: key})
    return result
