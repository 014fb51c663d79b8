"""The cluster files in deploy/ stay in step with the project (no cluster needed).

`mlflow run -b kubernetes` needs a docker_env, so deploy/kubernetes/MLproject repeats some
entry points of the repository's MLproject; these tests fail when the two drift apart,
when a manifest refers to a Secret key nobody defines, or when the server's command line
uses an option `ser-mlflow server` does not have.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from ser_mlflow.cli import main

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "deploy" / "kubernetes"


def _yaml_docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]


def _words(command: str) -> list[str]:
    return command.split()


def test_kubernetes_project_mirrors_the_entry_points() -> None:
    root = yaml.safe_load((REPO / "MLproject").read_text())["entry_points"]
    k8s = yaml.safe_load((K8S / "MLproject").read_text())
    assert k8s["docker_env"]["image"], "mlflow run -b kubernetes needs a docker_env"
    for name, entry in k8s["entry_points"].items():
        assert name in root, f"{name}: not an entry point of MLproject"
        mine, theirs = entry["parameters"], root[name]["parameters"]
        # the study URL comes from $SER_MLFLOW_OPTUNA_STORAGE (a -P value would be logged)
        assert set(mine) == set(theirs) - {"storage"}, name
        for param, spec in mine.items():
            if param != "data_root":
                assert spec == theirs[param], f"{name}.{param}"
        expected = re.sub(r"--storage \{storage\}\s*", "", root[name]["command"])
        assert _words(entry["command"]) == _words(expected), name


def test_kubernetes_backend_config_is_what_mlflow_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.projects import _parse_kubernetes_config

    monkeypatch.chdir(REPO)  # paths in the config are relative to where `mlflow run` runs
    config = json.loads((K8S / "kubernetes_config.json").read_text())
    parsed = _parse_kubernetes_config(config)
    job = parsed["kube-job-template"]
    assert job["kind"] == "Job" and job["metadata"]["namespace"]
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert {"name", "image", "command"} <= set(container)  # what MLflow replaces
    assert job["spec"]["backoffLimit"] == 0


def _secret_refs(node: Any) -> list[tuple[str, str]]:
    if isinstance(node, dict):
        if "secretKeyRef" in node:
            return [(node["secretKeyRef"]["name"], node["secretKeyRef"]["key"])]
        return [ref for value in node.values() for ref in _secret_refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _secret_refs(value)]
    return []


def test_every_secret_key_the_manifests_use_is_defined() -> None:
    services = _yaml_docs("services.yaml")
    defined = {(d["metadata"]["name"], key) for d in services if d["kind"] == "Secret"
               for key in d["stringData"]}
    docs = [*services, *_yaml_docs("search-workers.yaml"),
            *_yaml_docs("kubernetes_job_template.yaml")]
    used = {ref for d in docs for ref in _secret_refs(d)}
    assert used and used <= defined, sorted(used - defined)


def test_the_server_deployment_uses_real_options() -> None:
    (deployment,) = [d for d in _yaml_docs("services.yaml") if d["kind"] == "Deployment"]
    command = deployment["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:2] == ["ser-mlflow", "server"]
    ctx = main.commands["server"].make_context("server", command[2:])
    assert ctx.params["auth"] and ctx.params["host"] == "0.0.0.0"
    assert ctx.params["artifacts_destination"] == "/artifacts"


def test_search_workers_join_with_the_worker_options() -> None:
    (job,) = _yaml_docs("search-workers.yaml")
    command = " ".join(job["spec"]["template"]["spec"]["containers"][0]["command"])
    assert "python -m ser_mlflow.search.study worker" in command
    for flag in ("--study-name", "--search-run-id", "--index"):
        assert flag in command
        assert f'"{flag}"' in (REPO / "ser_mlflow" / "search" / "study.py").read_text()
