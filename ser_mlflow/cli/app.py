"""The `ser-mlflow` click group; the command modules of this package add to it."""

from __future__ import annotations

import os

import click

from ser_mlflow.cli.errors import OneLineGroup

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


@click.group(cls=OneLineGroup,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="ser-mlflow")
def main() -> None:
    """Dimensional audiovisual emotion recognition on MLflow (Atmaja & Akagi, ICASSP 2020).

    Tracking store: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in this folder.
    """
