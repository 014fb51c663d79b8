"""The model registry: names, versions, aliases and their tags."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient

from ser_mlflow.tracking.store import configure


def check_registry_names(model_name: str, *aliases: str) -> None:
    """Refuse a model name or alias MLflow would reject, before anything is registered.

    MLflow's own rules: a name is not empty and has no '/' or ':' (nor '..' path parts);
    an alias is letters, digits, '_' and '-' only, not ``latest`` and not ``v<number>``.

    Raises:
        ValueError: naming the option and the rule.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.utils.validation import (
        _validate_model_alias_name,
        _validate_model_alias_name_reserved,
        _validate_model_name,
    )

    try:
        _validate_model_name(model_name)
    except MlflowException as exc:
        raise ValueError(f"model_name: {model_name!r} is not a valid registered model name "
                         f"({exc.message.splitlines()[0]})") from None
    for alias in aliases:
        try:
            _validate_model_alias_name(alias)
            _validate_model_alias_name_reserved(alias)
        except MlflowException as exc:
            raise ValueError(f"alias: {alias!r} cannot be used ({exc.message.splitlines()[0]}"
                             "); expected letters, digits, '_' or '-', e.g. champion") from None


def register_run_model(run_id: str, model_name: str) -> Any:
    """Register the run's logged model, or return the version that already holds it."""
    configure()
    client = MlflowClient()
    with contextlib.suppress(Exception):
        for mv in client.search_model_versions(f"name = '{model_name}' and run_id = '{run_id}'"):
            return mv
    return mlflow.register_model(f"runs:/{run_id}/model", model_name)


def model_version_by_alias(model_name: str, alias: str) -> Any:
    """The version an alias points to.

    Raises:
        ValueError: the model or the alias does not exist (names what does).
    """
    from mlflow.exceptions import MlflowException

    configure()
    client = MlflowClient()
    try:
        model = client.get_registered_model(model_name)
    except MlflowException:
        names = [m.name for m in client.search_registered_models()]
        raise ValueError(
            f"model_name: no registered model {model_name!r}; registered: {names or 'none'}"
        ) from None
    try:
        return client.get_model_version_by_alias(model_name, alias)
    except MlflowException:
        have = sorted(model.aliases) if model.aliases else []
        raise ValueError(
            f"alias: model {model_name!r} has no alias {alias!r}; aliases: {have or 'none'}"
        ) from None


def set_alias(model_name: str, alias: str, version: str) -> None:
    configure()
    MlflowClient().set_registered_model_alias(model_name, alias, version)


def set_version_tags(model_name: str, version: str, tags: Mapping[str, Any]) -> None:
    configure()
    client = MlflowClient()
    for k, v in tags.items():
        client.set_model_version_tag(model_name, version, k, str(v))


def model_versions(model_name: str) -> list[Any]:
    """Every version of a registered model; empty when the model does not exist."""
    configure()
    try:
        return list(MlflowClient().search_model_versions(f"name = '{model_name}'"))
    except Exception:
        return []


def resolve_model_version(model_uri: str) -> tuple[str, str] | None:
    """(name, version) behind a ``models:/name@alias`` or ``models:/name/version`` URI."""
    if not model_uri.startswith("models:/"):
        return None
    rest = model_uri[len("models:/") :]
    if "@" in rest:
        name, alias = rest.split("@", 1)
        return name, model_version_by_alias(name, alias).version
    name, _, version = rest.partition("/")
    return (name, version) if version and version.isdigit() else None
