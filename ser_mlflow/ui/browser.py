"""Headless Chromium against a local MLflow UI: the real-browser test and `make screenshots`.

The UI is a single-page app that builds the page from REST calls, so what a user sees is
only known after a browser ran its JavaScript. :class:`Page` drives Debian's ``chromium``
over the DevTools protocol on a pipe and reads the page once a condition holds
(playwright / selenium are not dependencies). Nothing here is needed to train or track.

``python -m ser_mlflow.ui.browser screenshots --out docs/img`` regenerates the README's
pictures from the newest views in the project's store.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ser_mlflow import tracking
from ser_mlflow.ui import views

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
#: Pages are opened on http://127.0.0.1:<port>, as a user opens them. There the MLflow 3.17
#: UI opens its Assistant panel over about a quarter of the page on first load (a fresh
#: profile), so the views are laid out to read with it open, and pictures show it.


def find_chromium() -> str | None:
    """The Chromium binary (Debian's ``chromium`` first), or None."""
    for name in CHROMIUM_NAMES:
        if path := shutil.which(name):
            return path
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(base: str, *, timeout: float, proc: subprocess.Popen[bytes] | None) -> None:
    """Poll ``/health`` until it answers OK.

    Raises:
        RuntimeError: the server exited, or did not answer within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited with code {proc.returncode}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"{base}/health", timeout=2) as resp:  # noqa: S310
                if resp.status == 200:
                    return
        time.sleep(0.5)
    raise RuntimeError(f"mlflow server at {base} did not answer /health within {timeout:.0f} s")


class UiServer:
    """``mlflow server`` on 127.0.0.1 in its own process group (a context manager).

    Starting is separate from :meth:`wait`, so a caller can do other work (a test trains
    its runs) while the server boots. On exit the whole group is stopped (TERM, then
    KILL), so no worker outlives a test.
    """

    def __init__(
        self,
        uri: str | None = None,
        *,
        port: int | None = None,
        cwd: Path | None = None,
        log: Path | None = None,
    ) -> None:
        self.uri = uri or tracking.tracking_uri()
        self.port = port or free_port()
        self.cwd = cwd or Path.cwd()
        self.log = log
        self.local_url = f"http://127.0.0.1:{self.port}"
        self.url = self.local_url

    def __enter__(self) -> UiServer:
        cmd = views.ui_server_command(
            uri=self.uri,
            port=self.port,
            artifacts=self.cwd / tracking.DEFAULT_ARTIFACT_DIR,
        )
        self._out = open(self.log, "wb") if self.log else None  # noqa: SIM115
        env = views.ui_server_env({**os.environ, "MLFLOW_TRACKING_URI": self.uri})
        self.proc = subprocess.Popen(
            cmd,
            cwd=self.cwd,
            stdout=self._out or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
        return self

    def wait(self, timeout: float = 120.0) -> str:
        """Block until ``/health`` answers; return the URL to browse."""
        wait_healthy(self.local_url, timeout=timeout, proc=self.proc)
        return self.url

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=15)
        if self._out:
            self._out.close()


@contextlib.contextmanager
def mlflow_ui(
    uri: str | None = None,
    *,
    port: int | None = None,
    cwd: Path | None = None,
    timeout: float = 120.0,
    log: Path | None = None,
) -> Iterator[str]:
    """Run ``mlflow server`` against ``uri`` and yield its URL once it answers."""
    with UiServer(uri, port=port, cwd=cwd, log=log) as server:
        yield server.wait(timeout)


def chromium_command(*, chromium: str, profile: Path, window: tuple[int, int]) -> list[str]:
    """Headless Chromium driven over ``--remote-debugging-pipe``, off the network.

    Background services (updates, sync, QUIC probes) stay off so the only traffic is to
    the page's own server.
    """
    return [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--hide-scrollbars",
        "--remote-debugging-pipe",
        f"--user-data-dir={profile}",
        f"--window-size={window[0]},{window[1]}",
    ]


class Page:
    """One headless Chromium tab, driven over the DevTools protocol on a pipe.

    ``--dump-dom`` / ``--screenshot`` with a virtual time budget proved racy for the MLflow
    charts (measured: one of three screenshots still showed loading spinners), so pages are
    read when a condition holds instead of after a fixed time. The pipe (fds 3 and 4 of
    the browser, NUL-separated JSON) needs no websocket client.
    """

    def __init__(self, *, window: tuple[int, int] = (1600, 1000), timeout: float = 60.0):
        self.window = window
        self.timeout = timeout
        self._next_id = 0
        self._buf = b""
        self._session = ""

    def __enter__(self) -> Page:
        chromium = find_chromium()
        if chromium is None:
            raise RuntimeError("chromium not found (Debian: apt-get install -y chromium)")
        self._profile = tempfile.TemporaryDirectory(prefix="ser-chromium-")
        cmd_r, self._cmd_w = os.pipe()  # we write commands, the browser reads fd 3
        self._res_r, res_w = os.pipe()  # the browser writes fd 4, we read

        def wire() -> None:  # runs in the child before exec
            os.dup2(cmd_r, 3)
            os.dup2(res_w, 4)

        self._proc = subprocess.Popen(
            chromium_command(
                chromium=chromium, profile=Path(self._profile.name), window=self.window
            ),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(3, 4),
            preexec_fn=wire,  # two dup2 calls between fork and exec, nothing that locks
            start_new_session=True,
        )
        os.close(cmd_r)
        os.close(res_w)
        try:
            target = self._call("Target.createTarget", {"url": "about:blank"})["targetId"]
            self._session = self._call(
                "Target.attachToTarget", {"targetId": target, "flatten": True}
            )["sessionId"]
            width, height = self.window
            self.call(
                "Emulation.setDeviceMetricsOverride",
                {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            )
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self._session = ""
            self._call("Browser.close", {}, timeout=5)
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait(timeout=10)
        for fd in (self._cmd_w, self._res_r):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._profile.cleanup()

    def _call(
        self, method: str, params: dict[str, Any], *, timeout: float | None = None
    ) -> dict[str, Any]:
        import json
        import select

        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if self._session:
            msg["sessionId"] = self._session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            while b"\0" in self._buf:
                raw, self._buf = self._buf.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") != self._next_id:
                    continue  # an event, or the answer to a call that timed out
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error'].get('message')}")
                return dict(reply.get("result", {}))
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"chromium did not answer {method} in time")
            ready, _, _ = select.select([self._res_r], [], [], left)
            if ready:
                chunk = os.read(self._res_r, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"chromium exited during {method}")
                self._buf += chunk

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """One DevTools command in this tab."""
        return self._call(method, params or {})

    def goto(self, url: str) -> None:
        self.call("Page.navigate", {"url": url})

    def evaluate(self, expression: str) -> Any:
        res = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        return res.get("result", {}).get("value")

    def wait_for(self, expression: str, *, timeout: float = 60.0, settle: float = 0.5) -> None:
        """Poll ``expression`` until it is truthy (then wait ``settle`` s for paint).

        Raises:
            TimeoutError: with the page's text, when it never became true.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.evaluate(expression):
                time.sleep(settle)
                return
            time.sleep(0.25)
        text = self.evaluate("document.body ? document.body.innerText : ''") or ""
        raise TimeoutError(f"after {timeout:.0f} s, not true: {expression}; page: {text[:3000]}")

    def html(self) -> str:
        return str(self.evaluate("document.documentElement.outerHTML") or "")

    def text(self) -> str:
        return str(self.evaluate("document.body ? document.body.innerText : ''") or "")

    def screenshot(self, path: Path) -> Path:
        import base64

        data = self.call("Page.captureScreenshot", {"format": "png"})["data"]
        path = Path(path).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path


def shows_text(needles: Sequence[str]) -> str:
    """A JS condition: the page's visible text contains every needle."""
    import json

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


def dump_dom(
    url: str,
    *,
    ready: str = "true",
    window: tuple[int, int] = (1600, 1000),
    timeout: float = 60.0,
) -> str:
    """The page's DOM once the JS condition ``ready`` holds."""
    with Page(window=window) as page:
        page.goto(url)
        page.wait_for(ready, timeout=timeout)
        return page.html()


def screenshot(
    url: str,
    path: Path,
    *,
    ready: str = "true",
    window: tuple[int, int] = (1600, 1000),
    timeout: float = 60.0,
    settle: float = 1.5,
    css: str = HOVER_ONLY_CSS,
) -> Path:
    """A PNG of the viewport once the JS condition ``ready`` holds (``css`` added first)."""
    import json

    with Page(window=window) as page:
        page.goto(url)
        page.wait_for(ready, timeout=timeout, settle=settle)
        if css:
            page.evaluate(
                "(() => { const s = document.createElement('style');"
                f" s.textContent = {json.dumps(css)}; document.head.appendChild(s); }})()"
            )
            time.sleep(0.2)
        return page.screenshot(path)


def shrink_png(path: Path, *, max_bytes: int = 300_000) -> None:
    """Re-save a screenshot with a palette when it is over ``max_bytes`` (README pictures)."""
    if path.stat().st_size <= max_bytes:
        return
    from PIL import Image

    with Image.open(path) as img:
        small = img.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT)
        small.save(path, optimize=True)


#: README picture -> (view kind, charts?, window)
SHOTS: dict[str, tuple[str, bool, tuple[int, int]]] = {
    "compare-table.png": ("compare", False, (1600, 820)),
    "compare-charts.png": ("compare", True, (1600, 1300)),
    "unimodal-ranking.png": ("unimodal", False, (1600, 640)),
    "search-trials.png": ("search", False, (1600, 820)),
}


def take_screenshots(
    out: Path, *, timeout: float = 90.0, echo: Callable[[str], None] = print
) -> list[Path]:
    """The README's pictures from the newest view of each kind in the project's store.

    Raises:
        RuntimeError: no compare or unimodal view in the store (search is optional).
    """
    views.backfill_search_views()
    newest: dict[str, views.View] = {}
    for v in views.latest_views(max_results=200):
        newest.setdefault(v.kind, v)
    missing = sorted({"compare", "unimodal"} - set(newest))
    if missing:
        raise RuntimeError(
            f"no {' / '.join(missing)} view in {tracking.tracking_uri()}: "
            "run `ser-mlflow main --config experiments/demo.yaml` first"
        )
    written = []
    with mlflow_ui() as base:
        for name, (kind, charts, window) in SHOTS.items():
            if kind not in newest:
                echo(f"skip {name}: no {kind} view in the store")
                continue
            # rows drawn: every run row says when it started ("... ago")
            ready = CHARTS_DRAWN if charts else shows_text(["devel_ccc_mean", " ago"])
            path = screenshot(
                newest[kind].url(charts=charts, base=base),
                out / name,
                ready=ready,
                window=window,
                timeout=timeout,
            )
            shrink_png(path)
            echo(f"wrote {path} ({path.stat().st_size // 1000} kB) from {newest[kind].name!r}")
            written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ser_mlflow.ui.browser")
    sub = parser.add_subparsers(dest="cmd", required=True)
    shots = sub.add_parser("screenshots", help="regenerate the README's MLflow UI pictures")
    shots.add_argument("--out", type=Path, default=Path("docs/img"))
    shots.add_argument("--timeout", type=float, default=90.0, help="seconds per picture")
    args = parser.parse_args(argv)
    try:
        take_screenshots(args.out, timeout=args.timeout)
    except (RuntimeError, TimeoutError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
