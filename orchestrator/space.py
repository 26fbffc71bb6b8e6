"""The search space: `search_space:` parsed into `Param`s, every value and `when:` checked against the trial config."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from clipsweep.trainers.config import REMOVED_KNOBS, TrialConfig
from clipsweep.trainers.typed import unknown_field

from .yaml_docs import SpecError, reject_unknown

ParamType = Literal["choice", "uniform", "loguniform", "int"]
PARAM_TYPES: tuple[str, ...] = ("choice", "uniform", "loguniform", "int")


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


def flat_fields(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"negatives": {"strength": {...}}} -> {"negatives.strength": {...}} (a leaf has `type`)."""
    out: dict[str, Any] = {}
    for key, value in doc.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and "type" not in value:
            out.update(flat_fields(value, dotted))
        else:
            out[dotted] = value
    return out


def apply_overrides(trial: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A copy of the nested trial dict with dotted overrides set."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in trial.items()}
    for dotted, value in overrides.items():
        section, name = dotted.split(".", 1)
        out.setdefault(section, {})[name] = value
    return out


def _check_value(base: TrialConfig, field_name: str, value: Any, path: str, source: str) -> None:
    """Builds the fixed config with one field set, so its own type and range checks apply."""
    try:
        TrialConfig.from_dict(apply_overrides(base.to_dict(), {field_name: value}))
    except ValueError as e:
        raise SpecError(f"{source}: {path}={value!r} is not a valid {field_name}: {e}") from None


def parse_space(doc: Any, base: TrialConfig, source: str) -> list[Param]:
    if not isinstance(doc, dict):
        raise SpecError(f"{source}: search_space={doc!r}; expected a mapping of config fields")
    known = base.flat()
    params: list[Param] = []
    for name, leaf in flat_fields(doc).items():
        path = f"search_space.{name}"
        if name in REMOVED_KNOBS:
            raise SpecError(f"{source}: {path}: {name} was removed: {REMOVED_KNOBS[name]}")
        if name not in known:
            raise SpecError(f"{source}: {unknown_field(path, near_fields(name, known), 'knob')}")
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
                raise SpecError(f"{source}: {path}.when: {unknown_field(str(field_name), near_fields(str(field_name), known))}")
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


def near_fields(name: str, known: dict[str, Any]) -> list[str]:
    """The known fields of the section `name` names, or every field when that section is unknown."""
    section = name.split(".", 1)[0]
    return [k for k in known if k.startswith(section + ".")] or list(known)
