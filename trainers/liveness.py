"""When a config knob acts: conditions declared beside each knob in `config.py`.

A knob such as `objective.omega` changes the training only under `logit_transform: sine`; in
any other config it is dead. `Acts` states that as data (a disjunction of conjunctions over
other knobs' values), so the sweep spec can refuse a search space that draws a knob where it
has no effect, and say which `when:` to add:

    omega: float = knob(math.pi / 2, acts=acts_if("objective.logit_transform", "sine"))
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

NONZERO = "nonzero"  # a term's values: the knob must be != 0 (not expressible as a `when:`)


@dataclass(frozen=True)
class Acts:
    """A condition on a flat config ({dotted field: value}): any alternative holds, where an
    alternative holds when each of its fields has one of its values."""

    alternatives: tuple[tuple[tuple[str, Any], ...], ...]

    def holds(self, flat: dict[str, Any]) -> bool:
        return any(all(_matches(flat[name], values) for name, values in alt) for alt in self.alternatives)

    def __and__(self, other: Acts) -> Acts:
        return Acts(tuple(a + b for a in self.alternatives for b in other.alternatives))

    def __or__(self, other: Acts) -> Acts:
        return Acts(self.alternatives + other.alternatives)

    def __str__(self) -> str:
        terms = [" and ".join(_describe(n, v) for n, v in alt) for alt in self.alternatives]
        if len(terms) > 1:
            terms = [f"({t})" if " and " in t else t for t in terms]
        return " or ".join(terms)

    def when_hints(self) -> list[dict[str, list[Any]]]:
        """Each alternative as a spec `when:` mapping (the non-zero terms cannot be written)."""
        return [{n: list(v) for n, v in alt if v != NONZERO} for alt in self.alternatives]


def acts_if(name: str, *values: Any) -> Acts:
    """The knob acts when field `name` has one of `values`."""
    return Acts((((name, tuple(values)),),))


def acts_if_nonzero(name: str) -> Acts:
    """The knob acts when the number in field `name` is not 0."""
    return Acts((((name, NONZERO),),))


def knob(default: Any, acts: Acts | None = None) -> Any:
    """A config field that acts only when `acts` holds (always when None)."""
    return dataclasses.field(default=default, metadata={"acts": acts} if acts else {})


def _matches(value: Any, values: Any) -> bool:
    return value != 0 if values == NONZERO else value in values


def _describe(name: str, values: Any) -> str:
    if values == NONZERO:
        return f"{name} != 0"
    if len(values) == 1:
        return f"{name}={values[0]!r}"
    return f"{name} in ({', '.join(map(repr, values))})"
