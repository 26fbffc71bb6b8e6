"""The sweep spec: the whole YAML document as one typed object, its cross-field checks, and its YAML form.

A spec names the data, the benchmark suite, the fixed trial config (which is also the
baseline, trial 0), the search space over any config field, the searcher and the scheduler,
the resources of one trial, and where checkpoints and MLflow records go:

    name: logit-transforms
    data: {synthetic: {n: 4000}}
    trial: {optim: {epochs: 4, batch_size: 128}}
    search_space:
      objective:
        logit_transform: {type: choice, values: [identity, sine, sigmoid]}
        temperature: {type: loguniform, low: 0.02, high: 0.1}
        omega: {type: uniform, low: 0.5, high: 1.5707963267948966, when: {objective.logit_transform: [sine]}}
    search: {algorithm: tpe, num_samples: 8, seed: 0, max_concurrent: 2}
    scheduler: {name: asha, grace_period: 1, reduction_factor: 2}
    resources: {workers_per_trial: 1, cpus_per_worker: 1}

Every error names the YAML path (`search_space.negatives.strength.low`), the value and what is
allowed. The sections live beside it: `searchers.py` and `schedulers.py` (by name), `sections.py`
(resources, failures, leaderboard), `space.py` (the search space) and `space_liveness.py` (the
walk that refuses a knob drawn where it is dead).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from clipsweep.trainers.config import TrialConfig
from clipsweep.trainers.evaluation.settings import SuiteSettings
from clipsweep.trainers.schedules import stage_plan
from clipsweep.trainers.typed import build, unknown_field

from .schedulers import AshaSettings, SchedulerSettings, scheduler_doc, scheduler_settings
from .searchers import ALGORITHMS, SearchSettings
from .sections import CheckpointSettings, FailureSettings, LeaderboardSettings, Resources
from .space import Param, apply_overrides, near_fields, parse_space
from .space_liveness import check_live
from .yaml_docs import SpecError, plain, read_yaml, reject_nonfinite, reject_unknown


@dataclass(frozen=True)
class SweepSpec:
    """A whole sweep, as `clipsweep run SPACE.yaml` reads it.

    Example:
        >>> spec = SweepSpec.from_dict({"name": "t", "search_space": {
        ...     "objective": {"logit_transform": {"type": "choice", "values": ["identity", "sine"]}}}})
        >>> spec.params[0].field
        'objective.logit_transform'
    """

    name: str
    params: tuple[Param, ...]
    trial: dict[str, Any] = field(default_factory=dict)  # fixed config; the baseline is exactly this
    data: dict[str, Any] = field(default_factory=lambda: {"synthetic": {}})
    suite: SuiteSettings = field(default_factory=SuiteSettings)  # held-out split: with_heldout(data's)
    points_to_evaluate: tuple[dict[str, Any], ...] = ()  # explicit trials run first (after the baseline)
    search: SearchSettings = field(default_factory=SearchSettings)
    scheduler: SchedulerSettings = field(default_factory=AshaSettings)
    resources: Resources = field(default_factory=Resources)
    failure_config: FailureSettings = field(default_factory=FailureSettings)
    leaderboard: LeaderboardSettings = field(default_factory=LeaderboardSettings)
    checkpoints: CheckpointSettings = field(default_factory=CheckpointSettings)
    storage_path: str = "./clipsweep_results"
    tracking_uri: str = "sqlite:///mlruns.db"
    # MLflow gets each run's best checkpoint as a reference (its URI); true: also a copy
    copy_checkpoints: bool = False
    source: str = "<dict>"  # where the spec came from, for messages

    def __post_init__(self) -> None:
        _check_spec(self)

    @property
    def baseline(self) -> TrialConfig:
        """Trial 0: the fixed trial config with nothing searched (vanilla CLIP by default)."""
        return TrialConfig.from_dict(self.trial)

    @property
    def max_t(self) -> int:
        """Final-stage epochs after which no trial trains on: the scheduler's horizon."""
        return self.scheduler.horizon(self.baseline.optim.epochs)

    def full_fidelity(self, cfg: TrialConfig) -> int:
        """Epochs after which a trial of `cfg` counts as completed, the one rule the console,
        MLflow, Optuna and the finalists share: every epoch, or its final stage's first `max_t`
        (as far as the scheduler lets any trial train); fewer is stopped early."""
        final = stage_plan(cfg)[-1].epochs
        return cfg.optim.epochs - final + min(final, self.max_t)

    def config_for(self, overrides: dict[str, Any]) -> TrialConfig:
        """The fixed config with `overrides` ({dotted field: value}) applied."""
        return TrialConfig.from_dict(apply_overrides(self.trial, overrides))

    @classmethod
    def from_yaml(cls, path: str) -> SweepSpec:
        """Reads and validates a spec file.

        Raises:
            SpecError: unreadable or malformed YAML (with its line), or any invalid field.
        """
        doc = read_yaml(path, "spec")
        return cls.from_dict(doc, source=path)

    @classmethod
    def from_dict(cls, doc: Any, source: str = "<dict>") -> SweepSpec:
        """Builds a spec from the YAML's mapping; see the module docstring for the layout."""
        if not isinstance(doc, dict):
            raise SpecError(f"{source}: the spec must be a mapping of fields, got {type(doc).__name__}")
        for key, why in _REMOVED_KEYS.items():
            if key in doc:
                raise SpecError(f"{source}: {key} was removed: {why}")
        reject_unknown(doc, _TOP_KEYS, "", source)
        if "name" not in doc:
            raise SpecError(f"{source}: name is missing; a sweep needs a name (its MLflow experiment)")
        _check_name(doc["name"], source)
        reject_nonfinite(doc, source)
        trial = doc.get("trial") or {}
        base = trial_config(trial, source)
        mlflow = doc.get("mlflow") or {}
        reject_unknown(mlflow, ("tracking_uri", "copy_checkpoints"), "mlflow", source)
        return cls(
            name=_typed(doc["name"], str, "name", source),
            params=tuple(parse_space(doc.get("search_space") or {}, base, source)),
            trial=trial,
            data=doc.get("data") or {"synthetic": {}},
            suite=_suite(doc.get("suite"), source),
            points_to_evaluate=tuple(doc.get("points_to_evaluate") or ()),
            search=_section(SearchSettings, doc.get("search"), "search", source),
            scheduler=_scheduler(doc.get("scheduler"), source),
            resources=_section(Resources, doc.get("resources"), "resources", source),
            failure_config=_section(FailureSettings, doc.get("failure_config"), "failure_config", source),
            leaderboard=_section(LeaderboardSettings, doc.get("leaderboard"), "leaderboard", source),
            checkpoints=_section(CheckpointSettings, doc.get("checkpoints"), "checkpoints", source),
            storage_path=_typed(doc.get("storage_path", "./clipsweep_results"), str, "storage_path", source),
            tracking_uri=_typed(mlflow.get("tracking_uri", "sqlite:///mlruns.db"), str, "mlflow.tracking_uri", source),
            copy_checkpoints=_typed(mlflow.get("copy_checkpoints", False), bool, "mlflow.copy_checkpoints", source),
            source=source,
        )

    def to_doc(self) -> dict[str, Any]:
        """The spec as its YAML mapping (`from_dict(spec.to_doc())` gives it back)."""
        space: dict[str, Any] = {}
        for name, leaf in self.search_space_dict().items():
            section, knob = name.split(".", 1)
            space.setdefault(section, {})[knob] = plain(leaf)
        return {
            "name": self.name,
            "data": self.data,
            "suite": plain({k: v for k, v in self.suite.to_dict().items() if k != "heldout"}),
            "trial": self.trial,
            "search_space": space,
            "points_to_evaluate": [dict(p) for p in self.points_to_evaluate],
            "search": dataclasses.asdict(self.search),
            "scheduler": scheduler_doc(self.scheduler),
            "resources": dataclasses.asdict(self.resources),
            "failure_config": dataclasses.asdict(self.failure_config),
            "leaderboard": dataclasses.asdict(self.leaderboard),
            "checkpoints": dataclasses.asdict(self.checkpoints),
            "storage_path": self.storage_path,
            "mlflow": {"tracking_uri": self.tracking_uri, "copy_checkpoints": self.copy_checkpoints},
        }

    def search_space_dict(self) -> dict[str, Any]:
        """The search space as plain data, by dotted field (logged to the parent MLflow run)."""
        out = {}
        for p in self.params:
            leaf = {k: v for k, v in dataclasses.asdict(p).items() if k != "field" and v not in (None, (), {})}
            if len(p.when) == 1:
                leaf["when"] = p.when[0]  # the one-mapping form the YAML is usually written in
            out[p.field] = plain(leaf)
        return out


def trial_config(trial: Any, source: str) -> TrialConfig:
    """The `trial:` mapping of a spec or a `clipsweep train` config as a checked TrialConfig.

    Raises:
        SpecError: naming the field from the file's root (`trial.optim.lr`).
    """
    try:
        return TrialConfig.from_dict(trial)
    except ValueError as e:  # its messages name fields from the config's root: add `trial.`
        message = str(e)
        prefix = "unknown field " if message.startswith("unknown field ") else ""
        raise SpecError(f"{source}: {prefix}trial.{message[len(prefix):]}") from None


def _check_name(name: Any, source: str) -> None:
    """The sweep's name becomes a folder under storage_path and the MLflow experiment."""
    if isinstance(name, str) and name.strip() and name not in (".", "..") and not set(name) & set("/\\\0"):
        return
    raise SpecError(
        f"{source}: name={name!r}; allowed: a plain folder name (no '/', not '..'): "
        "it names the sweep's folder under storage_path and its MLflow experiment"
    )


_TOP_KEYS = (
    "name", "data", "suite", "trial", "search_space", "points_to_evaluate",
    "search", "scheduler", "resources", "failure_config", "leaderboard", "checkpoints", "storage_path", "mlflow",
)  # fmt: skip
_REMOVED_KEYS = {
    "asha": "write `scheduler: {name: asha, grace_period: ..., reduction_factor: ..., max_t: ...}` "
    "(the scheduler is chosen by name, from schedulers.SCHEDULERS; `name: none` trains every trial to the end)",
}


_KIND_NAMES = {int: "an integer", str: "a string", dict: "a mapping", bool: "true or false"}


def _typed(value: Any, kind: type, path: str, source: str) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise SpecError(f"{source}: {path}={value!r}; allowed: {_KIND_NAMES[kind]}")
    return value


def _section(cls: type, doc: Any, path: str, source: str) -> Any:
    """A typed section (validated in its `__post_init__`) from its YAML mapping."""
    try:
        return build(cls, {} if doc is None else doc, path)
    except ValueError as e:
        raise SpecError(f"{source}: {e}") from None


def _suite(doc: Any, source: str) -> SuiteSettings:
    try:
        return SuiteSettings.from_section(doc)
    except ValueError as e:
        raise SpecError(f"{source}: {e}") from None


def _scheduler(doc: Any, source: str) -> SchedulerSettings:
    if doc is not None and not isinstance(doc, dict):
        raise SpecError(f"{source}: scheduler={doc!r}; expected a mapping of fields")
    try:
        return scheduler_settings(doc)
    except ValueError as e:
        raise SpecError(f"{source}: {e}") from None


def _check_spec(spec: SweepSpec) -> None:
    """Cross-field checks once every section parsed."""
    s = spec.source
    if not spec.params:
        raise SpecError(f"{s}: search_space is empty; allowed: at least one searched field (a single config is `clipsweep train`)")
    try:
        spec.scheduler.check(spec.baseline.optim.epochs)
    except ValueError as e:
        raise SpecError(f"{s}: {e}") from None
    if ALGORITHMS[spec.search.algorithm].enumerates:
        for p in spec.params:
            if p.type != "choice":
                raise SpecError(
                    f"{s}: search_space.{p.field}.type={p.type!r} with search.algorithm='grid'; allowed: choice "
                    "(a grid enumerates listed values; use tpe or random for ranges)"
                )
    fields_known = spec.baseline.flat()
    for i, point in enumerate(spec.points_to_evaluate):
        if not isinstance(point, dict):
            raise SpecError(f"{s}: points_to_evaluate[{i}]={point!r}; expected a mapping {{field: value}}")
        for name in point:
            if name not in fields_known:
                raise SpecError(f"{s}: points_to_evaluate[{i}]: {unknown_field(str(name), near_fields(str(name), fields_known))}")
        try:
            cfg = spec.config_for(point)
        except ValueError as e:
            raise SpecError(f"{s}: points_to_evaluate[{i}]: {e}") from None
        dead = cfg.dead_knobs()
        for name in point:
            if name in dead:
                raise SpecError(
                    f"{s}: points_to_evaluate[{i}] sets {name}, which has no effect in that trial "
                    f"(it acts only when {dead[name]})"
                )
    check_live(spec)
