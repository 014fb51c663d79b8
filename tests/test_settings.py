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


#: Commands whose every option is a standalone setting of the schema.
SCHEMA_COMMANDS = {
    "fusion": "FUSION_SETTINGS", "report": "REPORT_SETTINGS",
    "import-predictions": "IMPORT_PREDICTIONS_SETTINGS", "register": "REGISTER_SETTINGS",
    "promote": "PROMOTE_SETTINGS", "predict": "PREDICT_SETTINGS",
}


@pytest.mark.parametrize("command", sorted(SCHEMA_COMMANDS))
def test_every_fusion_and_registry_option_is_declared_in_the_schema(command: str) -> None:
    import click

    from ser_mlflow import settings

    declared = getattr(settings, SCHEMA_COMMANDS[command])
    ctx = click.Context(main.commands[command])
    options = [p for p in main.commands[command].params if isinstance(p, click.Option)]
    assert [o.name for o in options] == [s.name for s in declared]
    for opt, s in zip(options, declared, strict=True):
        assert (opt.help or "") == s.help, opt.name
        if not opt.required:
            assert opt.get_default(ctx) == s.default, opt.name


def test_fusion_choices_and_the_estimator_checks_are_one_declaration() -> None:
    import click

    from ser_mlflow.fusion import params

    options = {p.name: p for p in main.commands["fusion"].params}
    for name, allowed in params.CHOICES.items():
        assert isinstance(options[name].type, click.Choice), name
        assert tuple(options[name].type.choices) == allowed, name
    assert tuple(options["stage_inputs"].type.choices) == params.STAGE_INPUTS


@pytest.mark.parametrize(("args", "message"), [
    (["--n-jobs", "0"], r"n_jobs: expected -1 \(every core\) or a positive number of threads, "
                        r"got 0"),
    (["--top-n", "1"], r"top_n: expected at least 2 inputs to fuse, got 1"),
    (["--n-stages", "0"], r"n_stages: expected at least 1 stage, got 0"),
    (["--n-stages", "x"], r"n_stages: expected an integer, got 'x'"),
    (["--experiment", " "], r"experiment: expected a name \(e\.g\. ser-ces\) or nothing"),
])
def test_fusion_option_bounds_are_refused_in_one_line(tmp_path: Path, args: list[str],
                                                      message: str) -> None:
    """Refused by the schema before the data root (missing here) or any run is touched."""
    import re

    result = CliRunner().invoke(main, ["fusion", "--data-root", str(tmp_path / "none"), *args])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and re.search(message, lines[0]), result.output


def test_chain_fusion_and_register_keys_and_values_come_from_the_schema(tmp_path: Path) -> None:
    from ser_mlflow.settings import FUSION_SETTINGS, REGISTER_SETTINGS

    fusion_keys = [s.name for s in FUSION_SETTINGS if s.name not in ("data_root", "experiment")]
    assert chain._step_keys("fusion") == fusion_keys
    assert chain._step_keys("register") == ["model_name", "metric", "filter_string", "alias",
                                            "challenger"]
    assert {s.name for s in REGISTER_SETTINGS} - set(chain._step_keys("register")) == {
        "data_root", "force"}
    path = tmp_path / "chain.yaml"
    path.write_text("steps: {fusion: {top_n: 4, filter: x}}\n")
    with pytest.raises(ValueError, match=r"chain\.yaml: step fusion: unknown key\(s\) 'filter'; "
                                         r"expected some of top_n, rank_metric, filter_string, "
                                         r"protocol, n_stages"):
        chain.load_chain(path)
    path.write_text("steps: {register: {alias: champion, model: x}}\n")
    with pytest.raises(ValueError, match=r"step register: unknown key\(s\) 'model'; expected "
                                         r"some of model_name, metric, filter_string, alias, "
                                         r"challenger$"):
        chain.load_chain(path)
    path.write_text("steps: {fusion: {top_n: 4, n_jobs: 0}}\n")
    with pytest.raises(ValueError, match=r"chain\.yaml: step fusion: n_jobs: expected -1"):
        chain.load_chain(path)
    path.write_text("steps: {fusion: {top_n: '4', n_stages: '', contexts: [1, 2]}}\n")
    chain.load_chain(path)
    assert chain.step_values("fusion", {"top_n": "4", "n_stages": "", "contexts": [1, 2],
                                        "filter_string": ""}) == {
        "top_n": 4, "n_stages": None, "contexts": [1, 2], "filter_string": None}
