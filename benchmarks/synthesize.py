"""Time the synthetic corpus writer (and optionally the reader) at a given scale.

The full-scale corpus must be written in under 2 minutes on the 2-core reference machine
and take under 1 GB on disk; this script measures both and exits 1 when a limit is
broken, so it can guard changes to ``ser_mlflow.data.synthetic``.

Usage::

    .venv/bin/python benchmarks/synthesize.py                 # full scale, temp folder
    .venv/bin/python benchmarks/synthesize.py --scale small --read
    .venv/bin/python benchmarks/synthesize.py --out data/synthetic --keep
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from ser_mlflow.data import SCALES, load_corpus, write_synthetic_corpus
from ser_mlflow.settings import PAPER_FEATURE_SETS

MAX_SECONDS = 120.0
MAX_BYTES = 1_000_000_000


def _disk_bytes(root: Path) -> int:
    """Bytes the files occupy on disk (allocated blocks, like ``du``)."""
    total = 0
    for dirpath, _, files in os.walk(root):
        for f in files:
            st = os.stat(os.path.join(dirpath, f))
            total += getattr(st, "st_blocks", 0) * 512 or st.st_size
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=SCALES, default="full")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="default: a temporary folder")
    parser.add_argument("--keep", action="store_true", help="keep the written corpus")
    parser.add_argument("--read", action="store_true", help="also time load_corpus (12 sets)")
    args = parser.parse_args(argv)

    tmp = None
    if args.out is None:
        tmp = tempfile.mkdtemp(prefix="ser-synth-")
        out = Path(tmp) / "corpus"
    else:
        out = args.out
    try:
        start = time.perf_counter()
        summary = write_synthetic_corpus(out, scale=args.scale, seed=args.seed)
        seconds = time.perf_counter() - start
        disk = _disk_bytes(summary.root)
        n_files = sum(len(files) for _, _, files in os.walk(summary.root))
        print(f"scale={summary.scale} seed={summary.seed} root={summary.root}")
        print(f"recordings={summary.n_recordings} frames={summary.n_frames} files={n_files}")
        print(f"write_seconds={seconds:.1f}")
        print(f"bytes_written_MB={summary.bytes_written / 1e6:.1f} disk_MB={disk / 1e6:.1f}")
        if args.read:
            start = time.perf_counter()
            corpus = load_corpus(summary.root, PAPER_FEATURE_SETS)
            print(
                f"read_seconds={time.perf_counter() - start:.1f} "
                f"(12 sets, {corpus.n_features} columns)"
            )
        ok = True
        if args.scale == "full":
            ok = seconds < MAX_SECONDS and disk < MAX_BYTES
            print(
                f"limits: < {MAX_SECONDS:.0f} s and < {MAX_BYTES / 1e9:.0f} GB: "
                f"{'OK' if ok else 'EXCEEDED'}"
            )
        return 0 if ok else 1
    finally:
        if tmp is not None and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp is not None:
            print(f"kept {out}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
