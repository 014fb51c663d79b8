"""Model registry commands: register, promote, predict."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ser_mlflow._quiet import import_tensorflow_quietly
from ser_mlflow.cli.app import main
from ser_mlflow.cli.errors import user_errors
from ser_mlflow.settings import (
    PREDICT_SETTINGS,
    PROMOTE_SETTINGS,
    REGISTER_SETTINGS,
    settings_options,
)


@main.command()
@settings_options(REGISTER_SETTINGS)
@user_errors
def register(model_name: str, metric: str, filter_string: str, alias: str,
             data_root: Path, challenger: str, force: bool) -> None:
    """Register the best run's model; it takes the alias only from a worse version."""
    from ser_mlflow.jobs import registry

    registry.register_best(model_name=model_name, metric=metric, filter_string=filter_string,
                           alias=alias, data_root=data_root, challenger=challenger,
                           force=force, echo=click.echo)


@main.command()
@settings_options(PROMOTE_SETTINGS)
@user_errors
def promote(model_name: str, challenger: str, champion: str, metric: str, force: bool) -> None:
    """Move the champion alias to the challenger's version when it scores higher."""
    from ser_mlflow.jobs import registry

    result = registry.promote(model_name=model_name, challenger=challenger, champion=champion,
                              metric=metric, force=force, echo=click.echo)
    if not result.promoted:
        sys.exit(1)


@main.command()
@settings_options(PREDICT_SETTINGS)
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
