"""The named fusion recipes a cross-validated fit chooses among."""

from __future__ import annotations

from typing import Any

#: The recipes ``recipes="auto"`` (``AUTO_RECIPES``) chooses among under ``protocol="cv"``,
#: per outer fold and attribute, by an inner cross-validation grouped by recording (k and C
#: are chosen inside each recipe as before). Every recipe trains later stages on the
#: in-sample outputs of the stage refit on all training frames
#: (``stage_inputs="insample"``): out-of-fold outputs carry each fold's label mean through
#: the fold models' intercepts, which a later stage learns and which does not carry over
#: (measured: liking fell at stage 2).
#:
#: - ``paper``: every frame of the +/-k window of every input column (the published method);
#: - ``frames-cal``: the same, output mean and std calibrated in-fold.
#:   Neither is in ``auto``: on the AVEC set a recipe over all 27 columns' frame windows
#:   costs several CPU-minutes of inner fits, more than the rest of the choice together,
#:   and ``paper`` scored below the best single input under cv (0.488 / 0.522 / 0.058);
#: - ``frames-cal-same``: calibrated frame windows of only the columns that predict the
#:   attribute;
#: - ``mean``: centre frame and window mean of every column, not calibrated;
#: - ``mean-cal``: the same, calibrated;
#: - ``mean-cal-same``: centre frame and window mean of the attribute's own columns,
#:   calibrated (with ``mean-cal`` for liking, the hand-tuned recipe of issue #5:
#:   0.595 / 0.590 / 0.214 on the AVEC 2019 devel set).
RECIPES: dict[str, dict[str, Any]] = {
    "paper": {"context": "frames", "calibrate": False, "input_selection": "all"},
    "frames-cal": {"context": "frames", "calibrate": True, "input_selection": "all"},
    "frames-cal-same": {"context": "frames", "calibrate": True, "input_selection": "same"},
    "mean": {"context": "mean", "calibrate": False, "input_selection": "all"},
    "mean-cal": {"context": "mean", "calibrate": True, "input_selection": "all"},
    "mean-cal-same": {"context": "mean", "calibrate": True, "input_selection": "same"},
}
AUTO_RECIPES: tuple[str, ...] = ("frames-cal-same", "mean", "mean-cal", "mean-cal-same")
#: The recipe name of a fit whose recipe is the estimator's own parameters (``recipes=None``).
FLAGS_RECIPE = "flags"


def check_recipes(recipes: Any, windows: str) -> None:
    """``recipes``: None, 'auto' or known names; published windows only frame recipes."""
    if recipes is None or recipes == "auto":
        return
    names = [recipes] if isinstance(recipes, str) else list(recipes)
    unknown = [n for n in names if n not in RECIPES]
    if not names or unknown:
        raise ValueError(
            f"recipes: expected 'auto', None or names from {tuple(RECIPES)}, got {recipes!r}"
        )
    means = [n for n in names if RECIPES[n]["context"] != "frames"]
    if windows == "published" and means:
        raise ValueError(
            f"recipes: windows='published' describes frame windows; {means} read window means"
        )


def recipe_names(recipes: Any, windows: str, p: int, n_out: int) -> list[str]:
    """The candidate recipes of a cv fit on p columns and n_out attributes.

    ``auto`` drops what cannot apply (window means under published windows, '-same'
    recipes without a system-major layout); named recipes that cannot apply are refused.
    """
    if recipes is None:
        return [FLAGS_RECIPE]
    same_ok = n_out > 1 and p % n_out == 0
    if isinstance(recipes, str) and recipes == "auto":
        return _auto_recipes(windows, same_ok)
    names = [recipes] if isinstance(recipes, str) else list(recipes)
    if not same_ok and any(RECIPES[n]["input_selection"] != "all" for n in names):
        raise ValueError(
            f"recipes={recipes!r}: the '-same' recipes need X columns laid out as "
            f"systems x {n_out} attributes (system-major, more than one attribute), but "
            f"X has {p} columns"
        )
    return names


def _auto_recipes(windows: str, same_ok: bool) -> list[str]:
    names = list(AUTO_RECIPES)
    if windows == "published":
        names = [n for n in names if RECIPES[n]["context"] == "frames"]
    if not same_ok:
        names = [n for n in names if RECIPES[n]["input_selection"] == "all"]
    # e.g. published windows on one attribute: no auto recipe applies, so the
    # estimator's own parameters are the one candidate (stages still chosen)
    return names or [FLAGS_RECIPE]
