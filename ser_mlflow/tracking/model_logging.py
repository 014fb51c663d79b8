"""Logging and loading the project's pyfunc models (the format is ``models.metadata``)."""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import mlflow

from ser_mlflow.models import ENTRY_FILE
from ser_mlflow.models.metadata import ARTIFACT, FILE_NAME, FusionInput, ModelMetadata
from ser_mlflow.tracking.store import configure
from ser_mlflow.tracking.tags import TAG_MODEL_INPUT


def _pip_requirements() -> list[str]:
    from importlib.metadata import version

    pins = []
    for pkg in ("mlflow", "tensorflow", "keras", "numpy", "pandas", "scikit-learn"):
        try:
            pins.append(f"{pkg}=={version(pkg)}")
        except Exception:  # pragma: no cover - a package missing only narrows the pins
            continue
    return pins


def log_ser_model(
    *,
    network: Any,
    metadata: ModelMetadata,
    example: Any,
    example_output: Any,
    workdir: Path,
    params: Mapping[str, Any] | None = None,
    name: str = "model",
) -> Any:
    """Log the self-contained pyfunc (network + its metadata) as the run's LoggedModel.

    The package source travels with the model (``code_paths``), so loading needs only the
    URI and the pip requirements, not this checkout.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    net_path = workdir / "network.keras"
    network.save(net_path)
    meta_path = metadata.write(workdir / FILE_NAME)
    return _log_ser_pyfunc(
        name=name,
        artifacts={"network": str(net_path), ARTIFACT: str(meta_path)},
        example=example,
        example_output=example_output,
        params={k: str(v) for k, v in (params or {}).items()},
    )


def _log_ser_pyfunc(*, name: str, artifacts: dict[str, str], example: Any,
                    example_output: Any, **kwargs: Any) -> Any:
    """Log :class:`~ser_mlflow.models.pyfunc.SERModel` from code with the package inside."""
    from mlflow.models import infer_signature

    import ser_mlflow

    package = Path(ser_mlflow.__file__).parent
    return _log_pyfunc(
        name=name,
        python_model=str(ENTRY_FILE),
        artifacts=artifacts,
        signature=infer_signature(example, example_output),
        input_example=example,
        code_paths=[str(package)],
        pip_requirements=_pip_requirements(),
        **kwargs,
    )


@contextlib.contextmanager
def _quiet_model_logging() -> Iterator[None]:
    """Mute MLflow's INFO lines while a model is logged ("Validating input example against
    model signature"): they land between our progress lines and read as noise."""
    loggers = [logging.getLogger(n) for n in ("mlflow.pyfunc", "mlflow.models")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _log_pyfunc(**kwargs: Any) -> Any:
    with _quiet_model_logging():
        return mlflow.pyfunc.log_model(**kwargs)


# --- model registry -------------------------------------------------------------------


def load_pyfunc(model_uri: str) -> Any:
    """Load any MLflow model URI as pyfunc; a bad URI becomes a one-line ValueError."""
    from mlflow.exceptions import MlflowException

    configure()
    try:
        return mlflow.pyfunc.load_model(model_uri)
    except (MlflowException, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"model_uri: cannot load {model_uri!r}: {first}") from None


def log_fusion_model(
    est: Any,
    *,
    system_labels: list[str],
    attributes: list[str],
    input_runs: list[str],
    raw_inputs: list[dict[str, Any]] | None = None,
) -> Any:
    """Log a fitted fusion as a pyfunc whose input is the systems' predictions.

    Input columns are ``<system>:<attribute>`` beside ``name`` and ``timestamp``; the
    description lists the input runs whose predictions feed each column. With
    ``raw_inputs`` (one ``{"system", "model_uri", "feature_columns"}`` per input, all runs
    with models), the input models are packed inside and the input is raw features.
    """
    import joblib

    inputs = [FusionInput(sp["system"], sp["model_uri"], list(sp["feature_columns"]))
              for sp in raw_inputs or []]
    meta = ModelMetadata(
        kind="fusion", feature_columns=[f"{s}:{a}" for s in system_labels for a in attributes],
        attributes=attributes, systems=system_labels, input_runs=input_runs, inputs=inputs,
        raw_columns=list(dict.fromkeys(c for i in inputs for c in i.feature_columns)),
    )
    example, out = _fusion_example(meta)
    with tempfile.TemporaryDirectory() as tmp:
        est_path = Path(tmp) / "fusion.joblib"
        joblib.dump(est, est_path)
        artifacts = {"fusion": str(est_path), ARTIFACT: str(meta.write(Path(tmp) / FILE_NAME))}
        for i, spec in enumerate(inputs):
            artifacts[f"input_{i}"] = spec.model_uri
        return _log_ser_pyfunc(
            name="model",
            artifacts=artifacts,
            example=example,
            example_output=out,
            tags={TAG_MODEL_INPUT: "raw" if inputs else "predictions",
                  "description": _fusion_description(meta)},
        )


def _fusion_example(meta: ModelMetadata) -> tuple[Any, Any]:
    """(input example, output example) of a fusion model: three frames of zeros."""
    import pandas as pd

    example = pd.DataFrame(0.0, index=range(3), columns=meta.input_columns)
    example.insert(0, "timestamp", [0.0, 0.1, 0.2])
    example.insert(0, "name", "Devel_DE_01")
    out = example[["name", "timestamp"]].copy()
    for a in meta.attributes:
        out[a] = 0.0
    return example, out


def _fusion_description(meta: ModelMetadata) -> str:
    runs = ", ".join(meta.input_runs)
    if meta.inputs:
        return (f"Multistage SVR fusion over the models of runs {runs}: input raw feature "
                "columns <set>:<column>; each input model predicts, then the fusion combines "
                "them.")
    return ("Multistage SVR fusion. Input: predictions of the systems "
            f"{', '.join(meta.systems)} (runs {runs}) as columns "
            "<system>:<attribute>, not raw features (imported prediction folders).")
