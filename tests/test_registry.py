"""Registry: register the better of two runs, load by alias, predict, promote, serve."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pytest
from click.testing import CliRunner
from services import wait_for

from ser_mlflow.cli import main
from ser_mlflow.data import read_avec_csv
from ser_mlflow.jobs import registry
from ser_mlflow.settings import LossConfig, ModelConfig, TrainConfig
from ser_mlflow.ui.process import free_port

SMALL = ModelConfig(units=(8, 4), dropout=0.1, lr=5e-3)


@pytest.fixture
def two_runs(tiny_corpus: Path, tracking_store: str) -> list:
    from ser_mlflow.jobs.train import run_training

    out = []
    for fs, seed in ((("fau",), 0), (("egemaps",), 1)):
        cfg = TrainConfig(
            data_root=tiny_corpus,
            feature_sets=fs,
            epochs=2,
            batch_size=4,
            model=SMALL,
            loss=LossConfig.from_name("MTL2"),
            seed=seed,
            experiment="reg",
        )
        out.append(run_training(cfg, progress=False, echo=lambda s: None))
    return out


@pytest.mark.slow
def test_register_predict_promote_serve(
    two_runs: list, tiny_corpus: Path, tracking_store: str, tmp_path: Path
) -> None:
    best = max(two_runs, key=lambda r: r.metrics["devel_ccc_mean"])
    worse = min(two_runs, key=lambda r: r.metrics["devel_ccc_mean"])
    reg = registry.register_best(data_root=tiny_corpus, echo=lambda s: None)
    assert reg.run_id == best.run_id and reg.version == "1" and reg.new_version
    again = registry.register_best(data_root=tiny_corpus, echo=lambda s: None)
    assert again.version == "1" and not again.new_version  # no new version for the same run

    # load by alias in a fresh process, nothing but the URI
    code = (
        "import mlflow,sys; m=mlflow.pyfunc.load_model('models:/ser-ces@champion');"
        "print(sorted(m.unwrap_python_model().meta.feature_sets))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    best_sets = mlflow.get_run(best.run_id).data.tags["ser.feature_sets"]
    assert proc.stdout.strip().endswith(f"['{best_sets}']")

    # predict on Devel equals the run's logged devel predictions
    out = tmp_path / "pred"
    res = CliRunner().invoke(
        main,
        [
            "predict",
            "--model-uri",
            "models:/ser-ces@champion",
            "--data-root",
            str(tiny_corpus),
            "--partition",
            "Devel",
            "--out",
            str(out),
            "--experiment",
            "reg",
        ],
    )
    assert res.exit_code == 0, res.output
    logged = Path(
        mlflow.artifacts.download_artifacts(run_id=best.run_id, artifact_path="predictions/devel")
    )
    files = sorted(logged.glob("*.csv"))
    assert files and len(files) == len(list(out.glob("*.csv")))
    for f in files:
        np.testing.assert_allclose(read_avec_csv(out / f.name)[1], read_avec_csv(f)[1], atol=1e-6)
    pred_runs = mlflow.search_runs(
        experiment_names=["reg"],
        filter_string="tags.`ser.stage` = 'predict'",
        output_format="list",
    )
    assert len(pred_runs) == 1 and pred_runs[0].data.tags["ser.model_version"] == "1"
    assert pred_runs[0].info.status == "FINISHED"

    # a worse challenger is refused and changes nothing; a forced one is promoted
    wv = registry.tracking.register_run_model(worse.run_id, "ser-ces")
    registry.tracking.set_alias("ser-ces", "challenger", wv.version)
    refused = CliRunner().invoke(main, ["promote"])
    assert refused.exit_code == 1 and "refused" in refused.output
    assert str(registry.tracking.model_version_by_alias("ser-ces", "champion").version) == "1"
    forced = registry.promote(force=True, echo=lambda s: None)
    assert forced.promoted
    mv = registry.tracking.model_version_by_alias("ser-ces", "champion")
    assert str(mv.version) == str(wv.version) and mv.tags["ser.previous_version"] == "1"
    assert float(mv.tags["ser.previous_devel_ccc_mean"]) == pytest.approx(
        best.metrics["devel_ccc_mean"]
    )
    # and back: the better one is accepted without force
    registry.tracking.set_alias("ser-ces", "challenger", "1")
    assert registry.promote(echo=lambda s: None).promoted

    # serving: the answer equals `predict` to 1e-6
    port = free_port()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "models",
            "serve",
            "-m",
            "models:/ser-ces@champion",
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        def answers() -> bool:
            assert server.poll() is None, server.stderr.read().decode()[-2000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as r:
                    return r.status == 200
            except OSError:
                return False

        assert wait_for(answers, timeout=180), "mlflow models serve never answered /ping"
        from ser_mlflow.data import load_corpus
        from ser_mlflow.models.pyfunc import recordings_frame

        corpus = load_corpus(tiny_corpus, best_sets.split("+"))
        rec = corpus.partition("Devel")[0]
        df = recordings_frame([rec.name], [rec.timestamps], [rec.features], corpus.feature_columns)
        body = json.dumps({"dataframe_split": df.to_dict(orient="split")}).encode()
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        answer = json.loads(urllib.request.urlopen(req, timeout=60).read())["predictions"]
        served = np.array([[row[a] for a in ("arousal", "valence", "liking")] for row in answer])
        np.testing.assert_allclose(served, read_avec_csv(out / f"{rec.name}.csv")[1], atol=1e-6)
    finally:
        server.terminate()
        server.wait(timeout=30)


BAD_INPUT = [
    (["predict", "--model-uri", "models:/nope@champion"], "no registered model 'nope'"),
    (["predict", "--model-uri", "models:/ser-ces@gold"], "no alias 'gold'"),
    (["promote", "--challenger", "nobody"], "no alias 'nobody'"),
    (["register", "--filter", "tags.`ser.stage` = 'fusion'"], "no FINISHED run"),
    (
        ["predict", "--model-uri", "models:/ser-ces@champion", "--data-root", "/nonexistent"],
        "/nonexistent",
    ),
    (["predict", "--model-uri", "runs:/0123456789abcdef/model"], "cannot load"),
]


@pytest.mark.slow
def test_registry_bad_input(two_runs: list, tiny_corpus: Path, tracking_store: str) -> None:
    """Each bad input: one clear line, exit code 2, no run created or left unfinished."""
    registry.register_best(data_root=tiny_corpus, echo=lambda s: None)
    before = len(mlflow.search_runs(search_all_experiments=True, output_format="list"))
    for args, message in BAD_INPUT:
        extra = ["--data-root", str(tiny_corpus)] if args[0] == "register" else []
        res = CliRunner().invoke(main, [*args, *extra])
        assert res.exit_code == 2, (args, res.output)
        assert message in res.output, (args, res.output)
        assert res.output.count("\n") == 1, res.output
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert len(runs) == before and all(r.info.status == "FINISHED" for r in runs)


def test_pyfunc_input_errors() -> None:
    import pandas as pd

    from ser_mlflow.models.pyfunc import InputError, split_recordings

    cols = ["fau:a", "fau:b"]
    good = pd.DataFrame(
        {"name": ["x", "x"], "timestamp": [0.0, 0.1], "fau:a": [1.0, 2.0], "fau:b": [0.0, 1.0]}
    )
    assert split_recordings(good, cols)[0] == ["x"]
    cases = [
        (good.drop(columns=["fau:b"]), "missing \\['fau:b'\\]"),
        (good.assign(**{"vgg:z": 1.0}), "unexpected \\['vgg:z'\\]"),
        (good.assign(**{"fau:a": [np.nan, 1.0]}), "non-finite"),
        (good.iloc[:0], "non-empty"),
        (good.drop(columns=["timestamp"]), "missing column 'timestamp'"),
        (pd.concat([good, good.assign(name="y"), good]), "contiguous"),
    ]
    for df, match in cases:
        with pytest.raises(InputError, match=match):
            split_recordings(df, cols)


class _Constant(mlflow.pyfunc.PythonModel):
    """A stand-in model: registering needs a logged model, not a trained network."""

    def predict(self, context, model_input, params=None):  # noqa: ANN001, ANN201
        return model_input


def _scored_run(value: float, tags: dict[str, str]) -> str:
    with mlflow.start_run(tags={**tags, "ser.feature_sets": f"x{value}"}) as run:
        mlflow.log_metric("devel_ccc_mean", value)
        mlflow.pyfunc.log_model(name="model", python_model=_Constant())
    return run.info.run_id


def test_register_never_demotes_the_champion(tracking_store: str) -> None:
    """A worse model becomes @challenger and the output gives both values; --force moves
    the champion and is recorded; a better model takes it without force."""
    mlflow.set_experiment("reg")
    tags = {"ser.data_digest": "d", "ser.model_input": "raw"}
    good, worse, better = (_scored_run(v, tags) for v in (0.4, 0.2, 0.5))

    def register(run_id: str, *extra: str) -> str:
        res = CliRunner().invoke(
            main, ["register", "--filter", f"attributes.run_id = '{run_id}'", *extra])
        assert res.exit_code == 0, res.output
        return res.output

    def holder(alias: str) -> tuple[str, str]:
        mv = registry.tracking.model_version_by_alias("ser-ces", alias)
        return str(mv.version), mv.run_id

    assert "@champion -> version 1" in register(good)
    out = register(worse)
    assert holder("champion") == ("1", good) and holder("challenger") == ("2", worse)
    assert ("@champion stays on version 1 (devel_ccc_mean=0.4000); version 2 "
            "(devel_ccc_mean=0.2000) is not better and is now @challenger") in out
    refused = CliRunner().invoke(main, ["promote"])
    assert refused.exit_code == 1 and holder("champion")[0] == "1"
    assert "[forced]" in register(worse, "--force")
    mv = registry.tracking.model_version_by_alias("ser-ces", "champion")
    assert (str(mv.version), mv.tags["ser.promotion_forced"]) == ("2", "true")
    assert mv.tags["ser.previous_version"] == "1"
    assert float(mv.tags["ser.previous_devel_ccc_mean"]) == pytest.approx(0.4)
    assert "@champion -> version 3: devel_ccc_mean 0.5000 > 0.2000" in register(better)
    assert holder("champion") == ("3", better)
