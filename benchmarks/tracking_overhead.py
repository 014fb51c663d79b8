"""What MLflow tracking costs a training run: the same loop with and without a run.

Tracked: ``train.run_training`` (an MLflow run with its heartbeat, params, one metric
batch per epoch, then predictions, plots and the pyfunc model). Untracked: the same
``train.fit_network`` loop, with the same per-epoch devel scoring and local checkpoint,
outside any run and with no per-epoch logging (``on_epoch`` only times). Runs alternate
tracked/untracked (pairs in ABBA order), each with one warm-up epoch that is not counted;
an epoch's time is the wall time between two ``on_epoch`` calls, so it holds training,
devel scoring, the checkpoint and, when tracked, the metric logging.

Prints min and median epoch seconds per side, their ratios, and what the end of a tracked
run (artifacts and model) adds once. ``--async-logging`` turns on MLflow's asynchronous
logging (flushed when the run ends) for the tracked side. ``--split`` adds a third side
in each round: the untracked loop inside an open MLflow run (liveness tags, the run's
context) with no per-epoch logging, which tells the run's presence from its logging.

Run: ``python benchmarks/tracking_overhead.py --data-root /tmp/full [--epochs 5 --pairs 2]``
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).parent))

from timing import load, min_median  # noqa: E402

from ser_mlflow.data import write_synthetic_corpus  # noqa: E402
from ser_mlflow.jobs.train import run_training  # noqa: E402
from ser_mlflow.nn.fit import Prepared, fit_network, prepare  # noqa: E402
from ser_mlflow.settings import LossConfig, ModelConfig, TrainConfig  # noqa: E402


class EpochClock:
    """``on_epoch`` that records the wall time between epochs (the first is warm-up)."""

    def __init__(self) -> None:
        self.last = time.perf_counter()
        self.epochs: list[float] = []

    def __call__(self, epoch: int, row: object) -> None:
        now = time.perf_counter()
        if epoch > 1:
            self.epochs.append(now - self.last)
        self.last = now


def one_run(cfg: TrainConfig, data: Prepared, *, side: str) -> tuple[list[float], float]:
    """Epoch times of one run, and the seconds after its last epoch (the run's end)."""
    from ser_mlflow import tracking

    clock = EpochClock()
    if side == "tracked":
        run_training(cfg, data=data, on_epoch=clock, progress=False, echo=lambda s: None,
                     run_name="tracking-overhead")
    else:
        run = (tracking.run_context(experiment="bench-tracking", run_name="run-no-logging")
               if side == "in a run" else contextlib.nullcontext())
        with run, tempfile.TemporaryDirectory() as ckpt:
            fit_network(cfg, data, on_epoch=clock, progress=False, checkpoint_dir=Path(ckpt))
    return clock.epochs, time.perf_counter() - clock.last


def logging_call_seconds(n: int = 20) -> float:
    """Median wall time of one epoch's metric batch (8 metrics, a step) in an open run."""
    from ser_mlflow import tracking

    row = {f"epoch/{k}": 0.5 for k in ("train_loss", "epoch_seconds", "devel_ccc_arousal",
                                       "devel_ccc_valence", "devel_ccc_liking",
                                       "devel_ccc_mean", "extra_1", "extra_2")}
    times = []
    with tracking.run_context(experiment="bench-tracking", run_name="logging-call"):
        for step in range(1, n + 1):
            t0 = time.perf_counter()
            tracking.log_metrics(row, step=step)
            times.append(time.perf_counter() - t0)
    return min_median(times)[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-root", type=Path, default=Path("/tmp/ser-bench/full"))
    ap.add_argument("--feature-set", default="egemaps-func")
    ap.add_argument("--units", default="256,128,64")
    ap.add_argument("--epochs", type=int, default=5, help="measured epochs per run")
    ap.add_argument("--pairs", type=int, default=2,
                    help="rounds of the sides, alternating direction (ABBA)")
    ap.add_argument("--async-logging", action="store_true")
    ap.add_argument("--split", action="store_true", help="add the run-without-logging side")
    args = ap.parse_args()
    if not args.data_root.exists():
        write_synthetic_corpus(args.data_root, scale="full", seed=0)
    work = Path(tempfile.mkdtemp(prefix="ser-bench-tracking-"))
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{work / 'mlflow.db'}")
    os.chdir(work)
    if args.async_logging:
        import mlflow

        mlflow.config.enable_async_logging(True)
    cfg = TrainConfig(
        data_root=args.data_root.resolve(),
        feature_sets=(args.feature_set,),
        epochs=args.epochs + 1,
        model=ModelConfig(units=tuple(int(u) for u in args.units.split(","))),
        loss=LossConfig.from_name("MTL2"),
        experiment="bench-tracking",
    )
    data = prepare(cfg)
    print(f"{args.feature_set}, units {args.units}, {args.epochs} measured epochs per run, "
          f"{args.pairs} pairs, async logging {'on' if args.async_logging else 'off'}; "
          f"{load()} at start")
    call = logging_call_seconds()
    print(f"one epoch's metric logging call: median {call * 1000:.1f} ms ({load()})")
    names = ["tracked", "untracked"] + (["in a run"] if args.split else [])
    sides: dict[str, list[float]] = {n: [] for n in names}
    ends: list[float] = []
    for pair in range(args.pairs):
        for side in names if pair % 2 == 0 else names[::-1]:
            epochs, end = one_run(cfg, data, side=side)
            sides[side] += epochs
            if side == "tracked":
                ends.append(end)
            print(f"  round {pair + 1} {side:<9} epochs {' '.join(f'{t:.2f}' for t in epochs)} s"
                  f"  ({load()})", flush=True)
    if not args.pairs:
        return
    u_min, u_med = min_median(sides["untracked"])
    for side in names:
        t_min, t_med = min_median(sides[side])
        print(f"{side:<9} epoch min {t_min:.3f} s  median {t_med:.3f} s  (n={len(sides[side])})"
              f"  against untracked: min/min {t_min / u_min - 1:+.1%}, median/median "
              f"{t_med / u_med - 1:+.1%}  (goal <= +3%)")
    print(f"the logging call alone is {call / u_med:.2%} of the untracked median epoch")
    print(f"end of a tracked run (predictions, plots, model, summary): median "
          f"{min_median(ends)[1]:.1f} s once per run; {load()} at end")


if __name__ == "__main__":
    main()
