"""Shared fixtures: a private SQLite tracking store per test, tiny synthetic corpora."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data" / "avec2019_ces_devel"


@pytest.fixture(autouse=True)
def _restore_mlflow_globals() -> Iterator[None]:
    """Leave MLflow's process-wide state as the test found it, whatever the test set.

    ``mlflow.set_tracking_uri`` keeps the URI in a module global *and* exports it to
    ``MLFLOW_TRACKING_URI``; ``set_experiment`` keeps an active experiment id. Left behind,
    they point the next test at a deleted temporary store (an order dependence); and
    ``set_experiment`` exports ``MLFLOW_EXPERIMENT_ID``, which a later ``mlflow run
    --experiment-name`` subprocess inherits and refuses. MLflow has
    no public getter for what was *set* (``get_tracking_uri`` resolves), so the private
    globals are read here, in test code only.
    """
    from mlflow.tracking import fluent
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    keys = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_EXPERIMENT_ID",
            "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID")
    env = {k: os.environ.get(k) for k in keys}
    uri, registry = tracking_utils._tracking_uri, registry_utils._registry_uri
    experiment = fluent._active_experiment_id
    yield
    tracking_utils.set_tracking_uri(uri)  # type: ignore[arg-type]  # None = unset
    registry_utils._registry_uri = registry
    fluent._active_experiment_id = experiment
    for key, value in env.items():  # set_tracking_uri/set_experiment exported: undo that too
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def shared_data() -> Path:
    """The real AVEC 2019 devel files (``../shared``): missing, a skip here, a failure in CI.

    They are the only tests against published figures, so CI (``$CI`` set) must not pass
    without them, as with Chromium and PostgreSQL.
    """
    if not SHARED_DATA.is_dir():
        reason = (f"{SHARED_DATA} is absent (real AVEC 2019 devel labels and baseline "
                  "predictions, never copied into the repository)")
        if os.environ.get("CI"):
            pytest.fail(f"CI runs the real-data tests, but {reason}")
        pytest.skip(reason)
    return SHARED_DATA


@pytest.fixture
def tracking_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh sqlite store in tmp, cwd moved there; asserts no run is left active."""
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    monkeypatch.chdir(tmp_path)
    mlflow.set_tracking_uri(uri)
    yield uri
    active = mlflow.active_run()
    while mlflow.active_run() is not None:
        mlflow.end_run()
    assert active is None, f"run {active.info.run_id} was left active"


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic corpus (written once per session)."""
    from ser_mlflow.data import write_synthetic_corpus

    root = tmp_path_factory.mktemp("tiny") / "corpus"
    write_synthetic_corpus(root, scale="tiny", seed=0)
    return root


@pytest.fixture(autouse=True)
def _http_retry_settings_restored() -> Iterator[None]:
    """Commands set MLflow's HTTP retry variables (``MLFLOW_HTTP_REQUEST_*``, from
    ``$SER_MLFLOW_SERVER_RETRY_S``) in their own process; commands run in-process must
    leave the test process's environment, which subprocesses inherit, as they found it."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_HTTP_REQUEST_")}
    yield
    for key in [k for k in os.environ if k.startswith("MLFLOW_HTTP_REQUEST_")]:
        if key not in saved:
            del os.environ[key]
    os.environ.update(saved)
