"""Training throughput: ser_mlflow against a plain Keras reference, then one knob at a time.

The paper model at full shape: 68 training recordings of 975-1768 frames (full-scale
synthetic corpus), 88 features (eGeMAPS functionals) by default. Every side trains from
the same seed; each run has one warm-up epoch (graph tracing) that is not counted and
``--epochs`` measured ones (>= 5); runs are interleaved ``--repeats`` times (ABAB...), so
a ratio compares epochs measured under the same load. Figures: min and median seconds per
epoch, their ratios, useful (valid-frame) GFLOP/s against the two cores' fp32 peak.

- ``reference``: every recording zero-padded to the longest, no masking, ``model.fit``;
- ``ser_mlflow``: ``train.fit_network`` (length-bucketed batches padded to their own
  longest recording, masked CCC loss);
- ``--knobs``: the same bucketed loop with one change each, against the unchanged loop in
  the same interleaved rounds: bucket jitter 0 (strict length sort) and 2 (looser),
  ``jit_compile=True`` (XLA compiles one program per batch shape, so that side pads each
  batch up to a multiple of 256 frames: at most four shapes on the full corpus; the extra
  padding is counted in its time), ``mixed_bfloat16``, padding the next batch in a thread
  (prefetch), TensorFlow's fused CPU LSTM op (``BlockLSTM``: the whole sequence in one
  C++ op, same weights); ``--knob NAME`` (repeatable) measures only those against the shipped loop;
- ``--threads``: each intra/inter-op setting in its own process (TensorFlow fixes its
  thread pools at start-up);
- ``--concurrent``: one training process with both cores against two at the same time
  with one core each (``--jobs 2``'s children, their start-up aside), in epochs per hour.

Run: ``python benchmarks/train_throughput.py --data-root /tmp/full [--epochs 5 --repeats 2]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from unittest import mock

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).parent))

import numpy as np  # noqa: E402
from timing import load, min_median  # noqa: E402

from ser_mlflow.data import pad_sequences, shift_labels, write_synthetic_corpus  # noqa: E402
from ser_mlflow.nn.fit import (  # noqa: E402
    Prepared,
    _pad_batch,
    fit_network,
    predict_partition,
    prepare,
    score_partition,
)
from ser_mlflow.settings import LossConfig, ModelConfig, TrainConfig  # noqa: E402

#: Zen 3 (this machine's EPYC: AVX2 + FMA, no AVX-512): 2 FMA pipes x 8 fp32 lanes x 2.
FP32_FLOP_PER_CYCLE = 32


def peak_gflops(cores: int) -> float:
    """fp32 peak of ``cores`` cores at the nominal clock /proc/cpuinfo reports."""
    mhz = 0.0
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("cpu MHz"):
            mhz = float(line.split(":")[1])
            break
    return cores * FP32_FLOP_PER_CYCLE * mhz / 1e3


def train_flop_per_frame(n_features: int, units: tuple[int, ...]) -> float:
    """Multiply-adds of the LSTM stack per frame x 2 FLOP, x 3 for forward + backward."""
    flop, width = 0.0, n_features
    for u in units:
        flop += 2 * 4 * u * (width + u)
        width = u
    return 3 * flop


def devel_ccc(model: Any, data: Prepared) -> float:
    preds = predict_partition(model, data, "Devel")
    return score_partition(data, "Devel", preds, prefix="devel_")["devel_ccc_mean"]


def reference_run(cfg: TrainConfig, data: Prepared, epochs: int) -> tuple[list[float], float]:
    """Plain Keras: pad everything to the longest recording, model.fit on arrays."""
    import keras

    from ser_mlflow.nn.losses import pack_targets
    from ser_mlflow.nn.model import build_model, compile_model

    keras.utils.set_random_seed(cfg.seed)
    x, _ = pad_sequences(data.features["Train"])
    ys = [shift_labels(r.labels, cfg.shift_frames)[0] for r in data.corpus.partition("Train")]
    y, _ = pad_sequences(ys, length=x.shape[1])
    ones = np.ones(x.shape[:2], dtype=np.float32)  # no masking: padding counts as data
    model = build_model(data.corpus.n_features, data.attributes, cfg.model)
    compile_model(model, cfg.model, cfg.loss)
    times = []
    for _ in range(epochs + 1):
        t0 = time.perf_counter()
        model.fit(x, pack_targets(y, ones), batch_size=cfg.batch_size, epochs=1, verbose=0)
        times.append(time.perf_counter() - t0)
    return times[1:], devel_ccc(model, data)


def ours_run(cfg: TrainConfig, data: Prepared, epochs: int) -> tuple[list[float], float]:
    run_cfg = TrainConfig(**{**cfg.__dict__, "epochs": epochs + 1})
    _, _, hist = fit_network(run_cfg, data, progress=False)
    return [h["epoch_seconds"] for h in hist[1:]], hist[-1]["devel_ccc_mean"]


def jittered_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator,
                     jitter: float) -> list[np.ndarray]:
    """``train._batches`` with its length jitter scaled by ``jitter`` (1 = as shipped)."""
    n = len(lengths)
    spread = (lengths.max() - lengths.min() + 1) * min(1.0, batch_size / max(n, 1)) * jitter
    order = np.argsort(lengths + rng.uniform(-0.5, 0.5, size=n) * spread, kind="stable")
    batches = [order[i : i + batch_size] for i in range(0, n, batch_size)]
    rng.shuffle(batches)  # type: ignore[arg-type]
    return batches


def rounded_batch(idx: np.ndarray, feats: list[np.ndarray], tgt: list[np.ndarray],
                  ok: list[np.ndarray], multiple: int) -> tuple[np.ndarray, np.ndarray]:
    """``_pad_batch`` padded further, to a multiple of ``multiple`` frames (mask 0 there)."""
    x, y = _pad_batch(idx, feats, tgt, ok)
    extra = -x.shape[1] % multiple if multiple else 0
    if extra:
        x = np.pad(x, ((0, 0), (0, extra), (0, 0)))
        y = np.pad(y, ((0, 0), (0, extra), (0, 0)))
    return x, y


def warm_shapes(model: Any, feats: list[np.ndarray], tgt: list[np.ndarray],
                ok: list[np.ndarray], multiple: int, batch_size: int) -> None:
    """One step per (batch size, rounded length) the epochs can produce (XLA compiles each
    shape once), then weights and optimizer state put back: compiling is not counted."""
    weights = model.get_weights()
    before = {id(v): v.numpy() for v in model.optimizer.variables}  # iterations, rate
    n, longest = len(feats), max(len(f) for f in feats)
    shortest = min(len(f) for f in feats)
    sizes = {min(batch_size, n)} | ({n % batch_size} if n % batch_size else set())
    first = -(-shortest // multiple) * multiple
    for size in sorted(sizes):
        for length in range(first, longest + multiple, multiple):
            cut = [f[:length] for f in feats[:size]]
            x, y = rounded_batch(np.arange(size), cut, [t[:length] for t in tgt[:size]],
                                 [o[:length] for o in ok[:size]], length)
            model.train_on_batch(x, y)
    model.set_weights(weights)
    for v in model.optimizer.variables:  # the slots built by the warm steps start at 0
        v.assign(before.get(id(v), np.zeros(v.shape, dtype=v.dtype)))


def fused_lstm_class() -> Any:
    """Keras' LSTM whose loop is TensorFlow's fused CPU op ``BlockLSTM`` (one op for all
    steps, C++ loop), same weights and outputs: the gates reordered i,f,c,o -> i,c,f,o.
    ``BlockLSTMV2`` takes Keras' order but TensorFlow registers V1's gradient for it
    (wrong gate order), so V1 with forget bias 0 and no cell clip."""
    import keras
    import tensorflow as tf

    def icfo(w: Any) -> Any:
        i, f, c, o = tf.split(w, 4, axis=-1)
        return tf.concat([i, c, f, o], axis=-1)

    class FusedLSTM(keras.layers.LSTM):  # type: ignore[misc]
        def inner_loop(self, sequences: Any, initial_state: Any, mask: Any,
                       training: bool = False) -> Any:
            if self.dropout or self.recurrent_dropout or mask is not None or self.go_backwards:
                return super().inner_loop(sequences, initial_state, mask, training)
            cell = self.cell
            w = icfo(tf.concat([cell.kernel.value, cell.recurrent_kernel.value], axis=0))
            x = tf.transpose(sequences, (1, 0, 2))
            zeros = tf.zeros([cell.units], dtype=x.dtype)
            _, cs, _, _, _, _, h = tf.raw_ops.BlockLSTM(
                seq_len_max=tf.cast(tf.shape(x)[0], tf.int64), x=x, cs_prev=initial_state[1],
                h_prev=initial_state[0], w=w, wci=zeros, wcf=zeros, wco=zeros,
                b=icfo(cell.bias.value), forget_bias=0.0, cell_clip=-1.0, use_peephole=False)
            return h[-1], tf.transpose(h, (1, 0, 2)), [h[-1], cs[-1]]

    return FusedLSTM


def knob_run(cfg: TrainConfig, data: Prepared, epochs: int, *, jitter: float = 1.0,
             jit: bool = False, bf16: bool = False, prefetch: bool = False, round_to: int = 0,
             fused: bool = False) -> tuple[list[float], float]:
    """The bucketed training loop of ``fit_network`` (training part) with one knob changed."""
    import keras

    from ser_mlflow.nn.losses import MultitaskCCCLoss
    from ser_mlflow.nn.model import build_model

    keras.mixed_precision.set_global_policy("mixed_bfloat16" if bf16 else "float32")
    keras.utils.set_random_seed(cfg.seed)
    try:
        with mock.patch.object(keras.layers, "LSTM", fused_lstm_class() if fused
                               else keras.layers.LSTM):
            model = build_model(data.corpus.n_features, data.attributes, cfg.model)
        model.compile(optimizer=keras.optimizers.RMSprop(learning_rate=cfg.model.lr),
                      loss=MultitaskCCCLoss(cfg.loss.weights), jit_compile=jit)
        rng = np.random.default_rng([cfg.seed, 1])
        feats, tgt, ok = data.features["Train"], data.train_targets, data.train_valid
        lengths = np.array([len(f) for f in feats])
        if round_to:
            warm_shapes(model, feats, tgt, ok, round_to, cfg.batch_size)
        times = []
        pool = ThreadPoolExecutor(1)
        for _ in range(epochs + 1):
            batches = jittered_batches(lengths, cfg.batch_size, rng, jitter)
            t0 = time.perf_counter()
            if prefetch:
                nxt = pool.submit(rounded_batch, batches[0], feats, tgt, ok, round_to)
                for i in range(len(batches)):
                    x, y = nxt.result()
                    if i + 1 < len(batches):
                        nxt = pool.submit(rounded_batch, batches[i + 1], feats, tgt, ok,
                                          round_to)
                    model.train_on_batch(x, y)
            else:
                for idx in batches:
                    model.train_on_batch(*rounded_batch(idx, feats, tgt, ok, round_to))
            times.append(time.perf_counter() - t0)
        pool.shutdown()
        return times[1:], devel_ccc(model, data)
    finally:
        keras.mixed_precision.set_global_policy("float32")


KNOBS: dict[str, dict[str, Any]] = {
    "loop as shipped": {},
    "bucket jitter 0": {"jitter": 0.0},
    "bucket jitter 2": {"jitter": 2.0},
    "lengths to 256": {"round_to": 256},
    "jit_compile on": {"jit": True, "round_to": 256},
    "mixed_bfloat16": {"bf16": True},
    "prefetch next batch": {"prefetch": True},
    "fused BlockLSTM op": {"fused": True},
}


def interleave(sides: dict[str, Callable[[], tuple[list[float], float]]], repeats: int
               ) -> dict[str, tuple[list[float], list[float]]]:
    """Run every side once per round, rounds alternating direction; epochs and CCCs."""
    out: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in sides}
    names = list(sides)
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            times, ccc = sides[name]()
            out[name][0].extend(times)
            out[name][1].append(ccc)
            print(f"  round {r + 1} {name:<20} {' '.join(f'{t:.2f}' for t in times)} s  "
                  f"devel CCC {ccc:.3f}  ({load()})", flush=True)
    return out


def report(results: dict[str, tuple[list[float], list[float]]], base: str,
           frames: int, flop_per_frame: float, peak: float) -> None:
    b_min, b_med = min_median(results[base][0])
    for name, (times, cccs) in results.items():
        t_min, t_med = min_median(times)
        gflops = frames * flop_per_frame / t_med / 1e9
        print(f"{name:<20} epoch min {t_min:6.2f} s median {t_med:6.2f} s (n={len(times)})  "
              f"{base} / this: min {b_min / t_min:5.2f}x median {b_med / t_med:5.2f}x  "
              f"{frames / t_med:7.0f} valid frames/s  {gflops:5.1f} GFLOP/s "
              f"({gflops / peak:.0%} of {peak:.0f})  devel CCC {np.mean(cccs):.3f}")


def thread_children(args: argparse.Namespace, intra: int, inter: int, count: int = 1
                    ) -> list[list[float]]:
    """``count`` processes at once with the given thread pools: each one's measured epochs
    of the shipped loop (``--jobs N`` runs its children like this)."""
    cmd = [sys.executable, __file__, "--data-root", str(args.data_root), "--feature-set",
           args.feature_set, "--epochs", str(args.epochs), "--units", args.units,
           "--_threads-child", f"{intra},{inter}"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
             for _ in range(count)]
    outs = [p.communicate()[0] for p in procs]
    if any(p.returncode for p in procs):
        raise SystemExit(f"a child failed: {' '.join(cmd)}")
    return [list(json.loads(o.strip().splitlines()[-1])) for o in outs]


def thread_child(args: argparse.Namespace, intra: int, inter: int) -> list[float]:
    """One process with the given thread pools: the shipped loop's measured epochs."""
    return thread_children(args, intra, inter)[0]


def concurrent_report(args: argparse.Namespace) -> None:
    """Throughput of one process with both cores against two at once with one core each
    (what ``--jobs 2`` does with full-scale runs, start-up aside): epochs per second."""
    setups = [(1, 2, 2), (2, 1, 1), (2, 1, 2)]  # processes, intra, inter
    rate: dict[tuple[int, int, int], list[float]] = {s: [] for s in setups}
    for r in range(args.repeats):
        for n, a, b in setups if r % 2 == 0 else setups[::-1]:
            runs = thread_children(args, a, b, n)
            # the processes ran side by side: their rates (1 / median epoch) add up
            rate[(n, a, b)].append(sum(1 / float(np.median(t)) for t in runs))
            print(f"  round {r + 1} {n} process(es), intra {a} inter {b}: "
                  + "; ".join(" ".join(f"{t:.2f}" for t in run) for run in runs)
                  + f" s  ({load()})", flush=True)
    base = float(np.median(rate[setups[0]]))
    for (n, a, b), v in rate.items():
        med = float(np.median(v))
        print(f"{n} process(es) x intra {a} inter {b}: {med * 3600:6.0f} epochs/hour, "
              f"{med / base:.2f}x one process with both cores")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-root", type=Path, default=Path("/tmp/ser-bench/full"))
    ap.add_argument("--feature-set", default="egemaps-func")
    ap.add_argument("--units", default="256,128,64")
    ap.add_argument("--epochs", type=int, default=5, help="measured epochs per run (>= 5)")
    ap.add_argument("--repeats", type=int, default=2, help="interleaved rounds")
    ap.add_argument("--knobs", action="store_true", help="one knob at a time (in-process)")
    ap.add_argument("--knob", action="append", default=[], choices=list(KNOBS)[1:],
                    help="with --knobs: only this knob (repeatable)")
    ap.add_argument("--threads", action="store_true", help="intra/inter-op settings")
    ap.add_argument("--concurrent", action="store_true",
                    help="one process on both cores against two processes with one each")
    ap.add_argument("--_threads-child", dest="threads_child", default="", help="internal")
    args = ap.parse_args()

    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # retracing notes for each new batch length
    if args.threads_child:
        intra, inter = (int(v) for v in args.threads_child.split(","))
        tf.config.threading.set_intra_op_parallelism_threads(intra)
        tf.config.threading.set_inter_op_parallelism_threads(inter)
    if not args.data_root.exists():
        print(f"writing the full-scale synthetic corpus to {args.data_root} ...")
        write_synthetic_corpus(args.data_root, scale="full", seed=0)
    units = tuple(int(u) for u in args.units.split(","))
    cfg = TrainConfig(data_root=args.data_root, feature_sets=(args.feature_set,),
                      epochs=args.epochs, model=ModelConfig(units=units),
                      loss=LossConfig.from_name("MTL2"))
    data = prepare(cfg)
    if args.threads_child:
        print(json.dumps(ours_run(cfg, data, args.epochs)[0]))
        return
    feats = data.features["Train"]
    frames = int(sum(len(f) for f in feats))
    padded = len(feats) * max(len(f) for f in feats)
    fpf = train_flop_per_frame(data.corpus.n_features, units)
    peak = peak_gflops(os.cpu_count() or 1)
    print(f"{len(feats)} training recordings, {data.corpus.n_features} features, units "
          f"{args.units}, {frames} valid frames ({frames / padded:.0%} of {padded} padded), "
          f"batch {cfg.batch_size}, {args.epochs} measured epochs x {args.repeats} rounds; "
          f"{fpf / 1e6:.2f} MFLOP per valid frame; {load()}")
    if args.concurrent:
        concurrent_report(args)
    elif args.threads:
        settings = [(2, 2), (2, 1), (1, 1), (1, 2)]
        res: dict[str, tuple[list[float], list[float]]] = {
            f"intra {a} inter {b}": ([], [float("nan")]) for a, b in settings}
        for r in range(args.repeats):
            for a, b in settings if r % 2 == 0 else settings[::-1]:
                times = thread_child(args, a, b)
                res[f"intra {a} inter {b}"][0].extend(times)
                print(f"  round {r + 1} intra {a} inter {b}  {' '.join(f'{t:.2f}' for t in times)}"
                      f" s  ({load()})", flush=True)
        report(res, "intra 2 inter 2", frames, fpf, peak)
    elif args.knobs:
        sides = {name: (lambda kw=kw: knob_run(cfg, data, args.epochs, **kw))
                 for name, kw in KNOBS.items()
                 if not args.knob or name in args.knob or name == "loop as shipped"}
        report(interleave(sides, args.repeats), "loop as shipped", frames, fpf, peak)
    else:
        sides = {"reference": lambda: reference_run(cfg, data, args.epochs),
                 "ser_mlflow": lambda: ours_run(cfg, data, args.epochs)}
        report(interleave(sides, args.repeats), "reference", frames, fpf, peak)
    print(f"({load()} at the end)")


if __name__ == "__main__":
    main()
