"""The settings schema: every training, sweep and search setting declared once.

A setting is a dataclass field carrying a :class:`Setting` (help, bound, parser, how it is
logged). From these declarations come the click options of the commands
(:func:`options`), the MLflow params a run logs and is rebuilt from
(:meth:`TrainConfig.to_params`, :meth:`TrainConfig.from_params`), the keys a chain YAML
file may set (:func:`train_config`), and the MLproject files (``cli/mlproject.py``).
Adding a training option is one field here plus the code that uses it. The fusion, report,
import-predictions and registry commands' settings are standalone :class:`Setting` tuples
(``FUSION_SETTINGS`` ...): their options, the chain's fusion/register keys and the checks
of their values (:func:`setting_values`) come from them the same way.

Paper defaults (Atmaja & Akagi 2020) are the field defaults; the records are frozen, so
the values logged to MLflow are exactly the values used.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import click

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


# --------------------------------------------------------------------------- parsers


def parse_feature_sets(value: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Split ``a+b`` (or a sequence) into feature-set names, rejecting empties and repeats.

    The one parser of feature-set names: options, params, chain files and sweeps use it.

    Raises:
        ValueError: when a name is empty or repeated.
    """
    names = tuple(value.split("+")) if isinstance(value, str) else tuple(value)
    names = tuple(str(n).strip() for n in names)
    if not names or any(not n for n in names):
        raise ValueError(f"feature_sets: expected names joined by '+', got {value!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"feature_sets: a feature set is repeated in {value!r}")
    return names


def parse_feature_set_list(value: str | list[str] | tuple[str, ...] | None) -> list[str] | None:
    """A sweep's feature sets: names joined by ',' (or '+'), or a list; None for 'all'."""
    if value is None:
        return None
    if isinstance(value, str):
        if value.strip().lower() in ("all", ""):
            return None
        value = value.replace("+", ",").split(",")
    sets = [str(s).strip() for s in value if str(s).strip()]
    if len(set(sets)) != len(sets):
        raise ValueError(f"feature_sets: a feature set is repeated in {value!r}")
    return sets or None


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


def optional_float(value: Any, name: str) -> float | None:
    """'' or None (the MLproject's "not given") is None; anything else a number."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
        return None
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{name}: expected a number, got {value!r}") from None


def optional_int(value: Any, name: str) -> int | None:
    """'' or None is None; anything else an integer."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name}: expected an integer, got {value!r}") from None


def parse_seeds(value: str | list[int] | tuple[int, ...]) -> list[int]:
    """``0,1,2`` (or a list) into seeds; at least one."""
    parts = value.split(",") if isinstance(value, str) else list(value)
    try:
        seeds = [int(str(s).strip()) for s in parts if str(s).strip()]
    except ValueError:
        raise ValueError(f"seeds: expected integers joined by ',', got {value!r}") from None
    if not seeds:
        raise ValueError("seeds: expected at least one seed")
    return seeds


def parse_experiment(value: str) -> str:
    """An experiment name; '' means "not given" (under `mlflow run` the run's own
    experiment, else ser-ces). A blank one would reach MLflow as a traceback."""
    if value and not str(value).strip():
        raise ValueError(f"experiment: expected a name (e.g. {DEFAULT_EXPERIMENT}) or "
                         f"nothing, got {value!r}")
    return value


def parse_blank_none(value: Any) -> Any:
    """'' (the MLproject's "not given") is None."""
    return value or None


class LossChoice(click.Choice):
    """Loss names in any case (mtl2, MTL2), shown and passed on as STL1 ... MTL2, custom."""

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        text = str(value).strip()
        text = "custom" if text.lower() == "custom" else text.upper()
        if text in self.choices:
            return text
        return super().convert(value, param, ctx)  # the error quotes what the user typed


# --------------------------------------------------------------------------- the schema


_SAME: Any = object()  # "as the field default"


@dataclass(frozen=True)
class Setting:
    """One setting: its option, its bound, how it is parsed and logged.

    Attributes:
        name: option/param/YAML key ('' = the field name).
        flag: the option's declaration when not ``--name`` (``--filter``,
            ``--calibrate/--no-calibrate``).
        help: the option's help text.
        type: click type ('' = from the field's type and bounds).
        ge, gt, le, lt: bounds, checked by the records and (for integers) by click.
        ne: a value refused although inside the bounds (``n_jobs=0``).
        expect: what a value out of bounds should be, for the error line.
        parse: text, YAML or logged value -> field value (None: the field type's).
        render: field value -> the logged param (None: the value itself).
        cli_default: the option's default when not the field's (e.g. None = not given).
        mlproject: the MLproject default text when not derived from the default.
        param: logged as an MLflow param.
        required_param: a run lacking the param cannot be rebuilt (False: settings
            added later, read back as their default from older runs).
        option: offered as a command-line option.
        default: the default of a setting that is not a record field.
    """

    name: str = ""
    flag: str = ""
    help: str = ""
    type: Any = ""
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    ne: float | None = None
    expect: str = ""
    parse: Callable[[Any], Any] | None = None
    render: Callable[[Any], Any] | None = None
    cli_default: Any = _SAME
    mlproject: str | None = None
    param: bool = True
    required_param: bool = True
    option: bool = True
    default: Any = None
    show_default: bool | str = True
    is_flag: bool = False
    envvar: str | None = None
    flag_value: str | None = None
    required: bool = False
    hidden: bool = False

    def check(self, value: Any) -> None:
        """Raise ValueError naming the setting when ``value`` is out of bounds."""
        if value is None or isinstance(value, bool) or not isinstance(value, int | float):
            return
        ok = math.isfinite(value) and all((
            self.ge is None or value >= self.ge, self.gt is None or value > self.gt,
            self.le is None or value <= self.le, self.lt is None or value < self.lt,
            self.ne is None or value != self.ne,
        ))
        if not ok:
            raise ValueError(f"{self.name}: expected {self.expect}, got {value}")

    def click_type(self, kind: Any) -> Any:
        if self.type != "":
            return self.type
        if self.parse is not None and kind is not Path:
            return str  # the parser reads the text ('' = not given, '256,128,64', ...)
        if kind is int and (self.ge is not None or self.le is not None or self.lt is not None):
            hi = self.le if self.le is not None else (self.lt - 1 if self.lt is not None else None)
            return click.IntRange(min=None if self.ge is None else int(self.ge),
                                  max=None if hi is None else int(hi))
        return {int: int, float: float, Path: click.Path(path_type=Path)}.get(kind, str)

    def click_option(self, kind: Any = str, default: Any = None) -> Callable[[Any], Any]:
        """The click option of this setting (``kind``: the field's Python type)."""
        cli_default = default if self.cli_default is _SAME else self.cli_default
        if self.render is not None and cli_default is not None:
            cli_default = self.render(cli_default)  # the text a user would type
        extra: dict[str, Any] = {}
        if self.envvar:
            extra["envvar"] = self.envvar
        if self.flag_value is not None:
            extra.update(is_flag=False, flag_value=self.flag_value)
        decl = self.flag or f"--{self.name.replace('_', '-')}"
        if self.is_flag:
            extra["is_flag"] = True
            if "/" in decl:  # --x/--no-x shows its default
                extra.update(default=self.default, show_default=self.show_default)
        else:
            extra.update(type=self.click_type(kind), show_default=self.show_default,
                         required=self.required)
            if not self.required:
                extra["default"] = cli_default
        return click.option(decl, self.name,
                            help=self.help or None, hidden=self.hidden, **extra)


def setting(default: Any, **meta: Any) -> Any:
    """A record field whose default and metadata make a :class:`Setting`."""
    return field(default=default, metadata={"setting": Setting(**meta)})


def _render_feature_sets(v: tuple[str, ...]) -> str:
    return "+".join(v)


def _render_units(v: tuple[int, ...]) -> str:
    return ",".join(str(u) for u in v)


def _check_record(record: Any) -> None:
    for f in dataclasses.fields(record):
        s = f.metadata.get("setting")
        if s is not None:
            dataclasses.replace(s, name=s.name or f.name).check(getattr(record, f.name))


@dataclass(frozen=True)
class LossConfig:
    """Multitask CCC loss weights: total = alpha*CCCL_aro + beta*CCCL_val + gamma*CCCL_lik."""

    name: str = setting("MTL2", name="loss", type=LossChoice(LOSS_NAMES))
    alpha: float = setting(0.7, cli_default=None, help="Arousal weight (custom; MTL1 too).",
                           parse=lambda v: optional_float(v, "alpha"), mlproject="")
    beta: float = setting(0.2, cli_default=None, help="Valence weight (custom; MTL1 too).",
                          parse=lambda v: optional_float(v, "beta"), mlproject="")
    gamma: float = setting(1.0, cli_default=None, help="Liking weight (custom only).",
                           parse=lambda v: optional_float(v, "gamma"), mlproject="")

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

        CC 16: the paper's three loss families and their checks, kept together as its rules.

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

    units: tuple[int, ...] = setting((256, 128, 64), help="LSTM layer sizes.",
                                     parse=parse_units, render=_render_units)
    dropout: float = setting(0.4, ge=0.0, lt=1.0, expect="a value in [0, 1)")
    optimizer: str = setting("rmsprop", option=False, required_param=False,
                             type=click.Choice(["rmsprop", "adam"]))
    lr: float = setting(5e-4, gt=0.0, expect="a positive learning rate")

    def __post_init__(self) -> None:
        _check_record(self)
        if self.optimizer not in ("rmsprop", "adam"):
            raise ValueError(f"optimizer: expected rmsprop or adam, got {self.optimizer!r}")


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs besides the loss and the network."""

    data_root: Path = setting(DEFAULT_DATA_ROOT, parse=Path, render=str,
                              help="AVEC-layout root; the default is synthesised when missing.")
    feature_sets: tuple[str, ...] = setting(
        (DEFAULT_FEATURE_SET,), parse=parse_feature_sets, render=_render_feature_sets,
        help="One feature set, or two joined by '+' for bimodal early fusion.")
    epochs: int = setting(50, ge=1, expect="a positive integer")
    batch_size: int = setting(34, ge=1, expect="a positive integer")
    shift_frames: int = setting(1, ge=0, expect="0 or more frames",
                                help="Label shift to the front for training (1 frame = 0.1 s).")
    seed: int = setting(0, ge=0, lt=2**32, expect="an integer in [0, 2**32)")  # numpy's, Keras'
    patience: int = setting(0, ge=0, expect="0 (off) or a number of epochs", required_param=False,
                            help="Stop after this many epochs without a better devel CCC mean "
                                 "(0 = off: train every epoch).")
    experiment: str = setting(
        "", param=False,
        help=f"MLflow experiment ('' = {DEFAULT_EXPERIMENT}); under `mlflow run` the run's own "
             "experiment (--experiment-name, else Default) decides and another name here "
             "is refused.")
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)

    def __post_init__(self) -> None:
        _check_record(self)

    @classmethod
    def from_params(cls, params: Mapping[str, str], *, experiment: str = "") -> TrainConfig:
        """Rebuild the config a run was trained with from its logged params.

        ``<name>_effective`` params (logged beside raw ``mlflow run`` values) win.

        Raises:
            ValueError: a param is missing or malformed.
        """
        p = {k: v for k, v in params.items() if not k.endswith("_effective")}
        p.update(
            {k[: -len("_effective")]: v for k, v in params.items() if k.endswith("_effective")}
        )
        missing = [s.name for s in train_settings() if s.param and s.required_param
                   and s.name not in p]
        if missing:
            raise ValueError(f"run params: missing {missing[0]!r}")
        values = {s.name: p[s.name] for s in train_settings() if s.param and s.name in p}
        return train_config(values, experiment=experiment)

    def to_params(self) -> dict[str, Any]:
        """Flat params for ``mlflow.log_params`` (strings the MLproject would pass)."""
        out: dict[str, Any] = {}
        for s, owner, attr in _train_fields():
            if s.param:
                value = getattr(_owner(self, owner), attr)
                out[s.name] = s.render(value) if s.render else value
        return out

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["data_root"] = str(self.data_root)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        """Inverse of :meth:`as_dict` (a search's spec stores its base config so)."""
        flat = {**{k: v for k, v in d.items() if k not in ("model", "loss")}, **d["model"],
                **{("loss" if k == "name" else k): v for k, v in d["loss"].items()}}
        return train_config(flat, experiment=d.get("experiment", ""))


# --------------------------------------------------------------------------- derived


def _owner(cfg: TrainConfig, owner: str) -> Any:
    return cfg if owner == "train" else getattr(cfg, owner)


def _train_fields() -> Iterator[tuple[Setting, str, str]]:
    """(setting, record, field) of every training setting, in option order."""
    for owner, record in (("train", TrainConfig), ("model", ModelConfig), ("loss", LossConfig)):
        for f in dataclasses.fields(record):
            s = f.metadata.get("setting")
            if s is None:
                continue
            default = f.default
            yield (dataclasses.replace(s, name=s.name or f.name, default=default), owner,
                   f.name)


def train_settings() -> list[Setting]:
    """Every training setting, named, with its default."""
    return [s for s, _, _ in _train_fields()]


def _kind(default: Any) -> Any:
    return Path if isinstance(default, Path) else type(default)


def _parse(s: Setting, value: Any) -> Any:
    if s.parse is not None:
        return s.parse(value)
    kind = _kind(s.default)
    try:
        return kind(value.strip() if isinstance(value, str) and kind is not str else value)
    except (TypeError, ValueError):
        noun = {int: "an integer", float: "a number"}.get(kind, "a text")
        raise ValueError(f"{s.name}: expected {noun}, got {value!r}") from None


def train_config(values: Mapping[str, Any], *, experiment: str | None = None) -> TrainConfig:
    """The one place option, param or YAML values become a TrainConfig.

    Missing keys take their defaults; an unknown key is refused naming the allowed ones.

    Raises:
        ValueError: an unknown key or a malformed or out-of-bounds value (naming it).
    """
    fields = list(_train_fields())
    allowed = [s.name for s, _, _ in fields]
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise ValueError(f"train settings: unknown {', '.join(map(repr, unknown))}; "
                         f"expected some of {', '.join(allowed)}")
    parts: dict[str, dict[str, Any]] = {"train": {}, "model": {}, "loss": {}}
    for s, owner, attr in fields:
        if s.name in values:
            parts[owner][attr] = _parse(s, values[s.name])
    if experiment is not None:
        parts["train"]["experiment"] = experiment
    parse_experiment(parts["train"].get("experiment", ""))
    loss = parts["loss"]
    return TrainConfig(
        **parts["train"],
        model=ModelConfig(**parts["model"]),
        loss=LossConfig.from_name(str(loss.get("name", LossConfig.name)), alpha=loss.get("alpha"),
                                  beta=loss.get("beta"), gamma=loss.get("gamma")),
    )


def train_options(*, exclude: tuple[str, ...] = ("feature_sets",)) -> Callable[[Any], Any]:
    """Decorator adding the option of every training setting (except ``exclude``)."""

    def apply(fn: Any) -> Any:
        for s in reversed(train_settings()):
            if s.option and s.name not in exclude:
                fn = s.click_option(_kind(s.default), s.default)(fn)
        return fn

    return apply


def option(s: Setting) -> Callable[[Any], Any]:
    """The click option of a standalone (non-record) setting."""
    return s.click_option(_kind(s.default), s.default)


def train_setting(name: str) -> Setting:
    """One training setting by name."""
    for s in train_settings():
        if s.name == name:
            return s
    raise KeyError(name)


# --------------------------------------------------------------------------- sweep and search

RANK_METRIC = Setting(name="rank_metric", default="devel_ccc_mean",
                      help="Metric that ranks the children.")
FORCE = Setting(name="force", default=False, is_flag=True,
                help="Retrain even when an identical run finished.")
JOBS = Setting(name="jobs", default=1, ge=1, expect="1 or more processes",
               help="Child runs trained at once, as processes.")
SWEEP_FEATURE_SETS = Setting(
    name="feature_sets", default="all",
    help="Feature sets to sweep, joined by ',' ('all' = every folder in the data root).")
TOP_K = Setting(name="top_k", default=7, ge=2, expect="2 or more",
                help="Pair every two of the best K unimodal feature sets.")
COMPARE_FEATURE_SET = Setting(name="feature_set", default=DEFAULT_FEATURE_SET,
                              help="The feature set (or two joined by '+') compared on.")
SEEDS = Setting(name="seeds", default="0,1,2", help="Seeds joined by ','.")
SHIFTS = Setting(name="shifts", default="0:40:2",
                 help="Label shifts in frames: 0,2,4,... or start:stop:step (stop included).")

#: Settings of each sweep command and chain step besides the training settings.
SWEEP_SETTINGS: dict[str, tuple[Setting, ...]] = {
    "unimodal": (SWEEP_FEATURE_SETS, RANK_METRIC, FORCE, JOBS),
    "bimodal": (TOP_K, RANK_METRIC, FORCE, JOBS),
    "compare": (COMPARE_FEATURE_SET, SEEDS, FORCE, JOBS),
    "delay_sweep": (SHIFTS, FORCE, JOBS),
}

SEARCH_SETTINGS: tuple[Setting, ...] = (
    Setting(name="sampler", default="auto", type=click.Choice(["auto", "random", "tpe", "nsga2"]),
            help="random = the paper's search; auto = tpe for one objective, nsga2 for multi."),
    Setting(name="objective", default="mean",
            type=click.Choice(["mean", "arousal", "valence", "liking", "multi"]),
            help="Devel CCC to maximise; multi = the three CCCs at once (Pareto front)."),
    Setting(name="n_trials", default="20", help="Trials ('' = until timeout)."),
    Setting(name="timeout", default="", help="Seconds after which no trial starts.",
            show_default=False),
    Setting(name="storage", default="", envvar="SER_MLFLOW_OPTUNA_STORAGE", show_default=False,
            help="Optuna RDB URL, or $SER_MLFLOW_OPTUNA_STORAGE (keeps a password off the "
                 "command line) [default: optuna.db beside mlflow.db]"),
    Setting(name="study_name", default="", show_default=False,
            help="Continue this study (created when missing)."),
    Setting(name="resume", default="false", type=click.Choice(["true", "false"]),
            flag_value="true", show_default=False,
            help="The study named by --study-name must exist already."),
    Setting(name="n_workers", default=1, ge=1, expect="1 or more",
            help="Local processes running trials of this search in parallel."),
    Setting(name="prune", default="auto", type=click.Choice(["auto", "true", "false"]),
            flag_value="true",
            help="Median pruning on per-epoch devel CCC (auto: on unless objective=multi)."),
    Setting(name="no_prune", default=False, is_flag=True, help="Same as --prune false."),
)


def settings_options(settings: tuple[Setting, ...]) -> Callable[[Any], Any]:
    """Decorator adding the options of standalone settings, in order."""

    def apply(fn: Any) -> Any:
        for s in reversed(settings):
            fn = option(s)(fn)
        return fn

    return apply


def step_options(step: str, opts: Mapping[str, Any], path: Path | str) -> dict[str, Any]:
    """A chain step's options, checked against that step's settings (naming the file)."""
    allowed = [s.name for s in SWEEP_SETTINGS.get(step, ()) if s.name not in ("force",)]
    unknown = sorted(set(opts) - set(allowed))
    if unknown:
        raise ValueError(f"{path}: step {step}: unknown {', '.join(map(repr, unknown))}; "
                         f"expected some of {', '.join(allowed)}")
    return dict(opts)


# --------------------------------------------------------------------------- fusion

#: Names the fusion settings take; ``fusion.params`` checks the estimator against the same.
FUSION_PROTOCOLS: tuple[str, ...] = ("cv", "paper")
FUSION_SOLVERS: tuple[str, ...] = ("exact", "liblinear")
FUSION_LOSSES: tuple[str, ...] = ("squared_epsilon_insensitive", "epsilon_insensitive")
FUSION_CONTEXTS: tuple[str, ...] = ("frames", "mean")
FUSION_WINDOWS: tuple[str, ...] = ("clean", "published")
FUSION_STAGE_INPUTS: tuple[str, ...] = ("oof", "insample")
FUSION_SELECTIONS: tuple[str, ...] = ("all", "same", "auto")

FUSION_SETTINGS: tuple[Setting, ...] = (
    Setting(name="data_root", default=DEFAULT_DATA_ROOT, parse=Path,
            help="Data root whose labels/ hold the Devel gold labels."),
    Setting(name="top_n", default=11, type=int, ge=2, expect="at least 2 inputs to fuse"),
    Setting(name="rank_metric", default="devel_ccc_mean"),
    Setting(name="filter_string", flag="--filter", default="", show_default=False,
            parse=parse_blank_none,
            help="MLflow search filter (default: unimodal, bimodal and external runs on "
                 "--data-root)."),
    Setting(name="protocol", default="cv", type=click.Choice(FUSION_PROTOCOLS),
            help="cv: honest, grouped by recording; paper: in-sample as published."),
    Setting(name="n_stages", default="", show_default="5 under paper, 1 under cv",
            parse=lambda v: optional_int(v, "n_stages"), ge=1, expect="at least 1 stage",
            help="Number of stages (paper) or their maximum (cv)."),
    Setting(name="contexts", default="11,13,15,17,19"),
    Setting(name="complexities", default="0.001,0.01,0.1,1"),
    Setting(name="n_splits", default=5, type=int),
    Setting(name="context", default="frames", type=click.Choice(FUSION_CONTEXTS),
            help="Window features: every frame (paper) or window mean."),
    Setting(name="calibrate", flag="--calibrate/--no-calibrate", default=False, is_flag=True,
            help="Match each SVR output's mean and std to the target (in-fold)."),
    Setting(name="input_selection", default="all",
            help="all, same, auto, or one per attribute (e.g. same,same,all)."),
    Setting(name="stage_inputs", default="oof", type=click.Choice(FUSION_STAGE_INPUTS)),
    Setting(name="loss", default="squared_epsilon_insensitive",
            type=click.Choice(FUSION_LOSSES),
            help="SVR loss: squared error, or absolute error (published)."),
    Setting(name="solver", default="exact", type=click.Choice(FUSION_SOLVERS),
            help="exact: the optimum (closed form; ADMM for the absolute loss); liblinear: "
                 "the published LinearSVR, slow, stops at --max-iter."),
    Setting(name="windows", default="clean", type=click.Choice(FUSION_WINDOWS),
            help="clean: t-k..t+k per recording; published: AVEC script's windows."),
    Setting(name="max_iter", default=1000, type=int,
            help="liblinear passes (published: 1000, unconverged)."),
    Setting(name="n_jobs", default=-1, type=int, ne=0,
            expect="-1 (every core) or a positive number of threads",
            help="Parallel threads (-1: every core)."),
    Setting(name="recipes", default="auto",
            help="cv: auto (chosen per fold and attribute by an inner CV among "
                 "frames-cal-same, mean, mean-cal, mean-cal-same), names "
                 "joined by ',', or flags (--context/--calibrate/--input-selection/"
                 "--stage-inputs; setting one of them implies flags)."),
    Setting(name="prune_stages", flag="--prune-stages/--no-prune-stages", default=True,
            is_flag=True,
            help="cv: --n-stages is a maximum; a stage is kept only while the inner CV "
                 "improves."),
    Setting(name="seed", default=0, type=int,
            help="Seed of liblinear and of the bootstrap intervals."),
    Setting(name="experiment", default=DEFAULT_EXPERIMENT, parse=parse_experiment),
)

REPORT_SETTINGS: tuple[Setting, ...] = (
    Setting(name="parent_run_id", default="", show_default=False,
            help="Report the children of this run (a compare, unimodal, delay sweep...), "
                 "reused runs included."),
    Setting(name="filter_string", flag="--filter", default="", show_default=False,
            help="Report the runs this MLflow search filter selects."),
    Setting(name="run_ids", default="", show_default=False,
            help="Report these runs (ids joined by ',')."),
    Setting(name="pairs", default="", show_default=False,
            help="Paired comparisons 'A-B,...' of group labels (e.g. MTL2-STL2) [default: the "
                 "best group against every other; each fusion against the best single "
                 "system]."),
    Setting(name="group_by", default="", show_default=False,
            help="Tags/params whose values form the groups, joined by ',' (e.g. ser.loss) "
                 "[default: runs equal in all but the seed]."),
    Setting(name="labels", default="", show_default=False,
            help="Gold labels folder [default: <data_root>/labels of the runs]."),
    Setting(name="n_boot", default=2000, ge=100, expect="100 or more replicates",
            help="Bootstrap replicates (and permutations)."),
    Setting(name="seed", default=0, type=int),
    Setting(name="experiment", default="", show_default=False,
            help="Experiment of the report run [default: that of the first input run]."),
)

IMPORT_PREDICTIONS_SETTINGS: tuple[Setting, ...] = (
    Setting(name="predictions", type=click.Path(path_type=Path), required=True,
            help="Folder of AVEC-format prediction CSVs (Devel_DE_01.csv ...)."),
    Setting(name="labels", type=click.Path(path_type=Path), required=True,
            help="Folder of the matching AVEC label CSVs."),
    Setting(name="name", type=str, required=True, help="Run name and ser.feature_sets tag."),
    Setting(name="experiment", default=DEFAULT_EXPERIMENT),
)


# --------------------------------------------------------------------------- registry

MODEL_NAME = Setting(name="model_name", default="ser-ces")
METRIC = Setting(name="metric", default="devel_ccc_mean")

REGISTER_SETTINGS: tuple[Setting, ...] = (
    MODEL_NAME,
    METRIC,
    Setting(name="filter_string", flag="--filter", default="", show_default=False,
            help="MLflow search filter (default: FINISHED runs on --data-root whose model "
                 "predicts from raw features)."),
    Setting(name="alias", default="champion"),
    Setting(name="data_root", default=DEFAULT_DATA_ROOT, parse=Path,
            help="Data root whose runs the default filter selects."),
    Setting(name="challenger", default="challenger",
            help="Alias the new version gets when it does not beat --alias's version."),
    Setting(name="force", default=False, is_flag=True,
            help="Move --alias to the new version even when its metric is not higher."),
)

PROMOTE_SETTINGS: tuple[Setting, ...] = (
    MODEL_NAME,
    Setting(name="challenger", default="challenger"),
    Setting(name="champion", default="champion"),
    METRIC,
    Setting(name="force", default=False, is_flag=True,
            help="Promote even when the metric is not higher."),
)

PREDICT_SETTINGS: tuple[Setting, ...] = (
    Setting(name="model_uri", type=str, required=True,
            help="Any MLflow model URI, e.g. models:/ser-ces@champion or runs:/<run_id>/model."),
    Setting(name="data_root", default=DEFAULT_DATA_ROOT, parse=Path),
    Setting(name="partition", default="Test", type=click.Choice(["Train", "Devel", "Test"])),
    Setting(name="out", default=Path("predictions"), parse=Path,
            help="Folder for one AVEC-format CSV per recording."),
    Setting(name="experiment", default=DEFAULT_EXPERIMENT),
    Setting(name="audio", default=None, type=click.Path(path_type=Path), show_default=False,
            help="A WAV/FLAC recording or a folder of them: extract the model's audio "
                 "feature sets and write a CSV and a PNG per recording (instead of "
                 "--data-root/--partition)."),
    Setting(name="jobs", default=0, ge=0, expect="0 (one per core) or more processes",
            help="With --audio: extraction processes; 0 = one per core."),
)

#: Keys of the chain's fusion and register steps: the command's settings less those the
#: chain file sets once for every step (data_root, experiment) and ``force`` (main's).
CHAIN_STEP_SETTINGS: dict[str, tuple[Setting, ...]] = {
    step: tuple(s for s in settings if s.name not in ("data_root", "experiment", "force"))
    for step, settings in (("fusion", FUSION_SETTINGS), ("register", REGISTER_SETTINGS))
}


def setting_values(settings: tuple[Setting, ...], values: Mapping[str, Any], *,
                   where: str) -> dict[str, Any]:
    """Option or YAML values of standalone settings, parsed and checked against bounds.

    Text and numbers go through the setting's parser (integers from text too); lists and
    flags are passed on as given. ``where`` names the command or file in the error line.

    Raises:
        ValueError: an unknown key (naming the allowed ones) or a malformed or
            out-of-bounds value (naming the setting and what it expects).
    """
    by_name = {s.name: s for s in settings}
    unknown = sorted(set(values) - set(by_name))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; "
                         f"expected some of {', '.join(by_name)}")
    out: dict[str, Any] = {}
    for name, value in values.items():
        s = by_name[name]
        if s.parse is not None:
            value = s.parse(value)
        elif s.type is int or type(s.default) is int:
            value = _parse(dataclasses.replace(s, default=0), value)
        s.check(value)
        out[name] = value
    return out
