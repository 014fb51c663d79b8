"""Late fusion and reports: fusion, report, import-predictions."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from ser_mlflow.cli.app import main
from ser_mlflow.cli.errors import user_errors
from ser_mlflow.settings import (
    FUSION_SETTINGS,
    IMPORT_PREDICTIONS_SETTINGS,
    REPORT_SETTINGS,
    setting_values,
    settings_options,
)


def check_fusion_reach(values: dict[str, Any]) -> None:
    """Refuse context windows the data cannot hold, before any run is touched.

    Per-setting bounds are the schema's (``settings.FUSION_SETTINGS``); this check needs the
    data root: a context window longer than the shortest Devel recording has no frames to
    look at, and the frame-window matrix grows with (2k+1): k=100000 would ask for terabytes.

    Raises:
        ValueError: naming the option, the bound and why.
    """
    try:
        ks = [int(float(k)) for k in str(values["contexts"]).split(",") if k.strip()]
    except ValueError:
        return  # the fusion names the malformed value itself
    labels = Path(values["data_root"]) / "labels"
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
    if values.get("context", "frames") == "frames":
        # frames x (2k+1) window x top_n systems x 3 attributes, float64
        need = sum(lengths) * (2 * k + 1) * max(int(values["top_n"]), 1) * 3 * 8
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        if need > free:
            raise ValueError(f"contexts: k={k} needs about {need / 2**30:.1f} GiB for the "
                             f"frame windows of up to {values['top_n']} systems; "
                             f"{free / 2**30:.1f} GiB is free; choose a smaller k or "
                             "--context mean")


@main.command(name="import-predictions")
@settings_options(IMPORT_PREDICTIONS_SETTINGS)
@user_errors
def import_predictions(predictions: Path, labels: Path, name: str, experiment: str) -> None:
    """Log an external folder of predictions as a run that fusion can rank and use."""
    from ser_mlflow.jobs import latefusion

    latefusion.import_predictions(predictions=predictions, labels=labels, name=name,
                                  experiment=experiment, echo=click.echo)


@main.command()
@settings_options(FUSION_SETTINGS)
@user_errors
def fusion(**kw: Any) -> None:
    """Multistage SVR late fusion of the top-N runs' predictions, pulled from the server.

    The published AVEC 2019 recipe is --protocol paper --windows published --loss
    epsilon_insensitive --solver liblinear (about 20 minutes per stage on 2 cores).
    """
    from ser_mlflow import tracking
    from ser_mlflow.jobs import latefusion

    values = setting_values(FUSION_SETTINGS, kw, where="fusion")
    check_fusion_reach(values)
    latefusion.run_fusion(echo=click.echo, **values)
    click.echo(tracking.ui_hint())


@main.command()
@settings_options(REPORT_SETTINGS)
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
