"""End to end: `train` on a tiny synthetic corpus into a private SQLite store."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from ser_mlflow.data import load_corpus, read_avec_csv
from ser_mlflow.scoring.metrics import score_recordings
from ser_mlflow.settings import LossConfig, ModelConfig, TrainConfig

REPO = Path(__file__).resolve().parents[1]
SMALL = ModelConfig(units=(8, 4), dropout=0.1, lr=5e-3)


def _cfg(root: Path, **kw) -> TrainConfig:  # noqa: ANN003
    base = dict(data_root=root, feature_sets=("fau",), epochs=2, batch_size=4, model=SMALL,
                loss=LossConfig.from_name("MTL2"), experiment="test")
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.slow
def test_train_run_is_complete(tiny_corpus: Path, tracking_store: str, tmp_path: Path) -> None:
    from ser_mlflow.jobs.train import run_training

    result = run_training(_cfg(tiny_corpus, feature_sets=("egemaps", "fau")), progress=False)
    client = MlflowClient()
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
    assert tags["ser.stage"] == "bimodal"
    assert tags["ser.feature_sets"] == "egemaps+fau"
    assert tags["ser.loss"] == "MTL2"
    corpus = load_corpus(tiny_corpus, ("egemaps", "fau"))
    assert tags["ser.content_digest"] == corpus.digest
    from ser_mlflow.data.fingerprint import corpus_fingerprint

    assert tags["ser.data_digest"] == corpus_fingerprint(tiny_corpus)
    assert params["alpha"] == "0.7" and params["gamma"] == "1.0" and params["seed"] == "0"
    for key in ("devel_ccc_arousal", "devel_ccc_valence", "devel_ccc_liking",
                "devel_ccc_mean", "devel_DE_ccc_arousal", "devel_HU_ccc_liking",
                "devel_pcc_valence", "devel_rmse_arousal", "best_epoch"):
        assert key in metrics, key
    hist = client.get_metric_history(result.run_id, "epoch/devel_ccc_mean")
    assert [m.step for m in hist] == [1, 2]
    assert [m.value for m in hist] == pytest.approx([h["devel_ccc_mean"] for h in result.history])
    losses = sorted(client.get_metric_history(result.run_id, "epoch/train_loss"),
                    key=lambda m: m.step)
    assert [m.value for m in losses] == pytest.approx([h["train_loss"] for h in result.history])
    # the final figures are the best epoch's (its weights are restored before scoring)
    assert metrics["best_epoch"] == result.best_epoch
    assert metrics["devel_ccc_mean"] == pytest.approx(
        result.history[result.best_epoch - 1]["devel_ccc_mean"], abs=1e-6)
    assert run.inputs.dataset_inputs[0].dataset.digest == corpus.digest[:36]

    # predictions on disk equal the logged metric when re-scored from the AVEC files
    pred_dir = Path(mlflow.artifacts.download_artifacts(run_id=result.run_id,
                                                        artifact_path="predictions"))
    devel = corpus.partition("Devel")
    preds = {r.name: read_avec_csv(pred_dir / "devel" / f"{r.name}.csv")[1] for r in devel}
    rescored = score_recordings(preds, {r.name: r.labels for r in devel},
                                {r.name: r.culture for r in devel}, corpus.attributes)
    assert rescored["devel_ccc_mean"] == pytest.approx(metrics["devel_ccc_mean"], abs=1e-5)
    first = (pred_dir / "devel" / f"{devel[0].name}.csv").read_text().splitlines()
    assert first[0] == "name;timestamp;arousal;valence;liking"
    assert first[1].startswith(f"'{devel[0].name}';0.000000;")
    assert len(first) - 1 == len(devel[0].labels)
    test_files = sorted((pred_dir / "test").glob("*.csv"))
    assert len(test_files) == len(corpus.partition("Test"))
    arts = {a.path for a in client.list_artifacts(result.run_id, "plots")}
    assert {"plots/ccc_per_epoch.png", "plots/devel_traces.png"} <= arts

    # the logged model: a LoggedModel linked to the run, reloadable, same predictions
    models = mlflow.search_logged_models(
        experiment_ids=[run.info.experiment_id], output_format="list"
    )
    assert [m.source_run_id for m in models] == [result.run_id]
    model = mlflow.pyfunc.load_model(f"runs:/{result.run_id}/model")
    assert model.metadata.signature is not None
    from ser_mlflow.models.pyfunc import recordings_frame

    rec = devel[0]
    df = recordings_frame([rec.name], [rec.timestamps], [rec.features], corpus.feature_columns)
    out = model.predict(df)
    assert list(out.columns) == ["name", "timestamp", "arousal", "valence", "liking"]
    np.testing.assert_allclose(out[["arousal", "valence", "liking"]].to_numpy(),
                               preds[rec.name], atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()])
def test_failure_and_interrupt_end_the_run_truthfully(
    tiny_corpus: Path, tracking_store: str, exc: BaseException
) -> None:
    from ser_mlflow.jobs.train import run_training

    def explode(epoch: int, row: object) -> None:
        raise exc

    with pytest.raises(type(exc)):
        run_training(_cfg(tiny_corpus, epochs=1), progress=False, on_epoch=explode)
    runs = mlflow.search_runs(experiment_names=["test"], output_format="list")
    assert len(runs) == 1
    expected = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
    assert runs[0].info.status == expected
    if expected == "FAILED":
        assert "boom" in runs[0].data.tags["ser.error"]


def test_bad_data_root_leaves_no_run(tracking_store: str, tmp_path: Path) -> None:
    from ser_mlflow.data import DataError
    from ser_mlflow.jobs.train import run_training

    with pytest.raises(DataError, match="nope"):
        run_training(_cfg(tmp_path / "nope"), progress=False)
    assert mlflow.search_runs(search_all_experiments=True, output_format="list") == []


@pytest.mark.slow
def test_mlflow_run_entry_point(tiny_corpus: Path, tmp_path: Path) -> None:
    """`mlflow run . -e train --env-manager local` end to end, as a user types it."""
    work = tmp_path / "work"
    work.mkdir()
    uri = f"sqlite:///{work / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    env.pop("MLFLOW_RUN_ID", None)
    env.pop("MLFLOW_EXPERIMENT_ID", None)  # `mlflow run --experiment-name` refuses both
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    subprocess.run([shutil.which("ser-mlflow", path=env["PATH"]), "init", "--experiment", "e2e"],
                   cwd=work, env=env, check=True, capture_output=True)
    proc = subprocess.run(
        [str(Path(bindir) / "mlflow"), "run", str(REPO), "-e", "train", "--env-manager", "local",
         "--experiment-name", "e2e",
         "-P", f"data_root={tiny_corpus}", "-P", "feature_sets=fau", "-P", "epochs=2",
         "-P", "units=8,4", "-P", "batch_size=4", "-P", "loss=STL2"],
        cwd=work, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "devel DE+HU" in proc.stdout
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["e2e"], output_format="list")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    run = runs[0]
    assert run.data.tags["ser.loss"] == "STL2"
    assert run.data.params["loss"] == "STL2"
    assert run.info.artifact_uri.startswith((work / "mlartifacts").as_uri())
    files = pd.DataFrame([a.path for a in MlflowClient().list_artifacts(run.info.run_id)])
    assert set(files[0]) >= {"plots", "predictions", "training_summary.json"}
    # MLflow 3 keeps the model as a LoggedModel linked to the run
    logged = mlflow.search_logged_models(experiment_ids=[run.info.experiment_id],
                                         output_format="list")
    assert [m.source_run_id for m in logged] == [run.info.run_id]
    assert mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model").metadata is not None


@pytest.mark.slow
def test_sigterm_keeps_checkpoint_and_resume_finishes(tiny_corpus: Path, tmp_path: Path) -> None:
    """SIGTERM mid-training: run KILLED with a checkpoint; --resume-run-id finishes it."""
    import signal

    from services import wait_for

    work = tmp_path / "w"
    work.mkdir()
    uri = f"sqlite:///{work / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    env.pop("MLFLOW_RUN_ID", None)
    exe = str(Path(sys.executable).parent / "ser-mlflow")
    args = ["train", "--data-root", str(tiny_corpus), "--epochs", "40", "--units", "8,4",
            "--batch-size", "4", "--experiment", "sig"]
    proc = subprocess.Popen([exe, *args], cwd=work, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    mlflow.set_tracking_uri(uri)
    client = MlflowClient()
    found: list[str] = []

    def two_epochs_logged() -> bool:
        runs = mlflow.search_runs(experiment_names=["sig"], output_format="list") if (
            work / "mlflow.db").exists() else []
        if runs and len(client.get_metric_history(runs[0].info.run_id, "epoch/train_loss")) >= 2:
            found.append(runs[0].info.run_id)
        return bool(found) or proc.poll() is not None

    assert wait_for(two_epochs_logged, timeout=240) and found, "training did not reach epoch 2"
    run_id = found[0]
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0
    run = client.get_run(run_id)
    assert run.info.status == "KILLED", out[-2000:]
    assert "checkpoint" in {a.path for a in client.list_artifacts(run_id)}
    done = len(client.get_metric_history(run_id, "epoch/train_loss"))

    resumed = subprocess.run([exe, "train", "--resume-run-id", run_id, "--epochs", "1"],
                             cwd=work, env={**env}, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(run_id, "epoch/train_loss")]
    assert sorted(set(steps)) == list(range(1, 41)) and done < 40
    assert "devel_ccc_mean" in run.data.metrics and "ser.error" not in run.data.tags
