"""What experiments/paper.yaml costs on this machine, step by step, projected to the chain.

Measures on the full-scale synthetic corpus, each step in its own process (its peak RSS
and CPU time from ``os.wait4``): a training run of ``--epochs`` epochs per feature set and
of the widest bimodal pair (wall time per epoch, and the run's fixed cost: start-up, data,
final predictions, plots and model), one search trial, and one fusion stage (exact
solver, the chain's ``protocol``). Then projects the chain from paper.yaml's counts
(epochs, feature sets, top_k pairs, compare seeds x 5 losses, fusion stages): a run costs
fixed + epochs x epoch; a pair's epoch is interpolated linearly in input width from the
unimodal epochs (the first LSTM's work grows with it). Prints the projection per step, the
CPU-hours, and which step dominates. The first epoch holds graph tracing: with
``--epochs 1`` the projection errs high; the default 2 times the second one.

Run: ``python benchmarks/pipeline.py --data-root /tmp/full`` (about 10-15 min on two quiet
cores); shrink with ``--sets fau,egemaps`` (others are interpolated), ``--quick`` (no search
trial, no fusion stage).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from timing import load  # noqa: E402

CLI = [sys.executable, "-c", "from ser_mlflow.cli import main; main()"]
LOSSES = 5  # compare: STL1, STL2, STL3, MTL1, MTL2
RUN = """
import json, sys, time
from ser_mlflow.settings import LossConfig, ModelConfig, TrainConfig
from ser_mlflow.jobs.train import run_training
a = json.loads(sys.argv[1])
t0 = time.perf_counter(); marks = []
cfg = TrainConfig(data_root=a["root"], feature_sets=tuple(a["sets"]), epochs=a["epochs"],
                  batch_size=a["batch_size"], model=ModelConfig(units=tuple(a["units"]),
                  dropout=a["dropout"], lr=a["lr"]), loss=LossConfig.from_name(a["loss"]),
                  shift_frames=a["shift_frames"], experiment="bench-pipeline")
run_training(cfg, progress=False, echo=lambda s: None,
             on_epoch=lambda e, row: marks.append((time.perf_counter(), row["epoch_seconds"])))
end = time.perf_counter()
print(json.dumps({"start": t0, "marks": marks, "end": end}))
"""


def measured(cmd: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run one step's process: wall seconds, CPU seconds, peak RSS (MB), last stdout line."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.DEVNULL, env=env)
        _, status, ru = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        lines = out.read().strip().splitlines()
    if proc.returncode != 0:
        raise SystemExit(f"step failed (exit {proc.returncode}): {' '.join(cmd)}")
    return {"wall": time.perf_counter() - t0, "cpu": ru.ru_utime + ru.ru_stime,
            "rss_mb": ru.ru_maxrss / 1024, "last": lines[-1] if lines else ""}


def train_step(sets: list[str], train: dict[str, Any], root: Path, epochs: int,
               env: dict[str, str]) -> dict[str, Any]:
    args = {"root": str(root), "sets": sets, "epochs": epochs,
            "units": [int(u) for u in str(train["units"]).split(",")],
            **{k: train[k] for k in ("batch_size", "dropout", "lr", "loss", "shift_frames")}}
    m = measured([sys.executable, "-c", RUN, json.dumps(args)], env)
    t = json.loads(m["last"])
    # epoch 1: its training seconds (tracing included); later ones: wall between epochs
    ends = [m[0] for m in t["marks"]]
    epochs_s = list(np.diff(ends)) if epochs > 1 else [t["marks"][0][1]]
    epoch = float(np.median(epochs_s))
    m["epoch"] = epoch
    m["fixed"] = m["wall"] - epoch * epochs  # start-up, data, end of run
    return m


def n_features(root: Path, fs: str) -> int:
    first = sorted((root / fs).glob("*.csv"))[0]
    return len(first.open().readline().split(";")) - 2  # name; frameTime; features...


def project_run(epochs: int, epoch_s: float, fixed_s: float) -> float:
    return fixed_s + epochs * epoch_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-root", type=Path, default=Path("/tmp/ser-bench/full"))
    ap.add_argument("--chain", type=Path, default=Path("experiments/paper.yaml"))
    ap.add_argument("--epochs", type=int, default=2, help="epochs per measured run")
    ap.add_argument("--sets", default="", help="measure only these feature sets (',')")
    ap.add_argument("--quick", action="store_true", help="no search trial, no fusion stage")
    args = ap.parse_args()
    chain = yaml.safe_load(args.chain.read_text())
    train, steps = chain["train"], chain["steps"]
    root = args.data_root.resolve()
    if not root.exists():
        from ser_mlflow.data import write_synthetic_corpus

        write_synthetic_corpus(root, scale="full", seed=0)
    work = Path(tempfile.mkdtemp(prefix="ser-bench-pipeline-"))
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
           "TF_CPP_MIN_LOG_LEVEL": "3", "SER_MLFLOW_CHECKPOINT_DIR": str(work / "ckpt")}
    from ser_mlflow.data import list_feature_sets

    all_sets = list(list_feature_sets(root))
    sets = [s for s in args.sets.split(",") if s] or all_sets
    width = {s: n_features(root, s) for s in all_sets}
    print(f"{args.chain}: {train['epochs']} epochs, units {train['units']}, "
          f"{len(all_sets)} feature sets in {root}; {load()}")
    rows: dict[str, dict[str, Any]] = {}
    for s in sets:
        rows[s] = train_step([s], train, root, args.epochs, env)
        print(f"  train {s:<14} {width[s]:4d} features: epoch {rows[s]['epoch']:6.1f} s, "
              f"fixed {rows[s]['fixed']:5.1f} s, peak RSS {rows[s]['rss_mb']:5.0f} MB "
              f"({load()})", flush=True)
    a, b = sorted(all_sets, key=lambda s: -width[s])[:2]
    pair = train_step([a, b], train, root, args.epochs, env)
    print(f"  train {a}+{b} {width[a] + width[b]:4d} features: epoch {pair['epoch']:6.1f} s, "
          f"peak RSS {pair['rss_mb']:5.0f} MB ({load()})", flush=True)
    # epoch seconds ~ c0 + c1 * input width (measured sets and the widest pair)
    xs = [width[s] for s in sets] + [width[a] + width[b]]
    ys = [rows[s]["epoch"] for s in sets] + [pair["epoch"]]
    c1, c0 = np.polyfit(xs, ys, 1) if len(set(xs)) > 1 else (0.0, float(np.mean(ys)))
    fixed = float(np.median([r["fixed"] for r in rows.values()]))
    cpu_per_wall = float(np.median([r["cpu"] / r["wall"] for r in [*rows.values(), pair]]))
    epoch_of = {s: rows[s]["epoch"] if s in rows else c0 + c1 * width[s] for s in all_sets}
    E = int(train["epochs"])
    proj: dict[str, tuple[int, float, float]] = {}  # step -> runs, wall s, peak RSS MB
    if "unimodal" in steps:
        uni = [s for s in (steps["unimodal"] or {}).get("feature_sets", all_sets)]
        proj["unimodal"] = (len(uni), sum(project_run(E, epoch_of[s], fixed) for s in uni),
                            max(r["rss_mb"] for r in rows.values()))
    if "bimodal" in steps:
        k = int((steps["bimodal"] or {}).get("top_k", 7))
        pairs = list(itertools.combinations(all_sets, 2))
        mean_pair = float(np.mean([c0 + c1 * (width[p] + width[q]) for p, q in pairs]))
        n = k * (k - 1) // 2
        proj["bimodal"] = (n, n * project_run(E, mean_pair, fixed), pair["rss_mb"])
    if "compare" in steps:
        c = steps["compare"] or {}
        fs = c.get("feature_set", "fau")
        n = len(c.get("seeds", [0, 1, 2])) * LOSSES
        proj["compare"] = (n, n * project_run(E, epoch_of[fs], fixed),
                           rows.get(fs, pair)["rss_mb"])
    if not args.quick:
        search = measured([*CLI, "search", "--data-root",
                           str(root), "--feature-sets", sets[0], "--n-trials", "1", "--epochs",
                           str(args.epochs), "--experiment", "bench-pipeline", "--storage",
                           f"sqlite:///{work / 'optuna.db'}"], env)
        print(f"  search: one trial of {args.epochs} epoch(s) on {sets[0]}: "
              f"{search['wall']:.1f} s, peak RSS {search['rss_mb']:.0f} MB ({load()})")
        if "search" in steps:
            n = int((steps["search"] or {}).get("n_trials", 20))
            per = search["wall"] + (E - args.epochs) * rows[sets[0]]["epoch"]
            proj["search"] = (n, n * per, search["rss_mb"])
        if "fusion" in steps:
            f = steps["fusion"] or {}
            fus = measured([*CLI, "fusion", "--data-root",
                            str(root), "--top-n", str(f.get("top_n", 11)), "--n-stages", "1",
                            "--protocol", str(f.get("protocol", "cv")), "--solver", "exact",
                            "--experiment", "bench-pipeline"], env)
            n = int(f.get("n_stages", 5))
            print(f"  fusion: one stage ({f.get('protocol', 'cv')}, exact solver): "
                  f"{fus['wall']:.1f} s, peak RSS {fus['rss_mb']:.0f} MB ({load()})")
            proj["fusion"] = (n, n * fus["wall"], fus["rss_mb"])
    total = sum(w for _, w, _ in proj.values())
    print(f"\nprojection of {args.chain} ({E} epochs per run; fixed {fixed:.0f} s per run, "
          f"epoch ~ {c0:.2f} + {c1 * 1000:.2f} ms x features):")
    for step, (n, wall, rss) in proj.items():
        print(f"  {step:<9} {n:3d} {'stages' if step == 'fusion' else 'runs  '} "
              f"{wall / 3600:6.2f} h ({wall / total:4.0%})  peak RSS {rss:5.0f} MB")
    top = max(proj, key=lambda k: proj[k][1])
    print(f"  total     {total / 3600:6.2f} h wall, {total * cpu_per_wall / 3600:.2f} CPU-hours "
          f"(CPU/wall {cpu_per_wall:.2f}); dominated by {top}; {load()}")


if __name__ == "__main__":
    main()
