"""Optuna search over the loss weights alpha, beta, gamma; every trial a nested MLflow run.

The paper found its MTL2 weights (0.7, 0.2, 1.0) by random search over [0, 1]^3. Here a
study samples (alpha, beta, gamma) with random search, TPE (default) or NSGA-II (for the
multi-objective study over the three per-attribute devel CCCs, whose answer is a Pareto
front), trains the paper network once per trial and reports its devel CCC.

MLflow. One parent run (``ser.stage=search``) per invocation; every trial is a child run
(``ser.stage=trial``, ``mlflow.parentRunId`` = the parent) holding a complete training run
(params incl. alpha/beta/gamma, per-epoch and final metrics, predictions, plots, model).
Trial state is recorded truthfully and consistently:

- complete: the child run ends FINISHED, ``ser.trial_state=complete``;
- pruned: the child run ends FINISHED with ``ser.trial_state=pruned`` and
  ``ser.pruned_epoch``. Pruning is a planned outcome of the search, not an interruption,
  so it is not KILLED (KILLED stays reserved for Ctrl-C / SIGTERM). A pruned run has
  per-epoch metrics but no final ``devel_ccc_*`` metrics and no model, so queries for
  the best finished runs by ``metrics.devel_ccc_mean`` never pick it up;
- failed: the child run ends FAILED with the error in ``ser.error``,
  ``ser.trial_state=fail``; the search goes on (like a sweep);
- stale (its worker died): failed by the Optuna heartbeat, its MLflow run marked FAILED,
  and a retry with the same weights queued, so no trial of the budget is lost.

Budget and workers. A study may be run by several processes at once (``n_workers`` local
ones, and more on other machines against the same storage). Optuna's
``MaxTrialsCallback`` checks the budget *after* a trial ends, so two workers finishing
together both start another trial and overshoot. Here the budget is a queue instead: the
search enqueues exactly ``n_trials`` WAITING trials ("tickets") labelled with its parent
run id, and workers claim them with Optuna's atomic WAITING -> RUNNING transition. Each
ticket runs once, so a search runs exactly ``n_trials`` trials (plus retries of stale
ones), none twice. Tickets left by a timeout stay queued; a later search on the study
adopts them (they count toward its budget) once their own search has ended.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from ser_mlflow import tracking
from ser_mlflow.config import LossConfig, ModelConfig, TrainConfig
from ser_mlflow.jobs.train import Prepared, ensure_default_corpus, prepare, train_in_active_run

Echo = Callable[[str], None]

SAMPLERS: tuple[str, ...] = ("random", "tpe", "nsga2")
OBJECTIVES: tuple[str, ...] = ("mean", "arousal", "valence", "liking", "multi")
PARAMS: tuple[str, ...] = ("alpha", "beta", "gamma")

TAG_TRIAL_STATE = "ser.trial_state"
TAG_TRIAL_NUMBER = "ser.trial_number"
TAG_OPTUNA_TRIAL_NUMBER = "optuna.trial_number"
TAG_STUDY = "ser.study_name"
TAG_PRUNED_EPOCH = "ser.pruned_epoch"
TAG_PARENT = "mlflow.parentRunId"

#: Trial user attributes: the child run of a trial, and the search run owning a ticket.
ATTR_RUN = "mlflow_run_id"
ATTR_OWNER = "ser.search_run_id"
#: Study user attributes: what every search of the study must agree on, and per search
#: run the settings its workers need (so a worker needs only storage, study and run id).
STUDY_OBJECTIVE = "ser.objective"
STUDY_FEATURE_SETS = "ser.feature_sets"
STUDY_SPEC_PREFIX = "ser.search:"

STORAGE_ENV = "SER_MLFLOW_OPTUNA_STORAGE"  # keeps a password off worker command lines
DEFAULT_HEARTBEAT_S = 30
NSGA2_POPULATION = 10  # Optuna's 50 would leave budgets of tens of trials purely random
MEDIAN_STARTUP_TRIALS = 3
POLL_S = 1.0


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class SearchSpec:
    """Everything a worker needs besides the data; stored as JSON in the study.

    Attributes:
        config: the base training config (its loss is replaced per trial).
        experiment: MLflow experiment of the parent run (children go to the same one).
        sampler, objective: validated names.
        prune: whether the median pruner runs (single objective only).
        warmup_epochs: epochs before the pruner may act (early devel CCC is noise).
        n_trials: the search's budget (None: workers create trials until the deadline).
        deadline: wall-clock time (``time.time()``) after which no trial starts.
        seed: base seed of the samplers.
        heartbeat_interval, grace_period: Optuna heartbeat, seconds.
    """

    config: TrainConfig
    experiment: str
    sampler: str
    objective: str
    prune: bool
    warmup_epochs: int
    n_trials: int | None
    deadline: float | None
    seed: int
    heartbeat_interval: int
    grace_period: int

    @property
    def multi(self) -> bool:
        return self.objective == "multi"

    def to_json(self) -> str:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "config"}
        d["config"] = self.config.as_dict()
        return json.dumps(d, default=str)

    @classmethod
    def from_json(cls, text: str) -> SearchSpec:
        d = json.loads(text)
        c = d.pop("config")
        m, loss = c["model"], c["loss"]
        cfg = TrainConfig(
            data_root=Path(c["data_root"]),
            feature_sets=tuple(c["feature_sets"]),
            epochs=int(c["epochs"]),
            batch_size=int(c["batch_size"]),
            shift_frames=int(c["shift_frames"]),
            seed=int(c["seed"]),
            experiment=c["experiment"],
            model=ModelConfig(
                units=tuple(int(u) for u in m["units"]),
                dropout=float(m["dropout"]),
                optimizer=m["optimizer"],
                lr=float(m["lr"]),
            ),
            loss=LossConfig(**loss),
        )
        return cls(config=cfg, **d)


def resolve_settings(
    *,
    sampler: str | None,
    objective: str,
    prune: bool | None,
    n_trials: int | None,
    timeout: float | None,
    n_workers: int,
    resume: bool,
    study_name: str | None,
) -> tuple[str, bool]:
    """Validate the option combination; return (sampler, prune) with defaults filled in.

    Defaults: TPE for one objective, NSGA-II for ``multi``; pruning on for one objective
    (Optuna cannot prune multi-objective studies, so it is off there).

    Raises:
        ValueError: an unknown name or a combination that cannot work, saying why.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective: expected one of {', '.join(OBJECTIVES)}, got {objective!r}")
    if sampler in (None, "", "auto"):
        sampler = "nsga2" if objective == "multi" else "tpe"
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler: expected one of {', '.join(SAMPLERS)}, got {sampler!r}")
    if objective == "multi" and sampler == "tpe":
        raise ValueError(
            "objective=multi searches a Pareto front: use sampler nsga2 (or random); "
            "tpe is for a single objective"
        )
    if sampler == "nsga2" and objective != "multi":
        raise ValueError(
            f"sampler=nsga2 is for objective=multi (three devel CCCs); for objective={objective} "
            "use tpe or random"
        )
    if prune and objective == "multi":
        raise ValueError("prune: Optuna cannot prune a multi-objective study; use --no-prune")
    if prune is None:
        prune = objective != "multi"
    if n_trials is None and timeout is None:
        raise ValueError("budget: give n_trials, timeout, or both")
    if n_trials is not None and n_trials < 1:
        raise ValueError(f"n_trials: expected a positive integer, got {n_trials}")
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout: expected a positive number of seconds, got {timeout}")
    if n_workers < 1:
        raise ValueError(f"n_workers: expected 1 or more worker processes, got {n_workers}")
    if resume and not study_name:
        raise ValueError("resume: name the study to resume with study_name / --study-name")
    return sampler, bool(prune)


def metric_keys(objective: str, attributes: Sequence[str]) -> list[str]:
    """Run metrics that make up the objective value(s), in Optuna's order.

    Raises:
        ValueError: the objective names an attribute the labels do not have.
    """
    if objective == "multi":
        return [f"devel_ccc_{a}" for a in attributes]
    if objective != "mean" and objective not in attributes:
        raise ValueError(
            f"objective={objective}: the labels have attributes {', '.join(attributes)}"
        )
    return [f"devel_ccc_{objective}"]


# --------------------------------------------------------------------------- storage


def default_storage_url() -> str:
    """SQLite ``optuna.db`` beside the MLflow SQLite store, else in the working directory."""
    uri = tracking.tracking_uri()
    folder = Path.cwd()
    if uri.startswith("sqlite:///") and ":memory:" not in uri:
        folder = Path(uri[len("sqlite:///") :]).parent
    return f"sqlite:///{(folder / 'optuna.db').resolve()}"


def mask_url(url: str) -> str:
    """The storage URL without its password (for tags and messages)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a SQLAlchemy URL: nothing we can parse, so show nothing secret
        return url.split("@")[-1] if "@" in url else url


def open_storage(
    url: str,
    *,
    heartbeat_interval: int = DEFAULT_HEARTBEAT_S,
    grace_period: int | None = None,
) -> optuna.storages.RDBStorage:
    """An Optuna RDB storage with heartbeat; stale trials are failed and retried.

    SQLite gets a long lock timeout because several worker processes write to one file.

    Raises:
        ValueError: the URL cannot be opened.
    """
    kwargs: dict[str, Any] | None = None
    sqlite = url.startswith("sqlite:")
    if sqlite:
        # isolation_level=None: pysqlite stops issuing its own (deferred) BEGIN; see below
        kwargs = {"connect_args": {"timeout": 120, "isolation_level": None}}
        path = url[len("sqlite:///") :]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    from ser_mlflow.tracking.locks import sqlite_init_lock

    try:
        # processes opening a new SQLite file together would each create its schema
        with sqlite_init_lock(url), warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = optuna.storages.RDBStorage(
                url,
                engine_kwargs=kwargs,
                heartbeat_interval=heartbeat_interval,
                grace_period=grace_period or 4 * heartbeat_interval,
                heartbeat_stale_trial_callback=on_stale_trial,
            )
    except Exception as exc:
        raise ValueError(f"storage: cannot open {mask_url(url)}: {exc}") from None
    if sqlite:
        from sqlalchemy import event

        # Claiming a ticket reads "WAITING" and writes "RUNNING" in one transaction. The
        # row lock Optuna asks for (SELECT ... FOR UPDATE) does not exist in SQLite, and
        # pysqlite starts a transaction only at the first write, so two processes could
        # both read WAITING and both run the trial. BEGIN IMMEDIATE takes SQLite's write
        # lock at the start of every transaction, which makes the claim atomic.
        event.listen(storage.engine, "begin", _begin_immediate)
    return storage


def _begin_immediate(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def on_stale_trial(study: optuna.Study, trial: FrozenTrial) -> None:
    """Heartbeat callback: the trial's worker died. Fail its MLflow run, queue a retry.

    The retry (Optuna's ``RetryHeartbeatStaleTrialCallback``) keeps the trial's weights and
    user attributes, so it stays a ticket of the same search and the budget is not lost.
    """
    run_id = trial.user_attrs.get(ATTR_RUN)
    if run_id:
        _fail_run_if_running(
            run_id,
            f"worker stopped: no heartbeat for trial {trial.number} within the grace period "
            "(the Optuna trial was failed and a retry queued)",
        )
    optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=2)(study, trial)


def _fail_run_if_running(run_id: str, message: str) -> None:
    if tracking.run_status(run_id) == "RUNNING":
        tracking.fail_run(run_id, message, tags={TAG_TRIAL_STATE: "fail"})


# --------------------------------------------------------------------------- study


def _directions(objective: str, n_attributes: int) -> list[Literal["maximize"]]:
    return ["maximize"] * (n_attributes if objective == "multi" else 1)


def open_study(
    storage: optuna.storages.RDBStorage,
    *,
    study_name: str,
    resume: bool,
    objective: str,
    keys: Sequence[str],
    feature_sets: Sequence[str],
    masked_url: str,
) -> optuna.Study:
    """Create the study or continue it; refuse to mix objectives or feature sets.

    Raises:
        ValueError: ``resume`` of a study that does not exist (lists those that do), or an
            existing study made for another objective or other feature sets.
    """
    names = optuna.study.get_all_study_names(storage)
    exists = study_name in names
    if resume and not exists:
        have = ", ".join(sorted(names)) if names else "none"
        raise ValueError(
            f"study_name: no study {study_name!r} to resume in {masked_url} (studies there: "
            f"{have}); drop --resume to create it"
        )
    directions = _directions(objective, len(keys))
    study = optuna.create_study(
        storage=storage, study_name=study_name, directions=directions, load_if_exists=True
    )
    attrs = study.user_attrs
    fs = "+".join(feature_sets)
    if STUDY_OBJECTIVE in attrs:
        if attrs[STUDY_OBJECTIVE] != objective:
            raise ValueError(
                f"study {study_name!r} optimises objective={attrs[STUDY_OBJECTIVE]}; "
                f"cannot continue it with objective={objective}"
            )
        if attrs.get(STUDY_FEATURE_SETS) != fs:
            raise ValueError(
                f"study {study_name!r} searches feature sets {attrs.get(STUDY_FEATURE_SETS)}; "
                f"cannot continue it with {fs}"
            )
    elif [d.name.lower() for d in study.directions] != directions:
        raise ValueError(f"study {study_name!r} was made elsewhere with other directions")
    else:
        study.set_user_attr(STUDY_OBJECTIVE, objective)
        study.set_user_attr(STUDY_FEATURE_SETS, fs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(keys))
    return study


def make_sampler(kind: str, seed: int) -> optuna.samplers.BaseSampler:
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if kind == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=NSGA2_POPULATION, seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def make_pruner(prune: bool, warmup_epochs: int) -> optuna.pruners.BasePruner:
    if not prune:
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(
        n_startup_trials=MEDIAN_STARTUP_TRIALS, n_warmup_steps=warmup_epochs
    )


def _sampler_seed(seed: int, study: optuna.Study, worker: int) -> int:
    """Distinct per worker and per resumed session, so that no two draw the same weights.

    Mixes in the number of trials that have drawn weights so far (queued ones have not):
    a resumed search with the same seed would otherwise replay the first one's draws,
    while a fresh study with the same seed stays reproducible.
    """
    drawn = len([t for t in study.get_trials(deepcopy=False) if t.state != TrialState.WAITING])
    return int(np.random.SeedSequence([seed, drawn, worker]).generate_state(1)[0])


def _study_id(study: optuna.Study) -> int:
    return study._storage.get_study_id_from_name(study.study_name)


def _trials(
    study: optuna.Study, *, owner: str | None = None, states: tuple[TrialState, ...] | None = None
) -> list[FrozenTrial]:
    trials = study._storage.get_all_trials(_study_id(study), deepcopy=False, states=states)
    if owner is None:
        return list(trials)
    return [t for t in trials if t.user_attrs.get(ATTR_OWNER) == owner]


def _fail_stale(study: optuna.Study) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def enqueue_tickets(
    study: optuna.Study, search_run_id: str, n_trials: int | None
) -> tuple[int, int]:
    """Queue the budget: adopt orphaned tickets first, then add new ones.

    Without ``n_trials`` (a search bounded by its timeout only) every orphan is adopted
    and nothing is added.

    An orphan is a WAITING trial whose owning search run is no longer RUNNING (a search
    that stopped at its timeout) or that has no owner (queued by hand). Tickets of a live
    search on another machine are left to it.

    Returns:
        (adopted, added).
    """
    storage = study._storage
    waiting = _trials(study, states=(TrialState.WAITING,))
    live: dict[str, bool] = {}
    adopted = 0
    limit = len(waiting) if n_trials is None else n_trials
    for t in waiting:
        if adopted >= limit:
            break
        owner = t.user_attrs.get(ATTR_OWNER)
        if owner == search_run_id:
            adopted += 1
            continue
        if owner and live.setdefault(owner, tracking.run_status(owner) == "RUNNING"):
            continue
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            storage.set_trial_user_attr(t._trial_id, ATTR_OWNER, search_run_id)
            adopted += 1
    added = 0 if n_trials is None else n_trials - adopted
    for _ in range(added):
        study.enqueue_trial({}, user_attrs={ATTR_OWNER: search_run_id})
    return adopted, added


def claim_ticket(storage: optuna.storages.BaseStorage, study_id: int, owner: str) -> int | None:
    """Atomically move one WAITING trial of ``owner`` to RUNNING; its id, or None if none.

    The WAITING -> RUNNING transition succeeds for exactly one caller (Optuna's own queue
    uses it); on SQLite that needs the storage from :func:`open_storage`.
    """
    for t in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,)):
        if t.user_attrs.get(ATTR_OWNER) != owner:
            continue
        try:
            if storage.set_trial_state_values(t._trial_id, state=TrialState.RUNNING):
                return t._trial_id
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # another worker got it (and finished it) first
    return None


# --------------------------------------------------------------------------- worker


@dataclass
class TrialOutcome:
    number: int
    state: str  # complete, pruned, fail
    params: dict[str, float]
    values: list[float] | None = None
    run_id: str | None = None
    error: str = ""
    epochs: int | None = None  # epochs trained (a pruned trial stops early)


@contextlib.contextmanager
def _heartbeat(
    storage: optuna.storages.BaseStorage, trial_id: int, interval: int
) -> Iterator[None]:
    """Record the trial's heartbeat every ``interval`` s while the body runs (as optimize)."""
    stop = threading.Event()

    def beat() -> None:
        while True:
            with contextlib.suppress(Exception):  # a missed beat only risks a late retry
                storage.record_heartbeat(trial_id)  # type: ignore[attr-defined]
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, name=f"heartbeat-{trial_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


class Worker:
    """Claims the search's tickets one by one and runs each as a nested MLflow run.

    Data are prepared once per worker (process), not per trial.
    """

    def __init__(
        self,
        study: optuna.Study,
        spec: SearchSpec,
        data: Prepared,
        *,
        search_run_id: str,
        budgeted: bool,
        echo: Echo = print,
    ) -> None:
        self.study = study
        self.spec = spec
        self.data = data
        self.search_run_id = search_run_id
        self.budgeted = budgeted
        self.echo = echo
        self.keys = metric_keys(spec.objective, data.attributes)
        self.study_id = _study_id(study)

    def expired(self) -> bool:
        return self.spec.deadline is not None and time.time() >= self.spec.deadline

    def claim(self) -> optuna.Trial | None:
        """One of this search's queued trials, atomically; a new one when unbudgeted."""
        if self.expired():
            return None
        storage = self.study._storage
        ticket = claim_ticket(storage, self.study_id, self.search_run_id)
        if ticket is not None:
            return optuna.Trial(self.study, ticket)
        if self.budgeted:
            return None
        trial_id = storage.create_new_trial(self.study_id)
        storage.set_trial_user_attr(trial_id, ATTR_OWNER, self.search_run_id)
        return optuna.Trial(self.study, trial_id)

    def run_until_empty(self, on_done: Callable[[TrialOutcome], None] | None = None) -> int:
        """Run trials until no ticket is left (or the deadline passed); return the count."""
        done = 0
        while True:
            _fail_stale(self.study)
            trial = self.claim()
            if trial is None:
                return done
            outcome = self.run_trial(trial)
            done += 1
            if on_done is not None:
                on_done(outcome)

    def run_trial(self, trial: optuna.Trial) -> TrialOutcome:
        """Train one (alpha, beta, gamma) in a child run and tell Optuna how it went.

        Raises:
            KeyboardInterrupt: after the trial is told FAIL and its run ended KILLED.
        """
        with _heartbeat(self.study._storage, trial._trial_id, self.spec.heartbeat_interval):
            return self._run_trial(trial)

    def _run_trial(self, trial: optuna.Trial) -> TrialOutcome:
        number = trial.number
        weights = {p: trial.suggest_float(p, 0.0, 1.0) for p in PARAMS}
        outcome = TrialOutcome(number, "fail", weights)
        tags = {
            tracking.TAG_STAGE: "trial",
            TAG_OPTUNA_TRIAL_NUMBER: str(number),
            TAG_TRIAL_NUMBER: str(number),
            TAG_STUDY: self.study.study_name,
            TAG_PARENT: self.search_run_id,
        }
        try:
            with tracking.run_context(
                experiment=self.spec.experiment,
                run_name=f"trial-{number:03d}",
                tags=tags,
                nested=True,
            ) as run:
                outcome.run_id = run.info.run_id
                trial.set_user_attr(ATTR_RUN, run.info.run_id)
                self._train(trial, outcome)
        except KeyboardInterrupt:
            self.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            raise
        except Exception as exc:
            outcome.state, outcome.error = "fail", f"{type(exc).__name__}: {exc}"
            with contextlib.suppress(Exception):
                trial.set_user_attr("error", outcome.error[:2000])
            self.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            return outcome
        if outcome.state == "pruned":
            self.study.tell(trial, state=TrialState.PRUNED, skip_if_finished=True)
        else:
            assert outcome.values is not None  # _train sets values when complete
            values: float | list[float] = (
                outcome.values if self.spec.multi else outcome.values[0]
            )
            self.study.tell(trial, values, skip_if_finished=True)
        return outcome

    def _train(self, trial: optuna.Trial, outcome: TrialOutcome) -> None:
        """Inside the active child run: train, prune or fail, and tag the run's state."""
        w = outcome.params
        cfg = replace(
            self.spec.config,
            experiment=self.spec.experiment,
            loss=LossConfig.from_name(
                "custom", alpha=w["alpha"], beta=w["beta"], gamma=w["gamma"]
            ),
        )
        # logged before training so that a trial failing early still shows its weights
        tracking.log_params(cfg.to_params())
        key = self.keys[0]
        last_epoch = 0

        def report(epoch: int, row: Mapping[str, float]) -> None:
            nonlocal last_epoch
            last_epoch = epoch
            if self.spec.multi:
                return  # Optuna does not take intermediate values for several objectives
            trial.report(float(row[key]), epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(
                    f"epoch {epoch}: {key} {row[key]:.4f} is below the pruner's threshold"
                )

        try:
            result = train_in_active_run(
                cfg, self.data, stage="trial", on_epoch=report, progress=False,
                echo=lambda s: None,
            )
            values = [float(result.metrics[k]) for k in self.keys]
            bad = [k for k, v in zip(self.keys, values, strict=True) if not math.isfinite(v)]
            if bad:
                raise FloatingPointError(f"objective {', '.join(bad)} is not finite: {values}")
        except optuna.TrialPruned:
            tracking.set_tags({TAG_TRIAL_STATE: "pruned", TAG_PRUNED_EPOCH: last_epoch})
            outcome.state, outcome.epochs = "pruned", last_epoch
            trial.set_user_attr("epochs_run", last_epoch)
            return
        except BaseException:
            with contextlib.suppress(Exception):
                tracking.set_tags({TAG_TRIAL_STATE: "fail"})
            raise
        tracking.set_tags({TAG_TRIAL_STATE: "complete"})
        outcome.state, outcome.values = "complete", values
        for k, v in result.metrics.items():
            if k.startswith("devel_ccc_"):
                trial.set_user_attr(k, float(v))
        trial.set_user_attr("best_epoch", int(result.best_epoch))
        trial.set_user_attr("epochs_run", len(result.history))


def _frozen_line(t: FrozenTrial, keys: Sequence[str]) -> str:
    o = TrialOutcome(
        t.number, {"COMPLETE": "complete", "PRUNED": "pruned"}.get(t.state.name, "fail"),
        dict(t.params), list(t.values) if t.values else None,
        t.user_attrs.get(ATTR_RUN), t.user_attrs.get("error", "(no heartbeat: worker died)"),
        t.user_attrs.get("epochs_run"),
    )
    return _trial_line(o, keys)


def _trial_line(o: TrialOutcome, keys: Sequence[str]) -> str:
    w = ", ".join(f"{p}={o.params.get(p, float('nan')):.3f}" for p in PARAMS)
    if o.state == "complete" and o.values is not None:
        vals = ", ".join(f"{k}={v:.4f}" for k, v in zip(keys, o.values, strict=True))
        return f"trial {o.number}: complete {vals} ({w})"
    if o.state == "pruned":
        return f"trial {o.number}: pruned at epoch {o.epochs} ({w})"
    return f"trial {o.number}: FAILED {o.error} ({w})"


# --------------------------------------------------------------------------- result


@dataclass
class SearchResult:
    """What a search produced; the same figures are on the parent run."""

    study_name: str
    storage: str  # without password
    parent_run_id: str
    objective: str
    sampler: str
    keys: list[str]
    best_params: dict[str, float] | None = None
    best_value: float | None = None
    best_run_id: str | None = None
    pareto: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # this search's trials by state
    queued_left: int = 0
    marked: set[int] = field(default_factory=set)  # the best trial, or the Pareto trials
    trials: pd.DataFrame = field(default_factory=pd.DataFrame)  # the whole study


def trials_table(study: optuna.Study, keys: Sequence[str]) -> pd.DataFrame:
    """One row per trial of the study with weights, state, objective and its MLflow run."""
    rows = []
    for t in _trials(study):
        row: dict[str, Any] = {"trial": t.number, "state": t.state.name.lower()}
        for p in PARAMS:
            row[p] = t.params.get(p, np.nan)
        values = t.values if t.state == TrialState.COMPLETE and t.values else []
        for i, k in enumerate(keys):
            row[k] = values[i] if i < len(values) else np.nan
        for k in ("devel_ccc_arousal", "devel_ccc_valence", "devel_ccc_liking",
                  "devel_ccc_mean"):
            if k not in row:
                row[k] = t.user_attrs.get(k, np.nan)
        row["epochs_run"] = t.user_attrs.get("epochs_run", pd.NA)
        row["mlflow_run_id"] = t.user_attrs.get(ATTR_RUN, "")
        row["search_run_id"] = t.user_attrs.get(ATTR_OWNER, "")
        row["error"] = t.user_attrs.get("error", "")
        rows.append(row)
    df = pd.DataFrame(rows)
    if not df.empty:
        df["epochs_run"] = df["epochs_run"].astype("Int64")
    return df


def format_table(df: pd.DataFrame, keys: Sequence[str], *, best: set[int], limit: int = 25) -> str:
    """The summary printed at the end: best first, pruned and failed trials last."""
    if df.empty:
        return "  (no trials)"
    order = df.assign(_k=df[keys].mean(axis=1)).sort_values(
        ["_k", "trial"], ascending=[False, True], na_position="last"
    )
    shown = order.head(limit).copy()
    shown.insert(0, "", ["*" if n in best else "" for n in shown["trial"]])
    shown["mlflow_run_id"] = shown["mlflow_run_id"].str.slice(0, 8)
    shown["epochs_run"] = [str(v) if pd.notna(v) else "-" for v in shown["epochs_run"]]
    cols = ["", "trial", "state", *PARAMS, *keys]
    cols += [c for c in ("devel_ccc_mean",) if c not in keys] + ["epochs_run", "mlflow_run_id"]
    text = shown[cols].to_string(
        index=False, float_format=lambda v: f"{v:.3f}", na_rep="-"
    )
    if len(order) > limit:
        text += f"\n  ... and {len(order) - limit} more trials (all in trials.csv)"
    return text


def _figure(ax: Any) -> Any:
    return np.ravel(np.asarray(ax, dtype=object))[0].figure


def log_plots(study: optuna.Study, keys: Sequence[str], *, multi: bool) -> list[str]:
    """Optuna's matplotlib plots as artifacts; returns notes on the plots it had to skip."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    target = (lambda t: float(np.mean(t.values))) if multi else None  # noqa: E731
    target_name = "mean of the devel CCCs" if multi else keys[0]
    notes: list[str] = []
    plans: list[tuple[str, int, Callable[[], Any]]] = [
        ("optimization_history", 1,
         lambda: ovm.plot_optimization_history(study, target=target, target_name=target_name)),
        ("param_importances", 3,
         lambda: ovm.plot_param_importances(study, target=target, target_name=target_name)),
        ("contour_alpha_beta", 3,
         lambda: ovm.plot_contour(study, params=["alpha", "beta"], target=target,
                                  target_name=target_name)),
    ]
    if multi:
        names = list(keys)
        plans.append(("pareto_front", 1, lambda: ovm.plot_pareto_front(study, target_names=names)))
    else:
        plans.append(("intermediate_values", 1, lambda: ovm.plot_intermediate_values(study)))
    for name, needed, make in plans:
        if len(complete) < needed:
            notes.append(f"{name}: skipped, needs {needed} complete trials, has {len(complete)}")
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fig = _figure(make())
        except Exception as exc:  # e.g. importances of weights that never varied
            notes.append(f"{name}: skipped, {type(exc).__name__}: {exc}")
            plt.close("all")
            continue
        fig.set_size_inches(8, 6)
        tracking.log_figure(fig, f"plots/{name}.png")
        plt.close(fig)
    return notes


def summarise(
    study: optuna.Study, *, search_run_id: str, keys: Sequence[str], multi: bool,
    started: float,
) -> SearchResult:
    """Log the study's outcome on the active parent run and return it."""
    result = SearchResult(
        study_name=study.study_name, storage="", parent_run_id=search_run_id,
        objective=study.user_attrs.get(STUDY_OBJECTIVE, ""), sampler="", keys=list(keys),
    )
    mine = _trials(study, owner=search_run_id)
    counts = {s: 0 for s in ("complete", "pruned", "fail", "running", "waiting")}
    for t in mine:
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    result.counts, result.queued_left = counts, counts["waiting"]
    hours = max(time.time() - started, 1e-9) / 3600
    finished = counts["complete"] + counts["pruned"] + counts["fail"]
    tracking.log_metrics({
        "n_trials_complete": counts["complete"], "n_trials_pruned": counts["pruned"],
        "n_trials_failed": counts["fail"], "n_trials_queued": counts["waiting"],
        "n_trials_study": len(study.get_trials(deepcopy=False)),
        "trials_per_hour": finished / hours,
    })
    df = trials_table(study, keys)
    result.trials = df
    best_numbers: set[int] = set()
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    if complete and not multi:
        best = study.best_trial
        best_numbers = {best.number}
        result.best_params = {p: float(best.params[p]) for p in PARAMS}
        result.best_value = float(best.value)  # type: ignore[arg-type]
        result.best_run_id = best.user_attrs.get(ATTR_RUN)
        tracking.log_params({f"best_{p}": v for p, v in result.best_params.items()})
        metrics = {"best_value": result.best_value, "best_trial_number": float(best.number)}
        if result.best_run_id:
            tracking.set_tags({"best_run": result.best_run_id})
            for k, v in tracking.get_run(result.best_run_id).data.metrics.items():
                if k.startswith(("devel_", "test_")):
                    metrics[f"best_{k}"] = v
        tracking.log_metrics(metrics)
    elif complete:
        pareto = study.best_trials
        best_numbers = {t.number for t in pareto}
        result.pareto = [
            {"trial": t.number, **{p: t.params[p] for p in PARAMS},
             **dict(zip(keys, t.values, strict=True)), "mlflow_run_id": t.user_attrs.get(ATTR_RUN)}
            for t in sorted(pareto, key=lambda t: t.number)
        ]
        run_ids = [str(p["mlflow_run_id"]) for p in result.pareto if p["mlflow_run_id"]]
        tracking.set_tags({
            "best_run": ",".join(run_ids)[:8000],
            "pareto_trials": ",".join(str(p["trial"]) for p in result.pareto),
        })
        tracking.log_metrics({"pareto_size": float(len(pareto))})
        for k in keys:
            tracking.log_metrics({f"pareto_max_{k}": max(p[k] for p in result.pareto)})
        tracking.log_text(pd.DataFrame(result.pareto).to_csv(index=False), "pareto_front.csv")
    csv = study.trials_dataframe(
        attrs=("number", "value", "state", "params", "datetime_start", "datetime_complete",
               "duration", "user_attrs")
    )
    if not csv.empty:
        csv = csv.rename(columns={f"user_attrs_{ATTR_RUN}": "mlflow_run_id",
                                  f"user_attrs_{ATTR_OWNER}": "search_run_id"})
        if "mlflow_run_id" not in csv.columns:
            csv["mlflow_run_id"] = ""
    tracking.log_text(csv.to_csv(index=False), "trials.csv")
    notes = log_plots(study, keys, multi=multi)
    result.marked = best_numbers
    table = format_table(df, keys, best=best_numbers)
    tracking.log_text(table + "\n" + "\n".join(notes) + "\n", "search_summary.txt")
    return result


# --------------------------------------------------------------------------- processes


def _worker_command(study_name: str, search_run_id: str, index: int) -> list[str]:
    return [
        sys.executable, "-m", "ser_mlflow.search.study", "worker",
        "--study-name", study_name, "--search-run-id", search_run_id, "--index", str(index),
    ]


def _start_workers(
    n: int, *, storage_url: str, study_name: str, search_run_id: str, logdir: Path
) -> list[tuple[subprocess.Popen[bytes], Path]]:
    """Start ``n`` extra local worker processes; their output goes to log files."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_RUN_ID",)}
    env["MLFLOW_TRACKING_URI"] = tracking.tracking_uri()
    env[STORAGE_ENV] = storage_url
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    procs = []
    for i in range(1, n + 1):
        log = logdir / f"worker-{i}.log"
        with open(log, "wb") as fh:
            procs.append((
                subprocess.Popen(
                    _worker_command(study_name, search_run_id, i),
                    stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=os.getcwd(),
                ),
                log,
            ))
    return procs


def _stop_workers(procs: Sequence[tuple[subprocess.Popen[bytes], Path]]) -> None:
    """SIGTERM first, so each worker ends its running child run KILLED and tells FAIL."""
    for p, _ in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p, _ in procs:
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _tail(path: Path, n: int = 5) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(lines[-n:])


# --------------------------------------------------------------------------- use case


@contextlib.contextmanager
def _quiet_libraries() -> Iterator[None]:
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
    with _quiet_libraries():
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
        tracking.TAG_STAGE: "search",
        tracking.TAG_FEATURE_SETS: "+".join(base.feature_sets),
        tracking.TAG_LOSS: "custom",
        TAG_STUDY: name,
        "ser.optuna_storage": masked,
        "ser.sampler": sampler,
        "ser.objective": objective,
        **(extra_tags or {}),
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
        echo(
            f"Study {name!r} on {masked} ({n_before} earlier trials): objective "
            f"{'+'.join(keys)}, sampler {sampler}, pruning {'on' if prune_on else 'off'}, "
            f"{n_trials if n_trials is not None else 'unlimited'} trials"
            f"{f', timeout {timeout:g} s' if timeout else ''}, {n_workers} worker(s); "
            f"search run {parent_id}"
        )
        echo(
            "More workers (this storage and tracking server, any machine): "
            f"{STORAGE_ENV}=<storage URL> python -m ser_mlflow.search.study worker "
            f"--study-name {name} --search-run-id {parent_id}"
        )
        worker = Worker(
            study, spec, data, search_run_id=parent_id, budgeted=n_trials is not None,
            echo=echo,
        )
        with tempfile.TemporaryDirectory(prefix="ser-search-") as tmp:
            procs = _start_workers(
                n_workers - 1, storage_url=url, study_name=name, search_run_id=parent_id,
                logdir=Path(tmp),
            )
            try:
                _coordinate(worker, procs, n_trials=n_trials, progress=progress, echo=echo)
            except BaseException:
                _stop_workers(procs)
                raise
            finally:
                for _, log in procs:
                    with contextlib.suppress(Exception):
                        tracking.log_text(
                            log.read_text(errors="replace"), f"workers/{log.name}"
                        )
        result = summarise(
            study, search_run_id=parent_id, keys=keys, multi=objective == "multi",
            started=started,
        )
        result.storage, result.sampler, result.objective = masked, sampler, objective
    echo(summary_text(result))
    _publish_view(result, echo)
    return result


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


def summary_text(result: SearchResult) -> str:
    """The closing summary: counts, the best (or Pareto) trials, and the trial table."""
    c = result.counts
    lines = [
        f"Search {result.parent_run_id} on study {result.study_name!r} ({result.storage}): "
        f"{c.get('complete', 0)} complete, {c.get('pruned', 0)} pruned, "
        f"{c.get('fail', 0)} failed"
        + (f", {result.queued_left} still queued (timeout)" if result.queued_left else "")
    ]
    if result.best_params is not None:
        w = ", ".join(f"{p}={v:.3f}" for p, v in result.best_params.items())
        lines.append(
            f"Best {result.keys[0]} = {result.best_value:.4f} with {w} (run {result.best_run_id})"
        )
    elif result.pareto:
        lines.append(f"Pareto front: {len(result.pareto)} trial(s), marked *")
    lines.append(format_table(result.trials, result.keys, best=result.marked))
    return "\n".join(lines)


# --------------------------------------------------------------------------- main chain

#: Options of the `search` step in a `main` chain file (training options come from `train`).
CHAIN_OPTIONS: tuple[str, ...] = (
    "feature_sets", "sampler", "objective", "n_trials", "timeout", "storage", "study_name",
    "n_workers", "prune", "resume",
)


def chain_step(base: TrainConfig, opts: Mapping[str, Any], force: bool) -> SearchResult:
    """The `search` step of `ser-mlflow main`: run_search with the file's options.

    Like the chain's other steps it is reused when a search with the same options, training
    settings, code and data already FINISHED (``ser.step_key``), unless ``force``. Its study
    is named after that key unless the file names one, so a forced rerun continues it.

    Raises:
        ValueError: unknown options (named), or what run_search raises.
    """
    from ser_mlflow.config import parse_feature_sets
    from ser_mlflow.data.fingerprint import corpus_fingerprint
    from ser_mlflow.jobs.pipeline import find_finished, make_key

    unknown = sorted(set(opts) - set(CHAIN_OPTIONS))
    if unknown:
        raise ValueError(f"search step: unknown options {unknown}; expected some of "
                         f"{list(CHAIN_OPTIONS)} (training options belong under `train`)")
    kw = dict(opts)
    if "feature_sets" in kw:
        base = replace(base, feature_sets=parse_feature_sets(kw.pop("feature_sets")))
    params = {**base.to_params(), **{k: v for k, v in kw.items() if k != "resume"}}
    key = make_key("search", params, corpus_fingerprint(base.data_root))
    if not force and (rid := find_finished("ser.step_key", key)):
        print(f"[search] reusing finished search run {rid} (same options, code and data)")
        tags = tracking.get_run(rid).data.tags
        return SearchResult(
            study_name=tags.get(TAG_STUDY, ""), storage=tags.get("ser.optuna_storage", ""),
            parent_run_id=rid, objective=tags.get("ser.objective", ""),
            sampler=tags.get("ser.sampler", ""), keys=[], best_run_id=tags.get("best_run"),
        )
    kw.setdefault("study_name", f"chain-{key[:12]}")
    return run_search(base, extra_tags={"ser.step_key": key}, progress=False, **kw)


# --------------------------------------------------------------------------- worker entry


def run_worker(
    *, storage: str, study_name: str, search_run_id: str, index: int, echo: Echo = print
) -> int:
    """Join a running search as one more worker; return the number of trials it ran.

    Everything else (training settings, sampler, objective, deadline) comes from the study,
    where the search stored it, so workers on other machines need no other options.

    Raises:
        ValueError: unknown study or search run.
    """
    from ser_mlflow._quiet import import_tensorflow_quietly

    names = optuna.study.get_all_study_names(storage)
    if study_name not in names:
        raise ValueError(f"study_name: no study {study_name!r} in {mask_url(storage)}")
    probe = optuna.load_study(study_name=study_name, storage=storage)
    raw = probe.user_attrs.get(f"{STUDY_SPEC_PREFIX}{search_run_id}")
    if raw is None:
        raise ValueError(f"search_run_id: no search {search_run_id} in study {study_name!r}")
    spec = SearchSpec.from_json(raw)
    rdb = open_storage(
        storage, heartbeat_interval=spec.heartbeat_interval, grace_period=spec.grace_period
    )
    study = optuna.load_study(
        study_name=study_name,
        storage=rdb,
        sampler=make_sampler(spec.sampler, _sampler_seed(spec.seed, probe, index)),
        pruner=make_pruner(spec.prune, spec.warmup_epochs),
    )
    import_tensorflow_quietly()
    data = prepare(spec.config)
    worker = Worker(
        study, spec, data, search_run_id=search_run_id,
        budgeted=spec.n_trials is not None, echo=echo,
    )
    keys = worker.keys
    return worker.run_until_empty(lambda o: echo(f"[worker {index}] {_trial_line(o, keys)}"))


def _main(argv: Sequence[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(
        prog="python -m ser_mlflow.search.study",
        description="Join a running ser-mlflow search as a worker (storage URL from "
        f"${STORAGE_ENV} or --storage).",
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("worker")
    w.add_argument("--storage", default=os.environ.get(STORAGE_ENV))
    w.add_argument("--study-name", required=True)
    w.add_argument("--search-run-id", required=True)
    w.add_argument("--index", type=int, default=1)
    args = ap.parse_args(argv)
    if not args.storage:
        ap.error(f"no storage: set ${STORAGE_ENV} or pass --storage")
    os.environ.pop("MLFLOW_RUN_ID", None)
    tracking.configure()
    previous = signal.signal(signal.SIGTERM, tracking.sigterm_to_interrupt)
    try:
        with _quiet_libraries():
            n = run_worker(
                storage=args.storage, study_name=args.study_name,
                search_run_id=args.search_run_id, index=args.index,
                echo=lambda s: print(s, flush=True),
            )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the running trial was ended KILLED and told FAIL", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(f"[worker {args.index}] done: {n} trial(s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_main())
