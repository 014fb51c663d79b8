"""Recipe and stage count chosen by an inner cross-validation grouped by recording."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ser_mlflow.fusion.engine import Engine, Run
from ser_mlflow.scoring.metrics import ccc

# --------------------------------------------------------------------------- recipe choice


@dataclass
class Lazy:
    """One pass of the procedure (``Engine.stages``), advanced only as far as asked."""

    gen: Iterator[Run]
    res: Run = field(default_factory=Run)
    done: int = 0

    def upto(self, stage: int) -> Run:
        while self.done < stage:
            self.res = next(self.gen)
            self.done += 1
        return self.res


@dataclass
class Choice:
    """What an inner cross-validation over some training folds decided.

    ``recipe[m][a]`` and ``stage[m][a]``: for at most m+1 stages, attribute a's recipe and
    the stages it keeps; ``scores[r]``: inner CCC per stage computed (rows) and attribute;
    ``kept[r]``: stages recipe r keeps per attribute; ``test_out``: the held-out folds'
    predictions (n_stages, n_test, A).
    """

    recipe: list[list[str]]
    stage: list[list[int]]
    scores: dict[str, np.ndarray]
    kept: dict[str, np.ndarray]
    test_out: np.ndarray | None = None

    def summary(self) -> list[dict[str, Any]]:
        """Per attribute, the final choice (at most ``n_stages``) and the inner scores."""
        return [
            {
                "recipe": self.recipe[-1][a],
                "stages": int(self.stage[-1][a]),
                "inner_ccc": {
                    r: [round(float(v), 4) for v in sc[:, a]] for r, sc in self.scores.items()
                },
            }
            for a in range(len(self.recipe[-1]))
        ]


class Selector:
    """Recipe and stage count chosen by an inner cross-validation grouped by recording.

    For training folds T, every recipe runs the whole multistage procedure once per fold
    g of T, fitted on T without g and scored on g (that procedure chooses k and C by its
    own inner CV). The pooled out-of-fold CCC of stage s decides: stage s+1 is kept while
    it beats stage s (``prune``), and each attribute takes the recipe with the best score
    at its kept stage. Only T's labels are read, never those of the folds predicted.
    Passes are memoised: the procedure on the outer training folds is both the prediction
    of an outer fold and one inner fold of the final model's choice.
    """

    def __init__(
        self, engines: dict[str, Engine], n_stages: int, prune: bool, min_gain: float
    ) -> None:
        self.engines, self.n_stages, self.prune = engines, n_stages, prune
        self.min_gain = min_gain
        self.memo: dict[tuple[Any, ...], Lazy] = {}
        self.lock = threading.Lock()

    def passes(self) -> list[Lazy]:
        return list(self.memo.values())

    def get(
        self, name: str, train: Sequence[int], test: Sequence[int], keep_models: bool = False
    ) -> Lazy:
        key = (name, tuple(train), tuple(test), keep_models)
        with self.lock:
            if key not in self.memo:
                gen = self.engines[name].stages(
                    list(train), list(test), in_sample=False, keep_models=keep_models
                )
                self.memo[key] = Lazy(gen)
            return self.memo[key]

    def choose(self, train: list[int], test: list[int]) -> Choice:
        eng = next(iter(self.engines.values()))
        y_in = np.concatenate([eng.Y[eng.rows(g)] for g in train])
        scores: dict[str, np.ndarray] = {}
        kept: dict[str, np.ndarray] = {}
        for name in self.engines:
            scores[name], kept[name] = self._inner(name, train, y_in)
        recipe, stage = self._pick(scores, kept, y_in.shape[1])
        choice = Choice(recipe=recipe, stage=stage, scores=scores, kept=kept)
        if test:
            choice.test_out = self._test_out(recipe, stage, train, test, y_in.shape[1])
        return choice

    def _inner(
        self, name: str, train: list[int], y_in: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """One recipe's pooled inner out-of-fold CCC per stage and the stages it keeps."""
        A = y_in.shape[1]
        rows: list[np.ndarray] = []
        keep = np.ones(A, dtype=np.int64)
        improving = np.ones(A, dtype=bool)
        for s in range(1, self.n_stages + 1):
            if s > 1 and self.prune and not improving.any():
                break  # no attribute gains from a further stage: do not fit it
            out = np.concatenate(
                [
                    self.get(name, [b for b in train if b != g], [g]).upto(s).test_out[s - 1]
                    for g in train
                ]
            )
            sc = np.array([ccc(out[:, a], y_in[:, a]) for a in range(A)])
            if s > 1:
                gain = sc - rows[-1]
                better = improving & (gain > self.min_gain) if self.prune else improving
                keep[better] = s
                improving &= better
            rows.append(sc)
        return np.stack(rows), keep

    def _pick(
        self, scores: dict[str, np.ndarray], kept: dict[str, np.ndarray], A: int
    ) -> tuple[list[list[str]], list[list[int]]]:
        """For at most m+1 stages, each attribute's recipe and stages kept."""
        names = list(self.engines)
        recipe: list[list[str]] = []
        stage: list[list[int]] = []
        for m in range(1, self.n_stages + 1):
            rr, ss = [], []
            for a in range(A):
                eff = [min(m, int(kept[n][a])) for n in names]
                vals = np.array([scores[n][e - 1, a] for n, e in zip(names, eff, strict=True)])
                # first best in the documented order; NaN never wins
                i = int(np.nanargmax(vals)) if np.isfinite(vals).any() else 0
                rr.append(names[i])
                ss.append(eff[i])
            recipe.append(rr)
            stage.append(ss)
        return recipe, stage

    def _test_out(
        self,
        recipe: list[list[str]],
        stage: list[list[int]],
        train: list[int],
        test: list[int],
        A: int,
    ) -> np.ndarray:
        """The held-out folds' predictions of the chosen recipes (n_stages, n_test, A)."""
        eng = next(iter(self.engines.values()))
        n_test = sum(eng.rows(b).stop - eng.rows(b).start for b in test)
        out = np.empty((self.n_stages, n_test, A))
        for m in range(self.n_stages):
            for a in range(A):
                st = stage[m][a]
                run = self.get(recipe[m][a], train, test).upto(st)
                out[m, :, a] = run.test_out[st - 1][:, a]
        return out
