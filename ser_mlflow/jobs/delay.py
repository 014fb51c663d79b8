"""Choosing the annotation delay: the trained sweep's curve and two quick estimates.

Annotators react late, so training labels are shifted to the front (``shift_frames``).
The sweep (``pipeline.delay_sweep``) trains one run per shift; this module turns its
children into the curve of devel CCC against the delay in seconds, and adds two estimates
that train nothing:

- *linear*: a ridge regression on standardised features (fitted on Train, per lag, labels
  shifted as in training) scored on Devel; instantaneous, so it cannot hide a delay the
  way a recurrent network partly can;
- *run lag*: for a finished run, the lag maximising the pooled CCC between its devel
  predictions and the gold labels shifted by that lag; its ``shift_frames`` plus that lag
  estimates the delay (a causal network trained with too large a shift trails the gold).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ser_mlflow import tracking
from ser_mlflow.data import Standardizer, load_corpus, shift_labels, unshift_predictions
from ser_mlflow.scoring import evaluation
from ser_mlflow.scoring.metrics import ccc
from ser_mlflow.tracking import runpreds

Echo = Callable[[str], None]
FRAME_S_DEFAULT = 0.1


def parse_shifts(text: str) -> list[int]:
    """``"0,2,4"`` or ``"0:40:2"`` (start:stop:step, stop included) -> sorted shifts.

    Raises:
        ValueError: not integers >= 0, or none.
    """
    text = text.strip()
    try:
        if ":" in text:
            parts = [int(p) for p in text.split(":")]
            if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] <= 0):
                raise ValueError
            step = parts[2] if len(parts) == 3 else 1
            shifts = list(range(parts[0], parts[1] + 1, step))
        else:
            shifts = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"shifts: expected frames like 0,2,4 or 0:40:2, got {text!r}") from None
    if not shifts or min(shifts) < 0:
        raise ValueError(f"shifts: expected one or more shifts >= 0, got {text!r}")
    return sorted(set(shifts))


def _scopes(cultures: Sequence[str]) -> list[str]:
    found = sorted(set(cultures))
    return [*found, "all"] if len(found) > 1 else found


def _scores(preds: Sequence[np.ndarray], golds: Sequence[np.ndarray], cultures: Sequence[str],
            attributes: Sequence[str]) -> dict[tuple[str, str], float]:
    out = {}
    for scope in _scopes(cultures):
        idx = [i for i, c in enumerate(cultures) if scope == "all" or c == scope]
        p = np.concatenate([preds[i] for i in idx])
        g = np.concatenate([golds[i] for i in idx])
        for j, a in enumerate(attributes):
            out[(scope, a)] = ccc(p[:, j], g[:, j])
        out[(scope, "mean")] = float(np.mean([out[(scope, a)] for a in attributes]))
    return out


def _best(table: pd.DataFrame, method: str, x: str) -> pd.DataFrame:
    """Per scope and attribute: the x of the highest CCC (smallest x on ties)."""
    rows = []
    for (scope, attr), sub in table.groupby(["scope", "attribute"], sort=False):
        sub = sub.sort_values(x)
        k = int(np.nanargmax(sub["ccc"].to_numpy()))
        rows.append({"method": method, "scope": scope, "attribute": attr,
                     "best_shift_frames": int(sub[x].iloc[k]), "ccc": float(sub["ccc"].iloc[k])})
    return pd.DataFrame(rows)


def linear_estimate(
    data_root: str | Path, feature_sets: Sequence[str], lags: Sequence[int], *,
    alpha: float = 10.0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Devel CCC of a ridge baseline per label shift, and the best shift.

    The ridge is fitted on Train frames (features standardised on Train) to labels shifted
    ``lag`` frames to the front, exactly as training shifts them; its Devel predictions
    are shifted back and scored against the gold. Nothing is fitted on Devel.

    Returns:
        (curve: lag, scope, attribute, ccc; best: scope, attribute, best_shift_frames, ccc).

    Raises:
        DataError: bad data root or feature sets.
    """
    corpus = load_corpus(data_root, feature_sets)
    train, devel = corpus.partition("Train"), corpus.partition("Devel")
    std = Standardizer().fit(train)
    x_train = [std.transform(r.features) for r in train]
    x_devel = [std.transform(r.features) for r in devel]
    golds = [np.asarray(r.labels, dtype=np.float64) for r in devel]
    cultures = [r.culture for r in devel]
    attrs = corpus.attributes
    x_all = np.concatenate(x_train)
    rows = []
    for lag in lags:
        ys, oks = zip(*(shift_labels(np.asarray(r.labels), lag) for r in train), strict=True)
        ok = np.concatenate(oks)
        weights = evaluation.ridge_fit(x_all[ok], np.concatenate(ys)[ok], alpha=alpha)
        preds = [unshift_predictions(evaluation.ridge_predict(weights, x), lag)
                 for x in x_devel]
        for (scope, attr), value in _scores(preds, golds, cultures, attrs).items():
            rows.append({"shift_frames": lag, "scope": scope, "attribute": attr, "ccc": value})
    curve = pd.DataFrame(rows)
    return curve, _best(curve, "linear ridge on " + "+".join(feature_sets), "shift_frames")


def run_lag_estimate(run: Any, lags: Sequence[int]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Pooled CCC of a finished run's devel predictions against gold shifted by each lag.

    ``best_shift_frames`` is the run's ``shift_frames`` plus the best lag.

    Raises:
        ValueError: the run has no predictions or no known labels folder.
    """
    preds = runpreds.load_predictions(run)
    names = sorted(preds.preds)
    gold = runpreds.read_gold(runpreds.labels_folder(preds), names, preds.attributes)
    shift = int(preds.params.get("shift_frames", "0") or 0)
    aligned = runpreds.aligned(preds.preds, gold, names)
    golds = [gold.values[n] for n in names]
    cultures = [gold.cultures[n] for n in names]
    rows = []
    for scope in _scopes(cultures):
        idx = [i for i, c in enumerate(cultures) if scope == "all" or c == scope]
        scores = evaluation.lagged_ccc([aligned[i] for i in idx], [golds[i] for i in idx], lags)
        scores = evaluation.with_mean(scores)
        for k, lag in enumerate(lags):
            for j, a in enumerate([*preds.attributes, "mean"]):
                rows.append({"lag": lag, "shift_frames": shift + lag, "scope": scope,
                             "attribute": a, "ccc": scores[k, j]})
    curve = pd.DataFrame(rows)
    return curve, _best(curve, f"lag of run {preds.run_id[:8]} (shift {shift})", "shift_frames")


def frame_seconds(data_root: str | Path) -> float:
    """The label frame period of a data root (median timestamp step of one label file)."""
    from ser_mlflow.data import LABELS_FOLDER, read_avec_csv

    files = sorted((Path(data_root) / LABELS_FOLDER).glob("Devel_*.csv"))
    if files:
        t, _, _ = read_avec_csv(files[0])
        if len(t) > 1:
            return float(np.median(np.diff(t)))
    return FRAME_S_DEFAULT


def sweep_curve(children: Sequence[Any], attributes: Sequence[str]) -> pd.DataFrame:
    """Devel CCC per shift, scope and attribute from the sweep's finished children."""
    rows = []
    for r in children:
        shift = int(r.data.params["shift_frames"])
        for key, value in r.data.metrics.items():
            parts = key.split("_")
            if not key.startswith("devel_") or "ccc" not in parts:
                continue
            scope = "all" if parts[1] == "ccc" else parts[1]
            attr = key.rsplit("ccc_", 1)[1]
            if attr in (*attributes, "mean"):
                rows.append({"shift_frames": shift, "scope": scope, "attribute": attr,
                             "ccc": value, "run_id": r.info.run_id})
    return pd.DataFrame(rows).sort_values(["scope", "attribute", "shift_frames"])


@dataclass
class DelaySummary:
    curve: pd.DataFrame
    estimates: pd.DataFrame
    frame_s: float
    attributes: tuple[str, ...]


def label_attributes(data_root: str | Path) -> tuple[str, ...]:
    """Attribute names of a data root, from its first Devel label file's header."""
    from ser_mlflow.data import LABELS_FOLDER, DataError, read_avec_csv

    files = sorted((Path(data_root) / LABELS_FOLDER).glob("Devel_*.csv"))
    if not files:
        raise DataError(f"{Path(data_root) / LABELS_FOLDER}: no Devel label files")
    return read_avec_csv(files[0])[2]


def summarise(children: Sequence[Any], *, data_root: str | Path, feature_sets: Sequence[str],
              lags: Sequence[int]) -> DelaySummary:
    """The swept curve and, beside its optimum, the linear and run-lag estimates."""
    attributes = label_attributes(data_root)
    curve = sweep_curve(children, attributes)
    swept = _best(curve, "trained sweep", "shift_frames")
    parts = [swept]
    _, linear = linear_estimate(data_root, feature_sets, lags)
    parts.append(linear)
    best_child = max(children, key=lambda r: r.data.metrics.get("devel_ccc_mean", -np.inf))
    shift = int(best_child.data.params["shift_frames"])
    lag_range = [lag for lag in range(-shift, max(lags) - shift + 1)]
    _, run_lag = run_lag_estimate(best_child, lag_range)
    parts.append(run_lag)
    est = pd.concat(parts, ignore_index=True)
    frame_s = frame_seconds(data_root)
    est["best_delay_s"] = est["best_shift_frames"] * frame_s
    return DelaySummary(curve, est, frame_s, tuple(attributes))


def log_summary(summary: DelaySummary, *, title: str, echo: Echo = print) -> None:
    """Artifacts and metrics of the sweep's parent run (inside its run context)."""
    from ser_mlflow.scoring import plots

    curve, est = summary.curve, summary.estimates
    cols = [*summary.attributes, "mean"]
    allc = curve[curve["scope"] == "all"] if (curve["scope"] == "all").any() else curve
    pivot = allc.pivot_table(index="shift_frames", columns="attribute", values="ccc")[cols]
    for shift, row in pivot.iterrows():
        tracking.log_metrics({f"sweep/devel_ccc_{a}": float(row[a]) for a in cols},
                             step=int(shift))
    scope_all = est[est["scope"] == ("all" if (est["scope"] == "all").any() else est["scope"]
                                     .iloc[0])]
    metrics = {}
    for r in scope_all.itertuples(index=False):
        d = r._asdict()
        prefix = {"trained sweep": "best"}.get(d["method"], "linear" if d["method"].startswith(
            "linear") else "run_lag")
        metrics[f"{prefix}_shift_frames_{d['attribute']}"] = d["best_shift_frames"]
        metrics[f"{prefix}_delay_s_{d['attribute']}"] = d["best_delay_s"]
    tracking.log_metrics(metrics)
    tracking.log_table(curve.drop(columns=["run_id"], errors="ignore"), "delay_curve")
    tracking.log_table(est, "delay_estimates")
    marks = {}
    for r in scope_all[scope_all["attribute"] == "mean"].itertuples(index=False):
        d = r._asdict()
        if d["method"] != "trained sweep":
            marks[f"{d['method']}: {d['best_delay_s']:.1f} s"] = d["best_delay_s"]
    fig = plots.delay_curve(pivot.index.to_numpy() * summary.frame_s, pivot.to_numpy(), cols,
                            title=title, estimates=marks)
    tracking.log_figure(fig, "plots/delay_curve.png")
    echo("\nDevel CCC (DE+HU) against the label shift:")
    echo(pivot.assign(delay_s=pivot.index * summary.frame_s).to_string(
        float_format=lambda v: f"{v:.3f}"))
    echo("\nBest shift per method (DE+HU):")
    echo(scope_all[["method", "attribute", "best_shift_frames", "best_delay_s", "ccc"]]
         .to_string(index=False, float_format=lambda v: f"{v:.3f}"))
