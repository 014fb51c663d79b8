"""Training throughput of ser_mlflow vs a plain Keras reference, in the same process.

The paper model at full shape: 68 training recordings of 975-1768 frames, 88 features
(eGeMAPS functionals of the full-scale synthetic corpus). Both sides run the same network
and loss weights for the same epochs from the same seed.

- reference: every recording zero-padded to 1768, no masking, ``model.fit`` on arrays
  (the loss sees the padded frames as data, as a plain script would);
- ser_mlflow: ``train.fit_network`` (length-bucketed batches padded to their own longest
  recording, masked CCC loss).

Prints seconds per training epoch and valid frames per second for each, their ratio, and
devel CCC after the last epoch. Run: ``python benchmarks/train_throughput.py [--epochs 3]``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from ser_mlflow.data import pad_sequences, shift_labels, write_synthetic_corpus  # noqa: E402
from ser_mlflow.nn.fit import fit_network, predict_partition, prepare, score_partition  # noqa: E402
from ser_mlflow.settings import LossConfig, ModelConfig, TrainConfig  # noqa: E402


def reference_epochs(cfg: TrainConfig, data, epochs: int) -> tuple[list[float], float]:  # noqa: ANN001
    """Plain Keras: pad everything to the longest recording, model.fit on arrays."""
    import keras

    from ser_mlflow.nn.losses import pack_targets
    from ser_mlflow.nn.model import build_model, compile_model

    keras.utils.set_random_seed(cfg.seed)
    feats = data.features["Train"]
    x, _ = pad_sequences(feats)
    ys = [shift_labels(r.labels, cfg.shift_frames)[0] for r in data.corpus.partition("Train")]
    y, _ = pad_sequences(ys, length=x.shape[1])
    ones = np.ones(x.shape[:2], dtype=np.float32)  # no masking: padding counts as data
    model = build_model(data.corpus.n_features, data.attributes, cfg.model)
    compile_model(model, cfg.model, cfg.loss)
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        model.fit(x, pack_targets(y, ones), batch_size=cfg.batch_size, epochs=1, verbose=0)
        times.append(time.perf_counter() - t0)
    preds = predict_partition(model, data, "Devel")
    ccc = score_partition(data, "Devel", preds, prefix="devel_")["devel_ccc_mean"]
    return times, ccc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-root", type=Path, default=Path("data/synthetic"))
    ap.add_argument("--feature-set", default="egemaps-func")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    if not args.data_root.exists():
        print(f"writing the full-scale synthetic corpus to {args.data_root} ...")
        write_synthetic_corpus(args.data_root, scale="full", seed=0)
    cfg = TrainConfig(
        data_root=args.data_root,
        feature_sets=(args.feature_set,),
        epochs=args.epochs,
        seed=args.seed,
        model=ModelConfig(),
        loss=LossConfig.from_name("MTL2"),
    )
    data = prepare(cfg)
    feats = data.features["Train"]
    valid_frames = int(sum(len(f) for f in feats))
    padded_frames = len(feats) * max(len(f) for f in feats)
    print(
        f"{len(feats)} training recordings, {data.corpus.n_features} features, "
        f"{valid_frames} valid frames ({valid_frames / padded_frames:.0%} of "
        f"{padded_frames} padded), {args.epochs} epochs, batch {cfg.batch_size}"
    )

    # warm-up builds the graphs of both paths so that tracing is not timed
    ref_times, ref_ccc = reference_epochs(cfg, data, args.epochs + 1)
    ref_times = ref_times[1:]
    _, _, hist = fit_network(
        TrainConfig(**{**cfg.__dict__, "epochs": args.epochs + 1}), data, progress=False
    )
    ours = [h["epoch_seconds"] for h in hist[1:]]
    ours_ccc = hist[-1]["devel_ccc_mean"]

    def line(name: str, times: list[float], ccc: float) -> float:
        med = float(np.median(times))
        fps = valid_frames / med
        print(
            f"{name:<12} epoch {med:6.2f} s (min {min(times):.2f}, max {max(times):.2f})  "
            f"{fps:8.0f} valid frames/s  devel CCC mean {ccc:.3f}"
        )
        return fps

    ref_fps = line("reference", ref_times, ref_ccc)
    our_fps = line("ser_mlflow", ours, ours_ccc)
    print(f"speed-up in valid frames per second: {our_fps / ref_fps:.2f}x")


if __name__ == "__main__":
    main()
