"""Failures as one line: exit 2 for bad input or configuration, 1 for runtime failures.

Every command is wrapped in :func:`user_errors`; click's own usage errors are printed the
same way by :class:`OneLineGroup`. Tracebacks are for bugs (``SER_MLFLOW_DEBUG=1``).
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any

import click


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

    CC 17: one branch per kind of failure a user can meet (disk, credentials, wrong URI,
    lost server), in the order they must be told apart.

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
