"""Thin click commands, one per MLproject entry point: parse, build config, delegate.

Bad input ends with one clear line on stderr and exit code 2; tracebacks are for bugs.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from ser_mlflow._quiet import import_tensorflow_quietly
from ser_mlflow.config import (
    DEFAULT_DATA_ROOT,
    DEFAULT_EXPERIMENT,
    DEFAULT_FEATURE_SET,
    LOSS_NAMES,
    LossConfig,
    ModelConfig,
    TrainConfig,
    parse_feature_sets,
    parse_units,
)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def _optional_float(value: str | float | None, name: str) -> float | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
        return None
    try:
        return float(value)
    except ValueError:
        raise click.BadParameter(f"expected a number, got {value!r}", param_hint=name) from None


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn every failure into one line: exit 2 for bad input or configuration, 1 for
    runtime failures (a lost server, a full disk, a bug), 130 for Ctrl-C.

    ``SER_MLFLOW_DEBUG=1`` re-raises unexpected errors with their traceback.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from ser_mlflow.data import DataError

        try:
            return fn(*args, **kwargs)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except (DataError, ValueError, FileNotFoundError) as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except (PermissionError, NotADirectoryError, IsADirectoryError, FileExistsError) as exc:
            # a path the user gave cannot be written (an output folder under a file, ...)
            click.echo(f"error: {exc.filename or ''}: {exc.strerror or exc}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted: the run was ended KILLED", err=True)
            sys.exit(130)
        except Exception as exc:
            code, line = describe_failure(exc)
            if code == 1 and os.environ.get("SER_MLFLOW_DEBUG"):
                raise
            click.echo(f"error: {line}", err=True)
            sys.exit(code)

    return wrapper


def describe_failure(exc: Exception) -> tuple[int, str]:
    """(exit code, one line) for a failure that is not plain bad input.

    MLflow's REST errors name the HTTP status: 401/403 are configuration (credentials,
    permissions: exit 2), 404 on an API endpoint means the URI is not an MLflow server.
    """
    import errno

    from ser_mlflow import tracking

    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    if isinstance(exc, tracking.TrackingLost):
        return 1, str(exc)
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        where = f" writing {exc.filename}" if exc.filename else ""
        return 1, (f"disk full{where} ({exc.strerror}); free space, then run the command "
                   "again (a KILLED/FAILED training run continues with --resume-run-id)")
    if "database or disk is full" in str(exc):
        return 1, ("disk full: the tracking database cannot grow (SQLite: database or disk is "
                   "full); free space, then run the command again")
    status = getattr(exc, "get_http_status_code", lambda: None)()
    uri = tracking.tracking_uri()
    if status == 401 or "401 != 200" in first:
        return 2, (f"tracking server {uri} refused the credentials (401): export "
                   "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD of a user it knows")
    if status == 403 or "403 != 200" in first:
        return 2, (f"tracking server {uri}: permission denied (403) for this user; ask an "
                   "admin for EDIT on the experiment, or use another --experiment")
    if getattr(exc, "error_code", "") == "ENDPOINT_NOT_FOUND" or "404 != 200" in first:
        return 2, (f"{uri} answers but is not an MLflow tracking server (404 on its REST "
                   "API); fix MLFLOW_TRACKING_URI")
    if tracking.is_connection_loss(exc):
        return 1, (f"tracking server {uri} unreachable: {first}")
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        return 1, f"{where}{exc.strerror or first}"
    return 1, (f"{type(exc).__name__}: {first} (unexpected; SER_MLFLOW_DEBUG=1 shows the "
               "traceback)")


class OneLineUsageError(click.ClickException):
    """A click usage error shown like every other bad input: one ``error:`` line, exit 2."""

    exit_code = 2

    def __init__(self, exc: click.UsageError) -> None:
        super().__init__(exc.format_message())
        self.command_path = exc.ctx.command_path if exc.ctx is not None else "ser-mlflow"

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.message} (see `{self.command_path} --help`)", err=True)


class OneLineGroup(click.Group):
    """Click prints usage errors as usage + hint + message; bad input here is one line."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise OneLineUsageError(exc) from None


@click.group(cls=OneLineGroup,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="ser-mlflow")
def main() -> None:
    """Dimensional audiovisual emotion recognition on MLflow (Atmaja & Akagi, ICASSP 2020).

    Tracking store: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in this folder.
    """


@main.command()
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=DEFAULT_DATA_ROOT,
    show_default=True,
    help="Folder to write the AVEC-layout corpus into.",
)
@click.option(
    "--scale",
    type=click.Choice(["full", "small", "tiny"]),
    default="full",
    show_default=True,
    help="full = the paper's 68/28/34 recordings of 975-1768 frames.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@user_errors
def synthesize(out: Path, scale: str, seed: int) -> None:
    """Write a synthetic corpus in the AVEC 2019 CES layout (NOT real data)."""
    from ser_mlflow.data import write_synthetic_corpus

    s = write_synthetic_corpus(out, scale=scale, seed=seed, progress=True)
    counts = ", ".join(f"{k} {v}" for k, v in s.n_recordings.items())
    click.echo(
        f"Synthetic corpus ({scale}, seed {seed}) in {s.root}: {counts} recordings, "
        f"{len(s.feature_dims)} feature sets, {s.n_frames} frames, "
        f"{s.bytes_written / 1e6:.0f} MB."
    )


@main.command()
@click.option("--audio-dir", type=click.Path(path_type=Path), required=True,
              help="A WAV/FLAC recording or a folder of them (not recursive).")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="AVEC-layout root: writes <out>/<feature_set>/<recording>.csv.")
@click.option("--feature-sets", default="egemaps,egemaps-func,mfcc,mfcc-func", show_default=True,
              help="Comma-separated audio sets to extract.")
@click.option("--jobs", type=click.IntRange(min=0), default=0, show_default=True,
              help="Worker processes; 0 = one per core.")
@user_errors
def extract(audio_dir: Path, out: Path, feature_sets: str, jobs: int) -> None:
    """Extract the AVEC 2019 audio feature sets from recordings with openSMILE."""
    from ser_mlflow.data.extract import extract_folder

    s = extract_folder(audio_dir, out, feature_sets=feature_sets.split(","), jobs=jobs,
                       progress=True, echo=click.echo)
    click.echo(
        f"Extracted {'+'.join(s.feature_sets)} from {len(s.recordings)} recording(s) "
        f"({s.audio_s:.1f} s of audio) into {s.out}/ in {s.compute_s:.1f} s on {s.jobs} "
        f"process(es): {s.audio_s / max(s.compute_s, 1e-9):.1f} s of audio per second."
    )


@main.command()
@click.option("--experiment", default=DEFAULT_EXPERIMENT, show_default=True)
@user_errors
def init(experiment: str) -> None:
    """Create the tracking store and experiment (artifacts under ./mlartifacts)."""
    from ser_mlflow import tracking

    exp_id = tracking.ensure_experiment(experiment)
    click.echo(f"Experiment {experiment!r} (id {exp_id}) on {tracking.tracking_uri()}")


class _LossChoice(click.Choice):
    """Loss names in any case (mtl2, MTL2), shown and passed on as STL1 ... MTL2, custom."""

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        text = str(value).strip()
        text = "custom" if text.lower() == "custom" else text.upper()
        if text in self.choices:
            return text
        return super().convert(value, param, ctx)  # the error quotes what the user typed


def training_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Options of `train`, shared by every command that trains networks."""
    opts = [
        click.option(
            "--data-root",
            type=click.Path(path_type=Path),
            default=DEFAULT_DATA_ROOT,
            show_default=True,
            help="AVEC-layout root; the default is synthesised when missing.",
        ),
        click.option(
            "--loss",
            type=_LossChoice(LOSS_NAMES),
            default="MTL2",
            show_default=True,
        ),
        click.option("--alpha", default=None, help="Arousal weight (custom; MTL1 too)."),
        click.option("--beta", default=None, help="Valence weight (custom; MTL1 too)."),
        click.option("--gamma", default=None, help="Liking weight (custom only)."),
        click.option("--epochs", type=click.IntRange(min=1), default=50, show_default=True),
        click.option("--batch-size", type=click.IntRange(min=1), default=34, show_default=True),
        click.option("--units", default="256,128,64", show_default=True, help="LSTM layer sizes."),
        click.option("--dropout", type=float, default=0.4, show_default=True),
        click.option("--lr", type=float, default=5e-4, show_default=True),
        click.option(
            "--shift-frames",
            type=click.IntRange(min=0),
            default=1,
            show_default=True,
            help="Label shift to the front for training (1 frame = 0.1 s).",
        ),
        click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0,
                     show_default=True),
        click.option(
            "--experiment",
            default=DEFAULT_EXPERIMENT,
            show_default=True,
            help="MLflow experiment ('' = ser-ces); under `mlflow run` the run's own "
                 "experiment (--experiment-name, else Default) decides and another name here "
                 "is refused.",
        ),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


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


def check_experiment_name(name: str) -> None:
    """A blank experiment name would reach MLflow as a traceback (train, fusion).

    The empty string is the MLproject default and means "not given": under `mlflow run` the
    launched run's experiment, else ``ser-ces`` (``tracking.experiment_for``).
    """
    if name and not str(name).strip():
        raise ValueError(f"experiment: expected a name (e.g. {DEFAULT_EXPERIMENT}) or nothing, "
                         f"got {name!r}")


def check_fusion_options(kw: dict[str, Any]) -> None:
    """Refuse fusion settings that cannot work, before any data or run is touched.

    A context window longer than the shortest Devel recording has no frames to look at,
    and the frame-window matrix grows with (2k+1): k=100000 would ask for terabytes.

    Raises:
        ValueError: naming the option, the bound and why.
    """
    check_experiment_name(kw["experiment"])
    if kw["n_jobs"] == 0:
        raise ValueError("n_jobs: expected -1 (every core) or a positive number of threads, "
                         "got 0")
    try:
        ks = [int(float(k)) for k in str(kw["contexts"]).split(",") if k.strip()]
    except ValueError:
        return  # the fusion names the malformed value itself
    labels = Path(kw["data_root"]) / "labels"
    lengths = []
    for path in sorted(labels.glob("Devel_*.csv")):
        with open(path, "rb") as fh:
            lengths.append(max(sum(1 for _ in fh) - 1, 0))
    if not ks or not lengths:
        return
    shortest, k = min(lengths), max(ks)
    if k >= shortest:
        raise ValueError(f"contexts: k={k} reaches past the shortest Devel recording "
                         f"({shortest} frames in {labels}); expected k < {shortest}")
    if kw.get("context", "frames") == "frames":
        # frames x (2k+1) window x top_n systems x 3 attributes, float64
        need = sum(lengths) * (2 * k + 1) * max(int(kw["top_n"]), 1) * 3 * 8
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        if need > free:
            raise ValueError(f"contexts: k={k} needs about {need / 2**30:.1f} GiB for the "
                             f"frame windows of up to {kw['top_n']} systems; "
                             f"{free / 2**30:.1f} GiB is free; choose a smaller k or "
                             "--context mean")


def build_train_config(*, feature_sets: str, **kw: Any) -> TrainConfig:
    """The one place CLI strings become a TrainConfig (shared by every training command)."""
    from ser_mlflow import tracking

    tracking.check_launched_experiment(kw.get("experiment"))  # before TensorFlow loads
    loss = LossConfig.from_name(
        kw["loss"],
        alpha=_optional_float(kw.get("alpha"), "alpha"),
        beta=_optional_float(kw.get("beta"), "beta"),
        gamma=_optional_float(kw.get("gamma"), "gamma"),
    )
    check_experiment_name(kw["experiment"])
    model = ModelConfig(units=parse_units(kw["units"]), dropout=kw["dropout"], lr=kw["lr"])
    return TrainConfig(
        data_root=Path(kw["data_root"]),
        feature_sets=parse_feature_sets(feature_sets),
        epochs=kw["epochs"],
        batch_size=kw["batch_size"],
        shift_frames=kw["shift_frames"],
        seed=kw["seed"],
        experiment=kw["experiment"],
        model=model,
        loss=loss,
    )


@main.command()
@click.option(
    "--feature-sets",
    default=DEFAULT_FEATURE_SET,
    show_default=True,
    help="One feature set, or two joined by '+' for bimodal early fusion.",
)
@click.option("--resume-run-id", default="", help="Continue a KILLED/FAILED run from its "
              "checkpoint with its own params (other options are ignored).")
@training_options
@user_errors
def train(feature_sets: str, resume_run_id: str, **kw: Any) -> None:
    """Train the paper's LSTM network on one or two feature sets and log a complete run."""
    from ser_mlflow import tracking
    from ser_mlflow.jobs.train import resume_training, run_training

    if resume_run_id.strip():
        import_tensorflow_quietly()
        result = resume_training(resume_run_id.strip(), echo=click.echo)
        click.echo(format_scores(result.metrics))
        return
    cfg = build_train_config(feature_sets=feature_sets, **kw)
    import_tensorflow_quietly()
    click.echo(
        f"Training on {'+'.join(cfg.feature_sets)} with {cfg.loss.name} "
        f"(alpha={cfg.loss.alpha:g}, beta={cfg.loss.beta:g}, gamma={cfg.loss.gamma:g}), "
        f"{cfg.epochs} epochs, tracking {tracking.tracking_uri()}"
    )
    result = run_training(cfg, echo=click.echo)
    click.echo(format_scores(result.metrics))
    click.echo(tracking.ui_hint(tracking.get_run(result.run_id).info.experiment_id))


TRAIN_DEFAULTS: dict[str, Any] = {
    "data_root": str(DEFAULT_DATA_ROOT), "loss": "MTL2", "alpha": None, "beta": None,
    "gamma": None, "epochs": 50, "batch_size": 34, "units": "256,128,64", "dropout": 0.4,
    "lr": 5e-4, "shift_frames": 1, "seed": 0,
    "experiment": "",  # none named: ser-ces, or under `mlflow run` the run's experiment
}


def config_from_options(*, feature_sets: str = DEFAULT_FEATURE_SET, **kw: Any) -> TrainConfig:
    """A TrainConfig from a partial dict of `train` options (config files use this)."""
    unknown = set(kw) - set(TRAIN_DEFAULTS)
    if unknown:
        raise ValueError(f"train options: unknown {sorted(unknown)}; "
                         f"expected some of {sorted(TRAIN_DEFAULTS)}")
    merged = {**TRAIN_DEFAULTS, **kw}
    for key in ("epochs", "batch_size", "shift_frames", "seed"):
        merged[key] = int(merged[key])
    merged["dropout"], merged["lr"] = float(merged["dropout"]), float(merged["lr"])
    merged["units"] = ",".join(str(u) for u in merged["units"]) if isinstance(
        merged["units"], list | tuple) else str(merged["units"])
    return build_train_config(feature_sets=feature_sets, **merged)


@main.command()
@click.option("--feature-sets", default="all", show_default=True,
              help="Feature sets to sweep, joined by ',' ('all' = every folder in the data root).")
@click.option("--rank-metric", default="devel_ccc_mean", show_default=True)
@click.option("--force", is_flag=True, help="Retrain even when an identical run finished.")
@training_options
@user_errors
def unimodal(feature_sets: str, rank_metric: str, force: bool, **kw: Any) -> None:
    """Train one child run per feature set under one parent, and rank them."""
    from ser_mlflow import tracking
    from ser_mlflow.jobs import pipeline

    base = build_train_config(feature_sets=DEFAULT_FEATURE_SET, **kw)
    import_tensorflow_quietly()
    sets = None if feature_sets.strip().lower() in ("all", "") else [
        s.strip() for s in feature_sets.replace("+", ",").split(",") if s.strip()]
    from ser_mlflow.jobs.train import ensure_default_corpus

    ensure_default_corpus(base.data_root, echo=click.echo)
    if sets:
        check_feature_sets(base.data_root, sets)
    pipeline.unimodal(base, feature_sets=sets, force=force, rank_metric=rank_metric,
                      echo=click.echo)
    click.echo(tracking.ui_hint())


@main.command()
@click.option("--top-k", type=click.IntRange(min=2), default=7, show_default=True,
              help="Pair every two of the best K unimodal feature sets.")
@click.option("--rank-metric", default="devel_ccc_mean", show_default=True)
@click.option("--force", is_flag=True, help="Retrain even when an identical run finished.")
@training_options
@user_errors
def bimodal(top_k: int, rank_metric: str, force: bool, **kw: Any) -> None:
    """Early fusion: train all pairs of the top-K unimodal feature sets (from the server)."""
    from ser_mlflow import tracking
    from ser_mlflow.jobs import pipeline

    base = build_train_config(feature_sets=DEFAULT_FEATURE_SET, **kw)
    import_tensorflow_quietly()
    pipeline.bimodal(base, top_k=top_k, rank_metric=rank_metric, force=force, echo=click.echo)
    click.echo(tracking.ui_hint())


@main.command()
@click.option("--feature-set", default=DEFAULT_FEATURE_SET, show_default=True)
@click.option("--seeds", default="0,1,2", show_default=True, help="Seeds joined by ','.")
@click.option("--force", is_flag=True, help="Retrain even when an identical run finished.")
@training_options
@user_errors
def compare(feature_set: str, seeds: str, force: bool, **kw: Any) -> None:
    """STL1, STL2, STL3, MTL1 and MTL2 on one feature set over several seeds (Table 2)."""
    from ser_mlflow import tracking
    from ser_mlflow.jobs import pipeline

    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"seeds: expected integers joined by ',', got {seeds!r}") from None
    if not seed_list:
        raise ValueError("seeds: expected at least one seed")
    base = build_train_config(feature_sets=feature_set, **kw)
    import_tensorflow_quietly()
    from ser_mlflow.jobs.train import ensure_default_corpus

    ensure_default_corpus(base.data_root, echo=click.echo)
    check_feature_sets(base.data_root, base.feature_sets)
    pipeline.compare(base, feature_set=feature_set, seeds=seed_list, force=force,
                     echo=click.echo)
    click.echo(tracking.ui_hint())


@main.command(name="delay-sweep")
@click.option("--feature-sets", default=DEFAULT_FEATURE_SET, show_default=True,
              help="One feature set, or two joined by '+'.")
@click.option("--shifts", default="0:40:2", show_default=True,
              help="Label shifts in frames: 0,2,4,... or start:stop:step (stop included).")
@click.option("--estimate-only", is_flag=True, help="Train nothing: print the linear "
              "baseline's best shift (and --run-id's lag) for --shifts.")
@click.option("--run-id", default="", help="With --estimate-only: also the best lag of this "
              "finished run's predictions.")
@click.option("--force", is_flag=True, help="Retrain even when an identical run finished.")
@training_options
@user_errors
def delay_sweep(feature_sets: str, shifts: str, estimate_only: bool, run_id: str, force: bool,
                **kw: Any) -> None:
    """Train one child per label shift and plot devel CCC against the annotation delay."""
    from ser_mlflow import tracking
    from ser_mlflow.jobs import delay, pipeline

    shift_list = delay.parse_shifts(shifts)
    base = build_train_config(feature_sets=feature_sets, **kw)
    from ser_mlflow.jobs.train import ensure_default_corpus

    ensure_default_corpus(base.data_root, echo=click.echo)
    check_feature_sets(base.data_root, base.feature_sets)
    if estimate_only:
        frame_s = delay.frame_seconds(base.data_root)
        _, best = delay.linear_estimate(base.data_root, base.feature_sets, shift_list)
        if run_id.strip():
            run = tracking.get_run_or_error(run_id.strip())
            shift = int(run.data.params.get("shift_frames", "0") or 0)
            lags = [s - shift for s in shift_list]
            best = pd_concat(best, delay.run_lag_estimate(run, lags)[1])
        best["best_delay_s"] = best["best_shift_frames"] * frame_s
        click.echo(best.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        return
    import_tensorflow_quietly()
    pipeline.delay_sweep(base, shifts=shift_list, force=force, echo=click.echo)
    click.echo(tracking.ui_hint())


def pd_concat(*frames: Any) -> Any:
    import pandas as pd

    return pd.concat(frames, ignore_index=True)


@main.command(name="main")
@click.option("--config", "config_path", type=click.Path(path_type=Path),
              default=Path("experiments/demo.yaml"), show_default=True)
@click.option("--force", is_flag=True, help="Rerun every step even when it already ran.")
@user_errors
def main_chain(config_path: Path, force: bool) -> None:
    """The whole chain from a config file; steps that already ran are reused."""
    from ser_mlflow import tracking
    from ser_mlflow.jobs import pipeline

    import_tensorflow_quietly()
    pipeline.run_chain(config_path, force=force, echo=click.echo,
                       build_config=config_from_options, extra_steps=chain_plugins())
    click.echo(tracking.ui_hint())


def chain_plugins() -> dict[str, Any]:
    """Steps of `main` implemented outside `pipeline`: search, fusion, register.

    Fusion is reused like training (same options, candidate inputs, code and data);
    registration runs every time and moves the champion only to a better model.
    """
    from ser_mlflow.jobs import latefusion, pipeline, registry

    def fusion_step(base: TrainConfig, opts: dict[str, Any], force: bool) -> Any:
        return pipeline.reusable_fusion(
            base, opts, force=force, echo=click.echo,
            run=lambda: latefusion.run_fusion(data_root=base.data_root,
                                              experiment=base.experiment, echo=click.echo,
                                              **opts))

    def register_step(base: TrainConfig, opts: dict[str, Any], force: bool) -> Any:
        return registry.register_best(data_root=base.data_root, echo=click.echo, **opts)

    steps: dict[str, Any] = {"fusion": fusion_step, "register": register_step}
    search_step = _search_chain_step()
    if search_step is not None:
        steps["search"] = search_step
    return steps


def _search_chain_step() -> Any:
    """The `search` step of `main`, when the search module provides one."""
    try:
        from ser_mlflow.search import study as search
    except ImportError:
        return None
    return getattr(search, "chain_step", None)


@main.command()
@click.option("--model-name", default="ser-ces", show_default=True)
@click.option("--metric", default="devel_ccc_mean", show_default=True)
@click.option("--filter", "filter_string", default="",
              help="MLflow search filter (default: FINISHED runs on --data-root whose model "
                   "predicts from raw features).")
@click.option("--alias", default="champion", show_default=True)
@click.option("--data-root", type=click.Path(path_type=Path), default=DEFAULT_DATA_ROOT,
              show_default=True, help="Data root whose runs the default filter selects.")
@click.option("--challenger", default="challenger", show_default=True,
              help="Alias the new version gets when it does not beat --alias's version.")
@click.option("--force", is_flag=True,
              help="Move --alias to the new version even when its metric is not higher.")
@user_errors
def register(model_name: str, metric: str, filter_string: str, alias: str,
             data_root: Path, challenger: str, force: bool) -> None:
    """Register the best run's model; it takes the alias only from a worse version."""
    from ser_mlflow.jobs import registry

    registry.register_best(model_name=model_name, metric=metric, filter_string=filter_string,
                           alias=alias, data_root=data_root, challenger=challenger,
                           force=force, echo=click.echo)


@main.command()
@click.option("--model-name", default="ser-ces", show_default=True)
@click.option("--challenger", default="challenger", show_default=True)
@click.option("--champion", default="champion", show_default=True)
@click.option("--metric", default="devel_ccc_mean", show_default=True)
@click.option("--force", is_flag=True, help="Promote even when the metric is not higher.")
@user_errors
def promote(model_name: str, challenger: str, champion: str, metric: str, force: bool) -> None:
    """Move the champion alias to the challenger's version when it scores higher."""
    from ser_mlflow.jobs import registry

    result = registry.promote(model_name=model_name, challenger=challenger, champion=champion,
                              metric=metric, force=force, echo=click.echo)
    if not result.promoted:
        sys.exit(1)


@main.command()
@click.option("--model-uri", required=True, help="Any MLflow model URI, e.g. "
              "models:/ser-ces@champion or runs:/<run_id>/model.")
@click.option("--data-root", type=click.Path(path_type=Path), default=DEFAULT_DATA_ROOT,
              show_default=True)
@click.option("--partition", type=click.Choice(["Train", "Devel", "Test"]), default="Test",
              show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=Path("predictions"),
              show_default=True, help="Folder for one AVEC-format CSV per recording.")
@click.option("--experiment", default=DEFAULT_EXPERIMENT, show_default=True)
@click.option("--audio", type=click.Path(path_type=Path), default=None,
              help="A WAV/FLAC recording or a folder of them: extract the model's audio "
                   "feature sets and write a CSV and a PNG per recording (instead of "
                   "--data-root/--partition).")
@click.option("--jobs", type=click.IntRange(min=0), default=0, show_default=True,
              help="With --audio: extraction processes; 0 = one per core.")
@user_errors
def predict(model_uri: str, data_root: Path, partition: str, out: Path, experiment: str,
            audio: Path | None, jobs: int) -> None:
    """Predict a partition of an AVEC-layout data root, or recordings (--audio), with a model."""
    from ser_mlflow.jobs import registry

    import_tensorflow_quietly()
    if audio is not None:
        from ser_mlflow.jobs.audio_predict import predict_audio

        predict_audio(model_uri=model_uri, audio=audio, out=out, experiment=experiment,
                      jobs=jobs, progress=True, echo=click.echo)
        return
    registry.predict(model_uri=model_uri, data_root=data_root, partition=partition, out=out,
                     experiment=experiment, echo=click.echo)


@main.command(name="import-predictions")
@click.option("--predictions", type=click.Path(path_type=Path), required=True,
              help="Folder of AVEC-format prediction CSVs (Devel_DE_01.csv ...).")
@click.option("--labels", type=click.Path(path_type=Path), required=True,
              help="Folder of the matching AVEC label CSVs.")
@click.option("--name", required=True, help="Run name and ser.feature_sets tag.")
@click.option("--experiment", default=DEFAULT_EXPERIMENT, show_default=True)
@user_errors
def import_predictions(predictions: Path, labels: Path, name: str, experiment: str) -> None:
    """Log an external folder of predictions as a run that fusion can rank and use."""
    from ser_mlflow.jobs import latefusion

    latefusion.import_predictions(predictions=predictions, labels=labels, name=name,
                                  experiment=experiment, echo=click.echo)


@main.command()
@click.option("--data-root", type=click.Path(path_type=Path), default=DEFAULT_DATA_ROOT,
              show_default=True, help="Data root whose labels/ hold the Devel gold labels.")
@click.option("--top-n", type=int, default=11, show_default=True)
@click.option("--rank-metric", default="devel_ccc_mean", show_default=True)
@click.option("--filter", "filter_string", default="",
              help="MLflow search filter (default: unimodal, bimodal and external runs on "
                   "--data-root).")
@click.option("--protocol", type=click.Choice(["cv", "paper"]), default="cv", show_default=True,
              help="cv: honest, grouped by recording; paper: in-sample as published.")
@click.option("--n-stages", default="", show_default="5 under paper, 1 under cv",
              help="Number of stages (paper) or their maximum (cv).")
@click.option("--contexts", default="11,13,15,17,19", show_default=True)
@click.option("--complexities", default="0.001,0.01,0.1,1", show_default=True)
@click.option("--n-splits", type=int, default=5, show_default=True)
@click.option("--context", type=click.Choice(["frames", "mean"]), default="frames",
              show_default=True, help="Window features: every frame (paper) or window mean.")
@click.option("--calibrate/--no-calibrate", default=False, show_default=True,
              help="Match each SVR output's mean and std to the target (in-fold).")
@click.option("--input-selection", default="all", show_default=True,
              help="all, same, auto, or one per attribute (e.g. same,same,all).")
@click.option("--stage-inputs", type=click.Choice(["oof", "insample"]), default="oof",
              show_default=True)
@click.option("--loss", type=click.Choice(["squared_epsilon_insensitive", "epsilon_insensitive"]),
              default="squared_epsilon_insensitive", show_default=True,
              help="SVR loss: squared error, or absolute error (published).")
@click.option("--solver", type=click.Choice(["exact", "liblinear"]), default="exact",
              show_default=True,
              help="exact: the optimum (closed form; ADMM for the absolute loss); liblinear: "
                   "the published LinearSVR, slow, stops at --max-iter.")
@click.option("--windows", type=click.Choice(["clean", "published"]), default="clean",
              show_default=True,
              help="clean: t-k..t+k per recording; published: AVEC script's windows.")
@click.option("--max-iter", type=int, default=1000, show_default=True,
              help="liblinear passes (published: 1000, unconverged).")
@click.option("--n-jobs", type=int, default=-1, show_default=True,
              help="Parallel threads (-1: every core).")
@click.option("--recipes", default="auto", show_default=True,
              help="cv: auto (chosen per fold and attribute by an inner CV among "
                   "frames-cal-same, mean, mean-cal, mean-cal-same), names "
                   "joined by ',', or flags (--context/--calibrate/--input-selection/"
                   "--stage-inputs; setting one of them implies flags).")
@click.option("--prune-stages/--no-prune-stages", default=True, show_default=True,
              help="cv: --n-stages is a maximum; a stage is kept only while the inner CV "
                   "improves.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of liblinear and of the bootstrap intervals.")
@click.option("--experiment", default=DEFAULT_EXPERIMENT, show_default=True)
@user_errors
def fusion(**kw: Any) -> None:
    """Multistage SVR late fusion of the top-N runs' predictions, pulled from the server.

    The published AVEC 2019 recipe is --protocol paper --windows published --loss
    epsilon_insensitive --solver liblinear (about 20 minutes per stage on 2 cores).
    """
    from ser_mlflow import tracking
    from ser_mlflow.jobs import latefusion

    check_fusion_options(kw)
    kw["filter_string"] = kw["filter_string"] or None
    kw["n_stages"] = _optional_int(kw["n_stages"], "--n-stages")
    latefusion.run_fusion(echo=click.echo, **kw)
    click.echo(tracking.ui_hint())


@main.command()
@click.option("--parent-run-id", default="", help="Report the children of this run (a "
              "compare, unimodal, delay sweep...), reused runs included.")
@click.option("--filter", "filter_string", default="", help="Report the runs this MLflow "
              "search filter selects.")
@click.option("--run-ids", default="", help="Report these runs (ids joined by ',').")
@click.option("--pairs", default="", help="Paired comparisons 'A-B,...' of group labels "
              "(e.g. MTL2-STL2) [default: the best group against every other; each fusion "
              "against the best single system].")
@click.option("--group-by", default="", help="Tags/params whose values form the groups, "
              "joined by ',' (e.g. ser.loss) [default: runs equal in all but the seed].")
@click.option("--labels", default="", help="Gold labels folder [default: <data_root>/labels "
              "of the runs].")
@click.option("--n-boot", type=click.IntRange(min=100), default=2000, show_default=True,
              help="Bootstrap replicates (and permutations).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--experiment", default="", help="Experiment of the report run [default: that "
              "of the first input run].")
@user_errors
def report(parent_run_id: str, filter_string: str, run_ids: str, pairs: str, group_by: str,
           labels: str, n_boot: int, seed: int, experiment: str) -> None:
    """CCC report of finished runs: intervals, paired tests, figures (report.html)."""
    from ser_mlflow import tracking
    from ser_mlflow.jobs import report as report_mod

    result = report_mod.run_report(
        parent_run_id=parent_run_id.strip(), filter_string=filter_string.strip(),
        run_ids=[r.strip() for r in run_ids.split(",") if r.strip()],
        labels=labels.strip() or None,
        group_by=[g.strip() for g in group_by.split(",") if g.strip()], pairs=pairs,
        n_boot=n_boot, seed=seed, experiment=experiment, echo=click.echo)
    click.echo(f"report run {result.run_id}: artifacts report.html, report.md, "
               "report_numbers.csv")
    click.echo(tracking.ui_hint())


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


def _optional_int(value: str | int | None, name: str) -> int | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
        return None
    try:
        return int(value)
    except ValueError:
        raise click.BadParameter(f"expected an integer, got {value!r}", param_hint=name) from None


@main.command()
@click.option(
    "--feature-sets",
    default=DEFAULT_FEATURE_SET,
    show_default=True,
    help="One feature set, or two joined by '+' (every trial trains on them).",
)
@click.option(
    "--sampler",
    type=click.Choice(["auto", "random", "tpe", "nsga2"]),
    default="auto",
    show_default=True,
    help="random = the paper's search; auto = tpe for one objective, nsga2 for multi.",
)
@click.option(
    "--objective",
    type=click.Choice(["mean", "arousal", "valence", "liking", "multi"]),
    default="mean",
    show_default=True,
    help="Devel CCC to maximise; multi = the three CCCs at once (Pareto front).",
)
@click.option("--n-trials", default="20", show_default=True, help="Trials ('' = until timeout).")
@click.option("--timeout", default="", help="Seconds after which no trial starts.")
@click.option("--storage", default="", envvar="SER_MLFLOW_OPTUNA_STORAGE",
              help="Optuna RDB URL, or $SER_MLFLOW_OPTUNA_STORAGE (keeps a password off the "
              "command line) [default: optuna.db beside mlflow.db]")
@click.option("--study-name", default="", help="Continue this study (created when missing).")
@click.option(
    "--resume",
    type=click.Choice(["true", "false"]),
    default="false",
    is_flag=False,
    flag_value="true",
    help="The study named by --study-name must exist already.",
)
@click.option("--n-workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Local processes running trials of this search in parallel.")
@click.option(
    "--prune",
    type=click.Choice(["auto", "true", "false"]),
    default="auto",
    is_flag=False,
    flag_value="true",
    show_default=True,
    help="Median pruning on per-epoch devel CCC (auto: on unless objective=multi).",
)
@click.option("--no-prune", is_flag=True, help="Same as --prune false.")
@training_options
@user_errors
def search(
    feature_sets: str,
    sampler: str,
    objective: str,
    n_trials: str,
    timeout: str,
    storage: str,
    study_name: str,
    resume: str,
    n_workers: int,
    prune: str,
    no_prune: bool,
    **kw: Any,
) -> None:
    """Optuna search over the loss weights alpha, beta, gamma; one nested run per trial."""
    from ser_mlflow import tracking

    if kw.get("loss", "MTL2").upper() != "MTL2" or any(
        _optional_float(kw.get(k), k) is not None for k in ("alpha", "beta", "gamma")
    ):
        raise ValueError("search: alpha, beta and gamma are searched; drop --loss/--alpha/"
                         "--beta/--gamma")
    if no_prune and prune == "true":
        raise ValueError("prune: --prune and --no-prune contradict each other")
    from ser_mlflow.search.study import resolve_settings, run_search

    settings: dict[str, Any] = dict(
        sampler=sampler,
        objective=objective,
        n_trials=_optional_int(n_trials, "n_trials"),
        timeout=_optional_float(timeout, "timeout"),
        study_name=study_name or None,
        n_workers=n_workers,
        prune=False if no_prune else {"auto": None, "true": True, "false": False}[prune],
        resume=resume == "true",
    )
    resolve_settings(**settings)  # bad combinations fail before TensorFlow loads
    cfg = build_train_config(feature_sets=feature_sets, **kw)
    import_tensorflow_quietly()
    run_search(cfg, storage=storage or None, echo=click.echo, **settings)
    click.echo(tracking.ui_hint())



@main.command()
@click.option("--port", type=click.IntRange(1, 65535), default=5000, show_default=True)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Interface to listen on; anything but 127.0.0.1 opens the UI to other machines.",
)
@click.option("--links-only", is_flag=True, help="Print the links of the latest views and exit.")
@user_errors
def ui(port: int, host: str, links_only: bool) -> None:
    """Start the MLflow UI on this project's store and print the latest saved views."""
    from ser_mlflow import tracking, views
    from ser_mlflow.ui.process import run_supervised
    from ser_mlflow.ui.server import client_uri, prepare_launch, ui_settings

    uri = tracking.tracking_uri()
    local = views.is_local_store(uri)
    base = client_uri(host, port) if local else views.ui_base_url(uri)
    views.backfill_search_views()
    latest = views.latest_views(max_results=5)
    if latest:
        click.echo("Latest saved views (newest first):")
        for v in latest:
            click.echo(f"  {v.name}\n    table : {v.url(base=base)}")
            click.echo(f"    charts: {v.url(charts=True, base=base)}")
    else:
        click.echo("No saved views yet: `ser-mlflow compare`, `unimodal`, `bimodal` write them.")
    for exp_id, name in tracking.experiments_with_runs():
        click.echo(f"Runs of experiment {name!r}: {tracking.runs_page(exp_id, base)}")
    if not local:
        click.echo(f"The tracking store is the server {uri}; it serves the UI itself.")
        return
    if links_only:
        return
    launch = prepare_launch(ui_settings(uri, host=host, port=port), echo=click.echo)
    click.echo(f"MLflow UI on {base} (store {uri}).")
    code = run_supervised(launch.command, {**os.environ, **launch.env}, echo=click.echo)
    if code:
        raise SystemExit(code)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to listen on; 0.0.0.0 opens the server to other machines "
              "(use --auth then).")
@click.option("--port", type=click.IntRange(1, 65535), default=5000, show_default=True)
@click.option("--backend-store-uri", default="sqlite:///mlflow.db", show_default=True,
              envvar="MLFLOW_BACKEND_STORE_URI", help="Runs database: sqlite:///<file> or "
              "postgresql://user:pw@host:5432/db (or $MLFLOW_BACKEND_STORE_URI).")
@click.option("--artifacts-destination", default="mlartifacts", show_default=True,
              help="Where the server writes artifacts clients send (folder or s3://...).")
@click.option("--auth", is_flag=True, help="MLflow basic auth: every request needs a user "
              "(admin password: $MLFLOW_AUTH_ADMIN_PASSWORD, else generated on first start).")
@click.option("--auth-db-uri", default="", envvar="SER_MLFLOW_AUTH_DB_URI",
              help="Users database, or $SER_MLFLOW_AUTH_DB_URI [default: basic_auth.db "
              "beside a SQLite store].")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Server worker processes [default: MLflow's].")
@click.option("--allowed-hosts", default="",
              help="Host headers to accept besides localhost and private IPs, as clients "
              "send them: mlflow.lab.example:*,mlflow:5000.")
@user_errors
def server(host: str, port: int, backend_store_uri: str, artifacts_destination: str,
           auth: bool, auth_db_uri: str, workers: int | None, allowed_hosts: str) -> None:
    """Run the shared MLflow tracking server (proxied artifacts) and print its URI."""
    from ser_mlflow.ui.server import ServerSettings, run_server

    run_server(
        ServerSettings(
            host=host, port=port, backend_store_uri=backend_store_uri,
            artifacts_destination=artifacts_destination, auth=auth,
            auth_db_uri=auth_db_uri or None, workers=workers,
            allowed_hosts=allowed_hosts or None,
        ),
        echo=click.echo,
    )


if __name__ == "__main__":  # pragma: no cover
    main()
