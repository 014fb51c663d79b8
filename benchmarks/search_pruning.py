"""Trials per hour and best devel CCC of an alpha/beta/gamma search with and without pruning.

Both arms run `search.run_search` on the same small synthetic corpus with the same budget
(a number of trials, or a timeout) and the same sampler seed. With the default random
sampler both arms draw the *same* weights in the same order (random search ignores
results), so any difference in the best value is what pruning cut off, and the
difference in time is what it saved. Each arm gets its own temporary MLflow and Optuna
stores, so nothing is written to the working directory.

Run: ``python benchmarks/search_pruning.py [--trials 10 | --timeout 300] [--epochs 10]``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

from ser_mlflow._quiet import import_tensorflow_quietly  # noqa: E402
from ser_mlflow.data import write_synthetic_corpus  # noqa: E402
from ser_mlflow.search.run import run_search  # noqa: E402
from ser_mlflow.settings import LossConfig, ModelConfig, TrainConfig  # noqa: E402


def arm(cfg: TrainConfig, *, prune: bool, args: argparse.Namespace, work: Path) -> dict:
    """One search in its own stores; returns its figures."""
    work.mkdir(parents=True)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"
    cwd = os.getcwd()
    os.chdir(work)  # artifacts go under work/mlartifacts
    try:
        t0 = time.perf_counter()
        res = run_search(
            cfg, sampler=args.sampler, objective="mean",
            n_trials=None if args.timeout else args.trials, timeout=args.timeout,
            storage=f"sqlite:///{work / 'optuna.db'}", study_name="bench", prune=prune,
            progress=False, echo=lambda s: None,
        )
        wall = time.perf_counter() - t0
    finally:
        os.chdir(cwd)
    df = res.trials
    finished = int((df["state"] != "waiting").sum())
    return {
        "prune": prune,
        "trials": finished,
        "complete": res.counts.get("complete", 0),
        "pruned": res.counts.get("pruned", 0),
        "epochs": int(df["epochs_run"].fillna(0).sum()),
        "wall_s": wall,
        "trials_per_hour": finished / wall * 3600,
        "best": res.best_value if res.best_value is not None else float("nan"),
        "best_params": res.best_params,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=10, help="budget per arm (trials)")
    ap.add_argument("--timeout", type=float, default=None, help="budget per arm (seconds)")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--units", default="32,16")
    ap.add_argument("--scale", default="small", choices=["tiny", "small", "full"])
    ap.add_argument("--feature-set", default="fau")
    ap.add_argument("--sampler", default="random", choices=["random", "tpe"])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import_tensorflow_quietly()
    with tempfile.TemporaryDirectory(prefix="ser-bench-search-") as tmp:
        root = Path(tmp) / "corpus"
        write_synthetic_corpus(root, scale=args.scale, seed=0, feature_sets=[args.feature_set])
        cfg = TrainConfig(
            data_root=root, feature_sets=(args.feature_set,), epochs=args.epochs, batch_size=8,
            seed=args.seed, experiment="bench-search",
            model=ModelConfig(units=tuple(int(u) for u in args.units.split(",")), lr=2e-3),
            loss=LossConfig.from_name("MTL2"),
        )
        budget = f"timeout {args.timeout:g} s" if args.timeout else f"{args.trials} trials"
        print(
            f"{args.scale} synthetic corpus, {args.feature_set}, units {args.units}, "
            f"{args.epochs} epochs, {args.sampler} sampler (seed {args.seed}), budget {budget} "
            "per arm, median pruner (3 startup trials)"
        )
        rows = [arm(cfg, prune=p, args=args, work=Path(tmp) / f"arm-{p}") for p in (False, True)]
    print(f"{'pruning':<8}{'trials':>7}{'pruned':>8}{'epochs':>8}{'wall s':>9}"
          f"{'trials/h':>10}{'best devel CCC mean':>21}")
    for r in rows:
        print(f"{'on' if r['prune'] else 'off':<8}{r['trials']:>7}{r['pruned']:>8}"
              f"{r['epochs']:>8}{r['wall_s']:>9.1f}{r['trials_per_hour']:>10.0f}"
              f"{r['best']:>21.4f}")
    off, on = rows
    print(f"pruning: {on['trials_per_hour'] / off['trials_per_hour']:.2f}x trials per hour, "
          f"{on['epochs'] / max(off['epochs'], 1):.0%} of the epochs, best value "
          f"{on['best'] - off['best']:+.4f} vs no pruning")


if __name__ == "__main__":
    main()
