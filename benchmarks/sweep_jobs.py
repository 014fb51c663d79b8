"""`compare` (15 child runs) with --jobs 1 against --jobs N: wall time on this machine.

Each side runs in its own fresh process and its own tracking store (nothing reused), on
the same corpus and settings; sides alternate over ``--repeats`` rounds. With --jobs N the
children are N spawn processes at a time, each with cores // N TensorFlow threads, and
each child pays its own TensorFlow import and start-up: the speed-up needs runs long
enough to hide that, and cores enough to give each child one.

Run: ``python benchmarks/sweep_jobs.py --data-root /tmp/small --units 32,16,8 --epochs 3``
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from timing import load  # noqa: E402

SIDE = """
import sys
from ser_mlflow.settings import train_config
from ser_mlflow.jobs import pipeline
root, units, epochs, jobs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
base = train_config({"data_root": root, "units": units, "epochs": epochs, "experiment": "bench"})
res = pipeline.compare(base, feature_set="fau", seeds=[0, 1, 2], jobs=jobs, echo=lambda s: None)
assert len(res.outcomes) == 15 and not res.failures, res.failures
"""


def side(root: Path, units: str, epochs: int, jobs: int) -> float:
    work = Path(tempfile.mkdtemp(prefix="ser-bench-jobs-"))
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", SIDE, str(root), units, str(epochs), str(jobs)],
                   check=True, env=env, cwd=work, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-root", type=Path, default=Path("/tmp/ser-bench/small"))
    ap.add_argument("--units", default="32,16,8")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    if not args.data_root.exists():
        from ser_mlflow.data import write_synthetic_corpus

        write_synthetic_corpus(args.data_root, scale="small", seed=0)
    times: dict[int, list[float]] = {1: [], args.jobs: []}
    for r in range(args.repeats):
        for jobs in (1, args.jobs) if r % 2 == 0 else (args.jobs, 1):
            times[jobs].append(side(args.data_root.resolve(), args.units, args.epochs, jobs))
            print(f"  round {r + 1} --jobs {jobs}: compare (15 runs) {times[jobs][-1]:.1f} s "
                  f"({load()})", flush=True)
    one, many = min(times[1]), min(times[args.jobs])
    print(f"compare, units {args.units}, {args.epochs} epochs, {args.data_root}: --jobs 1 "
          f"{one:.1f} s, --jobs {args.jobs} {many:.1f} s (min of {args.repeats}): "
          f"speed-up {one / many:.2f}x; {load()}")


if __name__ == "__main__":
    main()
