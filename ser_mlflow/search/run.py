"""Run a search: open the study, enqueue the budget, run trials here and in worker
processes, summarise. The use case behind `ser-mlflow search` (see ``search/__init__``).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path

import optuna
from optuna.trial import TrialState

from ser_mlflow import tracking
from ser_mlflow.jobs.train import ensure_default_corpus
from ser_mlflow.nn.fit import prepare
from ser_mlflow.search.processes import _start_workers, _stop_workers, _tail
from ser_mlflow.search.report import SearchResult, summarise, summary_text
from ser_mlflow.search.spec import (
    DEFAULT_HEARTBEAT_S,
    PARAMS,
    POLL_S,
    STORAGE_ENV,
    STUDY_SPEC_PREFIX,
    TAG_STUDY,
    Echo,
    SearchSpec,
    metric_keys,
    resolve_settings,
)
from ser_mlflow.search.storage import default_storage_url, mask_url, open_storage
from ser_mlflow.search.tickets import (
    _fail_stale,
    _sampler_seed,
    _trials,
    enqueue_tickets,
    make_pruner,
    make_sampler,
    open_study,
)
from ser_mlflow.search.worker import TrialOutcome, Worker, _frozen_line
from ser_mlflow.settings import TrainConfig
from ser_mlflow.tracking.tags import TAG_OBJECTIVE, TAG_OPTUNA_STORAGE, TAG_SAMPLER

# --------------------------------------------------------------------------- use case


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """Optuna's per-study INFO lines and TensorFlow's retracing warnings (one new model per
    trial retraces by design) would bury the search's own one line per trial."""
    import logging

    verbosity = optuna.logging.get_verbosity()
    tf_logger = logging.getLogger("tensorflow")
    tf_level = tf_logger.level
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tf_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(verbosity)
        tf_logger.setLevel(tf_level)


def run_search(
    base: TrainConfig,
    *,
    sampler: str | None = None,
    objective: str = "mean",
    n_trials: int | None = 20,
    timeout: float | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    n_workers: int = 1,
    prune: bool | None = None,
    resume: bool = False,
    pruner: optuna.pruners.BasePruner | None = None,
    heartbeat_interval: int = DEFAULT_HEARTBEAT_S,
    grace_period: int | None = None,
    progress: bool = True,
    extra_tags: Mapping[str, str] | None = None,
    echo: Echo = print,
) -> SearchResult:
    """Search alpha, beta, gamma in [0, 1]^3 with Optuna; one nested MLflow run per trial.

    Args:
        base: training settings of every trial (its loss is replaced by the trial's weights).
        sampler: ``random`` (the paper), ``tpe`` or ``nsga2``; None/``auto`` = TPE for one
            objective, NSGA-II for ``multi``.
        objective: ``mean`` (devel CCC mean), one attribute, or ``multi`` (the three devel
            CCCs; Pareto front).
        n_trials: trials this search runs (queued as tickets shared by all its workers).
        timeout: seconds after which no new trial starts (running ones finish).
        storage: Optuna RDB URL; default ``optuna.db`` beside the MLflow SQLite store.
        study_name: continue this study (created if missing); default a new name.
        n_workers: local processes running trials (this one plus ``n_workers - 1``).
        prune: median pruning on per-epoch devel CCC; None = on for a single objective.
        resume: require ``study_name`` to exist already.
        pruner: replaces the pruner (in this process only; tests force prunes with it).
        heartbeat_interval, grace_period: seconds; a trial without heartbeat for
            ``grace_period`` (default 4 intervals) is failed and retried.
        progress: show a progress bar of this search's trials.
        extra_tags: more tags for the parent run (the `main` chain's step key).
        echo: where messages go.

    Returns:
        The outcome; the same is logged on the parent run.

    Raises:
        ValueError: bad option combination, storage or study.
        DataError: bad data (before any run is opened).
        KeyboardInterrupt: after workers stopped and runs ended KILLED.
    """
    with quiet_libraries():
        return _search(
            base, sampler=sampler, objective=objective, n_trials=n_trials, timeout=timeout,
            storage=storage, study_name=study_name, n_workers=n_workers, prune=prune,
            resume=resume, pruner=pruner, heartbeat_interval=heartbeat_interval,
            grace_period=grace_period, progress=progress, extra_tags=extra_tags, echo=echo,
        )


def _search(
    base: TrainConfig,
    *,
    sampler: str | None,
    objective: str,
    n_trials: int | None,
    timeout: float | None,
    storage: str | None,
    study_name: str | None,
    n_workers: int,
    prune: bool | None,
    resume: bool,
    pruner: optuna.pruners.BasePruner | None,
    heartbeat_interval: int,
    grace_period: int | None,
    progress: bool,
    extra_tags: Mapping[str, str] | None,
    echo: Echo,
) -> SearchResult:
    # About 100 lines on purpose: the order is the protocol (data checked before the parent
    # run opens, the spec stored before tickets are queued, tickets before workers start);
    # each step is already a helper of storage/tickets/worker/report.
    sampler, prune_on = resolve_settings(
        sampler=sampler, objective=objective, prune=prune, n_trials=n_trials, timeout=timeout,
        n_workers=n_workers, resume=resume, study_name=study_name,
    )
    if pruner is not None and n_workers > 1:
        raise ValueError("pruner: a custom pruner object cannot travel to worker processes")
    ensure_default_corpus(Path(base.data_root), echo=echo)
    data = prepare(base)  # before the parent run opens: bad data leave no run behind
    keys = metric_keys(objective, data.attributes)
    url = storage or default_storage_url()
    masked = mask_url(url)
    name = study_name or (
        f"{'+'.join(base.feature_sets)}-{objective}-{sampler}-"
        f"{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    )
    rdb = open_storage(url, heartbeat_interval=heartbeat_interval, grace_period=grace_period)
    study = open_study(
        rdb, study_name=name, resume=resume, objective=objective, keys=keys,
        feature_sets=base.feature_sets, masked_url=masked,
    )
    n_before = len(study.get_trials(deepcopy=False))
    warmup = max(0, base.epochs // 10)
    tags = {
        tracking.TAG_STAGE: "search", tracking.TAG_FEATURE_SETS: "+".join(base.feature_sets),
        tracking.TAG_LOSS: "custom", TAG_STUDY: name, TAG_OPTUNA_STORAGE: masked,
        TAG_SAMPLER: sampler, TAG_OBJECTIVE: objective, **(extra_tags or {}),
    }
    started = time.time()
    with tracking.run_context(
        experiment=base.experiment, run_name=f"search-{name}", tags=tags
    ) as parent:
        # `mlflow run` hands the parent over in MLFLOW_RUN_ID; left set, MLflow would
        # resume the *parent* as the first "nested" child run and the workers would
        # inherit it. tracking.run_context keeps it, so drop it here.
        os.environ.pop("MLFLOW_RUN_ID", None)
        parent_id = parent.info.run_id
        spec = SearchSpec(
            config=base, experiment=tracking.experiment_name_of(parent_id), sampler=sampler,
            objective=objective, prune=prune_on, warmup_epochs=warmup, n_trials=n_trials,
            deadline=None if timeout is None else started + timeout, seed=base.seed,
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period or 4 * heartbeat_interval,
        )
        params = {k: v for k, v in base.to_params().items() if k not in (*PARAMS, "loss")}
        params.update(
            sampler=sampler, objective=objective, n_trials=n_trials, timeout=timeout,
            n_workers=n_workers, prune=prune_on, study_name=name, storage=masked,
            resume=resume,
        )
        tracking.log_params(params)
        study.set_user_attr(f"{STUDY_SPEC_PREFIX}{parent_id}", spec.to_json())
        study.sampler = make_sampler(sampler, _sampler_seed(base.seed, study, 0))
        study.pruner = pruner or make_pruner(prune_on, warmup)
        _fail_stale(study)
        adopted, _ = enqueue_tickets(study, parent_id, n_trials)
        if adopted:
            echo(f"{adopted} trial(s) still queued in the study run first (and count toward "
                 "the budget)")
        echo(f"Study {name!r} on {masked} ({n_before} earlier trials): objective "
             f"{'+'.join(keys)}, sampler {sampler}, pruning {'on' if prune_on else 'off'}, "
             f"{n_trials if n_trials is not None else 'unlimited'} trials"
             f"{f', timeout {timeout:g} s' if timeout else ''}, {n_workers} worker(s); "
             f"search run {parent_id}")
        echo("More workers (this storage and tracking server, any machine): "
             f"{STORAGE_ENV}=<storage URL> python -m ser_mlflow.search worker "
             f"--study-name {name} --search-run-id {parent_id}")
        worker = Worker(
            study, spec, data, search_run_id=parent_id, budgeted=n_trials is not None,
            echo=echo,
        )
        _run_with_workers(worker, n_workers - 1, url=url, study_name=name,
                          n_trials=n_trials, progress=progress, echo=echo)
        result = summarise(
            study, search_run_id=parent_id, keys=keys, multi=objective == "multi",
            started=started,
        )
        result.storage, result.sampler, result.objective = masked, sampler, objective
    echo(summary_text(result))
    _publish_view(result, echo)
    return result


def _run_with_workers(worker: Worker, n_extra: int, *, url: str, study_name: str,
                      n_trials: int | None, progress: bool, echo: Echo) -> None:
    """Run trials here while ``n_extra`` local worker processes run others; their logs
    become the search run's ``workers/`` artifacts."""
    with tempfile.TemporaryDirectory(prefix="ser-search-") as tmp:
        procs = _start_workers(
            n_extra, storage_url=url, study_name=study_name,
            search_run_id=worker.search_run_id, logdir=Path(tmp),
        )
        try:
            _coordinate(worker, procs, n_trials=n_trials, progress=progress, echo=echo)
        except BaseException:
            _stop_workers(procs)
            raise
        finally:
            for _, log in procs:
                with contextlib.suppress(Exception):
                    tracking.log_text(log.read_text(errors="replace"), f"workers/{log.name}")


def _publish_view(result: SearchResult, echo: Callable[[str], None]) -> None:
    """A saved MLflow UI view of the trials; a view is a convenience and never fails a search."""
    from ser_mlflow import views

    try:
        view = views.write_search_view(result.parent_run_id, objective_metric=list(result.keys))
        echo(f"Trials in the MLflow UI: {view.url()}")
    except Exception as exc:  # noqa: BLE001 - any failure only costs the link
        echo(f"(no saved UI view for this search: {exc})")


def _coordinate(
    worker: Worker,
    procs: Sequence[tuple[subprocess.Popen[bytes], Path]],
    *,
    n_trials: int | None,
    progress: bool,
    echo: Echo,
) -> None:
    """Run trials here until the queue is empty, then wait for the other workers.

    Waiting also covers dead workers: their trials go stale, are failed by the heartbeat
    and retried as new tickets, which this loop then runs (before the deadline).
    """
    from tqdm.auto import tqdm

    study, owner = worker.study, worker.search_run_id
    bar = tqdm(total=n_trials, desc="trials", unit="trial", disable=not progress,
               file=sys.stderr, dynamic_ncols=True)
    say: Echo = (lambda s: tqdm.write(s, file=sys.stdout)) if progress else echo
    finished_states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    reported: set[int] = set()
    warned: set[int] = set()

    def refresh() -> None:
        done = _trials(study, owner=owner, states=finished_states)
        new = sorted((t for t in done if t.number not in reported), key=lambda t: t.number)
        for t in new:  # trials of every worker of this search, as they finish
            reported.add(t.number)
            say(_frozen_line(t, worker.keys))
        if new:
            bar.update(len(new))
        complete = [t for t in done if t.state == TrialState.COMPLETE]
        if new and complete and not worker.spec.multi:
            bar.set_postfix(best=f"{max(t.values[0] for t in complete):.4f}")

    def on_done(outcome: TrialOutcome) -> None:
        refresh()

    try:
        while True:
            worker.run_until_empty(on_done)
            for i, (p, log) in enumerate(procs, start=1):
                rc = p.poll()
                if rc not in (None, 0) and i not in warned:
                    warned.add(i)
                    say(f"worker {i} exited with code {rc}: {_tail(log)}")
            running = _trials(study, owner=owner, states=(TrialState.RUNNING,))
            alive = any(p.poll() is None for p, _ in procs)
            refresh()
            if not running and not alive:
                return
            time.sleep(POLL_S)
    finally:
        refresh()
        bar.close()
