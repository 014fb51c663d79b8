"""Multistage late fusion with linear SVRs over context windows (Atmaja & Akagi 2020).

The recipe follows the AVEC 2019 ``fuse_results.py`` and the paper: one LinearSVR per
attribute whose input is every system's prediction of every attribute, each frame widened
with its +/- k neighbours; k and C are picked per attribute from a grid by CCC; stage s+1
sees the original inputs plus stage s's outputs. Two flaws of the published script are
not copied by default (DESIGN section 7): windows never cross a recording boundary (edge
frames repeat that recording's first/last frame) and they hold exactly the 2k+1 frames
t-k..t+k (the script repeats the centre frame three times and reaches only k-1 frames);
``windows='published'`` restores both for reproduction.

Why a closed form instead of liblinear: with epsilon=0 the primal objective of
``LinearSVR(loss='squared_epsilon_insensitive', dual=False)`` is
``0.5*|w|^2 + C*sum((y - Xw - b)^2)`` with the intercept penalised like a weight
(liblinear appends a constant feature). Its minimiser solves ``(G + I/(2C)) w = X'y`` with
``G`` the augmented Gram matrix, so one pass over the frames (``G``) serves every C, every
context width (the windows for k are a column subset of the windows for the largest k when
offsets are ordered 0, -1, +1, -2, +2, ...) and, under cross-validation, every fold (the
training Gram is the sum of the other folds' Grams). A stage of the full grid then costs
one matrix product and a few dozen small solves instead of ~60 unconverged dual
coordinate-descent runs. The published loss, ``epsilon_insensitive`` (absolute error), has
no closed form; ``svr.lad_grid`` solves it exactly by ADMM on the same Gram matrices, with
the products over the frames batched for the whole C grid. ``solver='liblinear'`` keeps
the published solver. Its published scores are those of a fit stopped after 1000 passes,
between the exact absolute-error and the exact squared-error optimum (measured in
``benchmarks/fusion.py``).

Why nested cross-validation: stage s+1 is trained on stage s's outputs. Scoring stage
s+1 out-of-fold while its inputs were produced by models that saw the held-out fold's
labels leaks those labels (on pure noise such a stage 2 scored CCC ~0.7). Under
``protocol='cv'`` the reported scores therefore come from running the whole procedure once
per outer fold on the other folds and scoring the held-out fold.

This package imports neither TensorFlow nor MLflow.
"""


from ser_mlflow.fusion.engine import StageModel
from ser_mlflow.fusion.estimator import MultistageSVRFusion
from ser_mlflow.fusion.params import FusionParams
from ser_mlflow.fusion.recipes import AUTO_RECIPES, FLAGS_RECIPE, RECIPES
from ser_mlflow.fusion.windows import (
    context_windows,
    group_codes,
    split_recordings,
    stack_recordings,
    window_index,
    window_means,
)

__all__ = [
    "AUTO_RECIPES",
    "FLAGS_RECIPE",
    "RECIPES",
    "FusionParams",
    "MultistageSVRFusion",
    "StageModel",
    "context_windows",
    "group_codes",
    "split_recordings",
    "stack_recordings",
    "window_index",
    "window_means",
]
