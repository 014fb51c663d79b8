"""The study and its budget as a ticket queue: samplers, pruners, enqueue and claim.

Optuna's ``MaxTrialsCallback`` checks the budget after a trial ends, so two workers
finishing together overshoot it. The search enqueues exactly ``n_trials`` WAITING trials
labelled with its parent run id, and workers claim them with Optuna's atomic WAITING ->
RUNNING transition: each ticket runs once.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Sequence
from typing import Literal

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from ser_mlflow import tracking
from ser_mlflow.search.spec import (
    ATTR_OWNER,
    MEDIAN_STARTUP_TRIALS,
    NSGA2_POPULATION,
    STUDY_FEATURE_SETS,
    STUDY_OBJECTIVE,
)

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
