"""`make screenshots`: the README's pictures of the MLflow UI views (docs/img/*.png).

``python tools/screenshots.py --out docs/img`` starts ``mlflow server`` on the project's
store (the one launcher, ``ser_mlflow.ui.server``), opens the newest saved view of each
kind in headless Chromium (``tools/ui_browser.py``) and saves what a user sees.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ui_browser import CHARTS_DRAWN, screenshot, shows_text  # noqa: E402

from ser_mlflow import tracking, views  # noqa: E402
from ser_mlflow.ui.process import free_port  # noqa: E402
from ser_mlflow.ui.server import BackgroundServer, ui_settings  # noqa: E402

#: README picture -> (view kind, charts?, window)
SHOTS: dict[str, tuple[str, bool, tuple[int, int]]] = {
    "compare-table.png": ("compare", False, (1600, 820)),
    "compare-charts.png": ("compare", True, (1600, 1300)),
    "unimodal-ranking.png": ("unimodal", False, (1600, 640)),
    "search-trials.png": ("search", False, (1600, 820)),
}


def shrink_png(path: Path, *, max_bytes: int = 300_000) -> None:
    """Re-save a screenshot with a palette when it is over ``max_bytes`` (README pictures)."""
    if path.stat().st_size <= max_bytes:
        return
    from PIL import Image

    with Image.open(path) as img:
        small = img.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT)
        small.save(path, optimize=True)


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
    with BackgroundServer(ui_settings(tracking.tracking_uri(), port=free_port())) as server:
        base = server.wait(timeout=120)
        for name, (kind, charts, window) in SHOTS.items():
            if kind not in newest:
                echo(f"skip {name}: no {kind} view in the store")
                continue
            # rows drawn: every run row says when it started ("... ago")
            ready = CHARTS_DRAWN if charts else shows_text(["devel_ccc_mean", " ago"])
            path = screenshot(newest[kind].url(charts=charts, base=base), out / name,
                              ready=ready, window=window, timeout=timeout)
            shrink_png(path)
            echo(f"wrote {path} ({path.stat().st_size // 1000} kB) from {newest[kind].name!r}")
            written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python tools/screenshots.py",
                                     description="regenerate the README's MLflow UI pictures")
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds per picture")
    args = parser.parse_args(argv)
    try:
        take_screenshots(args.out, timeout=args.timeout)
    except (RuntimeError, TimeoutError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
