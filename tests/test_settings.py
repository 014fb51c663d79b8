"""The settings schema: one declaration gives the options, params, chain keys and MLproject."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from ser_mlflow.cli import main
from ser_mlflow.jobs import chain
from ser_mlflow.settings import TrainConfig, train_config, train_settings

REPO = Path(__file__).resolve().parents[1]
TRAINING_ENTRY_POINTS = ("train", "unimodal", "bimodal", "compare", "delay_sweep", "search")


def test_params_round_trip_through_the_schema() -> None:
    cfg = train_config({"feature_sets": "egemaps+fau", "loss": "custom", "alpha": "0.5",
                        "beta": "0.25", "gamma": "1", "units": "8,4", "patience": "3"})
    params = {k: str(v) for k, v in cfg.to_params().items()}
    assert params["feature_sets"] == "egemaps+fau" and params["units"] == "8,4"
    assert params["patience"] == "3" and "experiment" not in params
    assert set(params) == {s.name for s in train_settings() if s.param}
    assert TrainConfig.from_params(params) == cfg
    assert TrainConfig.from_dict(cfg.as_dict()) == cfg
    older = {k: v for k, v in params.items() if k not in ("patience", "optimizer")}
    assert TrainConfig.from_params(older).patience == 0  # runs logged before the setting
    with pytest.raises(ValueError, match="run params: missing 'epochs'"):
        TrainConfig.from_params({k: v for k, v in params.items() if k != "epochs"})


@pytest.mark.parametrize(("values", "message"), [
    ({"epoch": 2}, r"unknown 'epoch'; expected some of data_root, feature_sets, epochs"),
    ({"patience": -1}, r"patience: expected 0 \(off\) or a number of epochs, got -1"),
    ({"patience": "two"}, r"patience: expected an integer, got 'two'"),
    ({"dropout": "x"}, r"dropout: expected a number, got 'x'"),
    ({"feature_sets": "fau+fau"}, r"feature_sets: a feature set is repeated"),
])
def test_bad_settings_are_named(values: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        train_config(values)


def test_chain_file_keys_are_checked_against_the_schema(tmp_path: Path) -> None:
    path = tmp_path / "chain.yaml"
    path.write_text("train: {epochs: 2, patience: 1}\nsteps: {bimodal: {top_k: 3, topk: 2}}\n")
    with pytest.raises(ValueError, match=r"chain\.yaml: step bimodal: unknown key\(s\) 'topk'; "
                                         r"expected some of top_k, rank_metric, jobs"):
        chain.load_chain(path)
    path.write_text("train: {epochs: 2, patience: 1}\nsteps: {fusion: {top_m: 2}}\n")
    with pytest.raises(ValueError, match=r"step fusion: unknown key\(s\) 'top_m'; .*top_n"):
        chain.load_chain(path)
    path.write_text("train: {epochs: 2, patience: 1}\nsteps: {compare: {seeds: [0, 1]}}\n")
    loaded = chain.load_chain(path)
    assert loaded.base().patience == 1 and loaded.base().epochs == 2


def test_patience_is_a_parameter_of_every_training_entry_point() -> None:
    root = yaml.safe_load((REPO / "MLproject").read_text())["entry_points"]
    k8s = yaml.safe_load((REPO / "deploy/kubernetes/MLproject").read_text())["entry_points"]
    for name in TRAINING_ENTRY_POINTS:
        assert root[name]["parameters"]["patience"] == {"type": "string", "default": "0"}, name
        assert "--patience {patience}" in root[name]["command"], name
    for name in ("train", "search"):
        assert "--patience {patience}" in k8s[name]["command"], name
    assert "--patience" not in root["fusion"]["command"]


def test_sweep_commands_take_only_the_options_they_use() -> None:
    opts = {name: {o for p in main.commands[name].params for o in p.opts}
            for name in ("compare", "search", "unimodal", "delay-sweep")}
    assert not {"--loss", "--alpha", "--beta", "--gamma", "--seed"} & opts["compare"]
    assert not {"--loss", "--alpha", "--beta", "--gamma"} & opts["search"]
    assert "--shift-frames" not in opts["delay-sweep"]
    assert {"--jobs", "--patience"} <= opts["unimodal"] & opts["compare"]


@pytest.mark.slow
def test_patience_stops_training_early(tiny_corpus: Path, tracking_store: str) -> None:
    """Real training from the command line: with --patience 1 the run ends one epoch after
    its best one, logs patience, and keeps the best epoch's figures."""
    args = ["train", "--data-root", str(tiny_corpus), "--epochs", "12", "--units", "8,4",
            "--batch-size", "4", "--lr", "0.05", "--experiment", "patience"]
    result = CliRunner().invoke(main, [*args, "--patience", "1"])
    assert result.exit_code == 0, result.output
    client = MlflowClient()
    (run,) = client.search_runs(
        [client.get_experiment_by_name("patience").experiment_id])
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "epoch/devel_ccc_mean")]
    best = int(run.data.metrics["best_epoch"])
    assert run.data.params["patience"] == "1"
    assert sorted(steps) == list(range(1, best + 2)) and best + 1 < 12, (best, steps)
    assert TrainConfig.from_params(run.data.params).patience == 1
