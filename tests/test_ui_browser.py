"""The compare view in a real browser: headless Chromium against an `mlflow server`.

One small compare (2 seeds, tiny corpus, 2 epochs, units 8,4) goes into a private sqlite
store; `mlflow server` serves it on 127.0.0.1; Chromium opens the links `compare` printed
and the rendered page must show what the view promises. Skipped only where Chromium is
missing outside CI (`CI` set: a failure, since `.ci/run` installs it).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ser_mlflow import browser, pipeline, tracking, views
from ser_mlflow.cli import config_from_options

pytestmark = pytest.mark.slow

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
    alias_base: str  # the same server under browser.UI_ALIAS (no Assistant panel)
    table_url: str
    chart_url: str
    output: str
    tmp: Path


@pytest.fixture(scope="module")
def served(tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    _require_chromium()
    import mlflow

    tmp = tmp_path_factory.mktemp("ui")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    previous = mlflow.get_tracking_uri()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.delenv("MLFLOW_RUN_ID", raising=False)
        mp.chdir(tmp)
        mlflow.set_tracking_uri(uri)
        base_cfg = config_from_options(
            data_root=str(tiny_corpus), epochs=2, units="8,4", batch_size=4, experiment="ui"
        )
        tracking.ensure_experiment("ui")  # the schema exists before the server opens it
        log = tmp / "server.log"
        with browser.UiServer(uri, cwd=tmp, log=log, alias=browser.UI_ALIAS) as server:
            lines: list[str] = []  # the server boots while the runs train
            pipeline.compare(base_cfg, feature_set="fau", seeds=[0, 1], echo=lines.append)
            assert mlflow.active_run() is None
            output = "\n".join(lines)
            table = re.search(r"table : (\S+)", output)
            charts = re.search(r"charts: (\S+)", output)
            assert table and charts, output
            server.wait(timeout=120)
            yield Served(
                base=server.local_url,
                alias_base=server.url,
                table_url=table.group(1).replace(views.DEFAULT_UI_URL, server.local_url),
                chart_url=charts.group(1).replace(views.DEFAULT_UI_URL, server.local_url),
                output=output,
                tmp=tmp,
            )
    mlflow.set_tracking_uri(previous)


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
    groups = [f"Group: {loss}" for loss in LOSSES]
    dom = _dom_showing(served.table_url, [*groups, *CCC_COLUMNS, "10 matching runs"])
    assert "Error loading shared view state" not in _text(dom)
    for c in CCC_COLUMNS:  # the columns are there as columns, not only as words
        assert f'col-id="metrics.`{c}`"' in dom


def test_chart_view_shows_the_ccc_curves_and_bars(served: Served) -> None:
    charts = [f"epoch/{c}" for c in CCC_COLUMNS] + CCC_COLUMNS
    needles = ["Devel CCC per epoch", "Devel CCC at the best epoch", *LOSSES, *charts]
    window = (1600, 1300)  # both chart sections in view
    with browser.Page(window=window) as page:
        page.goto(served.chart_url)
        page.wait_for(browser.shows_text(needles), timeout=60)
        page.wait_for(browser.CHARTS_DRAWN, timeout=60)
        plots = page.evaluate("document.querySelectorAll('.js-plotly-plot').length")
        assert plots >= 8, "four per-epoch curves and four bar charts"
    png = served.tmp / "compare-charts.png"
    url = served.chart_url.replace(served.base, served.alias_base)
    browser.screenshot(url, png, ready=browser.CHARTS_DRAWN, window=window)
    head = png.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    assert (int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")) == window
    assert png.stat().st_size > 50_000  # a drawn page, not a blank one
    keep = os.environ.get("SER_UI_SCREENSHOT")
    if keep:  # SER_UI_SCREENSHOT=/path/to.png keeps the picture for a look
        Path(keep).write_bytes(png.read_bytes())
