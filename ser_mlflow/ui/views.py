"""Saved MLflow UI views: the STL/MTL comparison, sweep rankings and searches one link away.

The MLflow UI keeps no per-user layout on the server; what it can read back is a *shared
view state* stored as an experiment tag. This module is the one place that knows that
format. Everything below was read in the UI bundle shipped with MLflow 3.17.2
(``mlflow/server/js/build/static/js``; minified, so names are the bundle's):

- Tag key ``mlflow.sharedViewState.<key>`` (constant ``"mlflow.sharedViewState."``), opened
  by the URL parameter ``viewStateShareKey=<key>`` on the runs tab
  ``#/experiments/<id>/runs``. The URL is used unencoded, so keys stay ``[a-z0-9-]``.
- Value: first parsed as a saved-view *envelope* ``{"name": str, "createdAt": number,
  "updatedAt": number, "state": str}`` (what the UI's "Views" menu lists and saves);
  ``state`` is the view state JSON, or ``"deflate;" + base64(zlib)`` (pako) when
  compressed. When that fails the value itself is parsed as the view state (the older
  plain-JSON form). The UI refuses to save an envelope over 20,000 characters, the
  server's limit for an experiment tag value.
- The view state is one flat object. Search facets taken from it: ``searchFilter``,
  ``orderByKey``, ``orderByAsc``, ``startTime``, ``lifecycleFilter``,
  ``modelVersionFilter``, ``datasetsFilter``. UI state taken from it: ``selectedColumns``,
  ``columnOrder``, ``columnWidths``, ``runsHiddenMode``, ``compareRunCharts``,
  ``compareRunSections``, ``viewMaximized``, ``runListHidden``, ``isAccordionReordered``,
  ``groupBy``, ``groupsExpanded``, ``useGroupedValuesInCharts``, ``hideEmptyCharts``,
  ``globalLineChartConfig``, ``chartsSearchFilter`` (``runsExpanded``, ``runsPinned``,
  ``runsHidden``, ``runsVisibilityMap``, ``autoRefreshEnabled`` are dropped). Missing
  keys take the UI defaults. A view is not applied when the URL already carries one of
  the search facet parameters.
- Column keys are ``<type>.`<name>``` with type ``attributes``, ``params``, ``metrics``,
  ``tags``; ``orderByKey`` uses the same spelling.
- ``groupBy``: ``{"aggregateFunction": "min"|"average"|"max", "groupByKeys":
  [{"mode": "tag"|"param"|"dataset", "groupByData": <name>}]}``.
- ``runsHiddenMode``: ``SHOW_ALL``, ``HIDE_ALL``, ``FIRST_10_RUNS`` (default),
  ``FIRST_20_RUNS``, ``HIDE_FINISHED_RUNS``, ``CUSTOM``: which rows the charts plot.
- Chart cards (``compareRunCharts``): common fields ``uuid``, ``type`` (``BAR``, ``LINE``,
  ``SCATTER``, ``CONTOUR``, ``PARALLEL``, ``DIFFERENCE``, ``IMAGE``),
  ``runsCountToCompare``, ``metricSectionId``, ``deleted``, ``isGenerated``,
  ``displayName``; BAR adds ``metricKey``; LINE adds ``metricKey``, ``selectedMetricKeys``,
  ``lineSmoothness``, ``xAxisKey`` (``step``), ``xAxisScaleType``, ``scaleType``,
  ``selectedXAxisMetricKey``, ``yAxisKey`` (``metric``), ``yAxisExpressions``,
  ``ignoreOutliers``, ``useGlobalXaxisKey``, ``useGlobalLineSmoothing``; PARALLEL adds
  ``selectedParams``, ``selectedMetrics``, ``showAllRuns``. Sections
  (``compareRunSections``): ``uuid``, ``name``, ``display`` (expanded), ``isReordered``,
  ``deleted``, ``isGenerated``, ``columns`` (cards per row, default 3), ``cardHeight``
  (default 360). The runs page titles a card by its metric key (it passes
  ``useMetricDisplayName: false``), so ``displayName`` shows only elsewhere.
- On load the UI adds a card for every metric that has none, into the section named by
  the metric's prefix (``epoch/x`` -> ``epoch``, no prefix -> ``Model metrics``,
  ``system/`` -> ``System metrics``), and re-sorts sections by name unless
  ``isAccordionReordered``. So the views keep their own order and pre-declare those
  sections collapsed: the chosen charts come first, the rest stays one click away.
- ``compareRunsMode=CHART`` in the URL opens the charts instead of the table;
  ``workflowType=machine_learning`` skips the GenAI overview a new browser lands on.

Views are keyed by the parent run (``ser-<kind>-<run id>``), so writing again updates
the same tag; the parent run carries ``ser.view_key``, ``ser.view_url``,
``ser.chart_url``. Writing a view never fails a command: :func:`publish_step_view`
reports why and falls back to a plain runs link (filtered and sorted through the URL
parameters the UI reads, ``searchFilter``, ``orderByKey``, ``orderByAsc``).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import time
import urllib.parse
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ser_mlflow import tracking
from ser_mlflow.tracking.tags import (
    TAG_CHART_URL,
    TAG_CHILDREN,
    TAG_LOSS_GROUP,
    TAG_OBJECTIVE,
    TAG_PARENT_RUN,
    TAG_PROTOCOL,
    TAG_REUSED_RUNS,
    TAG_TRIAL_NUMBER,
    TAG_TRIAL_STATE,
    TAG_VIEW_KEY,
    TAG_VIEW_KIND,
    TAG_VIEW_NAME,
    TAG_VIEW_URL,
)

VIEW_TAG_PREFIX = "mlflow.sharedViewState."
SHARE_KEY_PARAM = "viewStateShareKey"
COMPRESSED_PREFIX = "deflate;"
#: The server's limit for an experiment tag value (the UI checks the same number).
MAX_VIEW_CHARS = 20_000
#: The UI's Views menu refuses to save a 41st view of an experiment; ser_mlflow keeps at
#: most this many of its own, so people keep room for theirs.
MAX_OWN_VIEWS = 20
#: The UI version whose source this format was read from.
CONFIRMED_UI_VERSION = (3, 17)

#: Keys of a view state the 3.17 UI applies (search facets, then UI state).
SEARCH_FACET_KEYS = frozenset(
    {"searchFilter", "orderByKey", "orderByAsc", "startTime", "lifecycleFilter",
     "modelVersionFilter", "datasetsFilter"}
)  # fmt: skip
UI_STATE_KEYS = frozenset(
    {"selectedColumns", "columnOrder", "columnWidths", "runsHiddenMode", "compareRunCharts",
     "compareRunSections", "viewMaximized", "runListHidden", "isAccordionReordered",
     "groupBy", "groupsExpanded", "useGroupedValuesInCharts", "hideEmptyCharts",
     "globalLineChartConfig", "chartsSearchFilter"}
)  # fmt: skip


DEFAULT_UI_URL = "http://127.0.0.1:5000"
ATTRS = ("arousal", "valence", "liking")
CCC = tuple(f"devel_ccc_{a}" for a in (*ATTRS, "mean"))


class ViewUnsupported(RuntimeError):
    """The MLflow UI that would open the link cannot read a saved view."""


@dataclass(frozen=True)
class View:
    """A saved view: where it lives and how to open it."""

    key: str
    experiment_id: str
    name: str
    kind: str
    parent_run_id: str

    def url(self, *, charts: bool = False, base: str | None = None) -> str:
        return view_url(self.experiment_id, self.key, charts=charts, base=base)


# --- URLs -----------------------------------------------------------------------------


def ui_base_url(uri: str | None = None) -> str:
    """Where the UI answers: the tracking server itself, else a local ``ser-mlflow ui``."""
    uri = uri or tracking.tracking_uri()
    if uri.startswith(("http://", "https://")):
        return uri.rstrip("/")
    return DEFAULT_UI_URL


def is_local_store(uri: str | None = None) -> bool:
    return not (uri or tracking.tracking_uri()).startswith(("http://", "https://"))


def runs_url(
    experiment_id: str,
    *,
    base: str | None = None,
    search_filter: str = "",
    order_by: str = "",
    order_asc: bool = False,
) -> str:
    """A plain runs-tab link, filtered and sorted through URL parameters (no saved view)."""
    query: dict[str, str] = {"workflowType": "machine_learning"}
    if search_filter:
        query["searchFilter"] = search_filter
    if order_by:
        query["orderByKey"] = order_by
        query["orderByAsc"] = str(order_asc).lower()
    qs = urllib.parse.urlencode(query, quote_via=urllib.parse.quote)
    return f"{base or ui_base_url()}/#/experiments/{experiment_id}/runs?{qs}"


def view_url(
    experiment_id: str, key: str, *, charts: bool = False, base: str | None = None
) -> str:
    """The link that opens a saved view (the charts with ``charts=True``)."""
    url = (
        f"{base or ui_base_url()}/#/experiments/{experiment_id}/runs"
        f"?workflowType=machine_learning&{SHARE_KEY_PARAM}={key}"
    )
    return url + "&compareRunsMode=CHART" if charts else url


def view_key(kind: str, parent_run_id: str) -> str:
    """Deterministic per parent run, so a rerun updates the view instead of adding one."""
    return f"ser-{kind}-{parent_run_id}"


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


def write_fusion_view(run_id: str) -> View:
    """The view of the fusion runs on the run's corpus, keyed by this run.

    Raises:
        ViewUnsupported, ValueError, MlflowException: see :func:`write_view`.
    """
    run = tracking.get_run(run_id)
    tags = run.data.tags
    state = fusion_state(search_filter=fusion_filter(tags.get(tracking.TAG_DIGEST, "")))
    name = f"ser fusion: paper vs cv, CCC per stage [{run_id[:8]}]"
    return write_view(kind="fusion", parent_run_id=run_id, name=name, state=state)


def publish_fusion_view(run_id: str) -> Published:
    """Write the fusion view; never raises (a link is a convenience, not a result)."""
    try:
        return Published("fusion", run_id, write_fusion_view(run_id))
    except ViewUnsupported as exc:
        reason = str(exc)
    except Exception as exc:  # a failing store call must not fail a finished fusion
        reason = f"writing the view failed ({type(exc).__name__}: {exc})"
    digest = ""
    with contextlib.suppress(Exception):
        digest = tracking.get_run(run_id).data.tags.get(tracking.TAG_DIGEST, "")
    return Published("fusion", run_id, None, reason, search_filter=fusion_filter(digest))


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


def encode_view(name: str, state: dict[str, Any], *, created_at: int, updated_at: int) -> str:
    """The experiment tag value: the UI's saved-view envelope, compressed only if needed.

    Raises:
        ValueError: the view does not fit the 20,000 characters of a tag value.
    """
    text = json.dumps(state, separators=(",", ":"))

    def envelope(inner: str) -> str:
        return json.dumps(
            {"name": name, "createdAt": created_at, "updatedAt": updated_at, "state": inner},
            separators=(",", ":"),
        )

    value = envelope(text)
    if len(value) > MAX_VIEW_CHARS:
        packed = base64.b64encode(zlib.compress(text.encode(), 9)).decode()
        value = envelope(COMPRESSED_PREFIX + packed)
    if len(value) > MAX_VIEW_CHARS:
        raise ValueError(f"view {name!r}: {len(value)} characters, over {MAX_VIEW_CHARS}")
    return value


def decode_view(value: str) -> tuple[str, int, dict[str, Any]]:
    """(name, createdAt, state) of a tag value in either form the UI reads."""
    try:
        env = json.loads(value)
        if isinstance(env, dict) and isinstance(env.get("state"), str):
            inner = env["state"]
            if inner.startswith(COMPRESSED_PREFIX):
                raw = base64.b64decode(inner[len(COMPRESSED_PREFIX) :])
                inner = zlib.decompress(raw).decode()
            return str(env.get("name", "")), int(env.get("createdAt", 0)), json.loads(inner)
        return "", 0, env
    except (ValueError, TypeError, zlib.error) as exc:
        raise ValueError(f"not a saved view: {exc}") from None


# --- can the UI read it? --------------------------------------------------------------


@functools.cache
def _installed_ui_reads_views() -> str | None:
    """None when the UI bundle of this MLflow reads shared views, else why not."""
    import mlflow

    js = Path(mlflow.__file__).parent / "server" / "js" / "build" / "static" / "js"
    bundles = sorted(js.glob("*.js")) if js.is_dir() else []
    if not bundles:
        return f"MLflow {mlflow.__version__} here has no UI bundle (mlflow-skinny?)"
    for path in bundles:
        with contextlib.suppress(OSError):
            if VIEW_TAG_PREFIX.encode() in path.read_bytes():
                return None
    return f"the MLflow {mlflow.__version__} UI here has no shared view states"


def _server_version(base: str, timeout: float = 3.0) -> str | None:
    import urllib.request

    with contextlib.suppress(Exception):
        with urllib.request.urlopen(f"{base}/version", timeout=timeout) as resp:  # noqa: S310
            return resp.read().decode().strip()
    return None


def unsupported_reason(uri: str | None = None) -> str | None:
    """Why the UI behind ``uri`` cannot open a saved view (None when it can).

    A local store is opened by this installation's UI, whose bundle is checked; a
    tracking server reports its version, and only versions whose UI source this format
    was confirmed against (3.17 and later within 3.x) count as readers.
    """
    uri = uri or tracking.tracking_uri()
    if is_local_store(uri):
        return _installed_ui_reads_views()
    version = _server_version(uri.rstrip("/"))
    if version is None:
        return f"could not ask the tracking server {uri} for its MLflow version"
    try:
        major, minor = (int(p) for p in version.split(".")[:2])
    except ValueError:
        return f"the tracking server reports an unknown MLflow version {version!r}"
    if (major, minor) < CONFIRMED_UI_VERSION or major != CONFIRMED_UI_VERSION[0]:
        return (
            f"the tracking server runs MLflow {version}; saved views are written in the "
            f"format of the MLflow {'.'.join(map(str, CONFIRMED_UI_VERSION))} UI"
        )
    return None


# --- writing and finding views --------------------------------------------------------


def write_view(*, kind: str, parent_run_id: str, name: str, state: dict[str, Any]) -> View:
    """Store ``state`` as the parent run's view and tag the run with its key and links.

    Raises:
        ViewUnsupported: the UI behind the tracking URI cannot read views.
        ValueError: the view is too large for a tag value.
        mlflow.exceptions.MlflowException: the store refused the tag.
    """
    reason = unsupported_reason()
    if reason:
        raise ViewUnsupported(reason)
    exp_id = tracking.get_run(parent_run_id).info.experiment_id
    key = view_key(kind, parent_run_id)
    tag = VIEW_TAG_PREFIX + key
    now = int(time.time() * 1000)
    created = now
    existing = tracking.experiment_tags(exp_id).get(tag)
    if existing:
        with contextlib.suppress(ValueError):
            created = decode_view(existing)[1] or now
    value = encode_view(name, state, created_at=created, updated_at=now)
    tracking.set_experiment_tag(exp_id, tag, value)
    _prune_own_views(exp_id, keep=tag)
    view = View(key=key, experiment_id=exp_id, name=name, kind=kind, parent_run_id=parent_run_id)
    tracking.set_run_tags(
        parent_run_id,
        {
            TAG_VIEW_KEY: key,
            TAG_VIEW_KIND: kind,
            TAG_VIEW_NAME: name,
            TAG_VIEW_URL: view.url(),
            TAG_CHART_URL: view.url(charts=True),
        },
    )
    return view


def _prune_own_views(experiment_id: str, *, keep: str) -> None:
    """Drop the least recently updated ``ser-`` views beyond :data:`MAX_OWN_VIEWS`.

    Views people saved themselves (other keys) are never touched.
    """
    own = []
    for key, value in tracking.experiment_tags(experiment_id).items():
        if key.startswith(VIEW_TAG_PREFIX + "ser-") and key != keep:
            try:
                updated = int(json.loads(value).get("updatedAt", 0))
            except (ValueError, TypeError, AttributeError):
                updated = 0
            own.append((updated, key))
    for _, key in sorted(own)[: max(0, len(own) + 1 - MAX_OWN_VIEWS)]:
        with contextlib.suppress(Exception):
            tracking.delete_experiment_tag(experiment_id, key)


def _view_name(kind: str, parent_run_id: str, params: dict[str, str]) -> str:
    fs = params.get("feature_sets", "")
    if kind == "compare":
        detail = f"{fs}, seeds {params.get('seeds', '?')}"
    elif kind == "delay":
        detail = f"{fs}, shifts {params.get('shifts', '?')}"
    elif kind == "search":
        detail = fs
    else:
        detail = fs.replace(",", " ")
    detail = detail if len(detail) <= 60 else detail[:57] + "..."
    return f"ser {kind}: {detail} [{parent_run_id[:8]}]"


def write_step_view(step: str, parent_run_id: str, *, rank_metric: str = "devel_ccc_mean") -> View:
    """The view of a pipeline step (compare: grouped by loss; unimodal/bimodal: ranking)."""
    run = tracking.get_run(parent_run_id)
    params = dict(run.data.params)
    flt = step_filter(parent_run_id, run.data.tags)
    if step == "compare":
        state = compare_state(parent_run_id, search_filter=flt)
    elif step == "delay":
        state = delay_state(parent_run_id, search_filter=flt)
    else:
        state = ranking_state(parent_run_id, rank_metric=rank_metric, search_filter=flt)
    name = _view_name(step, parent_run_id, params)
    return write_view(kind=step, parent_run_id=parent_run_id, name=name, state=state)


def write_search_view(
    parent_run_id: str,
    experiment_id: str | None = None,
    objective_metric: str | Sequence[str] = "devel_ccc_mean",
) -> View:
    """The view of a search's trials: alpha, beta, gamma and the objective(s) as columns.

    Args:
        parent_run_id: the search's parent run (trials are its children).
        experiment_id: unused beyond a check; the parent run knows its experiment.
        objective_metric: the metric maximised, or the metrics of a multi-objective search
            (the first one sorts the table).

    Raises:
        ViewUnsupported, ValueError, MlflowException: see :func:`write_view`.
    """
    run = tracking.get_run(parent_run_id)
    if experiment_id is not None and run.info.experiment_id != str(experiment_id):
        raise ValueError(
            f"run {parent_run_id} is in experiment {run.info.experiment_id}, not {experiment_id}"
        )
    objectives = [objective_metric] if isinstance(objective_metric, str) else objective_metric
    state = search_state(parent_run_id, objective_metrics=list(objectives))
    name = _view_name("search", parent_run_id, dict(run.data.params))
    return write_view(kind="search", parent_run_id=parent_run_id, name=name, state=state)


@dataclass(frozen=True)
class Published:
    """The outcome of writing a step's view: the view, or why there is none."""

    step: str
    parent_run_id: str
    view: View | None
    reason: str = ""
    rank_metric: str = "devel_ccc_mean"
    search_filter: str = ""

    def lines(self, *, base: str | None = None) -> list[str]:
        """What a command prints; never raises (a link is a convenience, not a result)."""
        try:
            return link_lines(
                self.view,
                parent_run_id=self.parent_run_id,
                reason=self.reason,
                charts=self.step in ("compare", "search", "fusion", "delay"),
                order_by=self.rank_metric,
                base=base,
                search_filter=self.search_filter,
            )
        except Exception as exc:
            return [f"(no MLflow UI link: {type(exc).__name__}: {exc})"]


def publish_step_view(
    step: str, parent_run_id: str, *, rank_metric: str = "devel_ccc_mean"
) -> Published:
    """Write a step's view; never raises, so nothing fails because of a view."""
    try:
        view = write_step_view(step, parent_run_id, rank_metric=rank_metric)
        return Published(step, parent_run_id, view, rank_metric=rank_metric)
    except ViewUnsupported as exc:
        reason = str(exc)
    except Exception as exc:  # a failing store call must not fail a finished step
        reason = f"writing the view failed ({type(exc).__name__}: {exc})"
    return Published(step, parent_run_id, None, reason, rank_metric)


def link_lines(
    view: View | None,
    *,
    parent_run_id: str,
    experiment_id: str | None = None,
    reason: str = "",
    charts: bool = True,
    order_by: str = "devel_ccc_mean",
    base: str | None = None,
    search_filter: str = "",
) -> list[str]:
    """The view's links (table, and charts when asked), or a plain runs link and why.

    ``search_filter`` replaces the step's children filter of the plain link.
    """
    lines = []
    if view is not None:
        lines.append(f"MLflow UI view {view.name!r}:")
        lines.append(f"  table : {view.url(base=base)}")
        if charts:
            lines.append(f"  charts: {view.url(charts=True, base=base)}")
    else:
        exp = experiment_id or _experiment_of(parent_run_id)
        lines.append(f"No saved MLflow UI view: {reason or 'unknown reason'}. Plain runs link:")
        lines.append(
            "  "
            + runs_url(
                exp,
                base=base,
                search_filter=search_filter or step_filter(parent_run_id),
                order_by=col("metrics", order_by),
            )
        )
    if base is None and is_local_store():
        lines.append("  (start the UI first: `ser-mlflow ui`)")
    return lines


def _experiment_of(run_id: str) -> str:
    with contextlib.suppress(Exception):
        return str(tracking.get_run(run_id).info.experiment_id)
    return "0"


def search_objective_metrics(objective: str) -> list[str]:
    """The run metrics behind a search's ``ser.objective`` tag (``multi``: all three)."""
    if objective == "multi":
        return [f"devel_ccc_{a}" for a in ATTRS]
    return [f"devel_ccc_{objective or 'mean'}"]


def backfill_search_views(*, max_runs: int = 20) -> list[View]:
    """Write the view of recent searches that have none (searches run before views).

    Never raises: a search whose view cannot be written is left as it is.
    """
    out = []
    with contextlib.suppress(Exception):
        runs = tracking.search_runs(
            filter_string=f"tags.`{tracking.TAG_STAGE}` = 'search'",
            order_by=["attributes.start_time DESC"],
            max_results=max_runs,
        )
        for r in runs:
            if TAG_VIEW_KEY in r.data.tags:
                continue
            metrics = search_objective_metrics(r.data.tags.get(TAG_OBJECTIVE, "mean"))
            with contextlib.suppress(Exception):
                out.append(write_search_view(r.info.run_id, objective_metric=metrics))
    return out


def latest_views(*, max_results: int = 5) -> list[View]:
    """Views of the newest parent runs that carry a view key (any experiment)."""
    runs = tracking.search_runs(
        filter_string=f"tags.`{TAG_VIEW_KEY}` LIKE 'ser-%'",
        order_by=["attributes.start_time DESC"],
        max_results=max_results,
    )
    out = []
    for r in runs:
        tags = r.data.tags
        out.append(
            View(
                key=tags[TAG_VIEW_KEY],
                experiment_id=r.info.experiment_id,
                name=tags.get(TAG_VIEW_NAME, tags[TAG_VIEW_KEY]),
                kind=tags.get(TAG_VIEW_KIND, ""),
                parent_run_id=r.info.run_id,
            )
        )
    return out


def read_view(view: View) -> dict[str, Any]:
    """The state stored for ``view`` (what the UI will apply)."""
    tracking.configure()
    value = tracking.experiment_tags(view.experiment_id)[VIEW_TAG_PREFIX + view.key]
    return decode_view(value)[2]


# --- the UI server --------------------------------------------------------------------


def ui_server_command(
    *,
    uri: str | None = None,
    host: str = "127.0.0.1",
    port: int = 5000,
    workers: int = 1,
    artifacts: Path | None = None,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """``mlflow server`` on the project's store, serving ./mlartifacts for proxied artifacts.

    Experiments created by ser_mlflow keep their artifacts under ``./mlartifacts`` as
    local paths, which the server reads directly; ``--artifacts-destination`` makes the
    server's own ``mlflow-artifacts:/`` root the same folder, so runs logged through the
    server land beside them. One worker is plenty for one user and spares a small machine.
    """
    import sys

    uri = uri or tracking.tracking_uri()
    dest = (artifacts or Path.cwd() / tracking.DEFAULT_ARTIFACT_DIR).resolve()
    return [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        uri,
        "--artifacts-destination",
        dest.as_uri(),
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
        *extra_args,
    ]


def ui_server_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The server's environment: MLflow's job runner off unless the user turned it on.

    ``mlflow server`` 3.17 starts a job runner and three task consumers (about 1 GB and a
    core at start) for GenAI jobs this project never submits; on a small machine that
    slows the UI and everything training beside it.
    """
    import os

    env = dict(os.environ if base is None else base)
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    return env


def local_base(host: str, port: int) -> str:
    """The address a local browser uses for a server bound to ``host``."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"
