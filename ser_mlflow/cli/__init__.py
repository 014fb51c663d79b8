"""Thin click commands, one module per command group; `ser-mlflow` is :data:`main`.

Each command parses its options (from the settings schema where they are settings),
builds a config and delegates to a use case in ``ser_mlflow.jobs``. Bad input ends with one
clear line on stderr and exit code 2 (:mod:`ser_mlflow.cli.errors`).
"""

from ser_mlflow.cli import data, fusion, mlproject, registry, search, server, train
from ser_mlflow.cli.app import main
from ser_mlflow.cli.errors import describe_failure, user_errors

__all__ = ["main", "describe_failure", "user_errors",
           "data", "fusion", "mlproject", "registry", "search", "server", "train"]
