"""Headless Chromium against a local MLflow UI, for the real-browser tests and screenshots.

The UI is a single-page app that builds the page from REST calls, so what a user sees is
only known after a browser ran its JavaScript. :class:`Page` drives Debian's ``chromium``
through Playwright (``playwright`` is a dev dependency; its own browser downloads are never
used: ``executable_path`` is the system's Chromium) and reads the page once a JavaScript
condition holds. Not part of the ``ser_mlflow`` package: nothing here trains or tracks.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
#: Background traffic off (QUIC probes) and no /dev/shm limits in containers; Playwright
#: adds its own headless defaults (no first run, no sync, no extensions, no updates).
CHROMIUM_ARGS = ("--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--hide-scrollbars")
#: Pages are opened on http://127.0.0.1:<port>, as a user opens them. There the MLflow 3.17
#: UI opens its Assistant panel over about a quarter of the page on first load (a fresh
#: profile), so the views are laid out to read with it open, and pictures show it.


def find_chromium() -> str | None:
    """The Chromium binary (Debian's ``chromium`` first), or None."""
    for name in CHROMIUM_NAMES:
        if path := shutil.which(name):
            return path
    return None


class Page:
    """One headless Chromium tab (a context manager), ``window`` = (width, height) in px.

    A fixed wait proved racy for the MLflow charts (one of three screenshots still showed
    loading spinners), so pages are read when a condition holds instead.
    """

    def __init__(self, *, window: tuple[int, int] = (1600, 1000), timeout: float = 60.0):
        self.window = window
        self.timeout = timeout

    def __enter__(self) -> Page:
        from playwright.sync_api import sync_playwright

        chromium = find_chromium()
        if chromium is None:
            raise RuntimeError("chromium not found (Debian: apt-get install -y chromium)")
        self._playwright = sync_playwright().start()
        try:
            self._browser = self._playwright.chromium.launch(
                executable_path=chromium, headless=True, args=list(CHROMIUM_ARGS))
            width, height = self.window
            self.page = self._browser.new_page(viewport={"width": width, "height": height})
            self.page.set_default_timeout(self.timeout * 1000)
        except BaseException:
            self._playwright.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._browser.close()
        finally:
            self._playwright.stop()

    def goto(self, url: str) -> None:
        self.page.goto(url, wait_until="commit")

    def evaluate(self, expression: str) -> Any:
        return self.page.evaluate(expression)

    def wait_for(self, expression: str, *, timeout: float = 60.0, settle: float = 0.5) -> None:
        """Wait until the JS ``expression`` is truthy (then ``settle`` s for paint).

        Raises:
            TimeoutError: with the page's text, when it never became true.
        """
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        try:
            self.page.wait_for_function(expression, timeout=timeout * 1000, polling=250)
        except PlaywrightTimeout:
            raise TimeoutError(f"after {timeout:.0f} s, not true: {expression}; page: "
                               f"{self.text()[:3000]}") from None
        time.sleep(settle)

    def html(self) -> str:
        return self.page.content()

    def text(self) -> str:
        return str(self.evaluate("document.body ? document.body.innerText : ''") or "")

    def add_style(self, css: str) -> None:
        self.page.add_style_tag(content=css)

    def screenshot(self, path: Path) -> Path:
        path = Path(path).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(path))
        return path


def shows_text(needles: Sequence[str]) -> str:
    """A JS condition: the page's visible text contains every needle."""
    return (
        "(() => { const t = document.body ? document.body.innerText : '';"
        f" return {json.dumps(list(needles))}.every(n => t.includes(n)); }})()"
    )


#: A JS condition: every chart card in the viewport has drawn its plot (the cards below
#: the fold are virtualised and only drawn when scrolled to).
CHARTS_DRAWN = """(() => {
  const sel = '[data-testid="experiment-view-compare-runs-card"]';
  const cards = [...document.querySelectorAll(sel)];
  const seen = cards.filter(c => {
    const r = c.getBoundingClientRect();
    return r.top < window.innerHeight && r.bottom > 0;
  });
  return seen.length > 0 && seen.every(c => c.querySelector('.js-plotly-plot .main-svg'));
})()"""


#: A JS expression: ``[title, cut]`` for every chart card's title in the page, ``cut`` when
#: the card is too narrow to show it whole (the title is the metric name: cut, it no
#: longer says which attribute the chart is about).
CHART_TITLES = """(() => {
  const sel = '[data-testid="experiment-view-compare-runs-card"] h4';
  return [...document.querySelectorAll(sel)].map(
    h => [h.textContent, h.scrollWidth > h.clientWidth + 1]);
})()"""


#: Plotly shows its tool bar on hover, and headless Chromium counts as hovering over every
#: chart; pictures hide it so they show what a user sees before pointing at a chart.
HOVER_ONLY_CSS = ".modebar-container { display: none !important; }"


def dump_dom(url: str, *, ready: str = "true", window: tuple[int, int] = (1600, 1000),
             timeout: float = 60.0) -> str:
    """The page's DOM once the JS condition ``ready`` holds."""
    with Page(window=window) as page:
        page.goto(url)
        page.wait_for(ready, timeout=timeout)
        return page.html()


def screenshot(url: str, path: Path, *, ready: str = "true",
               window: tuple[int, int] = (1600, 1000), timeout: float = 60.0,
               settle: float = 1.5, css: str = HOVER_ONLY_CSS) -> Path:
    """A PNG of the viewport once the JS condition ``ready`` holds (``css`` added first)."""
    with Page(window=window) as page:
        page.goto(url)
        page.wait_for(ready, timeout=timeout, settle=settle)
        if css:
            page.add_style(css)
            time.sleep(0.2)
        return page.screenshot(path)
