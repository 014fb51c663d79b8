"""One bad-input table for every entry point: one `error:` line, exit code 2, no run left.

Each row is a command line a user could type (``{tiny}``: a tiny corpus, ``{tmp}``: the
row's working folder, ``{file}``: a regular file there, ``{closed}``: a port nobody listens
on), optional environment and set-up, and the message the single ``error:`` line must
match. Rows run in-process through click's CliRunner against one SQLite store shared by
the module (its tables are created once); after every row no run of that store may be
FINISHED or RUNNING. Nothing here trains a network: every row fails before training.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient
from services import free_port

from ser_mlflow.cli import main


def _file_named_mlartifacts(tmp: Path) -> None:
    (tmp / "mlartifacts").write_text("a file where the artifact folder should be\n")


def _config_with_unknown_step(tmp: Path) -> None:
    (tmp / "chain.yaml").write_text("steps:\n  pretrain: {epochs: 1}\n")


@dataclass(frozen=True)
class Row:
    args: list[str]
    message: str  # regex the one error line must match
    env: dict[str, str] = field(default_factory=dict)
    setup: Callable[[Path], None] | None = None


TRAIN = ["--epochs", "1", "--units", "4", "--batch-size", "4"]
ROWS: dict[str, Row] = {
    # synthesize
    "synthesize: unknown scale": Row(
        ["synthesize", "--scale", "huge", "--out", "{tmp}/c"], r"'--scale': 'huge' is not one"),
    "synthesize: output folder under a file": Row(
        ["synthesize", "--scale", "tiny", "--out", "{file}/corpus"], r"Not a directory"),
    # init / every command: the tracking store
    "init: malformed tracking URI": Row(
        ["init"], r"tracking URI: expected .* got 'mlflow\.db'",
        env={"MLFLOW_TRACKING_URI": "mlflow.db"}),
    "init: unwritable artifact location": Row(
        ["init", "--experiment", "unwritable-init"], r"artifact location: cannot write to",
        setup=_file_named_mlartifacts),
    # train
    "train: unknown feature set": Row(
        ["train", "--data-root", "{tiny}", "--feature-sets", "nope", *TRAIN],
        r"feature set 'nope' not found; available: .*fau"),
    "train: negative weight": Row(
        ["train", "--data-root", "{tiny}", "--loss", "custom", "--alpha", "-0.5", "--beta",
         "0.2", "--gamma", "1"], r"alpha: expected a weight in \[0, 1\], got -0\.5"),
    "train: non-numeric weight": Row(
        ["train", "--data-root", "{tiny}", "--loss", "custom", "--alpha", "abc"],
        r"alpha: expected a number, got 'abc'"),
    "train: missing data root": Row(
        ["train", "--data-root", "{tmp}/no-corpus", *TRAIN], r"data root does not exist"),
    "train: zero epochs": Row(
        ["train", "--epochs", "0"], r"'--epochs': 0 is not in the range x>=1"),
    "train: malformed units": Row(
        ["train", "--data-root", "{tiny}", "--units", "4,x"], r"units: expected positive int"),
    "train: malformed tracking URI": Row(
        ["train", "--data-root", "{tiny}", *TRAIN], r"tracking URI: expected .*'htp://",
        env={"MLFLOW_TRACKING_URI": "htp://127.0.0.1:5000"}),
    "train: tracking server unreachable": Row(
        ["train", "--data-root", "{tiny}", *TRAIN],
        r"tracking server http://127\.0\.0\.1:\d+ does not answer \(connection refused\)",
        env={"MLFLOW_TRACKING_URI": "http://127.0.0.1:{closed}"}),
    "train: unwritable artifact location": Row(
        ["train", "--data-root", "{tiny}", *TRAIN, "--experiment", "unwritable-train"],
        r"artifact location: cannot write to .*mlartifacts", setup=_file_named_mlartifacts),
    # sweeps
    "unimodal: unknown feature set": Row(
        ["unimodal", "--data-root", "{tiny}", "--feature-sets", "fau,nope", *TRAIN],
        r"feature set\(s\) 'nope' not found"),
    "bimodal: top_k larger than the runs available": Row(
        ["bimodal", "--data-root", "{tiny}", "--top-k", "7", *TRAIN],
        r"top_k: bimodal needs at least 2 finished unimodal runs .* found 0"),
    "bimodal: top_k below 2": Row(
        ["bimodal", "--top-k", "1"], r"'--top-k': 1 is not in the range x>=2"),
    "compare: non-numeric seeds": Row(
        ["compare", "--data-root", "{tiny}", "--seeds", "a,b"], r"seeds: expected integers"),
    "compare: unknown feature set": Row(
        ["compare", "--data-root", "{tiny}", "--feature-set", "nope", *TRAIN],
        r"feature set\(s\) 'nope' not found"),
    "main: missing config": Row(
        ["main", "--config", "{tmp}/nope.yaml"], r"nope\.yaml: config file not found"),
    "main: unknown step": Row(
        ["main", "--config", "{tmp}/chain.yaml"], r"unknown steps \['pretrain'\]",
        setup=_config_with_unknown_step),
    # search
    "search: resume a study that does not exist": Row(
        ["search", "--data-root", "{tiny}", *TRAIN, "--storage", "sqlite:///{tmp}/optuna.db",
         "--study-name", "nope", "--resume"], r"no study 'nope' to resume"),
    "search: zero trials": Row(
        ["search", "--data-root", "{tiny}", "--n-trials", "0"], r"n_trials: expected a positive"),
    "search: negative timeout": Row(
        ["search", "--data-root", "{tiny}", "--timeout", "-5"], r"timeout: expected a positive"),
    "search: malformed storage URL": Row(
        ["search", "--data-root", "{tiny}", *TRAIN, "--storage", "not-a-url"],
        r"storage: cannot open not-a-url"),
    "search: weights are searched, not given": Row(
        ["search", "--alpha", "0.5"], r"alpha, beta and gamma are searched"),
    # fusion
    "fusion: zero stages": Row(
        ["fusion", "--data-root", "{tiny}", "--n-stages", "0"], r"n_stages: expected at least 1"),
    "fusion: negative complexity": Row(
        ["fusion", "--data-root", "{tiny}", "--complexities", "-1"],
        r"complexities: expected finite values C > 0"),
    "fusion: non-numeric contexts": Row(
        ["fusion", "--data-root", "{tiny}", "--contexts", "11,x"],
        r"contexts: expected numbers joined by ','"),
    "fusion: published windows with mean context": Row(
        ["fusion", "--data-root", "{tiny}", "--windows", "published", "--context", "mean"],
        r"windows='published' describes frame windows; it needs context='frames'"),
    "fusion: published windows with k = 0": Row(
        ["fusion", "--data-root", "{tiny}", "--windows", "published", "--contexts", "0,3"],
        r"contexts: windows='published' needs every k >= 1"),
    "fusion: one input": Row(
        ["fusion", "--data-root", "{tiny}", "--top-n", "1"], r"top_n: fusion needs at least 2"),
    "fusion: filter that matches nothing": Row(
        ["fusion", "--data-root", "{tiny}", "--filter", "tags.`ser.stage` = 'nothing'"],
        r"filter: no FINISHED run with metric 'devel_ccc_mean' matches"),
    "fusion: missing data root": Row(
        ["fusion", "--data-root", "{tmp}/no-corpus"], r"labels folder does not exist"),
    "import-predictions: missing folder": Row(
        ["import-predictions", "--predictions", "{tmp}/none", "--labels", "{tiny}/labels",
         "--name", "x"], r"predictions folder does not exist"),
    # report and delay sweep
    "report: no runs named": Row(
        ["report"], r"runs: give exactly one of --parent-run-id, --filter, --run-ids"),
    "delay-sweep: bad shifts": Row(
        ["delay-sweep", "--data-root", "{tiny}", "--shifts", "0,a", *TRAIN],
        r"shifts: expected frames like 0,2,4 or 0:40:2, got '0,a'"),
    # registry
    "register: filter that matches nothing": Row(
        ["register", "--filter", "tags.`ser.stage` = 'nothing'"],
        r"filter: no FINISHED run with metric 'devel_ccc_mean' matches"),
    "register: malformed filter": Row(
        ["register", "--filter", "((("], r"filter: .* is not valid"),
    "promote: unknown model": Row(
        ["promote", "--model-name", "nope"], r"model_name: no registered model 'nope'"),
    "predict: unknown model alias": Row(
        ["predict", "--model-uri", "models:/nope@champion", "--data-root", "{tiny}"],
        r"model_name: no registered model 'nope'"),
    "predict: unknown partition": Row(
        ["predict", "--model-uri", "models:/x@y", "--partition", "Nope"],
        r"'--partition': 'Nope' is not one of"),
    # servers
    "server: not a database store": Row(
        ["server", "--backend-store-uri", "file:///tmp/mlruns", "--port", "{closed}"],
        r"backend_store_uri: expected a database URI"),
    "server: unwritable artifacts destination": Row(
        ["server", "--artifacts-destination", "{file}/art", "--port", "{closed}"],
        r"artifacts_destination: cannot write to .*Not a directory"),
    "server: port out of range": Row(
        ["server", "--port", "70000"], r"'--port': 70000 is not in the range"),
    "ui: port out of range": Row(["ui", "--port", "0"], r"'--port': 0 is not in the range"),
    "unknown command": Row(["tarin"], r"No such command 'tarin'"),
}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One SQLite store for the table, its tables created here once (saves seconds per row,
    and MLflow's "Creating initial MLflow database tables" lines stay out of the rows)."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('bad-input') / 'mlflow.db'}"
    MlflowClient(tracking_uri=uri).search_experiments()
    return uri


def _fill(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    return text


@pytest.mark.parametrize("row", list(ROWS.values()), ids=list(ROWS))
def test_bad_input_gives_one_line_and_exit_2(
    row: Row, store: str, tiny_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    (tmp_path / "a-file").write_text("not a folder\n")
    values = {"tiny": str(tiny_corpus), "tmp": str(tmp_path),
              "file": str(tmp_path / "a-file"), "closed": str(free_port())}
    if row.setup is not None:
        row.setup(tmp_path)
    env = {"MLFLOW_TRACKING_URI": store, **{k: _fill(v, values) for k, v in row.env.items()}}
    result = CliRunner().invoke(main, [_fill(a, values) for a in row.args], env=env)

    assert result.exit_code == 2, result.output[-3000:]
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert re.search(row.message, lines[0]), lines[0]
    client = MlflowClient(tracking_uri=store)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert not [(r.info.run_name, r.info.status) for r in runs
                if r.info.status in ("FINISHED", "RUNNING")]


def test_the_table_covers_every_entry_point() -> None:
    commands = {row.args[0] for row in ROWS.values()}
    assert set(main.commands) - commands == set(), "every command has a bad-input row"
    assert len(ROWS) >= 20
