"""Nothing lost, nothing left hanging: one-line errors, dead processes, lost servers, races.

First, one bad-input table for every entry point: one `error:` line, exit code 2, no run
left. Each row is a command line a user could type (``{tiny}``: a tiny corpus, ``{tmp}``:
the row's working folder, ``{file}``: a regular file there, ``{closed}``: a port nobody
listens on), optional environment and set-up, and the message the single ``error:`` line
must match. Rows run in-process through click's CliRunner against one SQLite store shared
by the module (its tables are created once); after every row no run of that store may be
FINISHED or RUNNING. No row trains a network: every row fails before training.

Then the lifecycle classes, each in its own fresh store: a SIGKILLed `train` is ended
KILLED by the next command and resumed to its full epoch count; a tracking server lost
mid-run ends `train` in one line and the run resumes once the server is back; four
processes starting together on a new SQLite store and a new Optuna database all succeed.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient
from services import SER_MLFLOW, client_env, start_server, wait_for

from ser_mlflow.cli import main
from ser_mlflow.ui.process import free_port


def _file_named_mlartifacts(tmp: Path) -> None:
    (tmp / "mlartifacts").write_text("a file where the artifact folder should be\n")


def _config_with_unknown_step(tmp: Path) -> None:
    (tmp / "chain.yaml").write_text("steps:\n  pretrain: {epochs: 1}\n")


def _broken_corpus(change: Callable[[Path], None]) -> Callable[[Path], None]:
    """A set-up that copies the tiny corpus to ``{tmp}/c`` and breaks it with ``change``."""

    def setup(tmp: Path) -> None:
        import shutil

        shutil.copytree(TINY[0], tmp / "c", symlinks=True)
        change(tmp / "c")

    return setup


def _edit_line(path: Path, line: int, edit: Callable[[str], str]) -> None:
    lines = path.read_text().splitlines(keepends=True)
    lines[line - 1] = edit(lines[line - 1])
    path.write_text("".join(lines))


def _symlink_loop(c: Path) -> None:
    (c / "fau" / "Train_DE_09.csv").symlink_to("Train_DE_09.csv")


def _non_utf8(c: Path) -> None:
    path = c / "fau" / "Train_DE_01.csv"
    raw = path.read_bytes().split(b"\n")
    raw[2] = raw[2].replace(b";", b";\xff", 1)
    path.write_bytes(b"\n".join(raw))


def _huge_value(c: Path) -> None:
    _edit_line(c / "fau" / "Train_DE_01.csv", 3,
               lambda text: ";".join([*text.split(";")[:3], "1e308", *text.split(";")[4:]]))


def _plus_folder(c: Path) -> None:
    (c / "fau").rename(c / "fau+x")


def _repeated_time(c: Path) -> None:
    path = c / "fau" / "Train_DE_01.csv"
    lines = path.read_text().splitlines(keepends=True)
    lines[3] = lines[2]  # line 4 repeats line 3
    path.write_text("".join(lines))


def _foreign_name(c: Path) -> None:
    _edit_line(c / "fau" / "Train_DE_01.csv", 5, lambda t: t.replace("Train_DE_01", "Train_DE_02"))


#: the session's tiny corpus, for set-ups (filled by the table's test)
TINY: list[Path] = []


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
    "extract: not a WAV or FLAC file": Row(
        ["extract", "--audio-dir", "{file}", "--out", "{tmp}/features"],
        r"a-file: expected a WAV or FLAC file"),
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
    "train: blank experiment name": Row(
        ["train", "--data-root", "{tiny}", *TRAIN, "--experiment", "  "],
        r"experiment: expected a name"),
    "train: infinite learning rate": Row(
        ["train", "--data-root", "{tiny}", *TRAIN, "--lr", "inf"],
        r"lr: expected a positive learning rate, got inf"),
    "train: negative seed": Row(
        ["train", "--data-root", "{tiny}", *TRAIN, "--seed", "-1"],
        r"'--seed': -1 is not in the range 0<=x<=4294967295"),
    "train: shift past the shortest recording": Row(
        ["train", "--data-root", "{tiny}", *TRAIN, "--shift-frames", "100000"],
        r"shift_frames: 100000 frames leave no label to train on in Train_\w+ \(\d+ frames"),
    "train: a symbolic link loop named like a recording": Row(
        ["train", "--data-root", "{tmp}/c", *TRAIN],
        r"Train_DE_09\.csv: symbolic link that leads nowhere",
        setup=_broken_corpus(_symlink_loop)),
    "train: a byte that is not UTF-8": Row(
        ["train", "--data-root", "{tmp}/c", *TRAIN],
        r"Train_DE_01\.csv: line 3 is not UTF-8 text \(byte 0xff",
        setup=_broken_corpus(_non_utf8)),
    "train: a value beyond float32": Row(
        ["train", "--data-root", "{tmp}/c", *TRAIN],
        r"fau/Train_DE_01\.csv: value 1e\+308 in column '\w+' \(column 4\) at line 3 is out "
        r"of range", setup=_broken_corpus(_huge_value)),
    "train: a feature-set folder with '+' in its name": Row(
        ["train", "--data-root", "{tmp}/c", *TRAIN, "--feature-sets", "fau+x"],
        r"feature set 'fau' not found; .*cannot be chosen.*rename fau\+x",
        setup=_broken_corpus(_plus_folder)),
    "train: a repeated frameTime": Row(
        ["train", "--data-root", "{tmp}/c", *TRAIN],
        r"Train_DE_01\.csv: column 'frameTime' \(column 2\) repeats .* at line 4",
        setup=_broken_corpus(_repeated_time)),
    "train: a name column that names another recording": Row(
        ["train", "--data-root", "{tmp}/c", *TRAIN],
        r"Train_DE_01\.csv: column 'name' \(column 1\) says 'Train_DE_02' at line 5; "
        r"expected Train_DE_01", setup=_broken_corpus(_foreign_name)),
    "train: a web server that is not MLflow": Row(
        ["train", "--data-root", "{tiny}", *TRAIN],
        r"answers but is not an MLflow tracking server \(GET /health: 404\)",
        env={"MLFLOW_TRACKING_URI": "http://127.0.0.1:{web}"}),
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
        ["search", "--alpha", "0.5"], r"No such option '--alpha'"),
    "search-worker: a study that does not exist": Row(
        ["search-worker", "--storage", "sqlite:///{tmp}/optuna.db", "--study-name", "nope",
         "--search-run-id", "0123"], r"study_name: no study 'nope' in sqlite:///"),
    "compare: the losses are compared, not given": Row(
        ["compare", "--loss", "STL1"], r"No such option '--loss'"),
    "mlproject: a root that does not exist": Row(
        ["mlproject", "--root", "{tmp}/nowhere", "--check"], r"'--root': Directory .* not exist"),
    "main: a setting the schema does not know": Row(
        ["main", "--config", "{tmp}/chain.yaml"],
        r"chain\.yaml: train: unknown key\(s\) 'epoch'; expected some of feature_sets",
        setup=lambda tmp: (tmp / "chain.yaml").write_text("train: {epoch: 2}\n")),
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
    "fusion: a context longer than a recording": Row(
        ["fusion", "--data-root", "{tiny}", "--contexts", "100000"],
        r"contexts: k=100000 reaches past the shortest Devel recording \(\d+ frames"),
    "fusion: zero threads": Row(
        ["fusion", "--data-root", "{tiny}", "--n-jobs", "0"], r"n_jobs: expected -1"),
    "fusion: blank experiment name": Row(
        ["fusion", "--data-root", "{tiny}", "--experiment", " "], r"experiment: expected a name"),
    "fusion: one input": Row(
        ["fusion", "--data-root", "{tiny}", "--top-n", "1"], r"top_n: expected at least 2 inputs"),
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
    "register: reserved alias latest": Row(
        ["register", "--alias", "latest"], r"alias: 'latest' cannot be used \('latest' alias"),
    "register: version-like alias": Row(
        ["register", "--alias", "v3"], r"alias: 'v3' cannot be used \(Version alias name"),
    "register: alias with a space and '!'": Row(
        ["register", "--alias", "bad alias!"], r"alias: 'bad alias!' cannot be used"),
    "register: empty model name": Row(
        ["register", "--model-name", ""], r"model_name: '' is not a valid registered model"),
    "register: model name that is a path": Row(
        ["register", "--model-name", "../../etc/x"],
        r"model_name: '\.\./\.\./etc/x' is not a valid registered model name"),
    "promote: reserved alias": Row(
        ["promote", "--champion", "latest"], r"alias: 'latest' cannot be used"),
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
    "server: a short admin password": Row(
        ["server", "--auth", "--port", "{closed}", "--backend-store-uri", "sqlite:///{tmp}/s.db"],
        r"MLFLOW_AUTH_ADMIN_PASSWORD: expected at least 12 characters",
        env={"MLFLOW_AUTH_ADMIN_PASSWORD": "short"}),
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


@pytest.fixture(scope="module")
def web_server() -> Iterator[int]:
    """A plain HTTP server that is not MLflow (it answers 404 to everything)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class NotFound(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self.send_error(404)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield int(httpd.server_address[1])
    httpd.shutdown()


def _fill(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    return text


@pytest.mark.parametrize("row", list(ROWS.values()), ids=list(ROWS))
def test_bad_input_gives_one_line_and_exit_2(
    row: Row, store: str, tiny_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    web_server: int,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    (tmp_path / "a-file").write_text("not a folder\n")
    TINY[:] = [tiny_corpus]
    values = {"tiny": str(tiny_corpus), "tmp": str(tmp_path), "web": str(web_server),
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
    assert not client.search_registered_models(), "nothing may be registered"


def test_the_table_covers_every_entry_point() -> None:
    commands = {row.args[0] for row in ROWS.values()}
    assert set(main.commands) - commands == set(), "every command has a bad-input row"
    assert len(ROWS) >= 20


# --------------------------------------------------------------------------- lifecycle

TINY_NET = ["--units", "4,4,4", "--batch-size", "4"]


def _error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error:")]


def _steps(client: MlflowClient, run_id: str) -> list[int]:
    return [m.step for m in client.get_metric_history(run_id, "epoch/devel_ccc_mean")]


def _start_train(cwd: Path, corpus: Path, uri: str, epochs: int, **env: str
                 ) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [SER_MLFLOW, "train", "--data-root", str(corpus), "--epochs", str(epochs), *TINY_NET,
         "--experiment", "life"],
        cwd=cwd, env=client_env(uri, **env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)


def _first_checkpoint(cwd: Path, proc: subprocess.Popen[str]) -> Path:
    """Wait until the trainer has checkpointed an epoch; return its run's folder."""
    found: list[Path] = []

    def checkpointed() -> bool:
        found[:] = list((cwd / "ser-checkpoints").glob("*/state.json"))
        return bool(found) or proc.poll() is not None

    assert wait_for(checkpointed, timeout=900, interval=0.05)
    assert found, proc.communicate()[1][-3000:]
    return found[0].parent


@pytest.mark.slow
def test_sigkilled_run_is_ended_killed_and_resumes_once_per_epoch(
    tiny_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGKILL leaves a RUNNING run; the next command ends it KILLED in one line; a second
    resume at once is refused; the resume finishes with exactly one point per epoch."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    epochs = 4
    proc = _start_train(tmp_path, tiny_corpus, uri, epochs)
    ckpt = _first_checkpoint(tmp_path, proc)
    proc.kill()
    proc.communicate(timeout=60)
    run_id = ckpt.name
    client = MlflowClient(tracking_uri=uri)
    assert client.get_run(run_id).info.status == "RUNNING"

    monkeypatch.chdir(tmp_path)
    env = {"MLFLOW_TRACKING_URI": uri, "MLFLOW_RUN_ID": ""}
    looked = CliRunner().invoke(main, ["init", "--experiment", "life"], env=env)
    assert looked.exit_code == 0, looked.output
    notes = [line for line in looked.stderr.splitlines() if line.strip()]
    assert len(notes) == 1 and f"run {run_id}" in notes[0] and "ended KILLED" in notes[0]
    assert f"--resume-run-id {run_id}" in notes[0]
    run = client.get_run(run_id)
    assert run.info.status == "KILLED"
    assert run.data.tags["mlflow.note.content"].startswith("**KILLED**")

    # another process holds the run (as a first resume does): the second one is refused
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from ser_mlflow.jobs.train import claim_run\n"
         f"with claim_run({run_id!r}):\n print('held', flush=True); sys.stdin.read()"],
        cwd=tmp_path, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env=client_env(uri))
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        second = CliRunner().invoke(main, ["train", "--resume-run-id", run_id], env=env)
    finally:
        holder.communicate(input="", timeout=60)
    assert second.exit_code == 2, second.output
    assert _error_lines(second.stderr) == [second.stderr.strip()]
    assert "being trained by another process" in second.stderr

    resumed = CliRunner().invoke(main, ["train", "--resume-run-id", run_id], env=env)
    assert resumed.exit_code == 0, resumed.output[-3000:]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert _steps(client, run_id) == list(range(1, epochs + 1))
    assert "ser.error" not in run.data.tags and "mlflow.note.content" not in run.data.tags
    assert len(client.search_logged_models([run.info.experiment_id])) == 1
    assert not ckpt.exists(), "a finished run keeps no local checkpoint"

    # loading and using the model in a fresh process prints no TensorFlow C++ lines
    load = subprocess.run(
        [sys.executable, "-c", "import mlflow\n"
         f"m = mlflow.pyfunc.load_model('runs:/{run_id}/model')\n"
         "print(m.predict(m.input_example).shape)"],
        cwd=tmp_path, env=client_env(uri, MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false"),
        capture_output=True, text=True, timeout=600)
    assert load.returncode == 0, load.stderr[-3000:]
    assert not re.search(r"^[IWEF]0000 |oneDNN|cuInit|absl::", load.stderr, re.M), load.stderr


@pytest.mark.slow
def test_lost_server_ends_in_one_line_and_resumes_after_restart(
    tiny_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server dies mid-run and stays away past a 2 s retry budget: `train` ends in one
    line naming the run and the resume command, keeps its checkpoint, and the resume
    finishes the run once the server is back."""
    srv = start_server(tmp_path / "srv")
    work = tmp_path / "work"
    work.mkdir()
    epochs = 3
    try:
        proc = _start_train(work, tiny_corpus, srv.uri, epochs, SER_MLFLOW_SERVER_RETRY_S="2")
        ckpt = _first_checkpoint(work, proc)
        os.kill(proc.pid, signal.SIGSTOP)  # hold training while the server goes away
        srv.kill()
        os.kill(proc.pid, signal.SIGCONT)
        _, err = proc.communicate(timeout=300)
        run_id = ckpt.name
        assert proc.returncode == 1, err[-3000:]
        assert "Traceback" not in err
        (line,) = _error_lines(err)
        assert f"tracking server {srv.uri} unreachable" in line and f"run {run_id}" in line
        assert f"ser-mlflow train --resume-run-id {run_id}" in line
        assert (ckpt / "state.json").exists()

        srv.start_again()
        monkeypatch.chdir(work)
        env = {"MLFLOW_TRACKING_URI": srv.uri, "MLFLOW_RUN_ID": ""}
        resumed = CliRunner().invoke(main, ["train", "--resume-run-id", run_id], env=env)
        assert resumed.exit_code == 0, resumed.output[-3000:]
        client = MlflowClient(tracking_uri=srv.uri)
        assert client.get_run(run_id).info.status == "FINISHED"
        assert _steps(client, run_id) == list(range(1, epochs + 1))
    finally:
        srv.stop()


_RACER = """
import os, sys, time
from pathlib import Path
go = Path(sys.argv[1])
from ser_mlflow.cli import main
from ser_mlflow.search.storage import open_storage
from ser_mlflow.search.tickets import open_study
Path(sys.argv[2]).touch()
parent = os.getppid()
while not go.exists():
    if os.getppid() != parent:  # the test died before the start: do not wait forever
        sys.exit(3)
    time.sleep(0.01)
if sys.argv[3] == "init":
    main(["init", "--experiment", "race"])
else:
    study = open_study(open_storage(sys.argv[3]), study_name="race", resume=False,
                       objective="mean", keys=["devel_ccc_mean"], feature_sets=["fau"],
                       masked_url="db")
    print("study", study.study_name)
"""


def _race(tmp_path: Path, uri: str, arg: str, n: int = 4
          ) -> list[subprocess.CompletedProcess[str]]:
    """Start ``n`` processes, release them together, return what each did."""
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", _RACER, str(go), str(tmp_path / f"r{i}"),
                               arg], cwd=tmp_path, env=client_env(uri), text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for i in range(n)]
    assert wait_for(lambda: all((tmp_path / f"r{i}").exists() or procs[i].poll() is not None
                                for i in range(n)), timeout=300, interval=0.05)
    go.touch()
    outs = [p.communicate(timeout=300) for p in procs]
    return [subprocess.CompletedProcess(p.args, p.returncode, o, e)
            for p, (o, e) in zip(procs, outs, strict=True)]


@pytest.mark.slow
def test_four_processes_on_a_new_store_and_a_new_optuna_db_all_succeed(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for done in _race(tmp_path, uri, "init"):
        assert done.returncode == 0, done.stderr[-3000:]
        assert "Experiment 'race' (id 1)" in done.stdout
    client = MlflowClient(tracking_uri=uri)
    assert [e.name for e in client.search_experiments()].count("race") == 1

    (tmp_path / "go").unlink()
    db = f"sqlite:///{tmp_path / 'optuna.db'}"
    for done in _race(tmp_path, uri, db):
        assert done.returncode == 0, done.stderr[-3000:]
        assert "study race" in done.stdout
    import optuna

    assert optuna.study.get_all_study_names(db) == ["race"]


# --------------------------------------------------------------------------- serving


def test_serving_refuses_float32_overflow_and_orders_rows_by_time() -> None:
    import numpy as np
    import pandas as pd

    from ser_mlflow.models.pyfunc import InputError, split_recordings, time_ordered

    cols = ["fau:a", "fau:b"]
    good = pd.DataFrame({"name": ["x"] * 4 + ["y"] * 2, "timestamp": [0.0, .1, .2, .3, 0, .1],
                         "fau:a": np.arange(6.0), "fau:b": np.arange(6.0) * 2})
    shuffled = good.iloc[[2, 0, 3, 1, 5, 4]].reset_index(drop=True)
    names, feats, stamps = split_recordings(shuffled, cols)
    assert names == ["x", "y"]
    assert [s.tolist() for s in stamps] == [[0.0, .1, .2, .3], [0.0, .1]]
    assert feats[0][:, 0].tolist() == [0.0, 1.0, 2.0, 3.0] and feats[1][:, 0].tolist() == [4, 5]
    assert time_ordered(shuffled).equals(good)
    with pytest.raises(InputError, match=r"non-finite value 1e\+308 at row 1, column 'fau:b' "
                                         r"\(in float32"):
        split_recordings(good.assign(**{"fau:b": [0, 1e308, 0, 0, 0, 0]}), cols)
    with pytest.raises(InputError, match=r"recording 'x' has two rows with timestamp 0\.1"):
        split_recordings(good.assign(timestamp=[0, .1, .1, .3, 0, .1]), cols)


# --------------------------------------------------------------------------- runtime classes


def test_runtime_failures_map_to_one_line_and_exit_1() -> None:
    """What `describe_failure` makes of real failures the table cannot provoke cheaply."""
    import sqlite3

    from ser_mlflow.cli import describe_failure
    from ser_mlflow.tracking import TrackingLost

    try:
        with open("/dev/full", "w") as fh:  # a real ENOSPC from the kernel
            fh.write("x")
    except OSError as exc:
        full = exc
    code, line = describe_failure(full)
    assert code == 1 and line.startswith("disk full") and "\n" not in line
    db = sqlite3.OperationalError("database or disk is full")
    assert describe_failure(db) == (1, describe_failure(db)[1])
    assert describe_failure(db)[1].startswith("disk full: the tracking database")
    assert describe_failure(TrackingLost("tracking server x unreachable")) == (
        1, "tracking server x unreachable")
    code, line = describe_failure(RuntimeError("first line\nsecond line"))
    assert code == 1 and line.startswith("RuntimeError: first line (unexpected")


# --------------------------------------------------------------------------- our processes


@pytest.mark.slow
def test_killing_the_printed_pid_stops_server_and_workers(tmp_path: Path) -> None:
    """SIGKILL of the pid `ser-mlflow server` prints: no worker keeps serving the port."""
    import socket

    srv = start_server(tmp_path, extra=["--workers", "2"])
    try:
        (pid,) = re.findall(r"Stop it \(server and workers\): Ctrl-C, or kill (\d+)",
                            srv.output())
        assert int(pid) == srv.proc.pid
        port = int(srv.uri.rsplit(":", 1)[1])

        def serving() -> bool:
            # /proc, not `ps`: ps cuts long command lines to the terminal width (CI's checkout
            # path is long enough to push `--port N` past 80 columns).
            for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
                try:
                    args = cmdline.read_bytes().split(b"\0")
                except OSError:
                    continue
                pairs = zip(args, args[1:], strict=False)
                if any(a == b"--port" and b == str(port).encode() for a, b in pairs):
                    return True
            return False

        assert serving()
        os.kill(int(pid), signal.SIGKILL)  # the pid alone, not its group
        srv.proc.wait(timeout=60)

        def port_free() -> bool:
            with socket.socket() as sock:
                return sock.connect_ex(("127.0.0.1", port)) != 0

        assert wait_for(lambda: port_free() and not serving(), timeout=120, interval=0.2)
    finally:
        srv.stop()
