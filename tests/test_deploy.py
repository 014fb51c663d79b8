"""The cluster files in deploy/ stay in step with the project (no cluster needed).

MLproject and deploy/kubernetes/MLproject (which `mlflow run -b kubernetes` needs, with a
docker_env) are generated from the commands' options; these tests fail when a committed
file is not the generated one,
when a manifest refers to a Secret key nobody defines, or when the server's command line
uses an option `ser-mlflow server` does not have.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from ser_mlflow.cli import main

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "deploy" / "kubernetes"


def _yaml_docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]


def _words(command: str) -> list[str]:
    return command.split()


def test_committed_project_files_are_the_generated_ones() -> None:
    """MLproject and deploy/kubernetes/MLproject are generated from the commands' options
    (`ser-mlflow mlproject --write`); a hand edit or a new option not written fails here."""
    from ser_mlflow.cli.mlproject import generated

    for path, text in generated(REPO).items():
        assert path.read_text() == text, f"{path}: run `ser-mlflow mlproject --write`"
    result = CliRunner().invoke(main, ["mlproject", "--root", str(REPO), "--check"])
    assert result.exit_code == 0, result.output


def test_every_entry_point_parameter_is_an_option_of_its_command() -> None:
    """Each parameter reaches the option of the same name (``--force`` flags included)."""
    for name in ("MLproject", "deploy/kubernetes/MLproject"):
        project = yaml.safe_load((REPO / name).read_text())
        for entry, spec in project["entry_points"].items():
            words = _words(spec["command"])
            assert words[:2] == ["ser-mlflow", entry.replace("_", "-")], f"{name}: {entry}"
            flags = {o for p in main.commands[words[1]].params for o in p.opts}
            for param in spec["parameters"]:
                at = words.index(f"{{{param}}}")
                flag = words[at - 1] if words[at - 1].startswith("--") else words[at + 6]
                assert flag in flags and flag[2:].replace("-", "_") == param, (
                    f"{name}: {entry}.{param}")


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
    assert "python -m ser_mlflow.search worker" in command
    worker = main.commands["search-worker"]
    flags = {o for p in worker.params for o in p.opts}
    for flag in ("--study-name", "--search-run-id", "--index"):
        assert flag in command and flag in flags
