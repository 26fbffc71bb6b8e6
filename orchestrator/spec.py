"""The sweep spec: one YAML schema, the same as typed Python objects, validated before Ray starts.

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
allowed.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from clipsweep.trainers.config import REMOVED_KNOBS, TrialConfig
from clipsweep.trainers.evaluation.settings import SuiteSettings
from clipsweep.trainers.typed import Section, build, check_range, unknown_field

from .ranking import BootstrapSettings

ParamType = Literal["choice", "uniform", "loguniform", "int"]
PARAM_TYPES: tuple[str, ...] = ("choice", "uniform", "loguniform", "int")


class SpecError(ValueError):
    """A spec that cannot run; the message names the YAML path, the value and what is allowed."""


@dataclass(frozen=True)
class Param:
    """One searched config field.

    Attributes:
        field: dotted TrialConfig field, e.g. `negatives.strength`.
        type: choice | uniform | loguniform | int.
        values: the choices (choice only).
        low, high: the range (uniform, loguniform, int; both ends included).
        when: alternatives, any of which lets the field be sampled; an alternative holds when
            each named field (searched earlier, or fixed) has one of its listed values, e.g.
            `({"negatives.weighting": ("cluster_weight",)},)`. Empty: always sampled. Where no
            alternative holds the field keeps its fixed value.
    """

    field: str
    type: ParamType
    values: tuple[Any, ...] = ()
    low: float | None = None
    high: float | None = None
    when: tuple[dict[str, tuple[Any, ...]], ...] = ()

    def active(self, chosen: dict[str, Any]) -> bool:
        """Whether the `when` conditions hold for the values chosen so far (flat config)."""
        return not self.when or any(all(chosen[n] in allowed for n, allowed in alt.items()) for alt in self.when)

    def probe_values(self) -> tuple[Any, ...]:
        """The values `skeletons` tries: every choice, or a range's midpoint."""
        if self.type == "choice":
            return self.values
        middle = (self.low + self.high) / 2  # type: ignore[operator]
        return (round(middle) if self.type == "int" else middle,)


SearchAlgorithm = Literal["tpe", "random", "grid"]
SchedulerName = Literal["asha", "none"]
TrainerName = Literal["auto", "trial_actor", "torch_trainer"]


@dataclass(frozen=True)
class SearchSettings(Section):
    """The searcher (as Ray's `create_searcher` names them): how many trials (baseline
    included), its seed, and how many run at once.

    tpe: Optuna's TPE; random: Optuna's random sampler; grid: every combination of the
    `choice` fields, in order (Optuna's brute-force sampler; conditional fields included).
    """

    section = "search"
    algorithm: SearchAlgorithm = "tpe"
    num_samples: int = 8
    seed: int = 0
    max_concurrent: int | None = None  # None: as many as the cluster's resources allow

    def _validate(self) -> None:
        if self.num_samples < 1:
            raise ValueError(f"search.num_samples={self.num_samples}; allowed: >= 1 (the baseline counts as one)")
        if self.max_concurrent is not None and self.max_concurrent < 1:
            raise ValueError(f"search.max_concurrent={self.max_concurrent}; allowed: >= 1 or null")


@dataclass(frozen=True)
class SchedulerSettings(Section):
    """The trial scheduler (as Ray's `create_scheduler` names them). asha: ASHA on the
    final-stage cheap-tier score, in final-stage epochs; none: every trial trains all its epochs."""

    section = "scheduler"
    name: SchedulerName = "asha"
    grace_period: int = 1
    reduction_factor: float = 2.0
    max_t: int | None = None  # None: the trial config's optim.epochs

    def _validate(self) -> None:
        check_range("scheduler.grace_period", self.grace_period, 1)
        check_range("scheduler.reduction_factor", self.reduction_factor, 1.0, strict_low=True)


@dataclass(frozen=True)
class Resources(Section):
    """What one trial reserves: its driver (the Tune trainable) plus its Ray Train workers."""

    section = "resources"
    workers_per_trial: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    driver_cpus: float = 1.0
    # Custom Ray resources the driver also reserves, e.g. {clipsweep_driver: 1} with the head
    # node started with that resource: keeps trial drivers on the head, off the GPU workers.
    driver_resources: dict[str, float] = field(default_factory=dict)
    # Where a trial trains. torch_trainer: a TorchTrainer's workers. trial_actor: the Tune
    # trial's own actor, which then reserves the worker's CPUs/GPUs too (one worker only; it
    # skips Train's controller and worker process, ~12 s of each trial's start-up on 2 cores).
    # auto: trial_actor for one worker unless driver_resources pin drivers away from workers.
    trainer: TrainerName = "auto"

    @property
    def in_trial_actor(self) -> bool:
        """Whether each trial trains inside its Tune actor (no TorchTrainer)."""
        if self.trainer == "auto":
            return self.workers_per_trial == 1 and not self.driver_resources
        return self.trainer == "trial_actor"

    def _validate(self) -> None:
        check_range("resources.workers_per_trial", self.workers_per_trial, 1)
        if self.trainer == "trial_actor" and self.workers_per_trial > 1:
            raise ValueError(
                f"resources.trainer=trial_actor with workers_per_trial={self.workers_per_trial}; allowed: "
                "trial_actor trains one worker (use torch_trainer or auto for more)"
            )
        for name in ("cpus_per_worker", "driver_cpus", "gpus_per_worker"):
            check_range(f"resources.{name}", getattr(self, name), 0.0)
        for name, amount in self.driver_resources.items():
            check_range(f"resources.driver_resources.{name}", amount, 0.0, strict_low=True)


@dataclass(frozen=True)
class FailureSettings(Section):
    """Ray Train's `FailureConfig`: how often a trial's worker group is restarted from its last
    checkpoint after a worker dies (spot node lost, OOM) before the trial counts as failed.
    0 (Ray's default): a failing trial fails at once, as a diverging one should."""

    section = "failure_config"
    max_failures: int = 0

    def _validate(self) -> None:
        if self.max_failures < -1:
            raise ValueError(f"failure_config.max_failures={self.max_failures}; allowed: >= 0, or -1 (retry forever)")


@dataclass(frozen=True)
class SeedRange(Section):
    """`leaderboard.seeds: {min: 3, max: 10}`: adaptive replicates. Every finalist and the
    baseline get `min` seeds; a finalist whose aggregate is still undecided then gets one more
    common seed at a time (and the baseline with it) until it is decided or has `max`."""

    section = "leaderboard.seeds"
    min: int | None = None
    max: int | None = None

    def _validate(self) -> None:
        if self.min is None or self.max is None or not 2 <= self.min < self.max:
            given = {k: v for k, v in (("min", self.min), ("max", self.max)) if v is not None}
            raise ValueError(
                f"leaderboard.seeds={given}; allowed: {{min: M, max: N}} with 2 <= M < N (a t interval needs 2 "
                "seeds), or an integer >= 1 for a fixed count"
            )


@dataclass(frozen=True)
class LeaderboardSettings(Section):
    """After the search: the top `finalists` trials by cheap-tier score plus the baseline are
    trained on the common seeds optim.seed + i (a fixed count, or adaptively: `SeedRange`),
    every run is re-evaluated on the full tier, and the variants are ranked, paired by seed,
    over seeds and items (see `ranking.py`)."""

    section = "leaderboard"
    finalists: int = 3
    seeds: int | SeedRange = 3  # 1: one run per variant, and intervals without training noise
    margin_pts: float = 1.0  # equivalence margin: a difference inside +-margin is "no difference"
    resamples: int = 1000
    seed: int = 0
    level: float = 0.95  # interval coverage
    alpha: float = 0.05  # Holm-corrected significance level per variant

    def _validate(self) -> None:
        if self.finalists < 1:
            raise ValueError(f"leaderboard.finalists={self.finalists}; allowed: >= 1 (the baseline is added to them)")
        if isinstance(self.seeds, int) and self.seeds < 1:
            raise ValueError(
                f"leaderboard.seeds={self.seeds}; allowed: an integer >= 1 (runs per variant; 3 or more measure "
                "training noise), or {min: M, max: N} for adaptive seeds"
            )
        check_range("leaderboard.margin_pts", self.margin_pts, 0.0, strict_low=True)
        if self.resamples < 100:
            raise ValueError(f"leaderboard.resamples={self.resamples}; allowed: >= 100 (percentile intervals need them)")
        for name in ("level", "alpha"):
            if not 0 < getattr(self, name) < 1:
                raise ValueError(f"leaderboard.{name}={getattr(self, name)}; allowed: strictly between 0 and 1")

    @property
    def looks(self) -> tuple[int, int] | None:
        """(min, max) seeds of an adaptive race, None for a fixed count."""
        return (self.seeds.min, self.seeds.max) if isinstance(self.seeds, SeedRange) else None  # type: ignore[return-value]

    @property
    def first_seeds(self) -> int:
        """Seeds every finalist gets before any verdict is read (the fixed count, or `min`)."""
        return self.looks[0] if self.looks else self.seeds  # type: ignore[return-value]

    @property
    def max_seeds(self) -> int:
        return self.looks[1] if self.looks else self.seeds  # type: ignore[return-value]

    def describe_seeds(self) -> str:
        return f"{{min: {self.looks[0]}, max: {self.looks[1]}}}" if self.looks else str(self.seeds)

    @property
    def bootstrap(self) -> BootstrapSettings:
        return BootstrapSettings(self.resamples, self.seed, self.level, self.alpha, self.margin_pts / 100, looks=self.looks)


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
    scheduler: SchedulerSettings = field(default_factory=SchedulerSettings)
    resources: Resources = field(default_factory=Resources)
    failure_config: FailureSettings = field(default_factory=FailureSettings)
    leaderboard: LeaderboardSettings = field(default_factory=LeaderboardSettings)
    storage_path: str = "./clipsweep_results"
    tracking_uri: str = "sqlite:///mlruns.db"
    source: str = "<dict>"  # where the spec came from, for messages

    def __post_init__(self) -> None:
        _check_spec(self)

    @property
    def baseline(self) -> TrialConfig:
        """Trial 0: the fixed trial config with nothing searched (vanilla CLIP by default)."""
        return TrialConfig.from_dict(self.trial)

    @property
    def max_t(self) -> int:
        return self.scheduler.max_t or self.baseline.optim.epochs

    def config_for(self, overrides: dict[str, Any]) -> TrialConfig:
        """The fixed config with `overrides` ({dotted field: value}) applied."""
        return TrialConfig.from_dict(_apply(self.trial, overrides))

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
        reject_unknown(mlflow, ("tracking_uri",), "mlflow", source)
        return cls(
            name=_typed(doc["name"], str, "name", source),
            params=tuple(_parse_space(doc.get("search_space") or {}, base, source)),
            trial=trial,
            data=doc.get("data") or {"synthetic": {}},
            suite=_suite(doc.get("suite"), source),
            points_to_evaluate=tuple(doc.get("points_to_evaluate") or ()),
            search=_section(SearchSettings, doc.get("search"), "search", source),
            scheduler=_section(SchedulerSettings, doc.get("scheduler"), "scheduler", source),
            resources=_section(Resources, doc.get("resources"), "resources", source),
            failure_config=_section(FailureSettings, doc.get("failure_config"), "failure_config", source),
            leaderboard=_section(LeaderboardSettings, doc.get("leaderboard"), "leaderboard", source),
            storage_path=_typed(doc.get("storage_path", "./clipsweep_results"), str, "storage_path", source),
            tracking_uri=_typed(mlflow.get("tracking_uri", "sqlite:///mlruns.db"), str, "mlflow.tracking_uri", source),
            source=source,
        )

    def to_doc(self) -> dict[str, Any]:
        """The spec as its YAML mapping (`from_dict(spec.to_doc())` gives it back)."""
        space: dict[str, Any] = {}
        for name, leaf in self.search_space_dict().items():
            section, knob = name.split(".", 1)
            space.setdefault(section, {})[knob] = _plain(leaf)
        return {
            "name": self.name,
            "data": self.data,
            "suite": _plain({k: v for k, v in self.suite.to_dict().items() if k != "heldout"}),
            "trial": self.trial,
            "search_space": space,
            "points_to_evaluate": [dict(p) for p in self.points_to_evaluate],
            "search": dataclasses.asdict(self.search),
            "scheduler": dataclasses.asdict(self.scheduler),
            "resources": dataclasses.asdict(self.resources),
            "failure_config": dataclasses.asdict(self.failure_config),
            "leaderboard": dataclasses.asdict(self.leaderboard),
            "storage_path": self.storage_path,
            "mlflow": {"tracking_uri": self.tracking_uri},
        }

    def search_space_dict(self) -> dict[str, Any]:
        """The search space as plain data, by dotted field (logged to the parent MLflow run)."""
        out = {}
        for p in self.params:
            leaf = {k: v for k, v in dataclasses.asdict(p).items() if k != "field" and v not in (None, (), {})}
            if len(p.when) == 1:
                leaf["when"] = p.when[0]  # the one-mapping form the YAML is usually written in
            out[p.field] = _plain(leaf)
        return out


def read_yaml(path: str, what: str) -> Any:
    """The document of a YAML file.

    Raises:
        SpecError: naming the file, and the line of malformed YAML (a tab gets "indent with spaces").
    """
    try:
        with open(path) as f:
            return yaml.safe_load(f)
    except OSError as e:
        raise SpecError(f"{path}: cannot read the {what} ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise SpecError(f"{path}: the {what} is not UTF-8 text ({e.reason} at byte {e.start})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        hint = "; indent with spaces, not tabs" if "\\t" in problem or "\t" in problem else ""
        raise SpecError(f"{path}:{where}: malformed YAML: {problem}{hint}") from None


def reject_nonfinite(doc: Any, source: str, path: str = "") -> None:
    """Refuses inf and nan anywhere in a document (YAML reads `1.0e+400` as infinity)."""
    if isinstance(doc, float) and not math.isfinite(doc):
        raise SpecError(f"{source}: {path}={doc!r}; allowed: a finite number")
    children = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    for key, value in children:
        reject_nonfinite(value, source, f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}" if path else str(key))


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


def _plain(value: Any) -> Any:
    """Tuples to lists, recursively (YAML and JSON friendly)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


_TOP_KEYS = (
    "name", "data", "suite", "trial", "search_space", "points_to_evaluate",
    "search", "scheduler", "resources", "failure_config", "leaderboard", "storage_path", "mlflow",
)  # fmt: skip
_REMOVED_KEYS = {
    "asha": "write `scheduler: {name: asha, grace_period: ..., reduction_factor: ..., max_t: ...}` "
    "(the scheduler is chosen by name, as Ray's create_scheduler does; `name: none` trains every trial to the end)",
}


def reject_unknown(doc: Any, allowed: tuple[str, ...], path: str, source: str) -> None:
    """Refuses a field not in `allowed` (with the nearest one) or a non-mapping at `path`."""
    if not isinstance(doc, dict):
        raise SpecError(f"{source}: {path}={doc!r}; expected a mapping of fields")
    unknown = sorted(set(map(str, doc)) - set(allowed))
    if unknown:
        raise SpecError(f"{source}: {unknown_field(f'{path}.{unknown[0]}' if path else unknown[0], allowed)}")


_KIND_NAMES = {int: "an integer", str: "a string", dict: "a mapping"}


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


def _flat_fields(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"negatives": {"strength": {...}}} -> {"negatives.strength": {...}} (a leaf has `type`)."""
    out: dict[str, Any] = {}
    for key, value in doc.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and "type" not in value:
            out.update(_flat_fields(value, dotted))
        else:
            out[dotted] = value
    return out


def _apply(trial: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A copy of the nested trial dict with dotted overrides set."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in trial.items()}
    for dotted, value in overrides.items():
        section, name = dotted.split(".", 1)
        out.setdefault(section, {})[name] = value
    return out


def _check_value(base: TrialConfig, field_name: str, value: Any, path: str, source: str) -> None:
    """Builds the fixed config with one field set, so its own type and range checks apply."""
    try:
        TrialConfig.from_dict(_apply(base.to_dict(), {field_name: value}))
    except ValueError as e:
        raise SpecError(f"{source}: {path}={value!r} is not a valid {field_name}: {e}") from None


def _parse_space(doc: Any, base: TrialConfig, source: str) -> list[Param]:
    if not isinstance(doc, dict):
        raise SpecError(f"{source}: search_space={doc!r}; expected a mapping of config fields")
    known = base.flat()
    params: list[Param] = []
    for name, leaf in _flat_fields(doc).items():
        path = f"search_space.{name}"
        if name in REMOVED_KNOBS:
            raise SpecError(f"{source}: {path}: {name} was removed: {REMOVED_KNOBS[name]}")
        if name not in known:
            raise SpecError(f"{source}: {unknown_field(path, _near_fields(name, known), 'knob')}")
        if not isinstance(leaf, dict):
            raise SpecError(
                f"{source}: {path}={leaf!r}; expected a mapping with `type` ({', '.join(PARAM_TYPES)}); "
                "a fixed value belongs under `trial:`"
            )
        kind = leaf["type"]
        if kind not in PARAM_TYPES:
            raise SpecError(f"{source}: {path}.type={kind!r}; allowed: {', '.join(PARAM_TYPES)}")
        allowed_keys = ("type", "values", "when") if kind == "choice" else ("type", "low", "high", "when")
        reject_unknown(leaf, allowed_keys, path, source)
        when = _parse_when(leaf.get("when"), name, base, path, source)
        if kind == "choice":
            values = leaf.get("values")
            if not isinstance(values, list) or not values:
                raise SpecError(f"{source}: {path}.values={values!r}; allowed: a non-empty list of choices")
            for i, value in enumerate(values):
                _check_value(base, name, value, f"{path}.values[{i}]", source)
            params.append(Param(name, "choice", values=tuple(values), when=when))
            continue
        params.append(_parse_range(leaf, kind, name, known[name], base, path, source, when))
    _check_conditions(params, base, source)
    return params


def _parse_range(
    leaf: dict[str, Any], kind: str, name: str, default: Any, base: TrialConfig, path: str, source: str, when: tuple
) -> Param:
    for end in ("low", "high"):
        value = leaf.get(end)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            hint = " (YAML reads 1e-4 as text: write 1.0e-4)" if isinstance(value, str) else ""
            raise SpecError(f"{source}: {path}.{end}={value!r}; allowed: a finite number{hint}")
    low, high = leaf["low"], leaf["high"]
    is_int_field = isinstance(default, int) and not isinstance(default, bool)
    if kind == "int" and not (is_int_field or default is None):
        raise SpecError(f"{source}: {path}.type='int' but {name} is not an integer field; allowed: uniform, loguniform, choice")
    if kind != "int" and (isinstance(default, bool) or not isinstance(default, float)):
        raise SpecError(f"{source}: {path}.type={kind!r} but {name} is not a float field; allowed: int, choice")
    if kind == "int" and not (float(low).is_integer() and float(high).is_integer()):
        raise SpecError(f"{source}: {path}.low/high={low!r}/{high!r}; allowed: integers for type int")
    if low > high:
        raise SpecError(f"{source}: {path}.low={low!r} is above {path}.high={high!r}; allowed: low <= high")
    if kind == "loguniform" and low <= 0:
        raise SpecError(f"{source}: {path}.low={low!r}; allowed: > 0 for type loguniform")
    for end, value in (("low", low), ("high", high)):
        _check_value(base, name, int(value) if kind == "int" else float(value), f"{path}.{end}", source)
    return Param(name, kind, low=low, high=high, when=when)  # type: ignore[arg-type]


def _parse_when(doc: Any, name: str, base: TrialConfig, path: str, source: str) -> tuple[dict[str, tuple[Any, ...]], ...]:
    """`when: {field: [values]}`, or a list of such mappings (any one holding suffices)."""
    if doc is None:
        return ()
    alternatives = doc if isinstance(doc, list) else [doc]
    if not alternatives or not all(isinstance(alt, dict) and alt for alt in alternatives):
        raise SpecError(f"{source}: {path}.when={doc!r}; expected a mapping {{field: [values...]}} or a list of them")
    known = base.flat()
    parsed = []
    for alt in alternatives:
        when = {}
        for field_name, allowed in alt.items():
            if field_name not in known:
                raise SpecError(f"{source}: {path}.when: {unknown_field(str(field_name), _near_fields(str(field_name), known))}")
            if field_name == name:
                raise SpecError(f"{source}: {path}.when names the field itself")
            values = allowed if isinstance(allowed, list) else [allowed]
            if not values:
                raise SpecError(f"{source}: {path}.when.{field_name}=[]; allowed: a non-empty list of values")
            for value in values:
                _check_value(base, field_name, value, f"{path}.when.{field_name}", source)
            when[field_name] = tuple(values)
        parsed.append(when)
    return tuple(parsed)


def _check_conditions(params: list[Param], base: TrialConfig, source: str) -> None:
    """A condition on a searched field needs that field sampled first (define-by-run order), and
    lists only values that field can take (one it never draws leaves the condition dead)."""
    order = {p.field: i for i, p in enumerate(params)}
    fixed = base.flat()
    for i, p in enumerate(params):
        for name in {n for alt in p.when for n in alt}:
            if order.get(name, -1) > i:
                raise SpecError(
                    f"{source}: search_space.{p.field}.when names {name}, which is searched after it; "
                    f"list {name} first"
                )
        for alt in p.when:
            for name, listed in alt.items():
                searched = params[order[name]] if name in order else None
                for value in listed:
                    if searched is None and value != fixed[name]:
                        can = f"it is fixed at {fixed[name]!r} (trial config; not searched)"
                    elif searched is not None and not _can_draw(searched, value):
                        can = f"can draw: {_drawable(searched)}"
                    else:
                        continue
                    raise SpecError(
                        f"{source}: search_space.{p.field}.when.{name} lists {value!r}, which {name} never takes; {can}"
                    )


def _can_draw(p: Param, value: Any) -> bool:
    if p.type == "choice":
        return value in p.values
    return isinstance(value, (int, float)) and not isinstance(value, bool) and p.low <= value <= p.high  # type: ignore[operator]


def _drawable(p: Param) -> str:
    return ", ".join(map(str, p.values)) if p.type == "choice" else f"{p.type} from {p.low} to {p.high}"


def _check_spec(spec: SweepSpec) -> None:
    """Cross-field checks once every section parsed."""
    s = spec.source
    if not spec.params:
        raise SpecError(f"{s}: search_space is empty; allowed: at least one searched field (a single config is `clipsweep train`)")
    epochs = spec.baseline.optim.epochs
    if spec.scheduler.max_t is not None and not 1 <= spec.scheduler.max_t <= epochs:
        raise SpecError(f"{s}: scheduler.max_t={spec.scheduler.max_t}; allowed: 1 to trial.optim.epochs={epochs}")
    if spec.scheduler.grace_period > spec.max_t:
        raise SpecError(f"{s}: scheduler.grace_period={spec.scheduler.grace_period}; allowed: 1 to max_t={spec.max_t}")
    if spec.search.algorithm == "grid":
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
                raise SpecError(f"{s}: points_to_evaluate[{i}]: {unknown_field(str(name), _near_fields(str(name), fields_known))}")
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
    _check_live(spec)


def _near_fields(name: str, known: dict[str, Any]) -> list[str]:
    """The known fields of the section `name` names, or every field when that section is unknown."""
    section = name.split(".", 1)[0]
    return [k for k in known if k.startswith(section + ".")] or list(known)


MAX_SKELETONS = 20_000  # discrete combinations `_check_live` walks (a 6-choice space has far fewer)


def skeletons(spec: SweepSpec) -> list[tuple[dict[str, Any], tuple[str, ...]]]:
    """Every combination of `choice` values the searcher can draw, in define-by-run order, with
    ranges at their midpoint: (flat config, fields drawn). What a knob's liveness depends on is
    discrete, so these cover every case in which a drawn knob could be dead."""
    states: list[tuple[dict[str, Any], tuple[str, ...]]] = [(spec.baseline.flat(), ())]
    for p in spec.params:
        grown = []
        for chosen, drawn in states:
            if not p.active(chosen):
                grown.append((chosen, drawn))
                continue
            grown += [({**chosen, p.field: value}, drawn + (p.field,)) for value in p.probe_values()]
        states = grown[:MAX_SKELETONS]
    return states


def _check_live(spec: SweepSpec) -> None:
    """Refuses a space that can draw a knob in a config where it has no effect, or draw a
    combination the trial config refuses."""
    for chosen, drawn in skeletons(spec):
        for name in drawn:
            acts = TrialConfig.acts(name)
            if acts is None or acts.holds(chosen):
                continue
            context = sorted({n for alt in acts.alternatives for n, _ in alt})
            where = ", ".join(f"{n}={chosen[n]!r}" for n in context)
            hints = acts.when_hints()
            when = _yaml_flow(hints[0] if len(hints) == 1 else hints)
            raise SpecError(
                f"{spec.source}: search_space.{name} can be drawn where it has no effect: with {where} "
                f"(it acts only when {acts}); add `when: {when}` to it"
            )
        try:
            spec.config_for({name: chosen[name] for name in drawn})
        except ValueError as e:
            draw = ", ".join(f"{n}={chosen[n]!r}" for n in drawn)
            raise SpecError(f"{spec.source}: search_space can draw {draw}, which the trial config refuses: {e}") from None


def _yaml_flow(value: Any) -> str:
    return yaml.safe_dump(_plain(value), default_flow_style=True, width=1000).strip()
