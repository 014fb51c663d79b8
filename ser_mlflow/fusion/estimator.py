"""The sklearn-style estimator ``MultistageSVRFusion`` (see the package docstring)."""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GroupKFold
from sklearn.utils.validation import check_is_fitted, validate_data
from threadpoolctl import threadpool_limits

from ser_mlflow.fusion.engine import Engine, Run, StageModel, predict_stage
from ser_mlflow.fusion.gram import Bank, Sums
from ser_mlflow.fusion.params import (
    CHOICES,
    STAGE_INPUTS,
    Context,
    FusionParams,
    Protocol,
    Selection,
    Solver,
    StageInputs,
    Windows,
    check_choice,
    check_choice_options,
    check_grid,
    check_n_splits,
    check_selection,
    check_windows,
)
from ser_mlflow.fusion.recipes import FLAGS_RECIPE, RECIPES, check_recipes, recipe_names
from ser_mlflow.fusion.selection import Choice, Selector
from ser_mlflow.fusion.windows import group_codes
from ser_mlflow.scoring.metrics import ccc

# --------------------------------------------------------------------------- estimator


class MultistageSVRFusion(RegressorMixin, BaseEstimator):
    """Multistage late fusion: per stage, one context-window linear SVR per attribute.

    Args:
        n_stages: number of stages; stage s+1 gets the original inputs plus the outputs
            of stage s (all attributes), windowed like the inputs.
        contexts: context reaches k to choose from, per attribute and stage.
        complexities: SVR C values to choose from, per attribute and stage.
        protocol: ``"cv"``: within the training frames, k and C are chosen on out-of-fold
            CCC with folds grouped by recording, and the chosen models are refit on all
            training frames. The reported scores come from running that whole procedure
            once per outer fold on the other folds and scoring the held-out fold (nested;
            see the module docstring); ``predict`` uses the procedure fitted on all
            frames. ``"paper"``: fit, choose and score on the same frames (in-sample), as
            published.
        n_splits: folds (recordings grouped) for ``protocol="cv"``; at least 3 so that the
            nested inner level still has two folds. With ``groups=None`` (one recording)
            the folds are contiguous blocks of frames.
        solver: ``"exact"`` solves the SVR primal to its optimum for the whole grid from
            per-fold Gram matrices: in closed form for the squared loss, by ADMM for the
            absolute loss. ``"liblinear"`` fits ``sklearn.svm.LinearSVR`` (dual coordinate
            descent) per grid point, the published solver (slow).
        loss: LinearSVR loss (epsilon = 0): ``"squared_epsilon_insensitive"`` (squared
            error, seconds per stage) or ``"epsilon_insensitive"`` (absolute error, the
            published loss).
        max_iter, tol: liblinear's stopping rule (the published script used the default
            1000 iterations and stopped unconverged); ``solver="exact"`` ignores them.
        context: ``"frames"`` (paper) uses every frame of the window as features;
            ``"mean"`` uses the centre frame and the window mean, 2p instead of (2k+1)p
            columns, which generalises better across recordings.
        windows: ``"clean"``: frames t-k..t+k of the frame's own recording, edges
            repeating its first/last frame. ``"published"``: the AVEC ``fuse_results.py``
            windows, offsets -(k-1)..k-1 with the centre frame three times, crossing
            recording boundaries in the order the frames are stacked while fitting (within
            each fold under cv) and per recording when predicting. Needs
            ``context="frames"`` and k >= 1. Under ``protocol="paper"``, the reported
            predictions are the per-recording ones (what the published files hold).
        calibrate: rescale each SVR's output so that its mean and std match the target's
            on the frames it was fitted on (in-fold under cv). A squared-error fit shrinks
            its output's variance and CCC punishes that; off reproduces the paper.
        input_selection: columns each attribute's SVR reads: ``"all"`` (paper: every
            system's prediction of every attribute), ``"same"`` (only the predictions of
            that attribute, and the previous stage's output for it; needs X laid out
            system-major, M blocks of A columns, as ``stack_recordings`` writes it) or
            ``"auto"`` (chosen per attribute and stage like k and C). One value for all
            attributes or one per attribute, e.g. ``("same", "same", "all")``.
        stage_inputs: what the next stage is trained on under cv: ``"oof"`` the
            out-of-fold outputs (stacking) or ``"insample"`` the outputs of the stage
            refit on all training frames, which is what it sees at predict time.
            Out-of-fold outputs carry each fold's label mean through the fold models'
            intercepts, which a later stage learns to exploit and which does not carry
            over to new recordings (measured: liking falls at stage 2).
        n_jobs: parallel threads for the outer folds of ``protocol="cv"`` and for
            ``solver="liblinear"`` fits. Fitting runs with one BLAS thread per task:
            multi-threaded LAPACK on these systems was 3-10x slower on a shared 2-core
            machine. The one exception: under ``protocol="paper"`` the absolute loss's
            products with the frames (nothing else runs then) use ``n_jobs`` threads.
        recipes: under ``protocol="cv"``, the recipes to choose among per outer fold and
            attribute by an inner cross-validation grouped by recording (see
            ``RECIPES``): ``"auto"`` (``AUTO_RECIPES``; those reading frame windows only under
            ``windows="published"``, those reading one attribute's columns only when X is
            laid out system-major with more than one attribute; when none is left, the
            estimator's own parameters), a sequence of names, or
            None: one recipe, the estimator's own ``context``, ``calibrate``,
            ``input_selection`` and ``stage_inputs``. ``protocol="paper"`` always uses its
            own parameters (the published behaviour).
        prune_stages: under ``protocol="cv"``, ``n_stages`` is a maximum: stage s+1 is
            fitted and kept for an attribute only while the inner cross-validation scores
            it above stage s by more than ``min_stage_gain``. With ``recipes=None`` and
            ``prune_stages=False`` the fit is the fixed-recipe procedure of before (no
            inner choice).
        min_stage_gain: the inner-CV CCC gain a further stage must exceed to be kept.
            Why not 0: on the AVEC set, keeping stages on inner gains of a few thousandths
            cost 0.02-0.03 CCC out of fold (valence, liking; at most 5 stages measured
            0.595 / 0.572 / 0.160 against 0.595 / 0.594 / 0.194 with one stage).
        random_state: seed of LinearSVR's coordinate descent (liblinear only; the fits
            run in separate processes, so the seed fixes the result for any ``n_jobs``).
        verbose: progress lines on stdout: 1, one per stage of the fit on all frames; 2,
            also one per context reach of it and one per stage of each outer fold (the
            published solver takes tens of minutes per stage).

    Attributes:
        stages_: per stage, per attribute, the ``StageModel`` refit on all frames (None
            beyond the stages an attribute kept).
        chosen_: per stage, per attribute, the chosen ``(k, C)`` (None beyond the stages
            kept).
        chosen_inputs_: per stage, per attribute, the chosen ``input_selection``.
        recipes_: per attribute, the recipe of the final model (``"flags"``: the
            estimator's own parameters).
        stages_kept_: per attribute, the stages the final model uses.
        fold_choices_: under cv with a recipe choice, per outer fold and attribute a dict
            with the recipe, the stages kept and the inner CCC of every recipe and stage.
        final_choice_: the same for the final model (its inner folds are the outer folds).
        stage_scores_: CCC per stage and attribute (n_stages, A): nested out-of-fold under
            cv, in-sample under paper. With a recipe choice, row m is the fusion with at
            most m+1 stages (recipe and stages chosen per outer fold).
        selection_scores_: the CCC each choice was made on (n_stages, A): out-of-fold over
            all frames under cv (honest for stage 1, optimistic later), in-sample under
            paper.
        grid_scores_: CCC of every grid point (n_stages, n_contexts, n_C, A) as used for
            the choice of the final models.
        stage_predictions_: per stage the fused frames (n_stages, n_frames, A) in input
            order, scored in ``stage_scores_``: nested out-of-fold under cv (honest devel
            predictions), in-sample under paper.
        n_features_in_: number of input columns.
        n_outputs_: number of attributes A.
        stage_seconds_: seconds spent on each stage (n_stages,), summed over the procedure
            on all frames and, under cv, the outer folds (with ``n_jobs`` > 1 these overlap
            in wall time); stage 1 includes the windows and Gram blocks of the inputs.
        n_iter_: most iterations of any fit: liblinear passes (reaching ``max_iter``
            means it stopped unconverged, as in the published script), ADMM iterations for
            the exact absolute loss, 1 for the squared loss (one solve).
    """

    def __init__(
        self,
        *,
        n_stages: int = 5,
        contexts: Sequence[int] = (11, 13, 15, 17, 19),
        complexities: Sequence[float] = (0.001, 0.01, 0.1, 1.0),
        protocol: Protocol = "cv",
        n_splits: int = 5,
        solver: Solver = "exact",
        loss: str = "squared_epsilon_insensitive",
        max_iter: int = 1000,
        tol: float = 1e-4,
        context: Context = "frames",
        windows: Windows = "clean",
        calibrate: bool = False,
        input_selection: Selection = "all",
        stage_inputs: StageInputs = "oof",
        n_jobs: int | None = None,
        recipes: str | Sequence[str] | None = "auto",
        prune_stages: bool = True,
        min_stage_gain: float = 0.01,
        random_state: int | None = 0,
        verbose: int = 0,
    ) -> None:
        self.n_stages = n_stages
        self.contexts = contexts
        self.complexities = complexities
        self.protocol = protocol
        self.n_splits = n_splits
        self.solver = solver
        self.loss = loss
        self.max_iter = max_iter
        self.tol = tol
        self.context = context
        self.windows = windows
        self.calibrate = calibrate
        self.input_selection = input_selection
        self.stage_inputs = stage_inputs
        self.n_jobs = n_jobs
        self.recipes = recipes
        self.prune_stages = prune_stages
        self.min_stage_gain = min_stage_gain
        self.random_state = random_state
        self.verbose = verbose

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags

    # ------------------------------------------------------------------ validation

    def _check_params(self) -> tuple[np.ndarray, np.ndarray]:
        """Every parameter checked before any work; returns the grid (ks, Cs)."""
        ks, Cs = check_grid(self.n_stages, self.contexts, self.complexities)
        for name, allowed in CHOICES.items():
            check_choice(name, getattr(self, name), allowed)
        check_windows(self.windows, self.context, ks, self.contexts)
        check_selection(self.input_selection)
        check_choice("stage_inputs", self.stage_inputs, STAGE_INPUTS)
        check_recipes(self.recipes, self.windows)
        check_choice_options(self.min_stage_gain, self.prune_stages)
        if self.protocol == "cv":
            check_n_splits(self.n_splits)
        return ks, Cs

    def _params(self, n_out: int) -> FusionParams:
        """The record one engine runs with (parameters already checked)."""
        return FusionParams(
            n_stages=int(self.n_stages), protocol=self.protocol, solver=self.solver,
            loss=self.loss, max_iter=self.max_iter, tol=self.tol, context=self.context,
            windows=self.windows, calibrate=bool(self.calibrate),
            selection=tuple(self._selection_per_attribute(n_out)),
            stage_inputs=self.stage_inputs, n_jobs=self.n_jobs,
            random_state=self.random_state, verbose=int(self.verbose),
        )  # fmt: skip

    def _folds(self, codes: np.ndarray, grouped: bool) -> list[np.ndarray]:
        n = codes.shape[0]
        if self.protocol == "paper":
            return [np.arange(n)]
        if not grouped:
            if n < self.n_splits:
                raise ValueError(
                    f"protocol='cv' needs at least n_splits={self.n_splits} frames, "
                    f"got n_samples={n}"
                )
            # one recording: contiguous blocks, as shuffled frames would leak through the
            # autocorrelation of neighbouring frames
            return np.array_split(np.arange(n), self.n_splits)
        n_groups = int(codes.max()) + 1
        if n_groups < self.n_splits:
            raise ValueError(
                f"protocol='cv' needs at least n_splits={self.n_splits} recordings "
                f"(distinct groups), got {n_groups}"
            )
        splitter = GroupKFold(n_splits=self.n_splits)
        return [np.sort(test) for _, test in splitter.split(codes, groups=codes)]

    def _selection_per_attribute(self, n_out: int) -> list[str]:
        if isinstance(self.input_selection, str):
            return [self.input_selection] * n_out
        sels = [str(v) for v in self.input_selection]
        if len(sels) != n_out:
            raise ValueError(
                f"input_selection: expected one value per attribute ({n_out}), got {sels!r}"
            )
        return sels

    # ------------------------------------------------------------------ fit / predict

    def fit(self, X: Any, y: Any, groups: Any = None) -> MultistageSVRFusion:
        """Fit all stages.

        Args:
            X: system predictions per frame, (n_frames, M*A) (any column layout works).
            y: gold labels (n_frames, A) or (n_frames,).
            groups: recording id per frame; None means one recording. Recordings may be
                interleaved; frames of one recording are taken in their order of
                appearance.

        Returns:
            self.

        Raises:
            ValueError: bad parameters, NaN/inf, mismatched lengths, too few recordings
                for the folds.
        """
        ks, Cs = self._check_params()
        X, Y, y_ndim = self._validate_xy(X, y)
        codes = group_codes(groups, X.shape[0])
        folds = self._folds(codes, grouped=groups is not None)
        perm = np.concatenate(folds)  # rows in fold order: each fold is one block
        inv = np.empty_like(perm)
        inv[perm] = np.arange(perm.size)
        bounds = np.cumsum([0] + [f.size for f in folds])
        in_sample = self.protocol == "paper"
        names = self._recipe_names(X.shape[1], Y.shape[1])
        choose = not in_sample and (self.recipes is not None or bool(self.prune_stages))
        # liblinear fits run in processes (see Engine._liblinear); folds stay in this one
        outer_jobs = 1 if self.solver == "liblinear" else self.n_jobs
        self._y_ndim = y_ndim
        self.n_outputs_ = Y.shape[1]
        # One BLAS thread per task: multi-threaded LAPACK on these ~1000-column systems
        # ran 3-10x slower on a shared 2-core machine; parallelism comes from n_jobs.
        with threadpool_limits(limits=1, user_api="blas"), warnings.catch_warnings():
            # liblinear warns once per unconverged fit (dozens); one summary follows
            warnings.simplefilter("ignore", ConvergenceWarning)
            if choose:
                n_iter = self._fit_choice(
                    names, X[perm], Y[perm], codes[perm], bounds, ks, Cs, inv, outer_jobs
                )
            else:
                n_iter = self._fit_fixed(X, Y, codes, perm, bounds, ks, Cs, outer_jobs)
        if self.solver == "liblinear" and n_iter >= self.max_iter:
            warnings.warn(
                f"LinearSVR stopped at max_iter={self.max_iter} passes before converging (the "
                "published script stopped so at its default 1000): the scores are those of "
                "unconverged fits",
                ConvergenceWarning,
                stacklevel=2,
            )
        self.n_iter_ = n_iter
        return self

    def _fixed_scores(
        self, runs: list[Run], X: np.ndarray, Y: np.ndarray, codes: np.ndarray, perm: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Predictions (n_stages, n, A) in fold order and CCC per stage: in-sample under
        paper (per recording under published windows), else the outer folds' held-out."""
        final, A = runs[0], Y.shape[1]
        in_sample = self.protocol == "paper"
        if in_sample and self.windows == "published":
            # per-recording windows, as the published files
            self.stages_: list[list[StageModel | None]] = [[*m] for m in final.models]
            preds = np.stack(self.stage_outputs(X, codes))
            scores = np.array([[ccc(p[:, a], Y[:, a]) for a in range(A)] for p in preds])
        elif in_sample:
            preds = np.stack(final.train_out)
            scores = np.stack(final.best)
        else:
            # outer fold f's held-out predictions; blocks are in row order
            preds = np.concatenate([np.stack(r.test_out) for r in runs[1:]], axis=1)
            scores = np.array(
                [[ccc(preds[s, :, a], Y[perm, a]) for a in range(A)] for s in range(self.n_stages)]
            )
        return preds, scores

    def _validate_xy(self, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray, int]:
        """X and y as float64 arrays, y two-dimensional, and y's own number of dims."""
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True, dtype=np.float64)
        Y = np.asarray(y, dtype=np.float64)
        y_ndim = Y.ndim
        if Y.ndim == 1:
            Y = Y[:, None]
        if set(self._selection_per_attribute(Y.shape[1])) != {"all"} and X.shape[1] % Y.shape[1]:
            raise ValueError(
                f"input_selection={self.input_selection!r} needs X columns laid out as "
                f"systems x {Y.shape[1]} attributes (system-major), but X has "
                f"{X.shape[1]} columns"
            )
        return X, Y, y_ndim

    def _fit_fixed(
        self,
        X: np.ndarray,
        Y: np.ndarray,
        codes: np.ndarray,
        perm: np.ndarray,
        bounds: np.ndarray,
        ks: np.ndarray,
        Cs: np.ndarray,
        outer_jobs: int | None,
    ) -> int:
        """The estimator's own recipe at every stage (paper, or cv without a choice): the
        procedure on all frames and, under cv, once per outer fold; sets the fitted
        attributes and returns the most iterations of any fit."""
        started = time.perf_counter()
        blocks = list(range(bounds.size - 1))
        in_sample = self.protocol == "paper"
        engine = Engine(self._params(Y.shape[1]), X[perm], Y[perm], codes[perm], bounds, ks, Cs)
        setup = time.perf_counter() - started

        def task(f: int | None) -> Run:
            if f is None:  # the procedure on all frames: the fitted models
                return engine.run(blocks, [], in_sample=in_sample, keep_models=True)
            rest = [b for b in blocks if b != f]
            return engine.run(rest, [f], in_sample=False, keep_models=False)

        outer: list[int | None] = [] if in_sample else list(blocks)
        runs = Parallel(n_jobs=outer_jobs, prefer="threads")(
            delayed(task)(f) for f in [None, *outer]
        )
        final = runs[0]
        A = Y.shape[1]
        self.recipes_ = [FLAGS_RECIPE] * A
        self.stages_kept_ = [self.n_stages] * A
        self.pipelines_: dict[str, tuple[str, list[list[StageModel]]]] = {
            FLAGS_RECIPE: (self.context, final.models)
        }
        self.fold_choices_: list[list[dict[str, Any]]] = []
        self.final_choice_: list[dict[str, Any]] = []
        preds, scores = self._fixed_scores(runs, X, Y, codes, perm)
        self.stages_ = final.models
        self.chosen_: list[list[tuple[int, float] | None]] = [
            [(k, C) for _, k, C in stage] for stage in final.chosen
        ]
        self.chosen_inputs_: list[list[str | None]] = [
            [sel for sel, _, _ in stage] for stage in final.chosen
        ]
        self.grid_scores_ = np.stack(final.scores)
        self.selection_scores_ = np.stack(final.best)
        self.stage_scores_ = scores
        inv = np.empty_like(perm)
        inv[perm] = np.arange(perm.size)
        self.stage_predictions_ = preds[:, inv]
        seconds = np.sum([r.seconds for r in runs], axis=0)
        seconds[0] += setup
        self.stage_seconds_ = seconds
        return int(engine.n_iter)

    def predict(self, X: Any, groups: Any = None) -> np.ndarray:
        """Fused predictions of the last stage.

        Args:
            X: system predictions per frame, columns as in ``fit``.
            groups: recording id per frame (None: one recording).

        Returns:
            (n_frames, A), or (n_frames,) when ``fit`` got a 1-D y.

        Raises:
            sklearn.exceptions.NotFittedError: before ``fit``.
            ValueError: wrong number of columns, NaN/inf, mismatched groups.
        """
        check_is_fitted(self, "stages_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        codes = group_codes(groups, X.shape[0])
        out = self.stage_outputs(X, codes)[-1]
        return out[:, 0] if self._y_ndim == 1 else out

    def stage_outputs(self, X: np.ndarray, codes: np.ndarray) -> list[np.ndarray]:
        """Outputs (n, A) of every stage for validated X and integer recording codes.

        Each attribute comes from its recipe's pipeline; beyond the stages it kept, an
        attribute repeats its last kept stage.
        """
        check_is_fitted(self, "pipelines_")
        per: dict[str, list[np.ndarray]] = {}
        for name, (context, stages) in self.pipelines_.items():
            outs: list[np.ndarray] = []
            inputs = X
            for models in stages:
                outs.append(predict_stage(models, inputs, codes, context))
                inputs = np.hstack((X, outs[-1]))
            per[name] = outs
        rows = []
        for m in range(max(self.stages_kept_)):
            out = np.empty((X.shape[0], self.n_outputs_))
            for a, (name, kept) in enumerate(zip(self.recipes_, self.stages_kept_, strict=True)):
                out[:, a] = per[name][min(m + 1, kept) - 1][:, a]
            rows.append(out)
        return rows

    # ------------------------------------------------------------------ recipe choice

    def _recipe_names(self, p: int, n_out: int) -> list[str]:
        """The candidate recipes of a cv fit on p columns and n_out attributes."""
        return recipe_names(self.recipes, self.windows, p, n_out)

    def _recipe_estimator(self, name: str) -> MultistageSVRFusion:
        """The parameters one recipe's engine runs with."""
        if name == FLAGS_RECIPE:
            return self
        est = clone(self)
        est.set_params(stage_inputs="insample", **RECIPES[name])
        return est

    def _fit_choice(
        self,
        names: list[str],
        X: np.ndarray,
        Y: np.ndarray,
        codes: np.ndarray,
        bounds: np.ndarray,
        ks: np.ndarray,
        Cs: np.ndarray,
        inv: np.ndarray,
        outer_jobs: int | None,
    ) -> int:
        """Recipe and stages chosen per outer fold by an inner grouped CV (rows in fold
        order); sets the fitted attributes and returns the most iterations of any fit."""
        A = Y.shape[1]
        blocks = list(range(bounds.size - 1))
        banks: dict[str, tuple[Bank, list[Sums]]] = {}
        engines = {
            n: Engine(self._recipe_estimator(n)._params(A), X, Y, codes, bounds, ks, Cs, banks)
            for n in names
        }
        selector = Selector(
            engines, self.n_stages, bool(self.prune_stages), float(self.min_stage_gain)
        )

        def outer(f: int) -> Choice:
            choice = selector.choose([b for b in blocks if b != f], [f])
            if self.verbose:
                picks = ", ".join(
                    f"{r}/{st}" for r, st in zip(choice.recipe[-1], choice.stage[-1], strict=True)
                )
                Engine._say(f"outer fold {f + 1}/{len(blocks)}: recipe/stages {picks}")
            return choice

        folds = Parallel(n_jobs=outer_jobs, prefer="threads")(delayed(outer)(f) for f in blocks)
        self._set_chosen(selector, folds, Y, inv)
        return max(e.n_iter for e in engines.values())

    def _set_chosen(
        self, selector: Selector, folds: list[Choice], Y: np.ndarray, inv: np.ndarray
    ) -> None:
        """The fitted attributes of a recipe choice: the final model's recipes, stages
        and models (its inner folds are the outer folds), and the outer folds' scores."""
        A = Y.shape[1]
        engines = selector.engines
        blocks = list(range(next(iter(engines.values())).bounds.size - 1))
        final = selector.choose(blocks, [])
        need: dict[str, int] = {}
        for name, st in zip(final.recipe[-1], final.stage[-1], strict=True):
            need[name] = max(need.get(name, 0), st)
        self.pipelines_ = {
            name: (
                engines[name].params.context,
                selector.get(name, blocks, [], keep_models=True).upto(st).models[:st],
            )
            for name, st in need.items()
        }
        self.recipes_ = list(final.recipe[-1])
        self.stages_kept_ = [int(v) for v in final.stage[-1]]
        runs = {name: self.pipelines_[name][1] for name in need}
        depth = max(self.stages_kept_)
        self.stages_ = [
            [
                runs[self.recipes_[a]][s][a] if s < self.stages_kept_[a] else None
                for a in range(A)
            ]
            for s in range(depth)
        ]
        self.chosen_ = [
            [None if m is None else (m.k, m.C) for m in st] for st in self.stages_
        ]
        self.chosen_inputs_ = [
            [None if m is None else m.inputs for m in st] for st in self.stages_
        ]
        self._set_choice_scores(selector, final, folds, Y, inv)

    def _set_choice_scores(
        self,
        selector: Selector,
        final: Choice,
        folds: list[Choice],
        Y: np.ndarray,
        inv: np.ndarray,
    ) -> None:
        """Inner and outer scores, the outer folds' predictions and the stage seconds."""
        A = Y.shape[1]
        self.fold_choices_ = [c.summary() for c in folds]
        self.final_choice_ = final.summary()
        self.selection_scores_ = np.array(
            [
                [final.scores[final.recipe[m][a]][final.stage[m][a] - 1, a] for a in range(A)]
                for m in range(self.n_stages)
            ]
        )
        preds = np.concatenate([c.test_out for c in folds], axis=1)  # blocks in row order
        self.stage_scores_ = np.array(
            [[ccc(preds[m, :, a], Y[:, a]) for a in range(A)] for m in range(self.n_stages)]
        )
        self.stage_predictions_ = preds[:, inv]
        seconds = np.zeros(self.n_stages)
        for lazy in selector.passes():
            done = lazy.res.seconds
            seconds[: len(done)] += done
        self.stage_seconds_ = seconds
