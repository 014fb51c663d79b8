"""The multistage procedure: fit, choose k and C, and chain the stages over folds."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from joblib import Parallel, delayed, effective_n_jobs

from ser_mlflow.fusion.gram import Bank, Sums, make_bank, ncols, times, with_s, x_sums
from ser_mlflow.fusion.params import FusionParams
from ser_mlflow.fusion.solvers import (
    calibration,
    design,
    lad_grid,
    liblinear_cell,
    ridge_grid,
    shared_banks,
)
from ser_mlflow.fusion.windows import CENTRE_SCALE, features, nested_offsets
from ser_mlflow.scoring.metrics import ccc

# --------------------------------------------------------------------------- stage models


@dataclass(frozen=True)
class StageModel:
    """One fitted attribute model of one stage.

    Attributes:
        k: context reach of its windows.
        C: SVR complexity.
        inputs: ``"all"`` (every input column) or ``"same"`` (only the columns that predict
            this attribute, and the previous stage's output for it).
        columns: indices of the stage input columns it reads; stage inputs are the
            original columns followed by the previous stage's A outputs.
        coef: weights (2k+1, len(columns)) for offsets -k..k under ``context='frames'``,
            (2, len(columns)) for [centre frame, window mean] under ``context='mean'``.
        intercept: bias of the SVR.
        gain, shift: output calibration ``gain * svr + shift`` (1 and 0 when off).
    """

    k: int
    C: float
    inputs: str
    columns: np.ndarray
    coef: np.ndarray
    intercept: float
    gain: float = 1.0
    shift: float = 0.0


def predict_stage(
    models: Sequence[StageModel], inputs: np.ndarray, codes: np.ndarray, context: str
) -> np.ndarray:
    """Outputs (n, A) of one fitted stage."""
    out = np.empty((inputs.shape[0], len(models)), dtype=np.float64)
    cache: dict[tuple[int, bytes], np.ndarray] = {}
    for a, m in enumerate(models):
        key = (m.k, m.columns.tobytes())
        if key not in cache:
            cache[key] = features(inputs[:, m.columns], codes, m.k, context)
        out[:, a] = m.gain * (cache[key] @ m.coef.reshape(-1) + m.intercept) + m.shift
    return out


@dataclass(frozen=True)
class Unit:
    """Attributes fitted from one column set: all of them ('all') or one ('same')."""

    inputs: str
    attrs: slice
    xsub: np.ndarray | None
    ssub: np.ndarray | None


@dataclass
class UnitFit:
    W: np.ndarray  # (n_C, d, n_attrs), intercept in row 0
    gain: np.ndarray  # (n_C, n_attrs)
    shift: np.ndarray  # (n_C, n_attrs)


@dataclass
class Run:
    """What one pass of the multistage procedure over a set of training folds yields."""

    scores: list[np.ndarray] = field(default_factory=list)  # (n_sel, n_k, n_C, A)
    chosen: list[list[tuple[str, int, float]]] = field(default_factory=list)
    best: list[np.ndarray] = field(default_factory=list)  # (A,)
    train_out: list[np.ndarray] = field(default_factory=list)  # (n_train, A)
    test_out: list[np.ndarray] = field(default_factory=list)  # (n_test, A)
    models: list[list[StageModel]] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)  # wall time of each stage


@dataclass
class _Stage:
    """One stage of one pass: the previous stage's output windows, the fold splits, the
    Gram sums of their training frames and the stage's fits (see ``Engine._fit``)."""

    sbank: Bank | None
    splits: list[tuple[list[int], list[int]]]
    split_sums: list[Sums]
    all_sums: Sums
    memo: dict[tuple[Any, ...], UnitFit] = field(default_factory=dict)


class Engine:
    """The multistage procedure on frames grouped into folds (contiguous row blocks)."""

    def __init__(
        self,
        params: FusionParams,
        X: np.ndarray,
        Y: np.ndarray,
        codes: np.ndarray,
        bounds: np.ndarray,
        ks: np.ndarray,
        Cs: np.ndarray,
        banks: dict[str, tuple[Bank, list[Sums]]] | None = None,
    ) -> None:
        """``banks``: windows and per-fold Gram blocks by context, shared between the
        engines of several recipes (the frame windows of k=19 take ~340 MB on AVEC)."""
        self.params, self.X, self.Y, self.codes = params, X, Y, codes
        self.bounds, self.ks, self.Cs = bounds, ks, Cs
        self.n_out = Y.shape[1]
        self.published = params.windows == "published"
        # published windows cross recordings within the frames fitted together (one fold
        # block, all frames under the paper protocol), as the AVEC script's did
        self.fit_codes = (
            np.repeat(np.arange(bounds.size - 1), np.diff(bounds)) if self.published else codes
        )
        banks = {} if banks is None else banks
        if params.context not in banks:
            xbank = make_bank(X, self.fit_codes, ks, params.context, self.published)
            banks[params.context] = (
                xbank,
                [x_sums(xbank.Z[self.rows(b)], Y[self.rows(b)]) for b in range(bounds.size - 1)],
            )
        self.xbank, self.xsums = banks[params.context]
        # stage-1 fits depend only on the training folds: outer and inner runs share them
        self.cache: dict[tuple[Any, ...], UnitFit] = {}
        self.warm: dict[tuple[Any, ...], tuple[np.ndarray, np.ndarray]] = {}
        self._liblinear_done: dict[tuple[Any, ...], np.ndarray] = {}
        # BLAS threads for the ADMM products: n_jobs when the procedure runs once (paper),
        # else 1 because the outer folds already run in parallel
        self.blas_threads = effective_n_jobs(params.n_jobs) if params.protocol == "paper" else 1
        self.n_iter = 1  # most iterations of any fit; the squared loss is one exact solve
        p, A = X.shape[1], self.n_out
        # allowed column sets per attribute ('auto' lets the grid choose between both)
        self.allowed = [
            {"all", "same"} if sel == "auto" else {sel} for sel in params.selection
        ]
        self.selections = [s for s in ("all", "same") if any(s in al for al in self.allowed)]
        self.units: dict[str, list[Unit]] = {
            "all": [Unit("all", slice(0, A), None, None)],
            "same": [
                Unit("same", slice(a, a + 1), np.arange(a, p, A), np.array([a]))
                for a in range(A)
                if "same" in self.allowed[a]
            ],
        }

    def rows(self, b: int) -> slice:
        return slice(int(self.bounds[b]), int(self.bounds[b + 1]))

    def _rows_of(self, blocks: Sequence[int]) -> np.ndarray:
        return np.concatenate([np.arange(self.bounds[b], self.bounds[b + 1]) for b in blocks])

    def _cols(
        self, k: int, unit: Unit, sbank: Bank | None
    ) -> tuple[slice | np.ndarray, slice | np.ndarray | None]:
        cs = None if sbank is None else sbank.cols(k, unit.ssub)
        return self.xbank.cols(k, unit.xsub), cs

    def _key(self, blocks: Sequence[int], k: int, unit: Unit) -> tuple[Any, ...]:
        return (frozenset(blocks), k, unit.inputs, unit.attrs.start)

    def _memo_of(
        self, sbank: Bank | None, memo: dict[tuple[Any, ...], UnitFit] | None
    ) -> dict[tuple[Any, ...], UnitFit] | None:
        """Where a fit is kept: stage 1 in the engine (every pass shares it), a later stage
        in its pass's ``memo``. ADMM fits are never reused at later stages: each one moves
        the warm start of the next, so skipping one would change later results."""
        if sbank is None:
            return self.cache
        if self.params.solver == "exact" and self.params.loss == "epsilon_insensitive":
            return None
        return memo

    def _fit(
        self,
        sums: Sums,
        blocks: Sequence[int],
        k: int,
        unit: Unit,
        sbank: Bank | None,
        memo: dict[tuple[Any, ...], UnitFit] | None = None,
    ) -> UnitFit:
        """Weights for every C fitted on ``blocks``, kept for reuse (see ``_memo_of``):
        the refit of a chosen grid point on the same frames is then a look-up."""
        key = self._key(blocks, k, unit)
        store = self._memo_of(sbank, memo)
        if store is not None and key in store:
            return store[key]
        cx, cs = self._cols(k, unit, sbank)
        est = self.params
        G, r = sums.system(cx, cs) if est.solver == "exact" or est.calibrate else (None, None)
        rows = self._rows_of(blocks)
        if est.solver == "exact" and est.loss == "squared_epsilon_insensitive":
            assert G is not None and r is not None
            W = ridge_grid(G, r[:, unit.attrs], self.Cs)
        elif est.solver == "exact":
            assert G is not None
            # warm start from the last reach fitted on these frames (ADMM state is per frame)
            wkey = (frozenset(blocks), unit.inputs, unit.attrs.start, sbank is None)
            W, n_iter, self.warm[wkey] = lad_grid(
                design(self.xbank.Z, None if sbank is None else sbank.Z, rows, cx, cs),
                G, self.Y[rows, unit.attrs], self.Cs, self.warm.get(wkey), self.blas_threads,
            )  # fmt: skip
            self.n_iter = max(self.n_iter, n_iter)
        else:
            self._liblinear([(blocks, k, unit)], sbank)
            W = self._liblinear_done.pop(key)
        fit = self._finish(W, G, sums, unit)
        if store is not None:
            store[key] = fit
        return fit

    def _finish(
        self, W: np.ndarray, G: np.ndarray | None, sums: Sums, unit: Unit
    ) -> UnitFit:
        n_attrs = unit.attrs.stop - unit.attrs.start
        if self.params.calibrate:
            assert G is not None
            gain, shift = calibration(G, W, sums.ystats[:, unit.attrs])
        else:
            gain, shift = np.ones((self.Cs.size, n_attrs)), np.zeros((self.Cs.size, n_attrs))
        return UnitFit(W=W, gain=gain, shift=shift)

    def _liblinear(
        self, cells: Sequence[tuple[Sequence[int], int, Unit]], sbank: Bank | None
    ) -> None:
        """Fit every C and attribute of each (blocks, k, unit) cell with the published
        solver in ONE pool of processes, into ``_liblinear_done`` (weights by cell key).

        Why one pool for the whole grid of a stage: fits of one k alone (C x attributes)
        leave a worker idle at the end of every k; here the longest fits (largest C) of
        all k start first. Why processes: liblinear draws its coordinate order from one
        global Mersenne twister per process (sklearn's newrand.h) with the GIL released, so
        fits in threads interleave their draws and random_state no longer fixes the result
        (the published recipe's liking moved 0.189-0.214). Each fit is seeded by
        ``random_state`` alone, so the order and the worker change nothing: the result is
        bitwise that of the sequential run (``n_jobs=1``; tests/test_fusion.py). The
        windows go to the workers once per stage as memory-mapped files, not once per fit.
        """
        est = self.params
        params = {
            "loss": est.loss, "max_iter": est.max_iter, "tol": est.tol,
            "random_state": est.random_state,
        }  # fmt: skip
        jobs = []
        for blocks, k, unit in cells:
            cx, cs = self._cols(k, unit, sbank)
            rows = self._rows_of(blocks)
            for ci in range(self.Cs.size):
                for a in range(unit.attrs.start, unit.attrs.stop):
                    jobs.append((self._key(blocks, k, unit), ci, rows, cx, cs, a))
        # largest C first: those fits run longest, so both workers stay busy to the end
        order = sorted(range(len(jobs)), key=lambda i: -self.Cs[jobs[i][1]])
        zs_full = None if sbank is None else sbank.Z
        with shared_banks(est.n_jobs, self.xbank.Z, zs_full) as (zx, zs):
            done = Parallel(n_jobs=est.n_jobs, backend="loky")(
                delayed(liblinear_cell)(
                    zx, zs, jobs[i][2], jobs[i][3], jobs[i][4], self.Y[jobs[i][2], jobs[i][5]],
                    float(self.Cs[jobs[i][1]]), params,
                )
                for i in order
            )  # fmt: skip
        fits = dict(zip(order, done, strict=True))
        self.n_iter = max(self.n_iter, *(it for _, it in done))
        for blocks, k, unit in cells:
            key = self._key(blocks, k, unit)
            mine = [fits[i][0] for i in range(len(jobs)) if jobs[i][0] == key]
            n_attrs = unit.attrs.stop - unit.attrs.start
            W = np.stack(mine).reshape(self.Cs.size, n_attrs, -1).transpose(0, 2, 1)
            self._liblinear_done[key] = W

    def _prefetch(
        self,
        splits: Sequence[tuple[Sequence[int], Sequence[int]]],
        split_sums: Sequence[Sums],
        sbank: Bank | None,
        memo: dict[tuple[Any, ...], UnitFit],
    ) -> None:
        """Under the published solver, fit the whole grid of a stage at once (``_liblinear``)
        and keep each fit where ``_fit`` will look for it."""
        if self.params.solver != "liblinear":
            return
        store = self._memo_of(sbank, memo)
        assert store is not None
        cells: list[tuple[Sequence[int], int, Unit, Sums]] = []
        seen: set[tuple[Any, ...]] = set()
        for sel in self.selections:
            for unit in self.units[sel]:
                for k in self.ks.tolist():
                    for (fit_blocks, _), sums in zip(splits, split_sums, strict=True):
                        key = self._key(fit_blocks, k, unit)
                        if key not in store and key not in seen:
                            seen.add(key)
                            cells.append((fit_blocks, k, unit, sums))
        if not cells:
            return
        self._liblinear([(b, k, u) for b, k, u, _ in cells], sbank)
        for blocks, k, unit, sums in cells:
            key = self._key(blocks, k, unit)
            cx, cs = self._cols(k, unit, sbank)
            G = sums.system(cx, cs)[0] if self.params.calibrate else None
            store[key] = self._finish(self._liblinear_done.pop(key), G, sums, unit)

    def _apply(
        self, fit: UnitFit, k: int, unit: Unit, b: int, sbank: Bank | None
    ) -> np.ndarray:
        """Outputs (rows of block b, n_C, n_attrs) of every C."""
        n_c, d, n_attrs = fit.W.shape
        cx, cs = self._cols(k, unit, sbank)
        dx = ncols(cx)
        rows = self.rows(b)
        flat = fit.W.transpose(1, 0, 2).reshape(d, n_c * n_attrs)
        out = times(self.xbank.Z[rows], cx, flat[1 : 1 + dx])
        if sbank is not None and cs is not None:
            out += times(sbank.Z[rows], cs, flat[1 + dx :])
        out = out.reshape(-1, n_c, n_attrs) + fit.W[:, 0, :][None]
        return out * fit.gain[None] + fit.shift[None]

    def run(
        self, train: Sequence[int], test: Sequence[int], *, in_sample: bool, keep_models: bool
    ) -> Run:
        """Every stage of :meth:`stages` at once."""
        res = Run()
        for done in self.stages(train, test, in_sample=in_sample, keep_models=keep_models):
            res = done
        return res

    def stages(
        self, train: Sequence[int], test: Sequence[int], *, in_sample: bool, keep_models: bool
    ) -> Iterator[Run]:
        """Fit the stages one by one on the ``train`` folds and predict the ``test`` folds.

        Yields the same growing ``Run`` after each stage, so a caller can stop once a
        further stage no longer pays (``prune_stages``).

        Under ``in_sample`` each stage is fitted, chosen and scored on all training frames
        and hands its in-sample output on (paper). Otherwise the grid point is chosen on
        out-of-fold outputs over the training folds and the chosen models are refit on
        all training folds to predict ``test``; the next stage is trained on the
        out-of-fold outputs (``stage_inputs='oof'``) or on the refit models' in-sample
        outputs (``'insample'``). With a single training fold (the innermost level of the
        recipe choice when ``n_splits=3``) k and C are chosen in-sample on it.
        """
        train, test = list(train), list(test)
        if not train:
            raise ValueError("cross-validation needs at least one training fold")
        one_fold = in_sample or len(train) < 2
        train_rows = self._rows_of(train)
        res = Run()
        S: np.ndarray | None = None  # previous stage's outputs, all frames, fold order
        for stage in range(self.params.n_stages):
            started = time.perf_counter()
            sbank = (
                None
                if S is None
                else make_bank(S, self.fit_codes, self.ks, self.params.context, self.published)
            )
            st = self._stage(train, sbank, one_fold)
            self._prefetch(st.splits, st.split_sums, sbank, st.memo)
            grid = self._grid(st, train_rows.size, stage, keep_models, started)
            scores = self._scores(grid, self.Y[train_rows])
            S, chosen, best, models, test_out = self._choose(
                st, grid, scores, train, test, in_sample=in_sample, keep_models=keep_models
            )
            res.scores.append(scores)
            res.chosen.append(chosen)
            res.best.append(best)
            if in_sample:  # only the paper protocol reports them; spare the memory
                res.train_out.append(S[train_rows])
            res.test_out.append(test_out)
            res.models.append(models)
            res.seconds.append(time.perf_counter() - started)
            if self.params.verbose > 1 or (self.params.verbose and keep_models):
                where = "all frames" if keep_models else f"held-out fold {test[0] + 1}"
                self._say(
                    f"stage {stage + 1}/{self.params.n_stages} on {where} done in "
                    f"{res.seconds[-1]:.1f} s"
                )
            # a suspended pass keeps only S: the recipe choice holds dozens of them
            del sbank, st, grid
            yield res

    def _stage(self, train: list[int], sbank: Bank | None, one_fold: bool) -> _Stage:
        """The fold splits of one stage and the Gram sums of their training frames."""
        block_sums: dict[int, Sums] = {}
        for b in train:
            rows = self.rows(b)
            block_sums[b] = (
                self.xsums[b]
                if sbank is None
                else with_s(self.xsums[b], self.xbank.Z[rows], sbank.Z[rows], self.Y[rows])
            )

        def total(blocks: Sequence[int]) -> Sums:
            out = block_sums[blocks[0]]
            for b in blocks[1:]:
                out = out + block_sums[b]
            return out

        if one_fold:
            splits: list[tuple[list[int], list[int]]] = [(train, train)]
        else:
            splits = [([b for b in train if b != g], [g]) for g in train]
        split_sums = [total(fit_blocks) for fit_blocks, _ in splits]
        all_sums = split_sums[0] if one_fold else total(train)
        return _Stage(sbank, splits, split_sums, all_sums)

    def _grid(
        self, st: _Stage, n_train: int, stage: int, keep_models: bool, started: float
    ) -> np.ndarray:
        """Outputs of every grid point on the evaluation folds of each split:
        (selections, ks, training frames, Cs, A)."""
        ks, Cs = self.ks, self.Cs
        grid = np.full((len(self.selections), ks.size, n_train, Cs.size, self.n_out), np.nan)
        for si, sel in enumerate(self.selections):
            for unit in self.units[sel]:
                for ki, k in enumerate(ks.tolist()):
                    pos = 0
                    for (fit_blocks, eval_blocks), sums in zip(
                        st.splits, st.split_sums, strict=True
                    ):
                        fit = self._fit(sums, fit_blocks, k, unit, st.sbank, st.memo)
                        for b in eval_blocks:
                            out = self._apply(fit, k, unit, b, st.sbank)
                            grid[si, ki, pos : pos + out.shape[0], :, unit.attrs] = out
                            pos += out.shape[0]
                    if self.params.verbose > 1 and keep_models:
                        self._say(
                            f"stage {stage + 1}/{self.params.n_stages}: inputs {sel}, k={k} "
                            f"fitted for {Cs.size} C value{'s' * (Cs.size != 1)} "
                            f"({time.perf_counter() - started:.1f} s into the stage)"
                        )
        return grid

    def _scores(self, grid: np.ndarray, y_train: np.ndarray) -> np.ndarray:
        """CCC of every grid point (selections, ks, Cs, A); NaN where not allowed."""
        scores = np.empty(grid.shape[:2] + (self.Cs.size, self.n_out))
        for idx in np.ndindex(*scores.shape):
            si, ki, ci, a = idx
            allowed = self.selections[si] in self.allowed[a]
            scores[idx] = ccc(grid[si, ki, :, ci, a], y_train[:, a]) if allowed else np.nan
        return scores

    def _choose(
        self,
        st: _Stage,
        grid: np.ndarray,
        scores: np.ndarray,
        train: list[int],
        test: list[int],
        *,
        in_sample: bool,
        keep_models: bool,
    ) -> tuple[np.ndarray, list[tuple[str, int, float]], np.ndarray, list[StageModel], np.ndarray]:
        """Per attribute the best grid point, refit on all training folds where needed.

        Returns the stage outputs on all frames (the next stage's inputs), the choices,
        their scores, the refit models and the ``test`` folds' outputs.
        """
        A = self.n_out
        train_rows = self._rows_of(train)
        insample_inputs = not in_sample and self.params.stage_inputs == "insample"
        n_test = sum(self.rows(b).stop - self.rows(b).start for b in test)
        S_new = np.zeros((self.X.shape[0], A))
        chosen: list[tuple[str, int, float]] = []
        best = np.empty(A)
        models: list[StageModel] = []
        test_out = np.empty((n_test, A))
        for a in range(A):
            flat = scores[..., a].ravel()
            # first best in grid order, as the published strict '>' scan; NaN never wins
            i = int(np.nanargmax(flat)) if np.isfinite(flat).any() else 0
            si, ki, ci = (int(v) for v in np.unravel_index(i, scores.shape[:3]))
            sel, k = self.selections[si], int(self.ks[ki])
            unit = next(u for u in self.units[sel] if u.attrs.start <= a < u.attrs.stop)
            j = a - unit.attrs.start
            chosen.append((sel, k, float(self.Cs[ci])))
            best[a] = flat[i]
            S_new[train_rows, a] = grid[si, ki, :, ci, a]
            if not (test or keep_models or insample_inputs):
                continue
            fit = self._fit(st.all_sums, train, k, unit, st.sbank, st.memo)
            if insample_inputs:
                for b in train:
                    S_new[self.rows(b), a] = self._apply(fit, k, unit, b, st.sbank)[:, ci, j]
            pos = 0
            for b in test:
                out = self._apply(fit, k, unit, b, st.sbank)[:, ci, j]
                S_new[self.rows(b), a] = out
                test_out[pos : pos + out.size, a] = out
                pos += out.size
            if keep_models:
                models.append(self._stage_model(fit, k, ci, j, unit, st.sbank))
        return S_new, chosen, best, models, test_out

    @staticmethod
    def _say(line: str) -> None:
        print(f"[fusion] {line}", flush=True)

    def _stage_model(
        self, fit: UnitFit, k: int, ci: int, j: int, unit: Unit, sbank: Bank | None
    ) -> StageModel:
        """Package one refit model with its weights in the public column order."""
        w = fit.W[ci, :, j]
        p = self.X.shape[1]
        xcols = np.arange(p) if unit.xsub is None else unit.xsub
        dx = ncols(self.xbank.cols(k, unit.xsub))
        parts = [self._natural(w[1 : 1 + dx], k, xcols.size)]
        columns = [xcols]
        if sbank is not None:
            scols = np.arange(self.n_out) if unit.ssub is None else unit.ssub
            parts.append(self._natural(w[1 + dx :], k, scols.size))
            columns.append(p + scols)
        return StageModel(
            k=k,
            C=float(self.Cs[ci]),
            inputs=unit.inputs,
            columns=np.concatenate(columns),
            coef=np.hstack(parts),
            intercept=float(w[0]),
            gain=float(fit.gain[ci, j]),
            shift=float(fit.shift[ci, j]),
        )

    def _natural(self, w: np.ndarray, k: int, width: int) -> np.ndarray:
        """Bank-order weights -> (2k+1, width) for offsets -k..k, or (2, width) for 'mean'."""
        if self.params.context == "mean":
            return w.reshape(2, width).copy()
        reach = k - 1 if self.published else k
        rows = w.reshape(2 * reach + 1, width)
        out = np.zeros((2 * k + 1, width))
        out[nested_offsets(reach) + k] = rows
        if self.published:  # the bank's centre column is sqrt(3) x the frame
            out[k] *= CENTRE_SCALE
        return out
