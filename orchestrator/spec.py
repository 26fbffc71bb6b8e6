"""The sweep spec: one YAML schema, the same as typed Python objects, validated before Ray starts.

A spec names the data, the benchmark suite, the fixed trial config (which is also the
baseline, trial 0), the search space over any config field, the searcher and ASHA settings,
the resources of one trial, and where checkpoints and MLflow records go:

    name: logit-transforms
    data: {synthetic: {n: 4000}}
    trial: {optim: {epochs: 4, batch_size: 128}}
    search_space:
      objective:
        logit_transform: {type: choice, values: [identity, sine, sigmoid]}
        temperature: {type: loguniform, low: 0.02, high: 0.1}
        omega: {type: uniform, low: 0.5, high: 1.5708, when: {objective.logit_transform: [sine]}}
    search: {num_samples: 8, seed: 0, max_concurrent: 2}
    asha: {grace_period: 1, reduction_factor: 2}
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

from clipsweep.trainers.config import TrialConfig
from clipsweep.trainers.evaluation.suite import SUITES, TIERS, SuiteSettings

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
        when: sampled only when each named field (searched earlier, or fixed) has one of the
            listed values, e.g. `{"negatives.weighting": ("cluster_weight",)}`; otherwise the
            field keeps its fixed value.
    """

    field: str
    type: ParamType
    values: tuple[Any, ...] = ()
    low: float | None = None
    high: float | None = None
    when: dict[str, tuple[Any, ...]] = dataclasses.field(default_factory=dict)

    def active(self, chosen: dict[str, Any]) -> bool:
        """Whether the `when` conditions hold for the values chosen so far (flat config)."""
        return all(chosen[name] in allowed for name, allowed in self.when.items())


@dataclass(frozen=True)
class SearchSettings:
    """Optuna TPE: how many trials (baseline included), its seed, and how many run at once."""

    num_samples: int = 8
    seed: int = 0
    max_concurrent: int | None = None  # None: as many as the cluster's resources allow


@dataclass(frozen=True)
class AshaSettings:
    """ASHA on the final-stage cheap-tier aggregate score, in epochs."""

    grace_period: int = 1
    reduction_factor: float = 2.0
    max_t: int | None = None  # None: the trial config's optim.epochs


@dataclass(frozen=True)
class Resources:
    """What one trial reserves: its driver (the Tune trainable) plus its Ray Train workers."""

    workers_per_trial: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    driver_cpus: float = 1.0
    # Custom Ray resources the driver also reserves, e.g. {clipsweep_driver: 1} with the head
    # node started with that resource: keeps trial drivers on the head, off the GPU workers.
    driver_resources: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class FailureSettings:
    """Ray Train's `FailureConfig`: how often a trial's worker group is restarted from its last
    checkpoint after a worker dies (spot node lost, OOM) before the trial counts as failed.
    0 (Ray's default): a failing trial fails at once, as a diverging one should."""

    max_failures: int = 0


@dataclass(frozen=True)
class Suite:
    """The benchmark suite a trial is scored on each epoch (tier `cheap` is what ASHA sees)."""

    name: str = "synthetic10"
    tier: str = "cheap"
    roots: dict[str, str] = field(default_factory=dict)  # paper10: dataset name -> local root
    cheap_size: int = 500  # paper10 cheap tier: classification items per dataset (class-stratified)
    cheap_retrieval_size: int = 200  # paper10 cheap tier: retrieval images per dataset

    def settings(self, heldout: str | None) -> SuiteSettings:
        """What the trials load: this section plus synthetic10's held-out split from `data:`."""
        return SuiteSettings(self.name, heldout, dict(self.roots), self.cheap_size, self.cheap_retrieval_size)


@dataclass(frozen=True)
class LeaderboardSettings:
    """After the search: the top `finalists` trials by cheap-tier score plus the baseline are
    trained `seeds` times in all (seeds optim.seed + i), every run is re-evaluated on the full
    tier, and the variants are ranked over seeds and items (see `ranking.py`)."""

    finalists: int = 3
    seeds: int = 3  # 1: one run per variant, and intervals without training noise
    resamples: int = 1000
    seed: int = 0
    level: float = 0.95  # interval coverage
    alpha: float = 0.05  # Holm-corrected significance level per variant

    @property
    def bootstrap(self) -> BootstrapSettings:
        return BootstrapSettings(self.resamples, self.seed, self.level, self.alpha)


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
    suite: Suite = field(default_factory=Suite)
    points_to_evaluate: tuple[dict[str, Any], ...] = ()  # explicit trials run first (after the baseline)
    search: SearchSettings = field(default_factory=SearchSettings)
    asha: AshaSettings = field(default_factory=AshaSettings)
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
        return self.asha.max_t or self.baseline.optim.epochs

    def config_for(self, overrides: dict[str, Any]) -> TrialConfig:
        """The fixed config with `overrides` ({dotted field: value}) applied."""
        return TrialConfig.from_dict(_apply(self.trial, overrides))

    @classmethod
    def from_yaml(cls, path: str) -> SweepSpec:
        """Reads and validates a spec file.

        Raises:
            SpecError: unreadable or malformed YAML (with its line), or any invalid field.
        """
        try:
            with open(path) as f:
                doc = yaml.safe_load(f)
        except OSError as e:
            raise SpecError(f"{path}: cannot read the spec ({e.strerror})") from None
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(e, "problem", None) or str(e)
            raise SpecError(f"{path}:{where}: malformed YAML: {problem}") from None
        return cls.from_dict(doc, source=path)

    @classmethod
    def from_dict(cls, doc: Any, source: str = "<dict>") -> SweepSpec:
        """Builds a spec from the YAML's mapping; see the module docstring for the layout."""
        if not isinstance(doc, dict):
            raise SpecError(f"{source}: the spec must be a mapping of fields, got {type(doc).__name__}")
        _reject_unknown(doc, _TOP_KEYS, "", source)
        if "name" not in doc:
            raise SpecError(f"{source}: name is missing; a sweep needs a name (its MLflow experiment)")
        trial = doc.get("trial") or {}
        try:
            base = TrialConfig.from_dict(trial)
        except ValueError as e:
            message = str(e)
            prefix = "unknown field "
            message = prefix + "trial." + message[len(prefix) :] if message.startswith(prefix) else "trial." + message
            raise SpecError(f"{source}: {message}") from None
        mlflow = doc.get("mlflow") or {}
        _reject_unknown(mlflow, ("tracking_uri",), "mlflow", source)
        return cls(
            name=_typed(doc["name"], str, "name", source),
            params=tuple(_parse_space(doc.get("search_space") or {}, base, source)),
            trial=trial,
            data=doc.get("data") or {"synthetic": {}},
            suite=_section(Suite, doc.get("suite"), "suite", source),
            points_to_evaluate=tuple(doc.get("points_to_evaluate") or ()),
            search=_section(SearchSettings, doc.get("search"), "search", source),
            asha=_section(AshaSettings, doc.get("asha"), "asha", source),
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
            "suite": _plain(dataclasses.asdict(self.suite)),
            "trial": self.trial,
            "search_space": space,
            "points_to_evaluate": [dict(p) for p in self.points_to_evaluate],
            "search": dataclasses.asdict(self.search),
            "asha": dataclasses.asdict(self.asha),
            "resources": dataclasses.asdict(self.resources),
            "failure_config": dataclasses.asdict(self.failure_config),
            "leaderboard": dataclasses.asdict(self.leaderboard),
            "storage_path": self.storage_path,
            "mlflow": {"tracking_uri": self.tracking_uri},
        }

    def search_space_dict(self) -> dict[str, Any]:
        """The search space as plain data, by dotted field (logged to the parent MLflow run)."""
        return {
            p.field: _plain({k: v for k, v in dataclasses.asdict(p).items() if k != "field" and v not in (None, (), {})})
            for p in self.params
        }


def _plain(value: Any) -> Any:
    """Tuples to lists, recursively (YAML and JSON friendly)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


_TOP_KEYS = (
    "name", "data", "suite", "trial", "search_space", "points_to_evaluate",
    "search", "asha", "resources", "failure_config", "leaderboard", "storage_path", "mlflow",
)  # fmt: skip


def _reject_unknown(doc: Any, allowed: tuple[str, ...], path: str, source: str) -> None:
    if not isinstance(doc, dict):
        raise SpecError(f"{source}: {path}={doc!r}; expected a mapping of fields")
    unknown = sorted(set(doc) - set(allowed))
    if unknown:
        where = f"{path}.{unknown[0]}" if path else unknown[0]
        raise SpecError(f"{source}: unknown field {where}; allowed: {', '.join(allowed)}")


_KIND_NAMES = {int: "an integer", str: "a string", dict: "a mapping"}


def _typed(value: Any, kind: type, path: str, source: str) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise SpecError(f"{source}: {path}={value!r}; allowed: {_KIND_NAMES[kind]}")
    return value


def _section(cls: type, doc: Any, path: str, source: str) -> Any:
    """A settings dataclass from its YAML mapping, each value checked against the field's type."""
    if doc is None:
        return cls()
    names = tuple(f.name for f in dataclasses.fields(cls))
    _reject_unknown(doc, names, path, source)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in doc:
            continue
        value, dotted = doc[f.name], f"{path}.{f.name}"
        annotation = str(f.type)
        if value is None and "None" in annotation:
            kwargs[f.name] = None
        elif annotation.startswith("int"):
            kwargs[f.name] = _typed(value, int, dotted, source)
        elif annotation.startswith("float"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise SpecError(f"{source}: {dotted}={value!r}; allowed: a number")
            kwargs[f.name] = float(value)
        elif annotation.startswith("dict"):
            kwargs[f.name] = _typed(value, dict, dotted, source)
        else:
            kwargs[f.name] = _typed(value, str, dotted, source)
    return cls(**kwargs)


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
        if name not in known:
            section = name.split(".", 1)[0]
            options = sorted(k for k in known if k.startswith(section + ".")) or sorted({k.split(".")[0] for k in known})
            raise SpecError(f"{source}: unknown knob {path}; allowed under {section}: {', '.join(options)}")
        if not isinstance(leaf, dict):
            raise SpecError(
                f"{source}: {path}={leaf!r}; expected a mapping with `type` ({', '.join(PARAM_TYPES)}); "
                "a fixed value belongs under `trial:`"
            )
        kind = leaf["type"]
        if kind not in PARAM_TYPES:
            raise SpecError(f"{source}: {path}.type={kind!r}; allowed: {', '.join(PARAM_TYPES)}")
        allowed_keys = ("type", "values", "when") if kind == "choice" else ("type", "low", "high", "when")
        _reject_unknown(leaf, allowed_keys, path, source)
        when = _parse_when(leaf.get("when"), name, known, path, source)
        if kind == "choice":
            values = leaf.get("values")
            if not isinstance(values, list) or not values:
                raise SpecError(f"{source}: {path}.values={values!r}; allowed: a non-empty list of choices")
            for i, value in enumerate(values):
                _check_value(base, name, value, f"{path}.values[{i}]", source)
            params.append(Param(name, "choice", values=tuple(values), when=when))
            continue
        params.append(_parse_range(leaf, kind, name, known[name], base, path, source, when))
    _check_conditions(params, source)
    return params


def _parse_range(
    leaf: dict[str, Any], kind: str, name: str, default: Any, base: TrialConfig, path: str, source: str, when: dict
) -> Param:
    for end in ("low", "high"):
        value = leaf.get(end)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            raise SpecError(f"{source}: {path}.{end}={value!r}; allowed: a number")
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


def _parse_when(doc: Any, name: str, known: dict[str, Any], path: str, source: str) -> dict[str, tuple[Any, ...]]:
    if doc is None:
        return {}
    if not isinstance(doc, dict) or not doc:
        raise SpecError(f"{source}: {path}.when={doc!r}; expected a mapping {{field: [values...]}}")
    when = {}
    for field_name, allowed in doc.items():
        if field_name not in known:
            raise SpecError(f"{source}: {path}.when names unknown field {field_name!r}")
        if field_name == name:
            raise SpecError(f"{source}: {path}.when names the field itself")
        values = allowed if isinstance(allowed, list) else [allowed]
        if not values:
            raise SpecError(f"{source}: {path}.when.{field_name}=[]; allowed: a non-empty list of values")
        when[field_name] = tuple(values)
    return when


def _check_conditions(params: list[Param], source: str) -> None:
    """A condition on a searched field needs that field sampled first (define-by-run order)."""
    order = {p.field: i for i, p in enumerate(params)}
    for i, p in enumerate(params):
        for name in p.when:
            if order.get(name, -1) > i:
                raise SpecError(
                    f"{source}: search_space.{p.field}.when names {name}, which is searched after it; "
                    f"list {name} first"
                )


def _check_spec(spec: SweepSpec) -> None:
    """Cross-field checks once every section parsed."""
    s = spec.source
    if not spec.params:
        raise SpecError(f"{s}: search_space is empty; allowed: at least one searched field (a single config is `clipsweep train`)")
    if spec.suite.name not in SUITES:
        raise SpecError(f"{s}: suite.name={spec.suite.name!r}; allowed: {', '.join(SUITES)}")
    if spec.suite.tier not in TIERS:
        raise SpecError(f"{s}: suite.tier={spec.suite.tier!r}; allowed: {', '.join(TIERS)}")
    if spec.search.num_samples < 1:
        raise SpecError(f"{s}: search.num_samples={spec.search.num_samples}; allowed: >= 1 (the baseline counts as one)")
    if spec.search.max_concurrent is not None and spec.search.max_concurrent < 1:
        raise SpecError(f"{s}: search.max_concurrent={spec.search.max_concurrent}; allowed: >= 1 or null")
    epochs = spec.baseline.optim.epochs
    if spec.asha.grace_period < 1 or spec.asha.grace_period > spec.max_t:
        raise SpecError(f"{s}: asha.grace_period={spec.asha.grace_period}; allowed: 1 to max_t={spec.max_t}")
    if spec.asha.reduction_factor <= 1:
        raise SpecError(f"{s}: asha.reduction_factor={spec.asha.reduction_factor}; allowed: > 1")
    if spec.asha.max_t is not None and not 1 <= spec.asha.max_t <= epochs:
        raise SpecError(f"{s}: asha.max_t={spec.asha.max_t}; allowed: 1 to trial.optim.epochs={epochs}")
    r = spec.resources
    if r.workers_per_trial < 1:
        raise SpecError(f"{s}: resources.workers_per_trial={r.workers_per_trial}; allowed: >= 1")
    for name in ("cpus_per_worker", "driver_cpus", "gpus_per_worker"):
        if getattr(r, name) < 0:
            raise SpecError(f"{s}: resources.{name}={getattr(r, name)}; allowed: >= 0")
    for name, amount in r.driver_resources.items():
        if isinstance(amount, bool) or not isinstance(amount, (int, float)) or amount <= 0:
            raise SpecError(f"{s}: resources.driver_resources.{name}={amount!r}; allowed: a number > 0")
    if spec.failure_config.max_failures < -1:
        raise SpecError(f"{s}: failure_config.max_failures={spec.failure_config.max_failures}; allowed: >= 0, or -1 (retry forever)")
    board = spec.leaderboard
    if board.finalists < 1:
        raise SpecError(f"{s}: leaderboard.finalists={board.finalists}; allowed: >= 1 (the baseline is added to them)")
    if board.seeds < 1:
        raise SpecError(
            f"{s}: leaderboard.seeds={board.seeds}; allowed: an integer >= 1 (runs per variant; 3 or more measure training noise)"
        )
    if board.resamples < 100:
        raise SpecError(f"{s}: leaderboard.resamples={board.resamples}; allowed: >= 100 (percentile intervals need them)")
    for name in ("level", "alpha"):
        if not 0 < getattr(board, name) < 1:
            raise SpecError(f"{s}: leaderboard.{name}={getattr(board, name)}; allowed: strictly between 0 and 1")
    fields_known = spec.baseline.flat()
    for i, point in enumerate(spec.points_to_evaluate):
        if not isinstance(point, dict):
            raise SpecError(f"{s}: points_to_evaluate[{i}]={point!r}; expected a mapping {{field: value}}")
        for name, value in point.items():
            if name not in fields_known:
                raise SpecError(f"{s}: points_to_evaluate[{i}] names unknown field {name!r}")
        try:
            spec.config_for(point)
        except ValueError as e:
            raise SpecError(f"{s}: points_to_evaluate[{i}]: {e}") from None
