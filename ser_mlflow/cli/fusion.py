"""Late fusion and reports: fusion, report, import-predictions."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from ser_mlflow.cli.app import main
from ser_mlflow.cli.errors import user_errors
from ser_mlflow.settings import DEFAULT_DATA_ROOT, DEFAULT_EXPERIMENT, optional_int


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
    kw["n_stages"] = optional_int(kw["n_stages"], "n_stages")
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
