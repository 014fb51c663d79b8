"""The MLflow UI on this project's store, and the shared tracking server."""

from __future__ import annotations

import os

import click

from ser_mlflow.cli.app import main
from ser_mlflow.cli.errors import user_errors


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
