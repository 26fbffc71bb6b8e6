"""The liveness walk: every discrete draw of a search space, and the refusal of a knob drawn where it is dead."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from clipsweep.trainers.config import TrialConfig

from .yaml_docs import SpecError, yaml_flow

if TYPE_CHECKING:
    from .spec import SweepSpec


MAX_SKELETONS = 20_000  # discrete combinations `check_live` walks (a 6-choice space has far fewer)


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


def check_live(spec: SweepSpec) -> None:
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
            when = yaml_flow(hints[0] if len(hints) == 1 else hints)
            raise SpecError(
                f"{spec.source}: search_space.{name} can be drawn where it has no effect: with {where} "
                f"(it acts only when {acts}); add `when: {when}` to it"
            )
        try:
            spec.config_for({name: chosen[name] for name in drawn})
        except ValueError as e:
            draw = ", ".join(f"{n}={chosen[n]!r}" for n in drawn)
            raise SpecError(f"{spec.source}: search_space can draw {draw}, which the trial config refuses: {e}") from None
