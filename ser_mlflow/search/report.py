"""A search's outcome: the trial table, plots and the closing summary.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.trial import TrialState

from ser_mlflow import tracking
from ser_mlflow.search.spec import ATTR_OWNER, ATTR_RUN, PARAMS, STUDY_OBJECTIVE
from ser_mlflow.search.tickets import _trials

# --------------------------------------------------------------------------- result


@dataclass
class SearchResult:
    """What a search produced; the same figures are on the parent run."""

    study_name: str
    storage: str  # without password
    parent_run_id: str
    objective: str
    sampler: str
    keys: list[str]
    best_params: dict[str, float] | None = None
    best_value: float | None = None
    best_run_id: str | None = None
    pareto: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # this search's trials by state
    queued_left: int = 0
    marked: set[int] = field(default_factory=set)  # the best trial, or the Pareto trials
    trials: pd.DataFrame = field(default_factory=pd.DataFrame)  # the whole study


def trials_table(study: optuna.Study, keys: Sequence[str]) -> pd.DataFrame:
    """One row per trial of the study with weights, state, objective and its MLflow run."""
    rows = []
    for t in _trials(study):
        row: dict[str, Any] = {"trial": t.number, "state": t.state.name.lower()}
        for p in PARAMS:
            row[p] = t.params.get(p, np.nan)
        values = t.values if t.state == TrialState.COMPLETE and t.values else []
        for i, k in enumerate(keys):
            row[k] = values[i] if i < len(values) else np.nan
        for k in ("devel_ccc_arousal", "devel_ccc_valence", "devel_ccc_liking",
                  "devel_ccc_mean"):
            if k not in row:
                row[k] = t.user_attrs.get(k, np.nan)
        row["epochs_run"] = t.user_attrs.get("epochs_run", pd.NA)
        row["mlflow_run_id"] = t.user_attrs.get(ATTR_RUN, "")
        row["search_run_id"] = t.user_attrs.get(ATTR_OWNER, "")
        row["error"] = t.user_attrs.get("error", "")
        rows.append(row)
    df = pd.DataFrame(rows)
    if not df.empty:
        df["epochs_run"] = df["epochs_run"].astype("Int64")
    return df


def format_table(df: pd.DataFrame, keys: Sequence[str], *, best: set[int], limit: int = 25) -> str:
    """The summary printed at the end: best first, pruned and failed trials last."""
    if df.empty:
        return "  (no trials)"
    order = df.assign(_k=df[keys].mean(axis=1)).sort_values(
        ["_k", "trial"], ascending=[False, True], na_position="last"
    )
    shown = order.head(limit).copy()
    shown.insert(0, "", ["*" if n in best else "" for n in shown["trial"]])
    shown["mlflow_run_id"] = shown["mlflow_run_id"].str.slice(0, 8)
    shown["epochs_run"] = [str(v) if pd.notna(v) else "-" for v in shown["epochs_run"]]
    cols = ["", "trial", "state", *PARAMS, *keys]
    cols += [c for c in ("devel_ccc_mean",) if c not in keys] + ["epochs_run", "mlflow_run_id"]
    text = shown[cols].to_string(
        index=False, float_format=lambda v: f"{v:.3f}", na_rep="-"
    )
    if len(order) > limit:
        text += f"\n  ... and {len(order) - limit} more trials (all in trials.csv)"
    return text


def _figure(ax: Any) -> Any:
    return np.ravel(np.asarray(ax, dtype=object))[0].figure


def log_plots(study: optuna.Study, keys: Sequence[str], *, multi: bool) -> list[str]:
    """Optuna's matplotlib plots as artifacts; returns notes on the plots it had to skip."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    target = (lambda t: float(np.mean(t.values))) if multi else None  # noqa: E731
    target_name = "mean of the devel CCCs" if multi else keys[0]
    notes: list[str] = []
    plans: list[tuple[str, int, Callable[[], Any]]] = [
        ("optimization_history", 1,
         lambda: ovm.plot_optimization_history(study, target=target, target_name=target_name)),
        ("param_importances", 3,
         lambda: ovm.plot_param_importances(study, target=target, target_name=target_name)),
        ("contour_alpha_beta", 3,
         lambda: ovm.plot_contour(study, params=["alpha", "beta"], target=target,
                                  target_name=target_name)),
    ]
    if multi:
        names = list(keys)
        plans.append(("pareto_front", 1, lambda: ovm.plot_pareto_front(study, target_names=names)))
    else:
        plans.append(("intermediate_values", 1, lambda: ovm.plot_intermediate_values(study)))
    for name, needed, make in plans:
        if len(complete) < needed:
            notes.append(f"{name}: skipped, needs {needed} complete trials, has {len(complete)}")
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fig = _figure(make())
        except Exception as exc:  # e.g. importances of weights that never varied
            notes.append(f"{name}: skipped, {type(exc).__name__}: {exc}")
            plt.close("all")
            continue
        fig.set_size_inches(8, 6)
        tracking.log_figure(fig, f"plots/{name}.png")
        plt.close(fig)
    return notes


def summarise(
    study: optuna.Study, *, search_run_id: str, keys: Sequence[str], multi: bool,
    started: float,
) -> SearchResult:
    """Log the study's outcome on the active parent run and return it.

    CC about 23: single- and multi-objective outcomes (best trial or Pareto front) share
    one table, one set of counts and one set of logged metrics, read in one pass.
    """
    result = SearchResult(
        study_name=study.study_name, storage="", parent_run_id=search_run_id,
        objective=study.user_attrs.get(STUDY_OBJECTIVE, ""), sampler="", keys=list(keys),
    )
    mine = _trials(study, owner=search_run_id)
    counts = {s: 0 for s in ("complete", "pruned", "fail", "running", "waiting")}
    for t in mine:
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    result.counts, result.queued_left = counts, counts["waiting"]
    hours = max(time.time() - started, 1e-9) / 3600
    finished = counts["complete"] + counts["pruned"] + counts["fail"]
    tracking.log_metrics({
        "n_trials_complete": counts["complete"], "n_trials_pruned": counts["pruned"],
        "n_trials_failed": counts["fail"], "n_trials_queued": counts["waiting"],
        "n_trials_study": len(study.get_trials(deepcopy=False)),
        "trials_per_hour": finished / hours,
    })
    df = trials_table(study, keys)
    result.trials = df
    best_numbers: set[int] = set()
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    if complete and not multi:
        best = study.best_trial
        best_numbers = {best.number}
        result.best_params = {p: float(best.params[p]) for p in PARAMS}
        result.best_value = float(best.value)  # type: ignore[arg-type]
        result.best_run_id = best.user_attrs.get(ATTR_RUN)
        tracking.log_params({f"best_{p}": v for p, v in result.best_params.items()})
        metrics = {"best_value": result.best_value, "best_trial_number": float(best.number)}
        if result.best_run_id:
            tracking.set_tags({"best_run": result.best_run_id})
            for k, v in tracking.get_run(result.best_run_id).data.metrics.items():
                if k.startswith(("devel_", "test_")):
                    metrics[f"best_{k}"] = v
        tracking.log_metrics(metrics)
    elif complete:
        pareto = study.best_trials
        best_numbers = {t.number for t in pareto}
        result.pareto = [
            {"trial": t.number, **{p: t.params[p] for p in PARAMS},
             **dict(zip(keys, t.values, strict=True)), "mlflow_run_id": t.user_attrs.get(ATTR_RUN)}
            for t in sorted(pareto, key=lambda t: t.number)
        ]
        run_ids = [str(p["mlflow_run_id"]) for p in result.pareto if p["mlflow_run_id"]]
        tracking.set_tags({
            "best_run": ",".join(run_ids)[:8000],
            "pareto_trials": ",".join(str(p["trial"]) for p in result.pareto),
        })
        tracking.log_metrics({"pareto_size": float(len(pareto))})
        for k in keys:
            tracking.log_metrics({f"pareto_max_{k}": max(p[k] for p in result.pareto)})
        tracking.log_text(pd.DataFrame(result.pareto).to_csv(index=False), "pareto_front.csv")
    csv = study.trials_dataframe(
        attrs=("number", "value", "state", "params", "datetime_start", "datetime_complete",
               "duration", "user_attrs")
    )
    if not csv.empty:
        csv = csv.rename(columns={f"user_attrs_{ATTR_RUN}": "mlflow_run_id",
                                  f"user_attrs_{ATTR_OWNER}": "search_run_id"})
        if "mlflow_run_id" not in csv.columns:
            csv["mlflow_run_id"] = ""
    tracking.log_text(csv.to_csv(index=False), "trials.csv")
    notes = log_plots(study, keys, multi=multi)
    result.marked = best_numbers
    table = format_table(df, keys, best=best_numbers)
    tracking.log_text(table + "\n" + "\n".join(notes) + "\n", "search_summary.txt")
    return result


def summary_text(result: SearchResult) -> str:
    """The closing summary: counts, the best (or Pareto) trials, and the trial table."""
    c = result.counts
    lines = [
        f"Search {result.parent_run_id} on study {result.study_name!r} ({result.storage}): "
        f"{c.get('complete', 0)} complete, {c.get('pruned', 0)} pruned, "
        f"{c.get('fail', 0)} failed"
        + (f", {result.queued_left} still queued (timeout)" if result.queued_left else "")
    ]
    if result.best_params is not None:
        w = ", ".join(f"{p}={v:.3f}" for p, v in result.best_params.items())
        lines.append(
            f"Best {result.keys[0]} = {result.best_value:.4f} with {w} (run {result.best_run_id})"
        )
    elif result.pareto:
        lines.append(f"Pareto front: {len(result.pareto)} trial(s), marked *")
    lines.append(format_table(result.trials, result.keys, best=result.marked))
    return "\n".join(lines)
