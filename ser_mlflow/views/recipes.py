"""View recipes: which columns, groups, charts and filters each step's saved view holds.

Pure functions from a parent run to a view state (the format is ``views.codec``); the
compare, ranking, search, fusion and delay views.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

from ser_mlflow import tracking
from ser_mlflow.tracking.tags import (
    TAG_CHILDREN,
    TAG_LOSS_GROUP,
    TAG_PARENT_RUN,
    TAG_PROTOCOL,
    TAG_REUSED_RUNS,
    TAG_TRIAL_NUMBER,
    TAG_TRIAL_STATE,
)

ATTRS = ("arousal", "valence", "liking")


CCC = tuple(f"devel_ccc_{a}" for a in (*ATTRS, "mean"))


# --- view states ----------------------------------------------------------------------


def col(kind: str, name: str) -> str:
    """A column / sort key as the UI spells it: ``metrics.`devel_ccc_mean```."""
    return f"{kind}.`{name}`"


def children_filter(parent_run_id: str) -> str:
    return f"tags.`{TAG_PARENT_RUN}` = '{parent_run_id}'"


def step_filter(parent_run_id: str, tags: Mapping[str, str] | None = None) -> str:
    """The runs of a pipeline step: its children, or its run ids when some were reused.

    A sweep reuses an identical finished run of an earlier step instead of training it
    again; that run stays a child of the earlier parent, so the parent filter alone would
    miss it. The step lists every run it used in ``ser.children``.
    """
    if tags is None:
        tags = {}
        with contextlib.suppress(Exception):
            tags = tracking.get_run(parent_run_id).data.tags
    reused = [r for r in tags.get(TAG_REUSED_RUNS, "").split(",") if r]
    ids = [r for r in tags.get(TAG_CHILDREN, "").split(",") if r]
    if reused and ids:
        return "attributes.run_id IN (" + ", ".join(f"'{r}'" for r in ids) + ")"
    return children_filter(parent_run_id)


def _section(
    uuid: str, name: str, *, display: bool, columns: int = 3, card_height: int = 360
) -> dict[str, Any]:
    return {
        "uuid": uuid,
        "name": name,
        "display": display,
        "isReordered": True,
        "deleted": False,
        "isGenerated": False,
        "columns": columns,
        "cardHeight": card_height,
    }


def _card(uuid: str, kind: str, section: str, title: str, count: int) -> dict[str, Any]:
    return {
        "uuid": uuid,
        "type": kind,
        "runsCountToCompare": count,
        "metricSectionId": section,
        "deleted": False,
        "isGenerated": False,
        "displayName": title,
    }


def line_card(metric: str, *, section: str, title: str, count: int = 10) -> dict[str, Any]:
    """A per-epoch curve (``step`` = epoch); grouped rows plot the group mean and spread."""
    return {
        **_card(f"ser-line-{metric}", "LINE", section, title, count),
        "metricKey": metric,
        "selectedMetricKeys": [metric],
        "lineSmoothness": 0,
        "xAxisKey": "step",
        "xAxisScaleType": "linear",
        "scaleType": "linear",
        "selectedXAxisMetricKey": "",
        "range": {},
        "yAxisKey": "metric",
        "yAxisExpressions": [],
        "ignoreOutliers": False,
        "useGlobalXaxisKey": True,
        "useGlobalLineSmoothing": True,
    }


def bar_card(metric: str, *, section: str, title: str, count: int = 10) -> dict[str, Any]:
    return {**_card(f"ser-bar-{metric}", "BAR", section, title, count), "metricKey": metric}


def parallel_card(
    params: Sequence[str], metrics: Sequence[str], *, section: str, title: str
) -> dict[str, Any]:
    return {
        **_card("ser-parallel", "PARALLEL", section, title, 100),
        "selectedParams": list(params),
        "selectedMetrics": list(metrics),
        "showAllRuns": True,
    }


def _rest_sections() -> list[dict[str, Any]]:
    """Collapsed homes for the cards the UI adds for every other metric."""
    return [
        _section("ser-sec-epoch-other", "epoch", display=False),
        _section("ser-sec-model", "Model metrics", display=False),
        _section("ser-sec-system", "System metrics", display=False),
    ]


def _pretty(metric: str) -> str:
    return metric.replace("epoch/", "").replace("devel_ccc_", "devel CCC ")


#: Width of a metric column: at 1600 px with MLflow's Assistant panel open (what a user on
#: 127.0.0.1 gets) four of them fit beside the run names (measured in headless Chromium).
METRIC_COLUMN_WIDTH = 120


def _base_state(
    parent_run_id: str, *, order_by: str, columns: Sequence[str], search_filter: str | None
) -> dict[str, Any]:
    """Children of one parent, best first; metric columns wide enough to read, in order.

    ``columnOrder`` lists only the metric columns: the grid puts them first in that
    order and keeps the rest, so the Metrics / Parameters / Tags header groups hold.
    """
    metric_cols = [c for c in columns if c.startswith("metrics.")]
    return {
        "searchFilter": search_filter or children_filter(parent_run_id),
        "orderByKey": col("metrics", order_by),
        "orderByAsc": False,
        "lifecycleFilter": "Active",
        "selectedColumns": list(columns),
        "columnOrder": metric_cols,
        "columnWidths": {c: METRIC_COLUMN_WIDTH for c in metric_cols},
        "runsHiddenMode": "SHOW_ALL",
        "isAccordionReordered": True,
        "hideEmptyCharts": True,
        "useGroupedValuesInCharts": True,
        "globalLineChartConfig": {
            "xAxisKey": "step",
            "lineSmoothness": 0,
            "selectedXAxisMetricKey": "",
        },
    }


#: Tag a compare step puts on its runs: the loss and that its group row is a mean, because
#: the UI labels a group row only with the grouping value ("Group: MTL2 mean"; the run-name
#: column is 190 px wide, whatever the view says, so the label stays short).


def loss_group(loss: str) -> str:
    """The value of :data:`TAG_LOSS_GROUP` for a loss."""
    return f"{loss} mean"


def compare_state(parent_run_id: str, *, search_filter: str | None = None) -> dict[str, Any]:
    """STL1..MTL2 of one compare step: grouped by loss (seed means), CCC mean first.

    Rows are grouped by :data:`TAG_LOSS_GROUP`, so each group row says it is a mean.
    Charts: the per-epoch devel CCC curves (mean, then per attribute) and a bar per final
    devel CCC, both per loss group, two per row and without the run list beside them, so
    their titles (the metric names, which name the attribute) are not cut at 1600 px with
    the Assistant panel open.
    """
    curves, bars = "ser-sec-curves", "ser-sec-bars"
    order = (CCC[-1], *CCC[:-1])  # the mean first, then arousal, valence, liking
    cards = [
        line_card(f"epoch/{m}", section=curves, title=f"{_pretty(m)} per epoch") for m in order
    ] + [bar_card(m, section=bars, title=f"{_pretty(m)} (best epoch)") for m in order]
    return {
        **_base_state(
            parent_run_id,
            order_by="devel_ccc_mean",
            columns=[*(col("metrics", m) for m in order), col("tags", tracking.TAG_LOSS)],
            search_filter=search_filter,
        ),
        "groupBy": {
            "aggregateFunction": "average",
            "groupByKeys": [{"mode": "tag", "groupByData": TAG_LOSS_GROUP}],
        },
        "runListHidden": True,
        "compareRunCharts": cards,
        "compareRunSections": [
            _section(curves, "Devel CCC per epoch (mean over seeds)", display=True, columns=2),
            _section(bars, "Devel CCC at the best epoch (mean over seeds)", display=True,
                     columns=2),
            *_rest_sections(),
        ],
    }


def ranking_state(
    parent_run_id: str, *, rank_metric: str = "devel_ccc_mean", search_filter: str | None = None
) -> dict[str, Any]:
    """A unimodal / bimodal sweep: one row per feature set, best first."""
    bars, curves = "ser-sec-bars", "ser-sec-curves"
    metrics = list(dict.fromkeys([rank_metric, *CCC]))
    return {
        **_base_state(
            parent_run_id,
            order_by=rank_metric,
            columns=[
                col("tags", tracking.TAG_FEATURE_SETS),
                *(col("metrics", m) for m in metrics),
                col("tags", tracking.TAG_LOSS),
            ],
            search_filter=search_filter,
        ),
        "compareRunCharts": [
            bar_card(m, section=bars, title=_pretty(m), count=30) for m in metrics
        ]
        + [
            line_card(
                "epoch/devel_ccc_mean", section=curves, title="devel CCC mean per epoch", count=30
            )
        ],
        "compareRunSections": [
            _section(bars, "Devel CCC at the best epoch", display=True),
            _section(curves, "Devel CCC per epoch", display=True),
            *_rest_sections(),
        ],
    }


def search_state(parent_run_id: str, *, objective_metrics: Sequence[str]) -> dict[str, Any]:
    """The trials of one search: loss weights and objective(s), best first."""
    objectives = list(objective_metrics) or ["devel_ccc_mean"]
    metrics = list(dict.fromkeys([*objectives, "devel_ccc_mean"]))
    charts, curves = "ser-sec-weights", "ser-sec-curves"
    return {
        **_base_state(
            parent_run_id,
            order_by=objectives[0],
            columns=[
                *(col("params", p) for p in ("alpha", "beta", "gamma")),
                *(col("metrics", m) for m in metrics),
                col("tags", TAG_TRIAL_STATE),
                col("tags", TAG_TRIAL_NUMBER),
            ],
            search_filter=None,
        ),
        "compareRunCharts": [
            parallel_card(
                ["alpha", "beta", "gamma"],
                objectives,
                section=charts,
                title="loss weights -> objective",
            ),
            *(bar_card(m, section=charts, title=_pretty(m), count=50) for m in objectives),
            line_card(
                f"epoch/{objectives[0]}",
                section=curves,
                title=f"{_pretty(objectives[0])} per epoch",
                count=50,
            ),
        ],
        "compareRunSections": [
            _section(charts, "Loss weights and objective", display=True),
            _section(curves, "Per epoch", display=True),
            *_rest_sections(),
        ],
    }


def fusion_filter(digest: str = "") -> str:
    """Every fusion run (on one corpus when ``digest`` is given)."""
    flt = f"tags.`{tracking.TAG_STAGE}` = 'fusion'"
    return flt + (f" and tags.`{tracking.TAG_DIGEST}` = '{digest}'" if digest else "")


def fusion_state(*, search_filter: str) -> dict[str, Any]:
    """Fusion runs grouped by protocol (paper vs cv side by side), CCC per stage as charts.

    The per-stage metrics are logged at ``step`` = stage, so the line cards plot CCC
    against the stage; the charts show single runs (not group means), each named after its
    protocol and stage count. Bars: the fused CCC and its gains over the best single input
    and over the plain mean of the inputs (the bootstrap interval ends are columns).
    """
    stages, gains = "ser-sec-stages", "ser-sec-gains"
    ccc_cols = [
        m
        for a in ATTRS
        for m in (f"devel_ccc_{a}", f"devel_ccc_{a}_ci_low", f"devel_ccc_{a}_ci_high")
    ]
    gain_cols = [f"devel_gain_{ref}_ccc_{a}" for ref in ("best_single", "mean") for a in ATTRS]
    state = _base_state(
        "",
        order_by="devel_ccc_mean",
        columns=[
            col("tags", TAG_PROTOCOL),
            col("params", "recipes"),
            col("params", "n_stages"),
            *(col("metrics", m) for m in ("devel_ccc_mean", *ccc_cols, *gain_cols)),
        ],
        search_filter=search_filter,
    )
    state.update(
        {
            "groupBy": {
                "aggregateFunction": "max",
                "groupByKeys": [{"mode": "tag", "groupByData": TAG_PROTOCOL}],
            },
            "useGroupedValuesInCharts": False,
            "compareRunCharts": [
                line_card(m, section=stages, title=f"{_pretty(m)} per stage", count=20)
                for m in (CCC[-1], *CCC[:-1])
            ]
            + [bar_card(m, section=gains, title=m.replace("devel_", ""), count=20)
               for m in gain_cols],
            "compareRunSections": [
                _section(stages, "Devel CCC per fusion stage (paper vs cv)", display=True,
                         columns=4),
                _section(gains, "Gain over the best single input / the plain mean",
                         display=True),
                *_rest_sections(),
            ],
        }
    )  # fmt: skip
    return state


def scatter_card(
    x_param: str, y_metric: str, *, section: str, title: str, count: int = 100
) -> dict[str, Any]:
    """A param against a metric, one dot per run (3.17 bundle: ``xaxis``/``yaxis`` as
    ``{"key", "type": "PARAM"|"METRIC"}``)."""
    return {
        **_card(f"ser-scatter-{x_param}-{y_metric}", "SCATTER", section, title, count),
        "xaxis": {"key": x_param, "type": "PARAM"},
        "yaxis": {"key": y_metric, "type": "METRIC"},
    }


def delay_state(parent_run_id: str, *, search_filter: str | None = None) -> dict[str, Any]:
    """A delay sweep: one row per label shift; devel CCC against ``shift_frames``."""
    charts = "ser-sec-delay"
    order = (CCC[-1], *CCC[:-1])
    return {
        **_base_state(
            parent_run_id,
            order_by="devel_ccc_mean",
            columns=[col("params", "shift_frames"), *(col("metrics", m) for m in order)],
            search_filter=search_filter,
        ),
        "compareRunCharts": [
            scatter_card("shift_frames", m, section=charts, title=f"{_pretty(m)} vs shift")
            for m in order
        ],
        "compareRunSections": [
            _section(charts, "Devel CCC against the label shift (frames)", display=True,
                     columns=4),
            *_rest_sections(),
        ],
    }


def search_objective_metrics(objective: str) -> list[str]:
    """The run metrics behind a search's ``ser.objective`` tag (``multi``: all three)."""
    if objective == "multi":
        return [f"devel_ccc_{a}" for a in ATTRS]
    return [f"devel_ccc_{objective or 'mean'}"]
