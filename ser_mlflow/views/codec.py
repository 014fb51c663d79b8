"""The saved-view codec: MLflow's shared view state format, its URLs, encode and decode.

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
import json
import urllib.parse
import zlib
from dataclasses import dataclass
from typing import Any

from ser_mlflow import tracking

VIEW_TAG_PREFIX = "mlflow.sharedViewState."


SHARE_KEY_PARAM = "viewStateShareKey"


COMPRESSED_PREFIX = "deflate;"


#: The server's limit for an experiment tag value (the UI checks the same number).
MAX_VIEW_CHARS = 20_000


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
