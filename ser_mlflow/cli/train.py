"""Training commands: train, the sweeps (unimodal, bimodal, compare, delay-sweep), `main`.

Their options come from the settings schema (:mod:`ser_mlflow.settings`): each command
takes the training settings it uses and its own sweep settings, nothing it would ignore.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from ser_mlflow._quiet import import_tensorflow_quietly
from ser_mlflow.cli.app import main
from ser_mlflow.cli.errors import user_errors
from ser_mlflow.settings import (
    SWEEP_SETTINGS,
    TrainConfig,
    parse_feature_set_list,
    parse_seeds,
    settings_options,
    train_config,
    train_options,
)

LOSS_SETTINGS = ("loss", "alpha", "beta", "gamma")


def check_feature_sets(data_root: Path, feature_sets: Sequence[str]) -> None:
    """Refuse unknown feature sets before a sweep starts.

    A sweep records a failing child and goes on, which is right for a set that breaks
    mid-sweep but wrong for a typo: the sweep would end "successfully" with FAILED runs.

    Raises:
        DataError: a missing data root, or the unknown sets and the available ones.
    """
    from ser_mlflow.data import DataError, list_feature_sets

    available = list_feature_sets(data_root)
    unknown = [s for s in feature_sets if s not in available]
    if unknown:
        raise DataError(f"{data_root}: feature set(s) {', '.join(map(repr, unknown))} not "
                        f"found; available: {', '.join(available)}")


def build_train_config(**kw: Any) -> TrainConfig:
    """A TrainConfig from a command's training options (checked before TensorFlow loads)."""
    from ser_mlflow import tracking

    tracking.check_launched_experiment(kw.get("experiment"))
    return train_config(kw)


def format_scores(metrics: dict[str, float]) -> str:
    """A small table of devel (and test) CCC, overall (DE+HU) and per culture."""
    import re

    pattern = re.compile(r"^(devel|test)_(?:([A-Z]+)_)?ccc_(\w+)$")
    table: dict[tuple[str, str], dict[str, float]] = {}
    attrs: list[str] = []
    for key, value in metrics.items():
        m = pattern.match(key)
        if not m:
            continue
        part, culture, attr = m.group(1), m.group(2) or "DE+HU", m.group(3)
        table.setdefault((part, culture), {})[attr] = value
        if attr != "mean" and attr not in attrs:
            attrs.append(attr)
    cols = [*attrs, "mean"]
    lines = [f"  {'CCC':<12}" + "".join(f"{a:>9}" for a in cols)]
    for (part, culture), vals in sorted(
        table.items(), key=lambda kv: (kv[0][0], kv[0][1] != "DE+HU", kv[0][1])
    ):
        lines.append(
            f"  {part + ' ' + culture:<12}"
            + "".join(f"{vals.get(a, float('nan')):>9.3f}" for a in cols)
        )
    return "\n".join(lines)


def _ready_corpus(base: TrainConfig, sets: Sequence[str] | None) -> None:
    from ser_mlflow.jobs.train import ensure_default_corpus

    ensure_default_corpus(base.data_root, echo=click.echo)
    if sets:
        check_feature_sets(base.data_root, sets)


@main.command()
@click.option("--resume-run-id", default="", help="Continue a KILLED/FAILED run from its "
              "checkpoint with its own params (other options are ignored).")
@train_options(exclude=())
@user_errors
def train(resume_run_id: str, **kw: Any) -> None:
    """Train the paper's LSTM network on one or two feature sets and log a complete run."""
    from ser_mlflow import tracking
    from ser_mlflow.jobs.train import resume_training, run_training

    if resume_run_id.strip():
        import_tensorflow_quietly()
        result = resume_training(resume_run_id.strip(), echo=click.echo)
        click.echo(format_scores(result.metrics))
        return
    cfg = build_train_config(**kw)
    import_tensorflow_quietly()
    click.echo(
        f"Training on {'+'.join(cfg.feature_sets)} with {cfg.loss.name} "
        f"(alpha={cfg.loss.alpha:g}, beta={cfg.loss.beta:g}, gamma={cfg.loss.gamma:g}), "
        f"{cfg.epochs} epochs, tracking {tracking.tracking_uri()}"
    )
    result = run_training(cfg, echo=click.echo)
    click.echo(format_scores(result.metrics))
    click.echo(tracking.ui_hint(tracking.get_run(result.run_id).info.experiment_id))


@main.command()
@train_options()
@settings_options(SWEEP_SETTINGS["unimodal"])
@user_errors
def unimodal(feature_sets: str, rank_metric: str, force: bool, jobs: int, **kw: Any) -> None:
    """Train one child run per feature set under one parent, and rank them."""
    from ser_mlflow import tracking
    from ser_mlflow.jobs import pipeline

    base = build_train_config(**kw)
    import_tensorflow_quietly()
    sets = parse_feature_set_list(feature_sets)
    _ready_corpus(base, sets)
    pipeline.unimodal(base, feature_sets=sets, force=force, rank_metric=rank_metric,
                      echo=click.echo, jobs=jobs)
    click.echo(tracking.ui_hint())


@main.command()
@train_options()
@settings_options(SWEEP_SETTINGS["bimodal"])
@user_errors
def bimodal(top_k: int, rank_metric: str, force: bool, jobs: int, **kw: Any) -> None:
    """Early fusion: train all pairs of the top-K unimodal feature sets (from the server)."""
    from ser_mlflow import tracking
    from ser_mlflow.jobs import pipeline

    base = build_train_config(**kw)
    import_tensorflow_quietly()
    pipeline.bimodal(base, top_k=top_k, rank_metric=rank_metric, force=force, echo=click.echo,
                     jobs=jobs)
    click.echo(tracking.ui_hint())


@main.command()
@train_options(exclude=("feature_sets", *LOSS_SETTINGS, "seed"))
@settings_options(SWEEP_SETTINGS["compare"])
@user_errors
def compare(feature_set: str, seeds: str, force: bool, jobs: int, **kw: Any) -> None:
    """STL1, STL2, STL3, MTL1 and MTL2 on one feature set over several seeds (Table 2)."""
    from ser_mlflow import tracking
    from ser_mlflow.jobs import pipeline

    seed_list = parse_seeds(seeds)
    base = build_train_config(feature_sets=feature_set, **kw)
    import_tensorflow_quietly()
    _ready_corpus(base, base.feature_sets)
    pipeline.compare(base, feature_set="+".join(base.feature_sets), seeds=seed_list,
                     force=force, echo=click.echo, jobs=jobs)
    click.echo(tracking.ui_hint())


@main.command(name="delay-sweep")
@train_options(exclude=("shift_frames",))
@settings_options(SWEEP_SETTINGS["delay_sweep"])
@click.option("--estimate-only", is_flag=True, help="Train nothing: print the linear "
              "baseline's best shift (and --run-id's lag) for --shifts.")
@click.option("--run-id", default="", help="With --estimate-only: also the best lag of this "
              "finished run's predictions.")
@user_errors
def delay_sweep(shifts: str, estimate_only: bool, run_id: str, force: bool, jobs: int,
                **kw: Any) -> None:
    """Train one child per label shift and plot devel CCC against the annotation delay."""
    from ser_mlflow import tracking
    from ser_mlflow.jobs import delay, pipeline

    shift_list = delay.parse_shifts(shifts)
    base = build_train_config(**kw)
    _ready_corpus(base, base.feature_sets)
    if estimate_only:
        click.echo(_estimate_delay(base, shift_list, run_id.strip()))
        return
    import_tensorflow_quietly()
    pipeline.delay_sweep(base, shifts=shift_list, force=force, echo=click.echo,
                         jobs=jobs)
    click.echo(tracking.ui_hint())


def _estimate_delay(base: TrainConfig, shift_list: list[int], run_id: str) -> str:
    """The linear baseline's best shift (and a finished run's best lag) as a table."""
    import pandas as pd

    from ser_mlflow import tracking
    from ser_mlflow.jobs import delay

    frame_s = delay.frame_seconds(base.data_root)
    _, best = delay.linear_estimate(base.data_root, base.feature_sets, shift_list)
    if run_id:
        run = tracking.get_run_or_error(run_id)
        shift = int(run.data.params.get("shift_frames", "0") or 0)
        lags = [s - shift for s in shift_list]
        best = pd.concat([best, delay.run_lag_estimate(run, lags)[1]], ignore_index=True)
    best["best_delay_s"] = best["best_shift_frames"] * frame_s
    return str(best.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


@main.command(name="main")
@click.option("--config", "config_path", type=click.Path(path_type=Path),
              default=Path("experiments/demo.yaml"), show_default=True)
@click.option("--force", is_flag=True, help="Rerun every step even when it already ran.")
@user_errors
def main_chain(config_path: Path, force: bool) -> None:
    """The whole chain from a config file; steps that already ran are reused."""
    from ser_mlflow import tracking
    from ser_mlflow.jobs import chain

    loaded = chain.load_chain(config_path)  # a bad file fails before TensorFlow loads
    tracking.check_launched_experiment(loaded.train.get("experiment"))
    import_tensorflow_quietly()
    chain.run_chain(loaded, force=force, echo=click.echo)
    click.echo(tracking.ui_hint())

