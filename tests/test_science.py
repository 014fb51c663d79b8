"""The bugs that would quietly change the science, each pinned by a test that fails on it.

Every test here was checked by planting its bug (``tools/mutation_check.py``) and watching
it fail: folds that split a recording, fusion of the worst-ranked runs, a promotion on a
tie, a training mask that ignores the label shift, predictions written without shifting
back, standardisation fitted on more than Train, a network that does not learn, a median
pruner that does not prune. Real parts throughout: a SQLite MLflow store, Optuna on a
SQLite database, Keras, the tiny synthetic corpus.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pytest

from ser_mlflow.data import read_avec_csv, write_avec_csv
from ser_mlflow.fusion import MultistageSVRFusion, group_codes
from ser_mlflow.settings import LossConfig, ModelConfig, TrainConfig

ATTRS = ("arousal", "valence", "liking")
QUIET = {"echo": lambda s: None}


def _cfg(root: Path, **kw: Any) -> TrainConfig:
    base: dict[str, Any] = dict(data_root=root, feature_sets=("fau",), epochs=2, batch_size=4,
                                model=ModelConfig(units=(8,), dropout=0.0, lr=5e-3),
                                loss=LossConfig.from_name("MTL2"), experiment="science")
    base.update(kw)
    return TrainConfig(**base)


# --------------------------------------------------------------------------- fusion folds

# uneven lengths: plain KFold over frames would cut recordings at its fold boundaries
LENGTHS = (100, 50, 120, 70, 90, 60, 110, 80)


def _recordings(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """3 systems x 2 attributes; targets smooth within a recording, each its own level."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(len(LENGTHS)), LENGTHS)
    kernel = np.ones(15) / 15
    smooth = [
        np.stack([np.convolve(rng.normal(size=n + 14), kernel, "valid") for _ in range(2)], 1)
        for n in LENGTHS
    ]
    y = rng.normal(size=(len(LENGTHS), 2))[groups] + 0.5 * np.vstack(smooth)
    X = np.hstack([y + rng.normal(size=y.shape) for _ in range(3)])
    return X, y, groups


def test_cv_folds_never_split_a_recording() -> None:
    groups = np.repeat(np.arange(len(LENGTHS)), LENGTHS)
    order = np.random.default_rng(0).permutation(groups.size)  # interleaved rows too
    for g in (groups, groups[order]):
        codes = group_codes(g, g.size)
        folds = MultistageSVRFusion(protocol="cv", n_splits=4)._folds(codes, grouped=True)
        assert len(folds) == 4
        np.testing.assert_array_equal(np.sort(np.concatenate(folds)), np.arange(g.size))
        holders = {int(c): {f for f, rows in enumerate(folds) if (codes[rows] == c).any()}
                   for c in np.unique(codes)}
        assert all(len(h) == 1 for h in holders.values()), holders


@pytest.mark.parametrize("n_stages", [1, 2])
def test_cv_predictions_of_a_recording_never_see_its_own_targets(n_stages: int) -> None:
    """Out-of-fold means fitted without the recording: changing one recording's targets
    must leave its held-out predictions exactly as they were. A fold that splits the
    recording lets its other frames (smooth neighbours of the same level) into the fit."""
    X, y, groups = _recordings(3)
    params = {"protocol": "cv", "n_splits": 4, "n_stages": n_stages, "contexts": (0, 2),
              "complexities": (0.1, 1.0), "calibrate": True}
    base = MultistageSVRFusion(**params).fit(X, y, groups).stage_predictions_
    for r in range(len(LENGTHS)):
        moved = y.copy()
        moved[groups == r] += 3.0  # the recording's own level, far off
        again = MultistageSVRFusion(**params).fit(X, moved, groups).stage_predictions_
        own = groups == r
        np.testing.assert_allclose(again[:, own], base[:, own], atol=1e-9,
                                   err_msg=f"recording {r} leaked into its own predictions")
        assert not np.allclose(again[:, ~own], base[:, ~own])  # the others did learn from it


# --------------------------------------------------------------------------- fusion ranking


def _import_ranked(corpus: Path, tmp: Path, noise: dict[str, float]) -> dict[str, str]:
    """External runs whose devel predictions are gold + noise of a known size."""
    from ser_mlflow.jobs import latefusion

    labels = sorted((corpus / "labels").glob("Devel_*.csv"))
    ids = {}
    for k, (name, sd) in enumerate(noise.items()):
        rng = np.random.default_rng(k)
        folder = tmp / name
        for f in labels:
            ts, gold, attrs = read_avec_csv(f)
            write_avec_csv(folder / f.name, f.stem, ts, gold + rng.normal(0, sd, gold.shape),
                           attrs)
        ids[name] = latefusion.import_predictions(
            predictions=folder, labels=corpus / "labels", name=name, experiment="rank", **QUIET
        )
    return ids


def test_fusion_takes_the_top_ranked_runs(
    tiny_corpus: Path, tracking_store: str, tmp_path: Path
) -> None:
    from ser_mlflow.jobs import latefusion

    # imported worst first, so that neither store order nor name order is the ranking
    ids = _import_ranked(tiny_corpus, tmp_path, {"c-worst": 2.0, "b-good": 0.4, "a-best": 0.05})
    score = {n: mlflow.get_run(i).data.metrics["devel_ccc_mean"] for n, i in ids.items()}
    assert sorted(score, key=score.get, reverse=True) == ["a-best", "b-good", "c-worst"], score
    res = latefusion.run_fusion(data_root=tiny_corpus, top_n=2, protocol="paper", n_stages=1,
                                contexts="1", complexities="1", experiment="rank", **QUIET)
    assert res.input_runs == [ids["a-best"], ids["b-good"]]
    tags = mlflow.get_run(res.run_id).data.tags
    assert tags["ser.input_runs"].split(",") == [ids["a-best"], ids["b-good"]]


# --------------------------------------------------------------------------- registry


def test_promote_refuses_a_tie_and_takes_a_strictly_better_challenger(
    tracking_store: str, tmp_path: Path
) -> None:
    from mlflow.tracking import MlflowClient

    from ser_mlflow.jobs import registry

    client = MlflowClient()
    client.create_registered_model("ser-ces")
    versions = []
    for value in (0.5, 0.5, 0.5 + 1e-6, 0.4):
        with mlflow.start_run() as run:
            mlflow.log_metric("devel_ccc_mean", value)
        source = tmp_path / run.info.run_id
        source.mkdir()
        mv = client.create_model_version("ser-ces", str(source), run_id=run.info.run_id)
        versions.append(str(mv.version))
    client.set_registered_model_alias("ser-ces", "champion", versions[0])

    def champion() -> str:
        return str(client.get_model_version_by_alias("ser-ces", "champion").version)

    client.set_registered_model_alias("ser-ces", "challenger", versions[1])  # a tie
    tie = registry.promote(**QUIET)
    assert not tie.promoted and "not higher" in tie.reason and champion() == versions[0]
    client.set_registered_model_alias("ser-ces", "challenger", versions[3])  # worse
    assert not registry.promote(**QUIET).promoted and champion() == versions[0]
    client.set_registered_model_alias("ser-ces", "challenger", versions[2])  # by 1e-6
    better = registry.promote(**QUIET)
    assert better.promoted and champion() == versions[2]
    tags = client.get_model_version("ser-ces", versions[2]).tags
    assert tags["ser.previous_version"] == versions[0]
    assert float(tags["ser.previous_devel_ccc_mean"]) == 0.5


def test_register_best_registers_the_best_run(tracking_store: str, tmp_path: Path) -> None:
    from ser_mlflow.jobs import registry

    folder = tmp_path / "model"  # a stand-in model folder: registration copies no weights
    folder.mkdir()
    (folder / "MLmodel").write_text("flavors: {}\n")
    ids = {}
    for value in (0.3, 0.6, 0.5):
        with mlflow.start_run(tags={"ser.stage": "unimodal"}) as run:
            mlflow.log_metric("devel_ccc_mean", value)
            mlflow.log_artifacts(str(folder), "model")
        ids[value] = run.info.run_id
    reg = registry.register_best(filter_string="tags.`ser.stage` = 'unimodal'", **QUIET)
    assert reg.run_id == ids[0.6]


# --------------------------------------------------------------------------- preprocessing


def test_standardiser_uses_train_statistics_only(tiny_corpus: Path) -> None:
    from ser_mlflow.nn.fit import prepare

    data = prepare(_cfg(tiny_corpus, feature_sets=("egemaps", "fau")))
    parts = {p: data.corpus.partition(p) for p in ("Train", "Devel", "Test")}
    train = np.concatenate([r.features for r in parts["Train"]]).astype(np.float64)
    mean, std = train.mean(axis=0), train.std(axis=0)
    std = np.where(std < 1e-8, 1.0, std)
    np.testing.assert_allclose(data.standardizer.mean_, mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(data.standardizer.std_, std, rtol=1e-12)
    everything = np.concatenate([r.features for p in parts.values() for r in p])
    assert np.abs(data.standardizer.mean_ - everything.mean(axis=0)).max() > 1e-3
    # Devel and Test are transformed with the Train statistics, recording by recording
    for p in ("Devel", "Test"):
        for rec, z in zip(parts[p], data.features[p], strict=True):
            np.testing.assert_allclose(z, (rec.features - mean) / std, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shift", [1, 3])
def test_training_mask_leaves_out_frames_the_shift_left_without_labels(
    tiny_corpus: Path, shift: int
) -> None:
    from ser_mlflow.nn.fit import _pad_batch, prepare

    data = prepare(_cfg(tiny_corpus, shift_frames=shift))
    train = data.corpus.partition("Train")
    for rec, y, ok in zip(train, data.train_targets, data.train_valid, strict=True):
        n = rec.n_frames
        assert ok.tolist() == [True] * (n - shift) + [False] * shift
        np.testing.assert_allclose(y[: n - shift], rec.labels[shift:], rtol=1e-6)  # y'[t]=y[t+n]
    idx = np.arange(len(train))[::-1]  # a batch of every recording, longest padding included
    _, packed = _pad_batch(idx, data.features["Train"], data.train_targets, data.train_valid)
    mask = packed[..., -1]
    for row, i in enumerate(idx):
        want = np.zeros(mask.shape[1])
        want[: train[i].n_frames - shift] = 1.0
        np.testing.assert_array_equal(mask[row], want)


def _copy_features(n_features: int) -> Any:
    """A network that outputs its first three (standardised) input columns, frame by frame."""
    import keras

    inputs = keras.Input(shape=(None, n_features))
    layer = keras.layers.Dense(3, use_bias=False)
    model = keras.Model(inputs, layer(inputs))
    layer.set_weights([np.eye(n_features, 3, dtype=np.float32)])
    return model


@pytest.mark.parametrize("shift", [0, 2])
def test_predictions_are_shifted_back_when_written_and_served(
    tiny_corpus: Path, tmp_path: Path, shift: int
) -> None:
    """out[t] = network(features)[t - shift]: the label at t + shift taught frame t."""
    from ser_mlflow.jobs.train import _preprocess_meta, _write_predictions
    from ser_mlflow.models.pyfunc import SERModel, recordings_frame
    from ser_mlflow.nn.fit import predict_partition, prepare

    cfg = _cfg(tiny_corpus, shift_frames=shift)
    data = prepare(cfg)
    network = _copy_features(data.corpus.n_features)
    devel = data.corpus.partition("Devel")
    preds = predict_partition(network, data, "Devel")
    _write_predictions(tmp_path, data, "Devel", preds)
    served = SERModel()
    served.meta = _preprocess_meta(cfg, data)
    served.standardizer, served.network = data.standardizer, network
    for rec, z in zip(devel, data.features["Devel"], strict=True):
        raw = z[:, :3].astype(np.float64)
        want = np.vstack([np.repeat(raw[:1], shift, axis=0), raw[: len(raw) - shift]])
        np.testing.assert_allclose(preds[rec.name], want, atol=1e-6)
        ts, written, attrs = read_avec_csv(tmp_path / f"{rec.name}.csv")
        assert attrs == ATTRS and np.allclose(ts, rec.timestamps)
        np.testing.assert_allclose(written, want, atol=2e-6)  # 6 decimals in the file
        frame = recordings_frame([rec.name], [rec.timestamps], [rec.features],
                                 data.corpus.feature_columns)
        out = served.predict(None, frame)
        np.testing.assert_allclose(out[list(ATTRS)].to_numpy(), want, atol=1e-5)


# --------------------------------------------------------------------------- learning


def test_training_beats_the_untrained_network_on_devel(tiny_corpus: Path) -> None:
    """Seeded: the trained network's last epoch beats its own initial weights on Devel by
    a clear margin (the last epoch, not the best one, so no selection on Devel helps)."""
    import keras

    from ser_mlflow.nn.fit import fit_network, predict_partition, prepare, score_partition
    from ser_mlflow.nn.model import build_model

    cfg = _cfg(tiny_corpus, epochs=10, seed=3, batch_size=2,
               model=ModelConfig(units=(32,), dropout=0.0, lr=3e-3, optimizer="adam"))
    data = prepare(cfg)
    keras.utils.set_random_seed(cfg.seed)  # what fit_network starts from
    untrained = build_model(data.corpus.n_features, data.attributes, cfg.model)
    before = score_partition(data, "Devel", predict_partition(untrained, data, "Devel"),
                             prefix="devel_")
    model, best_epoch, history = fit_network(cfg, data, progress=False)
    after = history[-1]
    # measured here: 0.04 untrained, 0.28 after 10 epochs
    assert after["devel_ccc_mean"] > before["devel_ccc_mean"] + 0.15, (before, after)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    # the returned network is the best epoch's, and scores what that epoch scored
    curve = [row["devel_ccc_mean"] for row in history]
    assert best_epoch == int(np.argmax(curve)) + 1
    final = score_partition(data, "Devel", predict_partition(model, data, "Devel"),
                            prefix="devel_")
    assert final["devel_ccc_mean"] == pytest.approx(curve[best_epoch - 1], abs=1e-6)


def test_training_returns_the_best_epochs_weights(tiny_corpus: Path, tmp_path: Path) -> None:
    """Resumed from a checkpoint whose best epoch (1) scored beyond reach (CCC 2.0), one
    more epoch must not replace it: the network returned holds epoch 1's weights."""
    import json

    import keras

    from ser_mlflow.nn.fit import (
        CHECKPOINT_BEST,
        CHECKPOINT_MODEL,
        CHECKPOINT_STATE,
        fit_network,
        prepare,
    )
    from ser_mlflow.nn.model import build_model, compile_model

    cfg = _cfg(tiny_corpus, epochs=2)
    data = prepare(cfg)
    keras.utils.set_random_seed(1)
    last = build_model(data.corpus.n_features, data.attributes, cfg.model)
    compile_model(last, cfg.model, cfg.loss)
    best = [np.full_like(w, 0.01 * (i + 1)) for i, w in enumerate(last.get_weights())]
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    last.save(folder / CHECKPOINT_MODEL)
    np.savez(folder / CHECKPOINT_BEST, *best)
    (folder / CHECKPOINT_STATE).write_text(json.dumps(
        {"epoch": 1, "best": 2.0, "best_epoch": 1, "history": [{"devel_ccc_mean": 2.0}]}))
    model, best_epoch, history = fit_network(cfg, data, progress=False, resume_from=folder)
    assert best_epoch == 1 and len(history) == 2 and history[1]["devel_ccc_mean"] < 2.0
    for got, want in zip(model.get_weights(), best, strict=True):
        np.testing.assert_array_equal(got, want)


# --------------------------------------------------------------------------- pruning


def test_real_median_pruner_prunes_a_clearly_worse_trial(
    tiny_corpus: Path, tracking_store: str, tmp_path: Path
) -> None:
    """Optuna's own MedianPruner (as ``--prune`` builds it), not a stand-in: three earlier
    trials reached devel CCC -0.9 after epoch 1 and 0.95 after epoch 2, so a new trial
    must pass epoch 1 and be pruned at epoch 2, where it is clearly worse."""
    import optuna
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    from ser_mlflow.search.run import run_search
    from ser_mlflow.search.spec import MEDIAN_STARTUP_TRIALS

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(storage=url, study_name="median", direction="maximize")
    dist = {p: FloatDistribution(0.0, 1.0) for p in ("alpha", "beta", "gamma")}
    for _ in range(MEDIAN_STARTUP_TRIALS):
        study.add_trial(create_trial(params={"alpha": 0.7, "beta": 0.2, "gamma": 1.0},
                                     distributions=dist, value=0.95,
                                     intermediate_values={1: -0.9, 2: 0.95}))
    res = run_search(_cfg(tiny_corpus, epochs=2), sampler="random", n_trials=1, storage=url,
                     study_name="median", prune=True, progress=False, **QUIET)
    study = optuna.load_study(study_name="median", storage=url)
    new = study.trials[-1]
    assert new.state == TrialState.PRUNED, new
    assert sorted(new.intermediate_values) == [1, 2]
    assert -0.9 < new.intermediate_values[1] and new.intermediate_values[2] < 0.95
    run = mlflow.get_run(new.user_attrs["mlflow_run_id"])
    assert run.data.tags["ser.trial_state"] == "pruned"
    assert run.data.tags["ser.pruned_epoch"] == "2"
    assert mlflow.get_run(res.parent_run_id).data.metrics["n_trials_pruned"] == 1


def test_every_planted_bug_still_finds_its_line() -> None:
    """tools/mutation_check.py plants each bug by replacing one exact text: after code moves,
    a text found 0 or 2 times would make the check report 'stale' instead of testing."""
    import mutation_check

    repo = Path(__file__).resolve().parents[1]
    for m in mutation_check.MUTANTS:
        found = (repo / m.path).read_text().count(m.old)
        assert found == 1, f"{m.key}: {m.old!r} found {found} times in {m.path}"
        for test in (*m.tests, *m.slow):
            assert (repo / test.split("::")[0]).exists(), f"{m.key}: {test}"
