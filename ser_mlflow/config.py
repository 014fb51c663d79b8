"""Frozen settings for data, model, loss and training.

Every use case builds one of these from CLI options, so the values logged to MLflow are
exactly the values used. Paper defaults (Atmaja & Akagi 2020) are the field defaults.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: The 12 baseline feature sets of AVEC 2019 CES, as folder names (audio first, then video).
AUDIO_FEATURE_SETS: tuple[str, ...] = (
    "egemaps",
    "egemaps-func",
    "egemaps-xbow",
    "deepspectrum",
    "mfcc",
    "mfcc-func",
    "mfcc-xbow",
)
VIDEO_FEATURE_SETS: tuple[str, ...] = (
    "fau",
    "fau-func",
    "visual-xbow",
    "visual-resnet",
    "visual-vgg",
)
PAPER_FEATURE_SETS: tuple[str, ...] = AUDIO_FEATURE_SETS + VIDEO_FEATURE_SETS
DEFAULT_FEATURE_SET = "fau"
DEFAULT_DATA_ROOT = Path("data/synthetic")
DEFAULT_EXPERIMENT = "ser-ces"

#: Loss presets: (alpha, beta, gamma) for arousal, valence, liking.
LOSS_PRESETS: dict[str, tuple[float, float, float]] = {
    "STL1": (1.0, 0.0, 0.0),
    "STL2": (0.0, 1.0, 0.0),
    "STL3": (0.0, 0.0, 1.0),
    "MTL1": (0.7, 0.3, 0.0),
    "MTL2": (0.7, 0.2, 1.0),
}
LOSS_NAMES: tuple[str, ...] = (*LOSS_PRESETS, "custom")


def parse_feature_sets(value: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Split ``a+b`` (or a sequence) into feature-set names, rejecting empties and repeats.

    Raises:
        ValueError: when a name is empty or repeated.
    """
    names = tuple(value.split("+")) if isinstance(value, str) else tuple(value)
    names = tuple(n.strip() for n in names)
    if not names or any(not n for n in names):
        raise ValueError(f"feature_sets: expected names joined by '+', got {value!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"feature_sets: a feature set is repeated in {value!r}")
    return names


def parse_units(value: str | tuple[int, ...] | list[int]) -> tuple[int, ...]:
    """Parse ``256,128,64`` into LSTM layer sizes.

    Raises:
        ValueError: when a size is not a positive integer.
    """
    parts = value.split(",") if isinstance(value, str) else list(value)
    try:
        units = tuple(int(str(p).strip()) for p in parts)
    except ValueError:
        raise ValueError(
            f"units: expected positive integers joined by ',', got {value!r}"
        ) from None
    if not units or any(u <= 0 for u in units):
        raise ValueError(f"units: expected positive integers joined by ',', got {value!r}")
    return units


@dataclass(frozen=True)
class LossConfig:
    """Multitask CCC loss weights: total = alpha*CCCL_aro + beta*CCCL_val + gamma*CCCL_lik."""

    name: str = "MTL2"
    alpha: float = 0.7
    beta: float = 0.2
    gamma: float = 1.0

    @classmethod
    def from_name(
        cls,
        name: str,
        *,
        alpha: float | None = None,
        beta: float | None = None,
        gamma: float | None = None,
    ) -> LossConfig:
        """Build a preset, MTL1 with custom alpha/beta (gamma = 1 - alpha - beta), or custom.

        Raises:
            ValueError: unknown name, weights outside [0, 1], or all weights zero.
        """
        key = name.strip().upper() if name.strip().lower() != "custom" else "custom"
        if key not in LOSS_NAMES:
            raise ValueError(f"loss: expected one of {', '.join(LOSS_NAMES)}, got {name!r}")
        if key == "custom":
            if alpha is None or beta is None or gamma is None:
                raise ValueError("loss=custom needs alpha, beta and gamma")
            a, b, g = float(alpha), float(beta), float(gamma)
        elif key == "MTL1":
            a = 0.7 if alpha is None else float(alpha)
            b = 0.3 if beta is None else float(beta)
            g = 1.0 - a - b
            if gamma is not None and abs(float(gamma) - g) > 1e-9:
                raise ValueError(
                    f"loss=MTL1 fixes gamma = 1 - alpha - beta = {g:g}; got gamma={gamma}"
                )
        else:
            a, b, g = LOSS_PRESETS[key]
        for label, w in (("alpha", a), ("beta", b), ("gamma", g)):
            if not 0.0 <= w <= 1.0 or w != w:
                raise ValueError(f"{label}: expected a weight in [0, 1], got {w}")
        if a + b + g == 0:
            raise ValueError("loss weights: alpha, beta and gamma are all 0")
        return cls(name=key, alpha=a, beta=b, gamma=g)

    @property
    def weights(self) -> tuple[float, float, float]:
        return (self.alpha, self.beta, self.gamma)


@dataclass(frozen=True)
class ModelConfig:
    """The paper network: stacked LSTMs with dropout, one Dense(1) head per attribute."""

    units: tuple[int, ...] = (256, 128, 64)
    dropout: float = 0.4
    optimizer: str = "rmsprop"
    lr: float = 5e-4

    def __post_init__(self) -> None:
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout: expected a value in [0, 1), got {self.dropout}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr: expected a positive learning rate, got {self.lr}")
        if self.optimizer not in ("rmsprop", "adam"):
            raise ValueError(f"optimizer: expected rmsprop or adam, got {self.optimizer!r}")


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs besides the loss and the network."""

    data_root: Path = DEFAULT_DATA_ROOT
    feature_sets: tuple[str, ...] = (DEFAULT_FEATURE_SET,)
    epochs: int = 50
    batch_size: int = 34
    shift_frames: int = 1
    seed: int = 0
    experiment: str = DEFAULT_EXPERIMENT
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs: expected a positive integer, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size: expected a positive integer, got {self.batch_size}")
        if self.shift_frames < 0:
            raise ValueError(f"shift_frames: expected 0 or more frames, got {self.shift_frames}")
        if not 0 <= self.seed < 2**32:  # numpy's and Keras' seeds are unsigned 32-bit
            raise ValueError(f"seed: expected an integer in [0, 2**32), got {self.seed}")

    @classmethod
    def from_params(
        cls, params: dict[str, str], *, experiment: str = DEFAULT_EXPERIMENT
    ) -> TrainConfig:
        """Rebuild the config a run was trained with from its logged params.

        ``<name>_effective`` params (logged beside raw ``mlflow run`` values) win.

        Raises:
            ValueError: a param is missing or malformed.
        """
        p = {k: v for k, v in params.items() if not k.endswith("_effective")}
        p.update(
            {k[: -len("_effective")]: v for k, v in params.items() if k.endswith("_effective")}
        )
        try:
            return cls(
                data_root=Path(p["data_root"]),
                feature_sets=parse_feature_sets(p["feature_sets"]),
                epochs=int(p["epochs"]),
                batch_size=int(p["batch_size"]),
                shift_frames=int(p["shift_frames"]),
                seed=int(p["seed"]),
                experiment=experiment,
                model=ModelConfig(
                    units=parse_units(p["units"]),
                    dropout=float(p["dropout"]),
                    optimizer=p.get("optimizer", "rmsprop"),
                    lr=float(p["lr"]),
                ),
                loss=LossConfig.from_name(
                    "custom" if p["loss"] != "MTL1" else "MTL1",
                    alpha=float(p["alpha"]),
                    beta=float(p["beta"]),
                    gamma=float(p["gamma"]),
                )
                if p["loss"] in ("custom", "MTL1")
                else LossConfig.from_name(p["loss"]),
            )
        except KeyError as exc:
            raise ValueError(f"run params: missing {exc.args[0]!r}") from None

    def to_params(self) -> dict[str, Any]:
        """Flat params for ``mlflow.log_params`` (strings the MLproject would pass)."""
        return {
            "data_root": str(self.data_root),
            "feature_sets": "+".join(self.feature_sets),
            "loss": self.loss.name,
            "alpha": self.loss.alpha,
            "beta": self.loss.beta,
            "gamma": self.loss.gamma,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "units": ",".join(str(u) for u in self.model.units),
            "dropout": self.model.dropout,
            "optimizer": self.model.optimizer,
            "lr": self.model.lr,
            "shift_frames": self.shift_frames,
            "seed": self.seed,
        }

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["data_root"] = str(self.data_root)
        return d
