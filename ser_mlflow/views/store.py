"""Writing saved views to the tracking store and finding them again (links printed by steps
and by ``ser-mlflow ui``).

A view is an experiment tag, so writing one is tracking: it goes through ``tracking`` only.
Writing a view never fails a command: :func:`publish_step_view` reports why and falls
back to a plain runs link.
"""

from __future__ import annotations

import contextlib
import functools
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ser_mlflow import tracking
from ser_mlflow.tracking.tags import (
    TAG_CHART_URL,
    TAG_OBJECTIVE,
    TAG_VIEW_KEY,
    TAG_VIEW_KIND,
    TAG_VIEW_NAME,
    TAG_VIEW_URL,
)
from ser_mlflow.views.codec import (
    CONFIRMED_UI_VERSION,
    VIEW_TAG_PREFIX,
    View,
    ViewUnsupported,
    decode_view,
    encode_view,
    is_local_store,
    runs_url,
    view_key,
)
from ser_mlflow.views.recipes import (
    col,
    compare_state,
    delay_state,
    fusion_filter,
    fusion_state,
    ranking_state,
    search_objective_metrics,
    search_state,
    step_filter,
)

#: The UI's Views menu refuses to save a 41st view of an experiment; ser_mlflow keeps at
#: most this many of its own, so people keep room for theirs.
MAX_OWN_VIEWS = 20


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


# --- can the UI read it? --------------------------------------------------------------


@functools.cache
def _installed_ui_reads_views() -> str | None:
    """None when the UI bundle of this MLflow reads shared views, else why not."""
    version, bundles = tracking.installed_ui_bundle()
    if not bundles:
        return f"MLflow {version} here has no UI bundle (mlflow-skinny?)"
    for path in bundles:
        with contextlib.suppress(OSError):
            if VIEW_TAG_PREFIX.encode() in path.read_bytes():
                return None
    return f"the MLflow {version} UI here has no shared view states"


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
