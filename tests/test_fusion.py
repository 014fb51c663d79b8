"""Tests for ser_mlflow.fusion: windows, the estimator contract, protocols, real data."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.svm import LinearSVR
from sklearn.utils.estimator_checks import check_estimator

from ser_mlflow.fusion import (
    RECIPES,
    MultistageSVRFusion,
    context_windows,
    group_codes,
    split_recordings,
    stack_recordings,
    window_means,
)
from ser_mlflow.scoring.metrics import ccc

DATA = Path(__file__).parents[1] / ".." / "shared" / "data" / "avec2019_ces_devel"
ATTRIBUTES = ("arousal", "valence", "liking")
SMALL = {"contexts": (1, 3), "complexities": (0.01, 1.0)}


def loop_windows(X: np.ndarray, groups: np.ndarray, k: int) -> np.ndarray:
    """The definition, frame by frame: same recording, clipped at its own edges."""
    out = np.empty((X.shape[0], (2 * k + 1) * X.shape[1]))
    for t in range(X.shape[0]):
        members = [i for i in range(X.shape[0]) if groups[i] == groups[t]]
        pos = members.index(t)
        row = []
        for off in range(-k, k + 1):
            j = min(max(pos + off, 0), len(members) - 1)
            row.append(X[members[j]])
        out[t] = np.concatenate(row)
    return out


def avec_contextualise(P: np.ndarray, k: int) -> np.ndarray:
    """AVEC 2019 ``fuse_results.py``'s windows, frame by frame over all rows: the frame,
    then offsets 0..k-1 back, then 0..k-1 ahead, clipped at the first/last row."""
    n = P.shape[0]
    rows = []
    for m in range(n):
        row = [P[m]]
        row += [P[max(0, m - c)] for c in range(k)]
        row += [P[min(n - 1, m + c)] for c in range(k)]
        rows.append(np.concatenate(row))
    return np.array(rows)


def smooth_series(rng: np.random.Generator, n_rec: int, length: int, cols: int) -> np.ndarray:
    """Autocorrelated frames like emotion traces (moving average of white noise)."""
    kernel = np.ones(15) / 15
    parts = []
    for _ in range(n_rec):
        white = rng.normal(size=(length + 14, cols))
        parts.append(np.stack([np.convolve(white[:, c], kernel, "valid") for c in range(cols)], 1))
    return np.vstack(parts)


@pytest.fixture(scope="module")
def toy() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """6 recordings, 3 systems x 2 attributes that carry signal plus noise."""
    rng = np.random.default_rng(1)
    n_rec, length = 6, 60
    y = smooth_series(rng, n_rec, length, 2)
    X = np.hstack([y + 0.8 * smooth_series(rng, n_rec, length, 2) for _ in range(3)])
    groups = np.repeat([f"rec{i}" for i in range(n_rec)], length)
    return X, y, groups


# --------------------------------------------------------------------------- windows


@pytest.mark.parametrize("k", [0, 1, 2, 5])
def test_context_windows_match_loop_with_interleaved_groups(k: int) -> None:
    rng = np.random.default_rng(0)
    # interleaved, unsorted ids, a recording of length 1, one shorter than the window
    groups = np.array(["b", "a", "b", "c", "a", "b", "d", "d", "a", "b", "b", "a"])
    X = rng.normal(size=(groups.size, 3))
    np.testing.assert_array_equal(context_windows(X, groups, k), loop_windows(X, groups, k))


def test_context_windows_edges_repeat_own_recording() -> None:
    X = np.arange(6.0)[:, None]
    got = context_windows(X, np.array([0, 0, 0, 1, 1, 1]), 2)
    # recording 0 = frames 0..2, recording 1 = frames 3..5: never mixed
    np.testing.assert_array_equal(got[0], [0, 0, 0, 1, 2])
    np.testing.assert_array_equal(got[2], [0, 1, 2, 2, 2])
    np.testing.assert_array_equal(got[3], [3, 3, 3, 4, 5])
    np.testing.assert_array_equal(context_windows(X, None, 1)[2], [1, 2, 3])  # one recording


def test_window_means_match_loop() -> None:
    rng = np.random.default_rng(3)
    groups = np.array([2, 2, 1, 2, 1, 1, 1, 3])
    X = rng.normal(size=(8, 2))
    want = loop_windows(X, groups, 2).reshape(8, 5, 2).mean(axis=1)
    np.testing.assert_allclose(window_means(X, group_codes(groups, 8), 2), want)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((np.zeros(5), None, 1), "2-D"),
        ((np.zeros((5, 2)), None, -1), "non-negative"),
        ((np.zeros((5, 2)), np.zeros(4), 1), r"shape \(5,\)"),
        ((np.zeros((3, 2)), np.array([0.0, np.nan, 1.0]), 1), "NaN"),
    ],
)
def test_context_windows_rejects_bad_input(args: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        context_windows(*args)


def test_stack_and_split_recordings_truncate_and_round_trip() -> None:
    golds = {"r2": np.ones((3, 2)), "r1": np.zeros((2, 2))}
    sys_a = {"r1": np.arange(8.0).reshape(4, 2), "r2": np.ones((5, 2))}  # padded
    X, y, groups = stack_recordings(golds, {"a": sys_a, "b": sys_a})
    assert X.shape == (5, 4) and y.shape == (5, 2)
    assert groups.tolist() == ["r1", "r1", "r2", "r2", "r2"]
    np.testing.assert_array_equal(X[:2, :2], [[0, 1], [2, 3]])
    parts = split_recordings(y, groups)
    np.testing.assert_array_equal(parts["r2"], golds["r2"])
    with pytest.raises(ValueError, match="no predictions for recording 'r2'"):
        stack_recordings(golds, {"a": {"r1": sys_a["r1"]}})
    with pytest.raises(ValueError, match="at least 3 frames"):
        stack_recordings(golds, {"a": {"r1": sys_a["r1"], "r2": np.ones((2, 2))}})


# --------------------------------------------------------------------------- estimator


def _check_params() -> list[dict]:
    return [
        {"protocol": "paper", "n_stages": 2, **SMALL},
        {"protocol": "cv", "n_splits": 3, "n_stages": 2, **SMALL},
        {
            "protocol": "cv",
            "n_splits": 3,
            "n_stages": 2,
            "context": "mean",
            "calibrate": True,
            "stage_inputs": "insample",
            **SMALL,
        },
        {"protocol": "paper", "windows": "published", "loss": "epsilon_insensitive", **SMALL},
        {"protocol": "cv", "n_splits": 3, "n_stages": 2, "windows": "published", **SMALL},
        {"protocol": "cv", "n_splits": 3, "n_stages": 2, "recipes": None, **SMALL},
        {"n_splits": 3, "n_stages": 2, **SMALL},  # the default: recipe and stages chosen
    ]


# Windows join each frame with its neighbouring rows, so a frame's prediction depends on
# the rows around it: predicting a subset or a permutation of the rows legitimately changes
# it. These two checks assume independent rows and do not apply to a sequence model.
SEQUENCE_MODEL_XFAIL = {
    "check_methods_subset_invariance": "windows read neighbouring rows (sequence model)",
    "check_methods_sample_order_invariance": "windows read neighbouring rows (sequence model)",
}


@pytest.mark.parametrize("params", _check_params())
def test_check_estimator(params: dict) -> None:
    check_estimator(
        MultistageSVRFusion(**params),
        expected_failed_checks=SEQUENCE_MODEL_XFAIL,
        on_skip=None,
    )


def test_predict_before_fit_raises() -> None:
    with pytest.raises(NotFittedError):
        MultistageSVRFusion().predict(np.zeros((3, 3)))


@pytest.mark.parametrize(
    ("params", "X_bad", "groups_bad", "match"),
    [
        ({}, "nan", None, "NaN"),
        ({}, None, "short", "one recording id per frame"),
        ({"n_stages": 0}, None, None, "n_stages: expected a positive integer"),
        ({"contexts": ()}, None, None, "contexts: the grid is empty"),
        ({"complexities": ()}, None, None, "complexities: the grid is empty"),
        ({"complexities": (0.1, -1.0)}, None, None, "C > 0"),
        ({"contexts": (1.5,)}, None, None, "non-negative integers"),
        ({"protocol": "insample"}, None, None, "protocol: expected one of"),
        ({"loss": "absolute"}, None, None, "loss: expected one of"),
        ({"solver": "gram"}, None, None, "solver: expected one of"),
        ({"windows": "avec"}, None, None, "windows: expected one of"),
        ({"windows": "published", "context": "mean"}, None, None, "needs context='frames'"),
        ({"windows": "published", "contexts": (0, 2)}, None, None, "every k >= 1"),
        ({"n_splits": 2}, None, None, "n_splits: expected an integer >= 3"),
        ({"n_splits": 7}, None, None, "at least n_splits=7 recordings"),
        ({"input_selection": "same"}, "odd", None, "system-major"),
        ({"context": "summary"}, None, None, "context: expected one of"),
        ({"input_selection": ("same",)}, None, None, "one value per attribute"),
        ({"input_selection": "some"}, None, None, "input_selection: expected one of"),
        ({"stage_inputs": "both"}, None, None, "stage_inputs: expected one of"),
        ({"recipes": "fast"}, None, None, "recipes: expected 'auto', None or names"),
        ({"recipes": ()}, None, None, "recipes: expected 'auto', None or names"),
        ({"recipes": ("mean-cal",), "windows": "published"}, None, None, "read window means"),
        ({"recipes": ("mean-cal-same",)}, "odd", None, "system-major"),
        ({"prune_stages": "yes"}, None, None, "prune_stages: expected True or False"),
        ({"min_stage_gain": -0.1}, None, None, "min_stage_gain: expected a CCC gain"),
    ],
)
def test_bad_input_raises(toy, params: dict, X_bad, groups_bad, match: str) -> None:
    X, y, groups = toy
    X = X.copy()
    if X_bad == "nan":
        X[3, 1] = np.nan
    elif X_bad == "odd":
        X = X[:, :5]
    if groups_bad == "short":
        groups = groups[:-1]
    with pytest.raises(ValueError, match=match):
        MultistageSVRFusion(**{**SMALL, **params}).fit(X, y, groups)


def test_predict_rejects_mismatched_groups(toy) -> None:
    X, y, groups = toy
    est = MultistageSVRFusion(protocol="paper", n_stages=1, **SMALL).fit(X, y, groups)
    with pytest.raises(ValueError, match="one recording id per frame"):
        est.predict(X, groups[:10])


@pytest.mark.parametrize("context", ["frames", "mean"])
@pytest.mark.parametrize("selection", ["all", "same", "auto", ("same", "auto")])
def test_paper_outputs_equal_predict_and_shapes(toy, context: str, selection: str) -> None:
    """In-sample stage outputs must be what the stored models predict: this pins the
    coefficient bookkeeping (nested offsets, column subsets, stage inputs, calibration)."""
    X, y, groups = toy
    est = MultistageSVRFusion(
        protocol="paper",
        n_stages=3,
        context=context,
        input_selection=selection,
        calibrate=True,
        **SMALL,
    ).fit(X, y, groups)
    assert est.stage_scores_.shape == (3, 2)
    n_sel = 1 if selection in ("all", "same") else 2
    assert est.grid_scores_.shape == (3, n_sel, 2, 2, 2)
    assert est.stage_predictions_.shape == (3, X.shape[0], 2)
    assert len(est.chosen_) == 3 and all(len(c) == 2 for c in est.chosen_)
    assert est.n_features_in_ == 6 and est.n_outputs_ == 2
    pred = est.predict(X, groups)
    assert pred.shape == y.shape
    np.testing.assert_allclose(pred, est.stage_predictions_[-1], atol=1e-8)
    for s in range(3):
        for a in range(2):
            assert est.stage_scores_[s, a] == pytest.approx(
                ccc(est.stage_predictions_[s, :, a], y[:, a])
            )
    # calibration: in-sample output moments equal the target's
    np.testing.assert_allclose(pred.std(axis=0), y.std(axis=0), rtol=1e-6)
    np.testing.assert_allclose(pred.mean(axis=0), y.mean(axis=0), atol=1e-8)


def test_predict_is_per_recording(toy) -> None:
    """A recording's fused frames do not depend on which recordings are predicted with it,
    and interleaving the recordings' rows changes nothing."""
    X, y, groups = toy
    est = MultistageSVRFusion(protocol="paper", n_stages=2, **SMALL).fit(X, y, groups)
    full = est.predict(X, groups)
    alone = est.predict(X[groups == "rec2"])
    np.testing.assert_allclose(alone, full[groups == "rec2"], atol=1e-10)
    order = np.argsort(np.tile(np.arange(60), 6), kind="stable")  # interleave recordings
    inter = MultistageSVRFusion(protocol="paper", n_stages=2, **SMALL).fit(
        X[order], y[order], groups[order]
    )
    np.testing.assert_allclose(inter.predict(X[order], groups[order]), full[order], atol=1e-8)
    np.testing.assert_allclose(inter.stage_scores_, est.stage_scores_, atol=1e-10)


def test_one_dimensional_y(toy) -> None:
    X, y, groups = toy
    est = MultistageSVRFusion(n_stages=2, n_splits=3, **SMALL).fit(X, y[:, 0], groups)
    assert est.predict(X, groups).shape == (X.shape[0],)
    assert est.stage_scores_.shape == (2, 1)


def test_gram_solver_equals_liblinear_primal(toy) -> None:
    """The closed form is LinearSVR(squared eps-insensitive, eps=0, dual=False) exactly."""
    X, y, groups = toy
    params = {"protocol": "paper", "n_stages": 1, "contexts": (2,), "complexities": (0.05,)}
    gram = MultistageSVRFusion(**params).fit(X, y, groups)
    ref = MultistageSVRFusion(solver="liblinear", tol=1e-10, max_iter=100_000, **params)
    ref.fit(X, y, groups)
    np.testing.assert_allclose(gram.predict(X, groups), ref.predict(X, groups), atol=1e-5)
    # and against LinearSVR called directly on the windows
    Z = context_windows(X, groups, 2)
    svr = LinearSVR(
        C=0.05, epsilon=0.0, loss="squared_epsilon_insensitive", dual=False, tol=1e-10
    ).fit(Z, y[:, 0])
    np.testing.assert_allclose(gram.predict(X, groups)[:, 0], svr.predict(Z), atol=1e-5)


def test_published_windows_fit_like_linearsvr_on_avec_windows(toy) -> None:
    """Fit on windows across recordings (centre thrice), predict per recording."""
    X, y, groups = toy
    k, C = 3, 0.05
    params = {"protocol": "paper", "n_stages": 1, "contexts": (k,), "complexities": (C,)}
    est = MultistageSVRFusion(windows="published", **params).fit(X, y, groups)
    Z = avec_contextualise(X, k)  # the fit crosses recordings in row order
    want = []
    for a in range(y.shape[1]):
        svr = LinearSVR(
            C=C, epsilon=0.0, loss="squared_epsilon_insensitive", dual=False, tol=1e-12
        ).fit(Z, y[:, a])
        per_rec = [svr.predict(avec_contextualise(X[groups == g], k)) for g in np.unique(groups)]
        want.append(np.concatenate(per_rec))
    np.testing.assert_allclose(est.predict(X, groups), np.stack(want, 1), atol=1e-6)
    # the reported paper-protocol predictions are those per-recording ones
    np.testing.assert_allclose(est.stage_predictions_[0], est.predict(X, groups), atol=1e-12)
    clean = MultistageSVRFusion(**params).fit(X, y, groups)
    assert not np.allclose(clean.predict(X, groups), est.predict(X, groups), atol=1e-3)


def _l1_objective(est: MultistageSVRFusion, X, y, groups, C: float) -> np.ndarray:
    """0.5*|w|^2 + C*sum|y - f| per attribute, w including the penalised intercept."""
    out = []
    pred = est.predict(X, groups)
    for a, m in enumerate(est.stages_[0]):
        w2 = float((m.coef**2).sum() + m.intercept**2)
        out.append(0.5 * w2 + C * np.abs(y[:, a] - pred[:, a]).sum())
    return np.array(out)


def test_exact_absolute_loss_matches_converged_liblinear(toy) -> None:
    X, y, groups = toy
    C = 0.05
    params = {
        "protocol": "paper", "n_stages": 1, "contexts": (2,), "complexities": (C,),
        "loss": "epsilon_insensitive",
    }  # fmt: skip
    exact = MultistageSVRFusion(**params).fit(X, y, groups)
    ref = MultistageSVRFusion(solver="liblinear", tol=1e-9, max_iter=200_000, **params)
    ref.fit(X, y, groups)
    assert ref.n_iter_ < 200_000  # the reference converged
    assert 10 <= exact.n_iter_ < 2000
    np.testing.assert_allclose(exact.predict(X, groups), ref.predict(X, groups), atol=2e-3)
    obj_exact = _l1_objective(exact, X, y, groups, C)
    obj_ref = _l1_objective(ref, X, y, groups, C)
    assert np.all(obj_exact <= obj_ref * (1 + 1e-5)), (obj_exact, obj_ref)
    # and it is not the squared-loss optimum
    squared = MultistageSVRFusion(**{**params, "loss": "squared_epsilon_insensitive"})
    squared.fit(X, y, groups)
    assert np.all(_l1_objective(squared, X, y, groups, C) > obj_exact * (1 + 1e-4))


def test_unconverged_liblinear_warns_once(toy) -> None:
    X, y, groups = toy
    est = MultistageSVRFusion(
        protocol="paper", n_stages=1, solver="liblinear", loss="epsilon_insensitive",
        max_iter=2, **SMALL,
    )  # fmt: skip
    with pytest.warns(ConvergenceWarning) as caught:
        est.fit(X, y, groups)
    assert [str(w.message)[:40] for w in caught] == ["LinearSVR stopped at max_iter=2 passes b"]
    assert est.n_iter_ == 2


def test_cv_scores_are_out_of_fold_on_noise() -> None:
    """Pure noise: in-sample fusion fits it, honest (nested) cv must not, at any stage."""
    rng = np.random.default_rng(7)
    n_rec, length = 10, 80
    X = rng.normal(size=(n_rec * length, 6))
    y = rng.normal(size=(n_rec * length, 2))
    groups = np.repeat(np.arange(n_rec), length)
    params = {"n_stages": 2, "contexts": (3, 6), "complexities": (0.1, 1.0)}
    paper = MultistageSVRFusion(protocol="paper", **params).fit(X, y, groups)
    cv = MultistageSVRFusion(protocol="cv", **params).fit(X, y, groups)
    assert np.all(paper.stage_scores_ > 0.15), paper.stage_scores_
    assert np.all(np.abs(cv.stage_scores_) < 0.1), cv.stage_scores_


def _smooth_noise(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Inputs and targets independent of each other, each smooth within its recording
    (like emotion traces), 14 recordings of uneven length: folds grouped by recording
    differ from folds of frames, and a frame's neighbours tell its label."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(60, 140, size=14)
    X = np.vstack([smooth_series(rng, 1, n, 6) for n in lengths])
    y = np.vstack([smooth_series(rng, 1, n, 2) for n in lengths])
    groups = np.repeat(np.arange(14), lengths)
    single = np.array([[ccc(X[:, s * 2 + a], y[:, a]) for a in range(2)] for s in range(3)])
    return X, y, groups, single.max(axis=0)


@pytest.mark.parametrize("seed", [0, 1])
def test_default_on_smooth_noise_does_not_beat_the_best_single_input(seed: int) -> None:
    """No leakage through the recipe and stage choice: on pure noise the default's nested
    cv scores stay at or below the best single input (itself picked on these labels),
    while an in-sample fit of the same data scores high."""
    X, y, groups, best_single = _smooth_noise(seed)
    grid = {"n_stages": 3, "n_splits": 4, "contexts": (1, 4), "complexities": (0.01, 1.0)}
    est = MultistageSVRFusion(**grid).fit(X, y, groups)
    ceiling = np.maximum(best_single, 0.0) + 0.05
    assert np.all(est.stage_scores_ < ceiling), (est.stage_scores_, best_single)
    assert len(est.fold_choices_) == 4
    assert all(c["recipe"] in RECIPES for fold in est.fold_choices_ for c in fold)
    paper = MultistageSVRFusion(protocol="paper", **grid).fit(X, y, groups)
    assert np.all(paper.stage_scores_[-1] > est.stage_scores_[-1] + 0.1), paper.stage_scores_


def test_held_out_fold_predictions_never_read_its_labels() -> None:
    """Replace one outer fold's labels by other noise: its nested predictions, and the
    recipe and stages chosen for it, must not move (any choice that read them would)."""
    from sklearn.model_selection import GroupKFold

    X, y, groups, _ = _smooth_noise(2)
    grid = {"n_stages": 2, "n_splits": 4, "contexts": (1, 4), "complexities": (0.01, 1.0)}
    folds = [t for _, t in GroupKFold(n_splits=4).split(X, groups=group_codes(groups, len(X)))]
    held = np.zeros(len(X), dtype=bool)
    held[folds[0]] = True
    y2 = y.copy()
    y2[held] = np.random.default_rng(9).normal(size=(held.sum(), 2))
    a = MultistageSVRFusion(**grid).fit(X, y, groups)
    b = MultistageSVRFusion(**grid).fit(X, y2, groups)
    np.testing.assert_allclose(a.stage_predictions_[:, held], b.stage_predictions_[:, held],
                               atol=1e-10)  # fmt: skip
    assert a.fold_choices_[0] == b.fold_choices_[0]  # block 0 is GroupKFold's first fold
    assert not np.allclose(a.stage_predictions_[:, ~held], b.stage_predictions_[:, ~held])


def test_recipe_choice_with_one_fixed_recipe_equals_the_fixed_procedure(toy) -> None:
    """The choice machinery with one recipe and one stage is the old fixed-recipe fit: this
    pins the outer-fold bookkeeping of the chosen path."""
    X, y, groups = toy
    params = {"n_stages": 1, "n_splits": 3, "context": "mean", "calibrate": True, **SMALL}
    fixed = MultistageSVRFusion(recipes=None, prune_stages=False, **params).fit(X, y, groups)
    chosen = MultistageSVRFusion(recipes=None, **params).fit(X, y, groups)
    np.testing.assert_allclose(chosen.stage_predictions_, fixed.stage_predictions_, atol=1e-12)
    np.testing.assert_allclose(chosen.predict(X, groups), fixed.predict(X, groups), atol=1e-12)
    assert chosen.recipes_ == ["flags", "flags"] and chosen.stages_kept_ == [1, 1]


def test_chosen_recipes_and_stages_are_what_predict_uses(toy) -> None:
    X, y, groups = toy
    est = MultistageSVRFusion(
        n_stages=3, n_splits=3, recipes=("paper", "mean-cal-same"), **SMALL
    ).fit(X, y, groups)
    assert set(est.recipes_) <= {"paper", "mean-cal-same"}
    assert all(1 <= n <= 3 for n in est.stages_kept_)
    assert est.stage_scores_.shape == (3, 2) and est.stage_predictions_.shape[0] == 3
    for a, (name, kept) in enumerate(zip(est.recipes_, est.stages_kept_, strict=True)):
        assert est.final_choice_[a]["recipe"] == name and est.final_choice_[a]["stages"] == kept
        assert all(m is not None for m in (est.stages_[s][a] for s in range(kept)))
        assert all(est.chosen_[s][a] is None for s in range(kept, len(est.chosen_)))
        # the inner score of the chosen (recipe, stages) is the best of every candidate
        inner = est.final_choice_[a]["inner_ccc"]
        assert inner[name][kept - 1] == max(max(v) for v in inner.values()) or kept < 3
    # predict runs each attribute's recipe pipeline to its kept stage
    outs = est.stage_outputs(X, group_codes(groups, X.shape[0]))
    np.testing.assert_allclose(est.predict(X, groups), outs[-1])
    context, stages = est.pipelines_[est.recipes_[0]]
    assert context == RECIPES[est.recipes_[0]]["context"]


@pytest.mark.parametrize("protocol", ["paper", "cv"])
def test_published_solver_in_processes_equals_the_sequential_run_bitwise(toy, protocol) -> None:
    """The whole grid of a stage runs in one pool of processes, the windows shared as
    memory-mapped files and later stages' refits reused: same bits as n_jobs=1, which fits
    every cell in this process from the arrays themselves, one after the other."""
    X, y, groups = toy
    params = {
        "protocol": protocol, "n_stages": 2, "contexts": (1, 3), "complexities": (0.1, 10.0),
        "windows": "published", "loss": "epsilon_insensitive", "solver": "liblinear",
        "max_iter": 50, "random_state": 3, "recipes": None, "prune_stages": False,
    }  # fmt: skip
    with pytest.warns(ConvergenceWarning):  # unconverged, so the coordinate order matters
        one = MultistageSVRFusion(n_jobs=1, **params).fit(X, y, groups)
    with pytest.warns(ConvergenceWarning):
        two = MultistageSVRFusion(n_jobs=2, **params).fit(X, y, groups)
    np.testing.assert_array_equal(one.stage_predictions_, two.stage_predictions_)
    np.testing.assert_array_equal(one.grid_scores_, two.grid_scores_)
    for s1, s2 in zip(one.stages_, two.stages_, strict=True):
        for m1, m2 in zip(s1, s2, strict=True):
            np.testing.assert_array_equal(m1.coef, m2.coef)
            assert (m1.k, m1.C, m1.intercept) == (m2.k, m2.C, m2.intercept)


@pytest.mark.skipif(not DATA.is_dir(), reason="shared AVEC 2019 devel data not present")
def test_published_recipe_gives_the_same_numbers_twice() -> None:
    """liblinear's coordinate order comes from a per-process generator: the fits run in
    processes, so one seed gives one result whatever n_jobs (in threads they raced)."""
    X, y, groups, _ = _load_real()
    keep = np.isin(groups, sorted(set(groups.tolist()))[:3])
    params = {
        "protocol": "paper", "n_stages": 1, "contexts": (2, 3), "complexities": (0.1, 1.0),
        "windows": "published", "loss": "epsilon_insensitive", "solver": "liblinear",
        "max_iter": 300, "n_jobs": 2, "random_state": 3,
    }  # fmt: skip
    with pytest.warns(ConvergenceWarning):  # unconverged, so the coordinate order matters
        first = MultistageSVRFusion(**params).fit(X[keep], y[keep], groups[keep])
    with pytest.warns(ConvergenceWarning):
        second = MultistageSVRFusion(**params).fit(X[keep], y[keep], groups[keep])
    np.testing.assert_array_equal(first.stage_predictions_, second.stage_predictions_)
    np.testing.assert_array_equal(first.stage_scores_, second.stage_scores_)


# --------------------------------------------------------------------------- real data


def _load_real() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    pd = pytest.importorskip("pandas")
    labels = sorted((DATA / "labels").glob("*.csv"))
    systems = sorted(
        p.name for p in (DATA / "predictions").iterdir() if p.is_dir() and p.name != "svr"
    )

    def read(path: Path) -> np.ndarray:
        return pd.read_csv(path, sep=";", usecols=list(ATTRIBUTES))[list(ATTRIBUTES)].to_numpy()

    def system(name: str) -> dict[str, np.ndarray]:
        return {f.stem: read(DATA / "predictions" / name / f.name) for f in labels}

    golds = {f.stem: read(f) for f in labels}
    X, y, groups = stack_recordings(golds, {s: system(s) for s in systems})
    svr, _, _ = stack_recordings(golds, {"svr": system("svr")})
    return X, y, groups, svr


@pytest.mark.usefixtures("shared_data")  # absent: skip; under CI: fail
def test_real_data_paper_near_published_and_cv_lower() -> None:
    X, y, groups, svr = _load_real()
    assert X.shape == (40032, 27)
    grid = {"n_stages": 1, "contexts": (11, 19), "complexities": (0.01, 1.0)}
    paper = MultistageSVRFusion(protocol="paper", **grid).fit(X, y, groups)
    published = np.array([ccc(svr[:, a], y[:, a]) for a in range(3)])
    np.testing.assert_allclose(published, [0.614, 0.615, 0.222], atol=5e-4)
    got = paper.stage_scores_[0]
    # the exact squared-loss fit with clean windows lands above the published fit
    assert np.all(np.abs(got[:2] - published[:2]) < 0.06), got
    assert published[2] - 0.02 < got[2] < published[2] + 0.12, got
    # the same (paper) recipe scored honestly
    cv = MultistageSVRFusion(protocol="cv", recipes=None, prune_stages=False, **grid)
    cv.fit(X, y, groups)
    assert np.all(cv.stage_scores_[0] < got - 0.05), (cv.stage_scores_, got)


@pytest.mark.usefixtures("shared_data")  # absent: skip; under CI: fail
def test_real_data_published_recipe_lies_between_the_exact_optima() -> None:
    """The published svr row came from a LinearSVR stopped unconverged (DESIGN 7): with
    the published windows (k=19, C=1, the liking choice) its CCC lies between the exact
    absolute-loss optimum (its own objective) and the exact squared-loss optimum."""
    X, y, groups, svr = _load_real()
    published = np.array([ccc(svr[:, a], y[:, a]) for a in range(3)])
    grid = {"protocol": "paper", "n_stages": 1, "contexts": (19,), "complexities": (1.0,),
            "windows": "published", "n_jobs": 2}  # fmt: skip
    absolute = MultistageSVRFusion(loss="epsilon_insensitive", **grid).fit(X, y, groups)
    squared = MultistageSVRFusion(**grid).fit(X, y, groups)
    low, high = absolute.stage_scores_[0], squared.stage_scores_[0]
    assert np.all(low < published) and np.all(published < high), (low, published, high)
    assert np.all(published - low < 0.04), (low, published)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
