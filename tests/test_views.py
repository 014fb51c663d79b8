"""Saved MLflow UI views: the state the UI reads, keys, links, store writes, fallbacks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from click.testing import CliRunner

from ser_mlflow import tracking, views
from ser_mlflow.cli import main
from ser_mlflow.ui.process import free_port
from ser_mlflow.ui.server import client_uri, job_runner_env, prepare_launch, ui_settings

LOSSES = ("STL1", "STL2", "STL3", "MTL1", "MTL2")


@pytest.fixture
def parent(tracking_store: str) -> Iterator[str]:
    """A finished parent run with five loss-tagged children (no training)."""
    exp = mlflow.set_experiment("views")
    with mlflow.start_run(run_name="compare", tags={"ser.stage": "pipeline"}) as p:
        mlflow.log_params({"feature_sets": "fau", "seeds": "0,1"})
        for loss in LOSSES:
            with mlflow.start_run(run_name=loss, nested=True, tags={"ser.loss": loss}):
                mlflow.log_metrics({"devel_ccc_mean": 0.1, "devel_ccc_arousal": 0.2})
                mlflow.log_metric("epoch/devel_ccc_mean", 0.05, step=1)
    assert exp.experiment_id == p.info.experiment_id
    yield p.info.run_id


def _applied(state: dict) -> set[str]:
    return set(state) - views.SEARCH_FACET_KEYS - views.UI_STATE_KEYS


def test_compare_state_groups_by_loss_and_puts_ccc_charts_first() -> None:
    state = views.compare_state("abc")
    assert not _applied(state), "keys the UI would ignore"
    assert state["searchFilter"] == "tags.`mlflow.parentRunId` = 'abc'"
    assert (state["orderByKey"], state["orderByAsc"]) == ("metrics.`devel_ccc_mean`", False)
    assert state["groupBy"] == {  # group rows read "Group: MTL2 mean"
        "aggregateFunction": "average",
        "groupByKeys": [{"mode": "tag", "groupByData": "ser.loss_group"}],
    }
    assert views.loss_group("MTL2") == "MTL2 mean"
    assert state["selectedColumns"] == [  # the sorted column first: in view beside the panel
        *(f"metrics.`devel_ccc_{a}`" for a in ("mean", "arousal", "valence", "liking")),
        "tags.`ser.loss`",
    ]
    assert state["runListHidden"] is True  # the charts get the width: titles not cut
    cards = state["compareRunCharts"]
    assert [c["type"] for c in cards] == ["LINE"] * 4 + ["BAR"] * 4
    assert cards[0]["metricKey"] == "epoch/devel_ccc_mean"
    assert cards[4]["metricKey"] == "devel_ccc_mean"
    sections = state["compareRunSections"]
    assert [s["display"] for s in sections] == [True, True, False, False, False]
    assert {c["metricSectionId"] for c in cards} == {s["uuid"] for s in sections[:2]}
    assert state["isAccordionReordered"] is True  # keep our order, not alphabetical


def test_ranking_and_search_states() -> None:
    rank = views.ranking_state("p", rank_metric="devel_ccc_arousal")
    assert not _applied(rank)
    assert rank["orderByKey"] == "metrics.`devel_ccc_arousal`"
    assert rank["selectedColumns"][:2] == [
        "tags.`ser.feature_sets`",
        "metrics.`devel_ccc_arousal`",
    ]
    assert "groupBy" not in rank
    search = views.search_state("p", objective_metrics=["devel_ccc_valence", "devel_ccc_liking"])
    assert not _applied(search)
    assert search["orderByKey"] == "metrics.`devel_ccc_valence`"
    assert search["selectedColumns"][:3] == ["params.`alpha`", "params.`beta`", "params.`gamma`"]
    parallel = search["compareRunCharts"][0]
    assert parallel["type"] == "PARALLEL"
    assert parallel["selectedParams"] == ["alpha", "beta", "gamma"]
    assert parallel["selectedMetrics"] == ["devel_ccc_valence", "devel_ccc_liking"]


def test_links_and_keys() -> None:
    assert views.view_key("compare", "r1") == "ser-compare-r1"
    url = views.view_url("7", "ser-compare-r1", base="http://h:1")
    assert url == (
        "http://h:1/#/experiments/7/runs?workflowType=machine_learning"
        "&viewStateShareKey=ser-compare-r1"
    )
    assert views.view_url("7", "k", charts=True, base="http://h:1").endswith(
        "&viewStateShareKey=k&compareRunsMode=CHART"
    )
    plain = views.runs_url(
        "7", base="http://h:1", search_filter="tags.`a` = 'b'", order_by="metrics.`m`"
    )
    assert "searchFilter=tags.%60a%60%20%3D%20%27b%27" in plain
    assert plain.endswith("orderByKey=metrics.%60m%60&orderByAsc=false")
    assert views.ui_base_url("sqlite:///mlflow.db") == "http://127.0.0.1:5000"
    assert views.ui_base_url("http://tracking:8080/") == "http://tracking:8080"
    assert client_uri("0.0.0.0", 5001) == "http://127.0.0.1:5001"


def test_envelope_round_trip_and_compression() -> None:
    state = views.compare_state("abc")
    value = views.encode_view("n", state, created_at=1, updated_at=2)
    env = json.loads(value)
    assert set(env) == {"name", "createdAt", "updatedAt", "state"}
    assert isinstance(env["state"], str) and json.loads(env["state"]) == state
    assert views.decode_view(value) == ("n", 1, state)
    big = {**state, "chartsSearchFilter": "x" * 30_000}  # compressible past the limit
    packed = views.encode_view("n", big, created_at=1, updated_at=2)
    assert len(packed) <= views.MAX_VIEW_CHARS
    assert json.loads(packed)["state"].startswith("deflate;")
    assert views.decode_view(packed)[2] == big
    assert views.decode_view(json.dumps(state))[2] == state  # the plain legacy form
    with pytest.raises(ValueError, match="over 20000"):
        views.encode_view(
            "n",
            {"chartsSearchFilter": "x" * 40_000, "y": list(range(9000))},
            created_at=1,
            updated_at=1,
        )


def test_write_step_view_is_idempotent_and_tags_the_parent(parent: str) -> None:
    client = mlflow.MlflowClient()
    first = views.write_step_view("compare", parent)
    exp_id = first.experiment_id
    tag = views.VIEW_TAG_PREFIX + first.key
    created = json.loads(client.get_experiment(exp_id).tags[tag])["createdAt"]
    second = views.write_step_view("compare", parent)
    assert second == first
    tags = client.get_experiment(exp_id).tags
    assert [k for k in tags if k.startswith(views.VIEW_TAG_PREFIX)] == [tag]
    assert json.loads(tags[tag])["createdAt"] == created
    assert views.read_view(first)["groupBy"]["groupByKeys"][0]["groupByData"] == (
        "ser.loss_group")
    run_tags = client.get_run(parent).data.tags
    assert run_tags[tracking.TAG_VIEW_KEY] == first.key
    assert run_tags[tracking.TAG_CHART_URL] == first.url(charts=True)
    assert first.name == f"ser compare: fau, seeds 0,1 [{parent[:8]}]"
    assert views.latest_views() == [first]


def test_own_views_are_capped_and_others_kept(
    parent: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(views.store, "MAX_OWN_VIEWS", 3)
    client = mlflow.MlflowClient()
    exp_id = mlflow.get_run(parent).info.experiment_id
    client.set_experiment_tag(exp_id, views.VIEW_TAG_PREFIX + "mine", "{}")
    for i in range(3):  # older ser views of other (here: made-up) parent runs
        value = views.encode_view(f"v{i}", {}, created_at=i, updated_at=i)
        client.set_experiment_tag(exp_id, views.VIEW_TAG_PREFIX + f"ser-compare-old{i}", value)
    views.write_step_view("compare", parent)
    left = sorted(k for k in client.get_experiment(exp_id).tags if "sharedViewState" in k)
    assert left == sorted(
        views.VIEW_TAG_PREFIX + k
        for k in ("mine", "ser-compare-old1", "ser-compare-old2", f"ser-compare-{parent}")
    )


def test_a_step_that_reused_runs_lists_them_by_id(parent: str) -> None:
    client = mlflow.MlflowClient()
    client.set_tag(parent, "ser.children", "aaa,bbb,")
    client.set_tag(parent, "ser.reused_runs", "bbb")
    flt = "attributes.run_id IN ('aaa', 'bbb')"
    assert views.step_filter(parent) == flt
    assert views.read_view(views.write_step_view("unimodal", parent))["searchFilter"] == flt
    client.set_tag(parent, "ser.reused_runs", "")
    assert views.step_filter(parent) == views.children_filter(parent)


def test_search_view(parent: str) -> None:
    exp_id = mlflow.get_run(parent).info.experiment_id
    view = views.write_search_view(parent, exp_id, "devel_ccc_mean")
    assert view.key == f"ser-search-{parent}"
    assert views.read_view(view)["selectedColumns"][0] == "params.`alpha`"
    with pytest.raises(ValueError, match="not 999"):
        views.write_search_view(parent, "999")


def test_unsupported_ui_prints_a_plain_filtered_link(
    parent: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(views.store, "unsupported_reason", lambda uri=None: "old UI")
    published = views.publish_step_view("compare", parent)
    assert published.view is None and published.reason == "old UI"
    lines = published.lines()
    assert lines[0] == "No saved MLflow UI view: old UI. Plain runs link:"
    assert "searchFilter=" in lines[1] and "viewStateShareKey" not in lines[1]
    assert not any(
        k.startswith(views.VIEW_TAG_PREFIX)
        for k in mlflow.get_experiment(mlflow.get_run(parent).info.experiment_id).tags
    )


def test_a_failing_store_never_fails_the_step(
    parent: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*a: object, **k: object) -> None:
        raise RuntimeError("store down")

    monkeypatch.setattr(mlflow.MlflowClient, "set_experiment_tag", boom)
    published = views.publish_step_view("unimodal", parent)
    assert published.view is None
    assert "store down" in published.reason
    assert "Plain runs link" in published.lines()[0]


def test_remote_server_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(views.store, "_server_version", lambda base, timeout=3.0: "3.17.2")
    assert views.unsupported_reason("http://srv:5000") is None
    monkeypatch.setattr(views.store, "_server_version", lambda base, timeout=3.0: "2.9.0")
    assert "MLflow 2.9.0" in (views.unsupported_reason("http://srv:5000") or "")
    monkeypatch.setattr(views.store, "_server_version", lambda base, timeout=3.0: None)
    assert "could not ask" in (views.unsupported_reason("http://srv:5000") or "")


def test_installed_ui_reads_views() -> None:
    assert views.unsupported_reason("sqlite:///x.db") is None


def test_ui_command_prints_latest_views(parent: str, tracking_store: str) -> None:
    view = views.write_step_view("compare", parent)
    res = CliRunner().invoke(main, ["ui", "--links-only", "--port", "5055"])
    assert res.exit_code == 0, res.output
    assert view.url(base="http://127.0.0.1:5055") in res.output
    assert view.url(charts=True, base="http://127.0.0.1:5055") in res.output


def test_ui_server_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`ser-mlflow ui` runs the one launcher's command on the project's store."""
    port = free_port()
    monkeypatch.delenv("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", raising=False)
    launch = prepare_launch(ui_settings("sqlite:///m.db", port=port, cwd=tmp_path))
    cmd = launch.command
    assert cmd[1:4] == ["-m", "mlflow", "server"]
    assert cmd[4:] == ["--host", "127.0.0.1", "--port", str(port), "--serve-artifacts",
                       "--artifacts-destination", str((tmp_path / "mlartifacts").resolve()),
                       "--workers", "1"]
    assert launch.env["MLFLOW_BACKEND_STORE_URI"] == "sqlite:///m.db"
    assert launch.env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert job_runner_env({})["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert job_runner_env({"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "true"})[
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "true"


def test_backfill_writes_views_of_earlier_searches_once(tracking_store: str) -> None:
    mlflow.set_experiment("views")
    with mlflow.start_run(tags={"ser.stage": "search", "ser.objective": "multi"}) as p:
        pass
    (view,) = views.backfill_search_views()
    assert view.key == f"ser-search-{p.info.run_id}"
    columns = views.read_view(view)["selectedColumns"]
    assert [c for c in columns if c.startswith("metrics.")] == [
        "metrics.`devel_ccc_arousal`",
        "metrics.`devel_ccc_valence`",
        "metrics.`devel_ccc_liking`",
        "metrics.`devel_ccc_mean`",
    ]
    assert views.backfill_search_views() == []
