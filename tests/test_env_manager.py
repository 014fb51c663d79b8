"""`mlflow run . --env-manager uv`: the isolated path the README documents, end to end.

MLflow builds a fresh environment from conda.yaml with uv (the package index only, no
conda, no Python build) and runs the entry point in it. With a cold uv cache that installs
TensorFlow & co. (about 7 minutes and 2 GB here), too long for every CI run, so the test
runs when SER_MLFLOW_TESTS_UV=1 (with a warm cache, seconds) and is skipped otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("SER_MLFLOW_TESTS_UV") != "1",
                    reason="set SER_MLFLOW_TESTS_UV=1 (builds an environment with uv)")
def test_mlflow_run_with_uv(tmp_path: Path) -> None:
    bindir = Path(sys.executable).parent
    uv = shutil.which("uv", path=f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    assert uv, "uv is a dev dependency (pip install uv)"
    project = tmp_path / "project"
    shutil.copytree(REPO, project, ignore=shutil.ignore_patterns(
        ".git", ".venv", "data", "mlruns", "mlartifacts", "*.db", "__pycache__", "docs"))
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "PYTHONPATH")}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env["PATH"] = f"{bindir}{os.pathsep}{Path(uv).parent}{os.pathsep}{env.get('PATH', '')}"
    out = tmp_path / "tiny"
    proc = subprocess.run(
        [str(bindir / "mlflow"), "run", ".", "-e", "synthesize", "--env-manager", "uv",
         "-P", "scale=tiny", "-P", f"out={out}"],
        cwd=project, env=env, capture_output=True, text=True, timeout=1800,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert "/.mlflow/envs/" in proc.stderr  # it ran in MLflow's own environment
    assert (out / "labels").is_dir() and (out / "SYNTHETIC.json").is_file()
