"""A worker: claims tickets, trains one nested MLflow run per trial, reports to Optuna.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace

import optuna
from optuna.trial import FrozenTrial, TrialState

from ser_mlflow import tracking
from ser_mlflow.jobs.train import train_in_active_run
from ser_mlflow.nn.fit import Prepared, prepare
from ser_mlflow.search.spec import (
    ATTR_OWNER,
    ATTR_RUN,
    PARAMS,
    STUDY_SPEC_PREFIX,
    TAG_OPTUNA_TRIAL_NUMBER,
    TAG_PARENT,
    TAG_STUDY,
    Echo,
    SearchSpec,
    metric_keys,
)
from ser_mlflow.search.storage import mask_url, open_storage
from ser_mlflow.search.tickets import (
    _fail_stale,
    _sampler_seed,
    _study_id,
    claim_ticket,
    make_pruner,
    make_sampler,
)
from ser_mlflow.settings import LossConfig
from ser_mlflow.tracking.tags import TAG_PRUNED_EPOCH, TAG_TRIAL_NUMBER, TAG_TRIAL_STATE

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
