"""Model registry commands: register, promote, predict."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ser_mlflow._quiet import import_tensorflow_quietly
from ser_mlflow.cli.app import main
from ser_mlflow.cli.errors import user_errors
from ser_mlflow.settings import DEFAULT_DATA_ROOT, DEFAULT_EXPERIMENT


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
