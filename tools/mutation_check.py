"""Mutation spot check: plant plausible bugs one at a time, see whether the tests notice.

Run by hand, not in CI (about 10-20 minutes on two cores)::

    python tools/mutation_check.py                 # every mutant
    python tools/mutation_check.py --only M01 M04  # some
    python tools/mutation_check.py --list

Each mutant is one exact text replacement in one module of the science (folds, ranking,
promotion, shift and mask, standardisation, loss, CCC, pruning). The repository's tracked
files are copied to a temporary folder (``../shared`` is linked beside the copy, so the
real-data tests see the AVEC files), the bug is planted in the copy, and the mutant's
selected tests run there with ``PYTHONPATH`` pointing at the copy. A mutant is *killed*
when a test fails, *survived* when all pass. A replacement whose text is no longer in the
code is reported as *stale* (the mutant needs updating), never silently skipped.

The selected tests are the fast ones meant to catch that bug; ``--slow`` adds the slow
tests a mutant lists as a second line of defence. Survivors and why each is acceptable go
into the closing note of the issue that last ran this.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCI = "tests/test_science.py"


@dataclass(frozen=True)
class Mutant:
    key: str
    what: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]
    slow: tuple[str, ...] = ()


MUTANTS = (
    Mutant(
        "M01", "fusion folds not grouped by recording (GroupKFold -> KFold)",
        "ser_mlflow/fusion/estimator.py",
        "splitter = GroupKFold(n_splits=self.n_splits)\n"
        "        return [np.sort(test) for _, test in splitter.split(codes, groups=codes)]",
        "from sklearn.model_selection import KFold\n\n"
        "        splitter = KFold(n_splits=self.n_splits)\n"
        "        return [np.sort(test) for _, test in splitter.split(codes)]",
        (f"{SCI}::test_cv_folds_never_split_a_recording",
         f"{SCI}::test_cv_predictions_of_a_recording_never_see_its_own_targets",
         "tests/test_fusion.py::test_cv_scores_are_out_of_fold_on_noise"),
    ),
    Mutant(
        "M02", "outer cross-validation fits on the held-out fold too",
        "ser_mlflow/fusion/estimator.py",
        "rest = [b for b in blocks if b != f]",
        "rest = list(blocks)",
        (f"{SCI}::test_cv_predictions_of_a_recording_never_see_its_own_targets",
         "tests/test_fusion.py::test_cv_scores_are_out_of_fold_on_noise"),
    ),
    Mutant(
        "M03", "context windows run across recording boundaries", "ser_mlflow/fusion/windows.py",
        "    lo = starts[run][pos]\n    hi = ends[run][pos]",
        "    lo = np.zeros_like(pos)\n    hi = np.full_like(pos, n - 1)",
        ("tests/test_fusion.py::test_context_windows_match_loop_with_interleaved_groups",
         "tests/test_fusion.py::test_context_windows_edges_repeat_own_recording"),
    ),
    Mutant(
        "M04", "fusion takes the worst-ranked runs", "ser_mlflow/jobs/latefusion.py",
        "key=lambda r: -r.data.metrics[rank_metric]",
        "key=lambda r: r.data.metrics[rank_metric]",
        (f"{SCI}::test_fusion_takes_the_top_ranked_runs",),
    ),
    Mutant(
        "M05", "fusion takes one run more than top_n", "ser_mlflow/jobs/latefusion.py",
        "if len(inputs.used) == top_n:",
        "if len(inputs.used) > top_n:",
        (f"{SCI}::test_fusion_takes_the_top_ranked_runs",),
    ),
    Mutant(
        "M06", "promote accepts a challenger that only ties (> -> >=)",
        "ser_mlflow/jobs/registry.py",
        "not new_value > old_value",
        "not new_value >= old_value",
        (f"{SCI}::test_promote_refuses_a_tie_and_takes_a_strictly_better_challenger",),
    ),
    Mutant(
        "M07", "register_best registers the worst run", "ser_mlflow/jobs/registry.py",
        'order_by=[f"metrics.`{metric}` DESC"]',
        'order_by=[f"metrics.`{metric}` ASC"]',
        (f"{SCI}::test_register_best_registers_the_best_run",),
        slow=("tests/test_registry.py::test_register_predict_promote_serve",),
    ),
    Mutant(
        "M08", "shift marks every frame valid (mask ignores the shift)",
        "ser_mlflow/data/preprocess.py",
        "    valid[:keep] = True\n    return out, valid",
        "    valid[:] = True\n    return out, valid",
        ("tests/test_data.py::test_shift_and_unshift",
         f"{SCI}::test_training_mask_leaves_out_frames_the_shift_left_without_labels"),
    ),
    Mutant(
        "M09", "training batch mask ignores shift validity", "ser_mlflow/nn/fit.py",
        "m[row, :t] = valid[i]",
        "m[row, :t] = 1.0",
        (f"{SCI}::test_training_mask_leaves_out_frames_the_shift_left_without_labels",),
    ),
    Mutant(
        "M10", "training labels not shifted", "ser_mlflow/nn/fit.py",
        "y, ok = shift_labels(rec.labels, cfg.shift_frames)",
        "y, ok = shift_labels(rec.labels, 0)",
        (f"{SCI}::test_training_mask_leaves_out_frames_the_shift_left_without_labels",),
    ),
    Mutant(
        "M11", "written devel/test predictions not shifted back", "ser_mlflow/nn/fit.py",
        "r.name: unshift_predictions(p, data.shift_frames) for r, p",
        "r.name: p for r, p",
        (f"{SCI}::test_predictions_are_shifted_back_when_written_and_served",),
        slow=("tests/test_train.py::test_train_run_is_complete",),
    ),
    Mutant(
        "M12", "served (pyfunc) predictions not shifted back", "ser_mlflow/models/pyfunc.py",
        'pred = unshift_predictions(pred, meta.shift_frames)',
        "pred = pred",
        (f"{SCI}::test_predictions_are_shifted_back_when_written_and_served",),
    ),
    Mutant(
        "M13", "model metadata forgets the shift", "ser_mlflow/jobs/train.py",
        "shift_frames=cfg.shift_frames,",
        "shift_frames=0,",
        (f"{SCI}::test_predictions_are_shifted_back_when_written_and_served",),
    ),
    Mutant(
        "M14", "standardiser fitted on Train + Devel", "ser_mlflow/nn/fit.py",
        'std = Standardizer().fit(train)',
        'std = Standardizer().fit([*train, *corpus.partition("Devel")])',
        (f"{SCI}::test_standardiser_uses_train_statistics_only",),
    ),
    Mutant(
        "M15", "standardiser uses the sample std (ddof=1)", "ser_mlflow/data/preprocess.py",
        "std = x.std(axis=0)",
        "std = x.std(axis=0, ddof=1)",
        ("tests/test_data.py::test_standardizer_fits_train_frames_and_round_trips",
         f"{SCI}::test_standardiser_uses_train_statistics_only"),
    ),
    Mutant(
        "M16", "loss rewards disagreement (1 - CCC -> 1 + CCC)", "ser_mlflow/nn/losses.py",
        "return ops.sum(w * (1.0 - ccc))",
        "return ops.sum(w * (1.0 + ccc))",
        ("tests/test_losses.py", f"{SCI}::test_training_beats_the_untrained_network_on_devel"),
    ),
    Mutant(
        "M17", "loss ignores the frame mask", "ser_mlflow/nn/losses.py",
        "w = ops.reshape(y_true[..., n_attr], (-1, 1))",
        "w = ops.ones_like(ops.reshape(y_true[..., n_attr], (-1, 1)))",
        ("tests/test_losses.py",),
    ),
    Mutant(
        "M18", "CCC without the mean-difference term (a Pearson look-alike)",
        "ser_mlflow/scoring/metrics.py",
        "    denom = vx + vy + (mx - my) ** 2\n    if np.isnan(denom):",
        "    denom = vx + vy\n    if np.isnan(denom):",
        ("tests/test_metrics.py",),
    ),
    Mutant(
        "M19", "per-culture scores over every recording", "ser_mlflow/scoring/metrics.py",
        "sub = [n for n in names if cultures[n] == culture]",
        "sub = names",
        ("tests/test_metrics.py",),
    ),
    Mutant(
        "M20", "--prune builds no median pruner", "ser_mlflow/search/tickets.py",
        "    return optuna.pruners.MedianPruner(",
        "    return optuna.pruners.NopPruner()\n    optuna.pruners.MedianPruner(",
        (f"{SCI}::test_real_median_pruner_prunes_a_clearly_worse_trial",),
    ),
    Mutant(
        "M21", "the pruner's verdict is ignored", "ser_mlflow/search/worker.py",
        "if trial.should_prune():",
        "if trial.should_prune() and False:",
        (f"{SCI}::test_real_median_pruner_prunes_a_clearly_worse_trial",),
    ),
    Mutant(
        "M23", "loss rewards disagreement, seen by the learning test alone",
        "ser_mlflow/nn/losses.py",
        "return ops.sum(w * (1.0 - ccc))",
        "return ops.sum(w * (1.0 + ccc))",
        (f"{SCI}::test_training_beats_the_untrained_network_on_devel",),
    ),
    Mutant(
        "M22", "the best epoch's weights are not restored", "ser_mlflow/nn/fit.py",
        "    model.set_weights(best_weights)\n    return model, best_epoch, history",
        "    return model, best_epoch, history",
        (f"{SCI}::test_training_returns_the_best_epochs_weights",),
    ),
)


def _copy_repo(dest: Path) -> Path:
    """Tracked and untracked-but-not-ignored files of the repository, plus ../shared."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, check=True,
        capture_output=True, text=True,
    ).stdout.splitlines()
    root = dest / REPO.name
    for rel in files:
        src = REPO / rel
        if src.is_file():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, root / rel)
    shared = REPO.parent / "shared"
    if shared.is_dir():
        (dest / "shared").symlink_to(shared)
    return root


def _run(root: Path, tests: tuple[str, ...], timeout: float) -> tuple[bool, str]:
    env = {**os.environ, "PYTHONPATH": str(root), "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("CI", None)
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    try:
        proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, "timed out (counted as killed: a hang is noticed)"
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    failed = [ln for ln in lines if ln.startswith(("FAILED", "ERROR"))]
    return proc.returncode == 0, (failed[0] if failed else (lines[-1] if lines else ""))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="*", default=None, help="mutant keys, e.g. M01 M04")
    ap.add_argument("--slow", action="store_true", help="also run each mutant's slow tests")
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per mutant")
    args = ap.parse_args()
    chosen = [m for m in MUTANTS if args.only is None or m.key in args.only]
    if args.list:
        for m in chosen:
            print(f"{m.key}  {m.path:26s} {m.what}")
        return 0
    results = []
    with tempfile.TemporaryDirectory(prefix="ser-mutants-") as tmp:
        root = _copy_repo(Path(tmp))
        ok, last = _run(root, tuple(dict.fromkeys(t for m in chosen for t in m.tests)),
                        args.timeout)
        if not ok:
            print(f"the selected tests fail on the unmutated code: {last}")
            return 2
        for m in chosen:
            target = root / m.path
            original = target.read_text()
            if original.count(m.old) != 1:
                results.append((m, "stale", f"{m.old!r} found {original.count(m.old)} times"))
                print(f"{m.key} stale    {m.what}", flush=True)
                continue
            target.write_text(original.replace(m.old, m.new))
            started = time.monotonic()
            try:
                tests = m.tests + (m.slow if args.slow else ())
                passed, line = _run(root, tests, args.timeout)
            finally:
                target.write_text(original)
            verdict = "SURVIVED" if passed else "killed"
            results.append((m, verdict, line))
            print(f"{m.key} {verdict:8s} {m.what}  [{time.monotonic() - started:.0f} s] {line}",
                  flush=True)
    survivors = [r for r in results if r[1] != "killed"]
    print(f"\n{len(results) - len(survivors)} of {len(results)} mutants killed")
    for m, verdict, line in survivors:
        print(f"  {verdict}: {m.key} {m.what} ({m.path}) {line}")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
