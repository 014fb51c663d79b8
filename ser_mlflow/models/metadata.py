"""The model metadata format: what a logged model needs besides its weights.

Written once per logged model as the artifact ``preprocess`` (``preprocess.json``) by
``tracking.model_logging``, read back by :class:`~ser_mlflow.models.pyfunc.SERModel` when
MLflow loads the model, and by the commands that feed a model (``predict``,
``model-input``, ``predict-audio``, ``fuse`` over raw-feature models). This module is the
one place that knows the JSON keys; models logged before it existed read the same.

Two kinds:

- ``network`` (the default, no ``kind`` key in the file): feature sets and their column
  order, the standardiser fitted on training frames, the label shift, the attributes, the
  network shape and the data digest;
- ``fusion``: columns ``<system>:<attribute>`` of the systems' predictions, the systems and
  their runs; with ``inputs`` the input models travel inside and ``raw_columns`` is the
  union of their raw feature columns (the model's input).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

#: The artifact key (and file name) of the metadata inside a logged model.
ARTIFACT = "preprocess"
FILE_NAME = "preprocess.json"


@dataclass(frozen=True)
class FusionInput:
    """One input model packed inside a raw-feature fusion model."""

    system: str
    model_uri: str
    feature_columns: list[str]


@dataclass(frozen=True)
class ModelMetadata:
    """Typed view of ``preprocess.json``; see the module docstring for the two kinds."""

    feature_columns: list[str]
    attributes: list[str]
    kind: Literal["network", "fusion"] = "network"
    # network
    feature_sets: list[str] = field(default_factory=list)
    shift_frames: int = 0
    standardizer: dict[str, Any] = field(default_factory=dict)
    network: dict[str, Any] = field(default_factory=dict)
    data_digest: str = ""
    # fusion
    systems: list[str] = field(default_factory=list)
    input_runs: list[str] = field(default_factory=list)
    inputs: list[FusionInput] = field(default_factory=list)
    raw_columns: list[str] = field(default_factory=list)

    @property
    def input_columns(self) -> list[str]:
        """The feature columns the model takes (a raw-feature fusion: its inputs' union)."""
        return list(self.raw_columns or self.feature_columns)

    @property
    def input_feature_sets(self) -> list[str]:
        """The feature sets of :attr:`input_columns` (``<set>:<column>``), in order."""
        return list(self.feature_sets or dict.fromkeys(
            c.split(":", 1)[0] for c in self.input_columns))

    @property
    def takes_predictions(self) -> bool:
        """A fusion whose input is its systems' predictions, not raw features."""
        return self.kind == "fusion" and not self.raw_columns

    def to_dict(self) -> dict[str, Any]:
        """The JSON object, with exactly the keys each kind has always written."""
        if self.kind == "fusion":
            out: dict[str, Any] = {
                "kind": "fusion", "feature_columns": self.feature_columns,
                "attributes": self.attributes, "systems": self.systems,
                "input_runs": self.input_runs,
            }  # fmt: skip
            if self.inputs:
                out["inputs"] = [vars(i) for i in self.inputs]
                out["raw_columns"] = self.raw_columns
            return out
        return {
            "feature_sets": self.feature_sets, "feature_columns": self.feature_columns,
            "attributes": self.attributes, "shift_frames": self.shift_frames,
            "standardizer": self.standardizer, "network": self.network,
            "data_digest": self.data_digest,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ModelMetadata:
        """Read the JSON object written by :meth:`to_dict` (or by older versions)."""
        kind: Literal["network", "fusion"] = (
            "fusion" if raw.get("kind") == "fusion" else "network")
        return cls(
            kind=kind,
            feature_columns=list(raw["feature_columns"]),
            attributes=list(raw["attributes"]),
            feature_sets=list(raw.get("feature_sets") or []),
            shift_frames=int(raw.get("shift_frames") or 0),
            standardizer=dict(raw.get("standardizer") or {}),
            network=dict(raw.get("network") or {}),
            data_digest=str(raw.get("data_digest") or ""),
            systems=list(raw.get("systems") or []),
            input_runs=list(raw.get("input_runs") or []),
            inputs=[FusionInput(str(i["system"]), str(i["model_uri"]),
                                list(i["feature_columns"])) for i in raw.get("inputs") or []],
            raw_columns=list(raw.get("raw_columns") or []),
        )

    def write(self, path: Path) -> Path:
        """Write the JSON file (``indent=1``, as always) and return its path."""
        path.write_text(json.dumps(self.to_dict(), indent=1))
        return path

    @classmethod
    def read(cls, path: str | Path) -> ModelMetadata:
        return cls.from_dict(json.loads(Path(path).read_text()))
