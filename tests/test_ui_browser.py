"""The compare view in a real browser: headless Chromium against an `mlflow server`.

`mlflow run . -e compare` without --experiment-name, as a user types it, on a fresh store
(``sqlite:///mlflow.db`` in the working folder): one small compare (2 seeds, tiny corpus,
2 epochs, units 8,4). MLflow puts its run in ``Default``; the step's parent, its children
and its view must all be there, with artifacts under ./mlartifacts. `mlflow server`
serves the store on 127.0.0.1 (the one launcher, `ser_mlflow.ui.server`) and Chromium
(Playwright, tools/ui_browser.py) opens the printed links as a user gets them
(the Assistant panel open): the page must show what the view promises. Skipped only where
Chromium is missing outside CI (`CI` set: a failure, since `.ci/run` installs it).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import ui_browser as browser

from ser_mlflow import views
from ser_mlflow.ui.process import free_port
from ser_mlflow.ui.server import BackgroundServer, ui_settings

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
LOSSES = ("STL1", "STL2", "STL3", "MTL1", "MTL2")
CCC_COLUMNS = [f"devel_ccc_{a}" for a in ("arousal", "valence", "liking", "mean")]


def _require_chromium() -> None:
    if browser.find_chromium():
        return
    if os.environ.get("CI"):
        pytest.fail("chromium is missing in CI: .ci/run installs it (apt-get install chromium)")
    pytest.skip("chromium not installed (Debian: apt-get install -y chromium); CI fails here")


@dataclass
class Served:
    base: str  # http://127.0.0.1:<port>, as a user opens it
    table_url: str
    chart_url: str
    output: str
    tmp: Path
    uri: str


@pytest.fixture(scope="module")
def served(tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    _require_chromium()
    tmp = tmp_path_factory.mktemp("ui")
    for name in ("MLproject", "conda.yaml"):  # the project, without a store of its own
        shutil.copy(REPO / name, tmp / name)
    bindir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME")}
    env["MLFLOW_TRACKING_URI"] = "sqlite:///mlflow.db"  # the default, relative, as users have it
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    cmd = [str(Path(bindir) / "mlflow"), "run", ".", "-e", "compare", "--env-manager", "local",
           "-P", f"data_root={tiny_corpus}", "-P", "seeds=0,1", "-P", "epochs=2",
           "-P", "units=8,4", "-P", "batch_size=4"]
    proc = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    launched = threading.Event()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "=== Running command" in line:
                launched.set()  # MLflow created the store and its run
        launched.set()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    try:
        assert launched.wait(timeout=600), "mlflow run did not start its command"
        # the server boots while the runs train
        settings = ui_settings(uri, port=free_port(), cwd=tmp)
        with BackgroundServer(settings, cwd=tmp, log=tmp / "server.log") as server:
            proc.wait(timeout=1800)
            reader.join(timeout=60)
            output = "".join(lines)
            assert proc.returncode == 0, output[-3000:]
            table = re.search(r"table : (\S+)", output)
            charts = re.search(r"charts: (\S+)", output)
            assert table and charts, output[-3000:]
            base = server.wait(timeout=120)
            yield Served(
                base=base,
                table_url=table.group(1).replace(views.DEFAULT_UI_URL, base),
                chart_url=charts.group(1).replace(views.DEFAULT_UI_URL, base),
                output=output,
                tmp=tmp,
                uri=uri,
            )
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=60)


def test_mlflow_run_keeps_the_step_in_one_experiment(served: Served) -> None:
    """Parent (MLflow's run, in Default), children and view together; no ./mlruns."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(served.uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert {r.info.experiment_id for r in runs} == {"0"}, "all in Default"
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(runs) == 11 and parent.data.tags["ser.step"] == "compare"
    assert f"/#/experiments/0/runs?workflowType=machine_learning&viewStateShareKey=ser-compare-" \
        f"{parent.info.run_id}" in served.table_url
    assert any(k.startswith(views.VIEW_TAG_PREFIX) for k in client.get_experiment("0").tags)
    root = (served.tmp / "mlartifacts").resolve().as_uri()
    assert all(r.info.artifact_uri.startswith(root) for r in runs)
    assert not (served.tmp / "mlruns").exists()


def _dom_showing(url: str, needles: list[str], *, window: tuple[int, int] = (1600, 1000)) -> str:
    """The rendered DOM once every needle is in the page's text (60 s at most)."""
    return browser.dump_dom(url, ready=browser.shows_text(needles), window=window, timeout=60)


def _text(dom: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom))


def test_compare_prints_both_links(served: Served) -> None:
    assert "viewStateShareKey=ser-compare-" in served.table_url
    assert served.chart_url == served.table_url + "&compareRunsMode=CHART"
    assert "ser-mlflow ui" in served.output


def test_table_view_shows_the_five_loss_groups_and_ccc_columns(served: Served) -> None:
    """Group rows say they are means; the four CCC columns are in view beside the
    Assistant panel, the sorted one (the mean) first."""
    groups = [f"Group: {views.loss_group(loss)}" for loss in LOSSES]
    with browser.Page(window=(1600, 1000)) as page:
        page.goto(served.table_url)
        page.wait_for(browser.shows_text([*groups, *CCC_COLUMNS]))
        dom = page.html()
        # the page as a user on 127.0.0.1 gets it: with MLflow's Assistant panel open
        assert page.evaluate("!!document.querySelector('[data-assistant-ui]')")
        right = page.evaluate(
            "document.querySelector('.ag-root-wrapper').getBoundingClientRect().right")
        edges = page.evaluate(
            "[...document.querySelectorAll('.ag-header-cell[col-id^=\"metrics.\"]')]"
            ".map(h => [h.getAttribute('col-id'), h.getBoundingClientRect().right])")
    assert "Error loading shared view state" not in _text(dom)
    # left to right as drawn: ag-grid moves columns by position, so DOM order is not the
    # order a user sees (it is the order the grid first had, before the view applied)
    edges = sorted(edges, key=lambda edge: edge[1])
    assert [c for c, _ in edges][:4] == [f"metrics.`{c}`" for c in (CCC_COLUMNS[-1],
                                                                   *CCC_COLUMNS[:-1])]
    assert all(edge <= right for _, edge in edges[:4]), (edges, right)


def test_chart_view_shows_the_ccc_curves_and_bars(served: Served) -> None:
    charts = [f"epoch/{c}" for c in CCC_COLUMNS] + CCC_COLUMNS
    needles = ["Devel CCC per epoch", "Devel CCC at the best epoch", *LOSSES, *charts]
    window = (1600, 1300)
    # MLflow mounts only the charts near the viewport: a page tall enough for every card
    # lets the titles be read without scrolling (the width is still what a user has)
    with browser.Page(window=(window[0], 3000)) as page:
        page.goto(served.chart_url)
        page.wait_for(browser.shows_text(needles), timeout=60)
        page.wait_for(browser.CHARTS_DRAWN, timeout=60)
        titles = dict(page.evaluate(browser.CHART_TITLES))
    # every chart is titled by its whole metric name, so it says which attribute it shows
    assert set(charts) <= set(titles), titles
    assert not [t for t in charts if titles[t]], f"titles cut: {titles}"
    png = served.tmp / "compare-charts.png"
    browser.screenshot(served.chart_url, png, ready=browser.CHARTS_DRAWN, window=window)
    head = png.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    assert (int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")) == window
    assert png.stat().st_size > 50_000  # a drawn page, not a blank one
    keep = os.environ.get("SER_UI_SCREENSHOT")
    if keep:  # SER_UI_SCREENSHOT=/path/to.png keeps the picture for a look
        Path(keep).write_bytes(png.read_bytes())
