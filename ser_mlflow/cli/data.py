"""Data commands: a synthetic corpus, openSMILE extraction, the tracking store."""

from __future__ import annotations

from pathlib import Path

import click

from ser_mlflow.cli.app import main
from ser_mlflow.cli.errors import user_errors
from ser_mlflow.settings import DEFAULT_DATA_ROOT, DEFAULT_EXPERIMENT


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
