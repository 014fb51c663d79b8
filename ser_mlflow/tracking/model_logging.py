"""Logging and loading the project's pyfunc models (the format is ``models.metadata``)."""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import mlflow

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
    preprocess: Mapping[str, Any],
    example: Any,
    example_output: Any,
    workdir: Path,
    params: Mapping[str, Any] | None = None,
    name: str = "model",
) -> Any:
    """Log the self-contained pyfunc (network + preprocessing) as the run's LoggedModel.

    The package source travels with the model (``code_paths``), so loading needs only the
    URI and the pip requirements, not this checkout.
    """
    import json

    from mlflow.models import infer_signature

    import ser_mlflow

    workdir.mkdir(parents=True, exist_ok=True)
    net_path = workdir / "network.keras"
    network.save(net_path)
    meta_path = workdir / "preprocess.json"
    meta_path.write_text(json.dumps(dict(preprocess), indent=1))
    return _log_pyfunc(
        name=name,
        python_model=str(Path(ser_mlflow.__file__).parent / "models" / "entry.py"),
        artifacts={"network": str(net_path), "preprocess": str(meta_path)},
        signature=infer_signature(example, example_output),
        input_example=example,
        code_paths=[str(Path(ser_mlflow.__file__).parent)],
        pip_requirements=_pip_requirements(),
        params={k: str(v) for k, v in (params or {}).items()},
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
    import json

    import joblib
    import pandas as pd
    from mlflow.models import infer_signature

    import ser_mlflow

    columns = [f"{s}:{a}" for s in system_labels for a in attributes]
    with tempfile.TemporaryDirectory() as tmp:
        est_path = Path(tmp) / "fusion.joblib"
        joblib.dump(est, est_path)
        meta_path = Path(tmp) / "preprocess.json"
        raw_columns = list(dict.fromkeys(
            c for spec in raw_inputs or [] for c in spec["feature_columns"]))
        meta: dict[str, Any] = {
            "kind": "fusion", "feature_columns": columns, "attributes": attributes,
            "systems": system_labels, "input_runs": input_runs,
        }  # fmt: skip
        artifacts = {"fusion": str(est_path), "preprocess": str(meta_path)}
        if raw_inputs:
            meta["inputs"] = [{"system": sp["system"], "model_uri": sp["model_uri"],
                               "feature_columns": sp["feature_columns"]} for sp in raw_inputs]
            meta["raw_columns"] = raw_columns
            for i, sp in enumerate(raw_inputs):
                artifacts[f"input_{i}"] = sp["model_uri"]
        meta_path.write_text(json.dumps(meta, indent=1))
        example = pd.DataFrame(0.0, index=range(3), columns=raw_columns or columns)
        example.insert(0, "timestamp", [0.0, 0.1, 0.2])
        example.insert(0, "name", "Devel_DE_01")
        out = example[["name", "timestamp"]].copy()
        for a in attributes:
            out[a] = 0.0
        return _log_pyfunc(
            name="model",
            python_model=str(Path(ser_mlflow.__file__).parent / "models" / "entry.py"),
            artifacts=artifacts,
            signature=infer_signature(example, out),
            input_example=example,
            code_paths=[str(Path(ser_mlflow.__file__).parent)],
            pip_requirements=_pip_requirements(),
            tags={TAG_MODEL_INPUT: "raw" if raw_inputs else "predictions",
                  "description": (
                      "Multistage SVR fusion over the models of runs "
                      f"{', '.join(input_runs)}: input raw feature columns <set>:<column>; "
                      "each input model predicts, then the fusion combines them."
                      if raw_inputs else
                      "Multistage SVR fusion. Input: predictions of the systems "
                      f"{', '.join(system_labels)} (runs {', '.join(input_runs)}) as columns "
                      "<system>:<attribute>, not raw features (imported prediction folders)."
                  )},
        )
