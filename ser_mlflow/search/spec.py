"""Search settings: the spec a worker reads from the study, the checks on a search's options,
the metric keys of an objective, and the tag and attribute names of a search.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ser_mlflow.settings import TrainConfig
from ser_mlflow.tracking.tags import (
    TAG_STUDY_NAME,
)

Echo = Callable[[str], None]

SAMPLERS: tuple[str, ...] = ("random", "tpe", "nsga2")
OBJECTIVES: tuple[str, ...] = ("mean", "arousal", "valence", "liking", "multi")
PARAMS: tuple[str, ...] = ("alpha", "beta", "gamma")

TAG_OPTUNA_TRIAL_NUMBER = "optuna.trial_number"
TAG_STUDY = TAG_STUDY_NAME
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
        return cls(config=TrainConfig.from_dict(d.pop("config")), **d)


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

    CC about 21: one flat check per rule, each with its own message; nesting them in
    helpers would only hide which combination a message is about.

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
