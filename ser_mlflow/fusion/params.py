"""The fusion settings: allowed values, and the frozen record the engine runs with.

Why a record: the engine reads a dozen settings; handing it the estimator let it reach
for anything (and tied it to sklearn's mutable parameters). ``FusionParams`` is what one
engine run depends on, fixed for its whole run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ser_mlflow.settings import (
    FUSION_CONTEXTS,
    FUSION_LOSSES,
    FUSION_PROTOCOLS,
    FUSION_SELECTIONS,
    FUSION_SOLVERS,
    FUSION_STAGE_INPUTS,
    FUSION_WINDOWS,
)

Protocol = Literal["cv", "paper"]
Solver = Literal["exact", "liblinear"]
Context = Literal["frames", "mean"]
Selection = Literal["all", "same", "auto"] | Sequence[Literal["all", "same", "auto"]]
StageInputs = Literal["oof", "insample"]
Windows = Literal["clean", "published"]

#: The allowed names are declared once, in the settings schema (the fusion command's
#: choices come from the same tuples).
STAGE_INPUTS = FUSION_STAGE_INPUTS


@dataclass(frozen=True)
class FusionParams:
    """What one run of the multistage procedure depends on (see ``MultistageSVRFusion``).

    ``selection`` holds one ``input_selection`` per attribute.
    """

    n_stages: int
    protocol: str
    solver: str
    loss: str
    max_iter: int
    tol: float
    context: str
    windows: str
    calibrate: bool
    selection: tuple[str, ...]
    stage_inputs: str
    n_jobs: int | None
    random_state: int | None
    verbose: int


#: The parameters that take one of a few names, with the names allowed.
CHOICES: dict[str, tuple[str, ...]] = {
    "protocol": FUSION_PROTOCOLS,
    "solver": FUSION_SOLVERS,
    "loss": FUSION_LOSSES,
    "context": FUSION_CONTEXTS,
    "windows": FUSION_WINDOWS,
}


def _is_int(v: Any) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool)


def check_grid(n_stages: Any, contexts: Any, complexities: Any) -> tuple[np.ndarray, np.ndarray]:
    """The stage count and the (k, C) grid, as int64 and float64 arrays."""
    if not _is_int(n_stages) or n_stages < 1:
        raise ValueError(f"n_stages: expected a positive integer, got {n_stages!r}")
    try:
        ks = np.asarray(list(contexts), dtype=np.float64)
        Cs = np.asarray(list(complexities), dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            "contexts and complexities: expected sequences of numbers, got "
            f"{contexts!r} and {complexities!r}"
        ) from None
    if ks.size == 0:
        raise ValueError("contexts: the grid is empty; give at least one context reach k")
    if ks.ndim != 1 or not np.all(np.isfinite(ks)) or np.any(ks != np.round(ks)) or np.any(ks < 0):
        raise ValueError(f"contexts: expected non-negative integers, got {contexts!r}")
    if Cs.size == 0:
        raise ValueError("complexities: the grid is empty; give at least one C > 0")
    if Cs.ndim != 1 or not np.all(np.isfinite(Cs)) or np.any(Cs <= 0):
        raise ValueError(f"complexities: expected finite values C > 0, got {complexities!r}")
    return ks.astype(np.int64), Cs


def check_choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name}: expected one of {allowed}, got {value!r}")


def check_windows(windows: str, context: str, ks: np.ndarray, contexts: Any) -> None:
    """Published windows are frame windows of reach k-1 plus the centre: k >= 1."""
    if windows == "published" and context != "frames":
        raise ValueError(
            f"windows='published' describes frame windows; it needs context='frames', "
            f"got context={context!r}"
        )
    if windows == "published" and np.any(ks < 1):
        raise ValueError(
            f"contexts: windows='published' needs every k >= 1 (reach k-1 plus the "
            f"centre frame three times), got {contexts!r}"
        )


def check_selection(input_selection: Any) -> None:
    sels = [input_selection] if isinstance(input_selection, str) else list(input_selection)
    if not sels or any(sel not in FUSION_SELECTIONS for sel in sels):
        raise ValueError(
            f"input_selection: expected one of {FUSION_SELECTIONS} or one per attribute, "
            f"got {input_selection!r}"
        )


def check_choice_options(min_stage_gain: Any, prune_stages: Any) -> None:
    if not isinstance(min_stage_gain, int | float | np.number) or not (
        0.0 <= float(min_stage_gain) < 1.0
    ):
        raise ValueError(f"min_stage_gain: expected a CCC gain in [0, 1), got {min_stage_gain!r}")
    if not isinstance(prune_stages, bool | np.bool_):
        raise ValueError(f"prune_stages: expected True or False, got {prune_stages!r}")


def check_n_splits(n_splits: Any) -> None:
    if not _is_int(n_splits) or n_splits < 3:
        raise ValueError(
            f"n_splits: expected an integer >= 3 for nested cross-validation, got {n_splits!r}"
        )
