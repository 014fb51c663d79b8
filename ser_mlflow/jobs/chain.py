"""`ser-mlflow main`: the whole chain from a YAML file in experiments/, steps reused.

The file names a data root, the training settings every step shares (``train:``, the keys
of the settings schema) and the steps in order. Every key is checked before anything runs:
an unknown one is refused naming the file, the key and the keys allowed there.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ser_mlflow import tracking
from ser_mlflow.jobs import pipeline
from ser_mlflow.settings import (
    CHAIN_STEP_SETTINGS,
    DEFAULT_DATA_ROOT,
    SEARCH_SETTINGS,
    SWEEP_SETTINGS,
    TrainConfig,
    parse_feature_set_list,
    parse_feature_sets,
    parse_seeds,
    setting_values,
    train_config,
)
from ser_mlflow.tracking.tags import (
    TAG_OBJECTIVE,
    TAG_OPTUNA_STORAGE,
    TAG_SAMPLER,
    TAG_STEP,
    TAG_STEP_KEY,
)

Echo = Callable[[str], None]
TOP_KEYS = ("data_root", "synthesize", "train", "steps")
CHAIN_STEPS = ("unimodal", "bimodal", "compare", "search", "fusion", "register")
#: Options of the `search` step (the schema's search settings a chain may set).
SEARCH_OPTIONS: tuple[str, ...] = ("feature_sets", *(
    s.name for s in SEARCH_SETTINGS if s.name not in ("no_prune",)))


@dataclass(frozen=True)
class ChainConfig:
    """The `main` chain as read from a YAML file in experiments/."""

    path: Path
    data_root: Path
    synthesize: dict[str, Any] | None
    train: dict[str, Any]
    steps: dict[str, dict[str, Any]]

    def base(self) -> TrainConfig:
        """The training settings every step shares."""
        return train_config({"data_root": str(self.data_root), **self.train})


def _check_keys(path: Path, where: str, given: Mapping[str, Any], allowed: list[str]) -> None:
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise ValueError(f"{path}: {where}: unknown key(s) {', '.join(map(repr, unknown))}; "
                         f"expected some of {', '.join(allowed)}")


def _step_keys(step: str) -> list[str]:
    """The keys a step of the chain file may set (from the settings schema)."""
    if step in SWEEP_SETTINGS:
        return [s.name for s in SWEEP_SETTINGS[step] if s.name != "force"]
    if step == "search":
        return list(SEARCH_OPTIONS)
    return [s.name for s in CHAIN_STEP_SETTINGS[step]]


def step_values(step: str, opts: Mapping[str, Any]) -> dict[str, Any]:
    """A fusion or register step's values, parsed and checked by the schema."""
    return setting_values(CHAIN_STEP_SETTINGS[step], opts, where=f"step {step}")


def _check_step(path: Path, step: str, opts: Mapping[str, Any]) -> None:
    """A step's keys, and for fusion/register its values too, before anything runs."""
    _check_keys(path, f"step {step}", opts, _step_keys(step))
    if step in CHAIN_STEP_SETTINGS:
        try:
            step_values(step, opts)
        except ValueError as exc:
            raise ValueError(f"{path}: step {step}: {exc}") from None


def _read_mapping(path: Path) -> dict[str, Any]:
    import yaml

    if not path.is_file():
        raise ValueError(f"{path}: config file not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return raw


def load_chain(path: str | Path) -> ChainConfig:
    """Read and validate a chain config.

    Raises:
        ValueError: missing file, YAML errors, unknown keys, steps or settings (names the
            file, the key and the keys allowed), or a malformed setting.
    """
    path = Path(path)
    raw = _read_mapping(path)
    unknown = set(raw) - set(TOP_KEYS)
    if unknown:
        raise ValueError(
            f"{path}: unknown keys {sorted(unknown)}; expected data_root, synthesize, train, steps"
        )
    steps = raw.get("steps") or {}
    bad = [s for s in steps if s not in CHAIN_STEPS]
    if bad:
        raise ValueError(f"{path}: unknown steps {bad}; expected some of {CHAIN_STEPS}")
    chain = ChainConfig(
        path=path,
        data_root=Path(raw.get("data_root", DEFAULT_DATA_ROOT)),
        synthesize=raw.get("synthesize"),
        train=dict(raw.get("train") or {}),
        steps={k: dict(v or {}) for k, v in steps.items()},
    )
    train_keys = [k for k in _train_keys() if k != "data_root"]
    _check_keys(path, "train", chain.train, train_keys)
    for step, opts in chain.steps.items():
        _check_step(path, step, opts)
    try:
        chain.base()
    except ValueError as exc:
        raise ValueError(f"{path}: train: {exc}") from None
    return chain


def _train_keys() -> list[str]:
    from ser_mlflow.settings import train_settings

    return [s.name for s in train_settings()]


def run_chain(chain: ChainConfig | str | Path, *, force: bool = False,
              echo: Echo = print) -> dict[str, Any]:
    """Run the chain's steps in order; each reuses identical finished runs unless forced."""
    if not isinstance(chain, ChainConfig):
        chain = load_chain(chain)
    if chain.synthesize is not None and not chain.data_root.exists():
        from ser_mlflow.data import write_synthetic_corpus

        echo(f"[main] writing the synthetic corpus to {chain.data_root}")
        write_synthetic_corpus(chain.data_root, progress=True, **chain.synthesize)
    base = chain.base()
    results: dict[str, Any] = {}
    # Under `mlflow run -e main` the run MLflow created is the chain's own run and every
    # step nests under it, in its experiment; otherwise the steps are top-level runs.
    chain_run: Any = contextlib.nullcontext()
    if tracking.launched_run_id():
        chain_run = tracking.run_context(
            experiment=base.experiment,
            run_name=f"main: {chain.path.name}",
            tags={tracking.TAG_STAGE: "pipeline", TAG_STEP: "main"},
        )
    with chain_run:
        for step, opts in chain.steps.items():
            echo(f"\n[main] step {step}")
            results[step] = STEPS[step](base, opts, force, echo)
    return results


def unimodal_step(base: TrainConfig, opts: Mapping[str, Any], force: bool, echo: Echo) -> Any:
    return pipeline.unimodal(
        base, feature_sets=parse_feature_set_list(opts.get("feature_sets")), force=force,
        echo=echo, rank_metric=opts.get("rank_metric", "devel_ccc_mean"),
        jobs=int(opts.get("jobs", 1)))


def bimodal_step(base: TrainConfig, opts: Mapping[str, Any], force: bool, echo: Echo) -> Any:
    return pipeline.bimodal(
        base, top_k=int(opts.get("top_k", 7)), force=force,
        rank_metric=opts.get("rank_metric", "devel_ccc_mean"), echo=echo,
        jobs=int(opts.get("jobs", 1)))


def compare_step(base: TrainConfig, opts: Mapping[str, Any], force: bool, echo: Echo) -> Any:
    sets = parse_feature_sets(opts.get("feature_set", "fau"))
    return pipeline.compare(
        base, feature_set="+".join(sets), seeds=parse_seeds(opts.get("seeds", (0, 1, 2))),
        force=force, echo=echo, jobs=int(opts.get("jobs", 1)))


def fusion_step(base: TrainConfig, opts: Mapping[str, Any], force: bool, echo: Echo) -> Any:
    """Fusion is reused like training (same options, candidate inputs, code and data)."""
    from ser_mlflow.jobs import latefusion

    return pipeline.reusable_fusion(
        base, opts, force=force, echo=echo,
        run=lambda: latefusion.run_fusion(data_root=base.data_root, experiment=base.experiment,
                                          echo=echo, **step_values("fusion", opts)))


def register_step(base: TrainConfig, opts: Mapping[str, Any], force: bool, echo: Echo) -> Any:
    """Registration runs every time; the champion moves only to a better model."""
    from ser_mlflow.jobs import registry

    return registry.register_best(data_root=base.data_root, echo=echo,
                                  **step_values("register", opts))


def search_step(base: TrainConfig, opts: Mapping[str, Any], force: bool,
                echo: Echo = print) -> Any:
    """The `search` step: run_search with the file's options.

    Like the chain's other steps it is reused when a search with the same options, training
    settings, code and data already FINISHED (``ser.step_key``), unless ``force``. Its study
    is named after that key unless the file names one, so a forced rerun continues it.

    Raises:
        ValueError: unknown options (named), or what run_search raises.
    """
    from ser_mlflow.data.fingerprint import corpus_fingerprint
    from ser_mlflow.search.report import SearchResult
    from ser_mlflow.search.run import run_search
    from ser_mlflow.search.spec import TAG_STUDY

    unknown = sorted(set(opts) - set(SEARCH_OPTIONS))
    if unknown:
        raise ValueError(f"search step: unknown options {unknown}; expected some of "
                         f"{list(SEARCH_OPTIONS)} (training options belong under `train`)")
    kw = dict(opts)
    if "feature_sets" in kw:
        base = replace(base, feature_sets=parse_feature_sets(kw.pop("feature_sets")))
    params = {**base.to_params(), **{k: v for k, v in kw.items() if k != "resume"}}
    key = pipeline.make_key("search", params, corpus_fingerprint(base.data_root))
    if not force and (rid := pipeline.find_finished(TAG_STEP_KEY, key)):
        echo(f"[search] reusing finished search run {rid} (same options, code and data)")
        tags = tracking.get_run(rid).data.tags
        return SearchResult(
            study_name=tags.get(TAG_STUDY, ""), storage=tags.get(TAG_OPTUNA_STORAGE, ""),
            parent_run_id=rid, objective=tags.get(TAG_OBJECTIVE, ""),
            sampler=tags.get(TAG_SAMPLER, ""), keys=[], best_run_id=tags.get("best_run"),
        )
    kw.setdefault("study_name", f"chain-{key[:12]}")
    return run_search(base, extra_tags={TAG_STEP_KEY: key}, progress=False, echo=echo, **kw)


STEPS: dict[str, Callable[[TrainConfig, Mapping[str, Any], bool, Echo], Any]] = {
    "unimodal": unimodal_step, "bimodal": bimodal_step, "compare": compare_step,
    "search": search_step, "fusion": fusion_step, "register": register_step,
}
