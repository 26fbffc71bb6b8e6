"""Typed config sections from YAML mappings: every bad field named by its dotted path.

The trial config (`config.py`) and the sweep spec's sections are frozen dataclasses built by
`build`, which checks each value against the field's annotation (Literal, int, float, bool,
str, Optional, dict[str, X], nested dataclass, `int | dataclass`); each `Section` then checks
its own ranges in `_validate`.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
from collections.abc import Iterable
from dataclasses import fields
from typing import Any, Literal, get_args, get_origin, get_type_hints


def check_range(path: str, value: float, low: float | None = None, high: float | None = None, strict_low=False) -> None:
    """Raises `ValueError` naming `path` unless low <= value <= high (low < value if strict)."""
    too_low = low is not None and (value <= low if strict_low else value < low)
    too_high = high is not None and value > high
    if too_low or too_high or (isinstance(value, float) and math.isnan(value)):
        lo = "" if low is None else (f"> {low}" if strict_low else f">= {low}")
        hi = "" if high is None else f"<= {high}"
        raise ValueError(f"{path}={value!r}; allowed: a number {' and '.join(p for p in (lo, hi) if p)}")


def unknown_field(dotted: str, allowed: Iterable[str], what: str = "field") -> str:
    """The message for a misspelt field: its path, the nearest allowed name, and all of them."""
    allowed = sorted(allowed)
    return f"unknown {what} {dotted}; {did_you_mean(dotted, allowed)}allowed: {', '.join(allowed)}"


def did_you_mean(typed: str, allowed: Iterable[str]) -> str:
    """"did you mean X? " for the allowed name nearest to `typed` (compared as dotted names when
    the allowed ones are, else by the last part of `typed`), or "" when none is close."""
    allowed = list(allowed)
    if not any("." in a for a in allowed):
        typed = typed.rsplit(".", 1)[-1]
    else:  # `search_space.objective.temprature` against `objective.temperature`
        depth = max(a.count(".") for a in allowed) + 1
        typed = ".".join(typed.split(".")[-depth:])
    near = difflib.get_close_matches(typed, allowed, n=1, cutoff=0.6)
    return f"did you mean {near[0]}? " if near else ""


@functools.cache
def hints_of(cls: type) -> dict[str, Any]:
    """The resolved annotations of a dataclass (resolving them is slow; configs are built often)."""
    return get_type_hints(cls)


class Section:
    """A config section: checks its Literal fields, then its own ranges (`_validate`)."""

    section = ""

    def __post_init__(self) -> None:
        hints = hints_of(type(self))
        for f in fields(self):  # type: ignore[arg-type]
            hint = hints[f.name]
            if get_origin(hint) is Literal and getattr(self, f.name) not in get_args(hint):
                allowed = ", ".join(map(str, get_args(hint)))
                raise ValueError(f"{self.section}.{f.name}={getattr(self, f.name)!r}; allowed: {allowed}")
        self._validate()

    def _validate(self) -> None:
        """Range checks of the section; none by default."""


def build(cls: type, data: Any, path: str, removed: dict[str, str] | None = None) -> Any:
    """A `cls` dataclass from nested mappings; unknown, removed or mistyped fields raise
    `ValueError` naming their dotted path (under `path`), the value and what is allowed."""
    if not isinstance(data, dict):
        raise ValueError(f"{path or 'config'}={data!r}; expected a mapping of fields")
    hints = hints_of(cls)
    known = {f.name for f in fields(cls)}
    for name in data:
        dotted = f"{path}.{name}" if path else str(name)
        if removed and dotted in removed:
            raise ValueError(f"{dotted} was removed: {removed[dotted]}")
    unknown = sorted(set(map(str, data)) - known)
    if unknown:
        raise ValueError(unknown_field(f"{path}.{unknown[0]}" if path else unknown[0], known))
    kwargs = {}
    for name, value in data.items():
        dotted = f"{path}.{name}" if path else name
        hint = hints[name]
        kwargs[name] = build(hint, value, dotted, removed) if dataclasses.is_dataclass(hint) else coerce(hint, value, dotted)
    return cls(**kwargs)


def coerce(hint: Any, value: Any, path: str) -> Any:
    """Checks a value against its annotation; returns it as that type (an integral float as int)."""
    args = get_args(hint)
    if get_origin(hint) is Literal:
        if value not in args:
            raise ValueError(f"{path}={value!r}; allowed: {', '.join(map(str, args))}")
        return value
    if any(dataclasses.is_dataclass(a) for a in args) and type(None) not in args:
        return _section_or_value(args, value, path)
    if type(None) in args:  # Optional[X]
        if value is None:
            return None
        hint = next(a for a in args if a is not type(None))
    if get_origin(hint) is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{path}={value!r}; allowed: a mapping")
        return {str(k): coerce(get_args(hint)[1], v, f"{path}.{k}") for k, v in value.items()}
    if hint not in _SCALARS:
        raise TypeError(f"{path}: unsupported annotation {hint!r}")  # internal: a config field of a new type
    accepts, convert, allowed = _SCALARS[hint]
    if isinstance(value, bool) != (hint is bool) or not accepts(value):
        hint_text = " (YAML reads 2e-3 as text: write 2.0e-3)" if hint is float and isinstance(value, str) else ""
        raise ValueError(f"{path}={value!r}; allowed: {allowed}{hint_text}")
    return convert(value)


def _section_or_value(args: tuple[Any, ...], value: Any, path: str) -> Any:
    """`int | Section`: a mapping is the section, anything else the other type."""
    section = next(a for a in args if dataclasses.is_dataclass(a))
    if isinstance(value, dict):
        return build(section, value, path)
    try:
        return coerce(next(a for a in args if a is not section), value, path)
    except ValueError as e:  # "...; allowed: an integer" -> "...; allowed: an integer, or {min, max}"
        names = ", ".join(f.name for f in fields(section))
        raise ValueError(f"{e}, or a mapping {{{names}}}") from None


# annotation -> (accepts the value, converts it, what the error calls allowed); bool is never an int or float
_SCALARS: dict[type, tuple[Any, Any, str]] = {
    bool: (lambda v: True, bool, "true or false"),
    int: (lambda v: isinstance(v, int) or isinstance(v, float) and v.is_integer(), int, "an integer"),
    float: (lambda v: isinstance(v, (int, float)) and not math.isinf(v), float, "a finite number"),
    str: (lambda v: isinstance(v, str), str, "a string"),
}
