"""The study searcher: what Optuna is told, fed with the results `ScoreReport` makes (no Ray)."""

from __future__ import annotations

import math
import os
import pickle
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState
from ray.tune.schedulers import TrialScheduler

from clipsweep.orchestrator.importance import param_importances, write_importance
from clipsweep.orchestrator.keys import FINAL_STAGE_EPOCH, FINAL_STAGE_SCORE, SCORE
from clipsweep.orchestrator.schedulers import SparingBaselineAsha
from clipsweep.orchestrator.search import DefineSpace, StudySearcher, drawn_params, load_study  # fmt: skip
from clipsweep.orchestrator.spec import SweepSpec


def _spec(**sections) -> SweepSpec:
    return SweepSpec.from_dict({
        "name": "s",
        "trial": {"optim": {"epochs": 3}, "schedule": {"stage1_loss": "simclr"}},
        "search_space": {
            "schedule": {"kind": {"type": "choice", "values": ["joint", "two_stage"]}},
            "objective": {"temperature": {"type": "uniform", "low": 0.03, "high": 0.1}},
        },
        "points_to_evaluate": [{"schedule.kind": "two_stage", "objective.temperature": 0.05}, {"optim.lr": 1e-9}],
        **sections,
    })  # fmt: skip


def _report(searcher: StudySearcher, trial_id: str, epoch: int, score: float, final_stage_start: int = 0) -> dict:
    """What `ScoreReport` hands Tune after an epoch."""
    result = {"epoch": epoch, SCORE: score, FINAL_STAGE_SCORE: math.nan}
    if epoch > final_stage_start:
        result[FINAL_STAGE_SCORE] = score
        result[FINAL_STAGE_EPOCH] = epoch - final_stage_start
    searcher.on_trial_result(trial_id, result)
    return result


def test_fixed_trials_first_then_the_study_and_each_ending_told_as_what_it_was():
    searcher = StudySearcher(_spec())
    assert searcher.suggest("base") == {"role": "baseline"}
    assert searcher.suggest("two") == {"role": "point", "schedule.kind": "two_stage", "objective.temperature": 0.05}
    assert searcher.suggest("lr") == {"role": "point", "optim.lr": 1e-9}
    drawn = [searcher.suggest(f"s{i}") for i in range(3)]
    assert all(d["role"] == "search" and 0.03 <= d["objective.temperature"] <= 0.1 for d in drawn)

    for epoch, score in enumerate([0.2, 0.3, 0.4], 1):
        last = _report(searcher, "base", epoch, score)
    searcher.on_trial_complete("base", last)
    # A two-stage trial (stage 1: 1 epoch): its stage-1 score never reaches the study.
    _report(searcher, "two", 1, 0.9, final_stage_start=1)
    for epoch, score in ((2, 0.25), (3, 0.35)):
        last = _report(searcher, "two", epoch, score, final_stage_start=1)
    searcher.on_trial_complete("two", last)
    searcher.on_trial_complete("lr", _report(searcher, "lr", 1, 0.1))  # outside the space (optim.lr)
    searcher.on_trial_complete("s0", _report(searcher, "s0", 1, 0.05))  # ASHA stopped it after epoch 1
    searcher.on_trial_complete("s1", None, error=True)
    _report(searcher, "s2", 1, 0.3)  # still running

    trials = {(t.params.get("schedule.kind"), round(t.params["objective.temperature"], 3)): t for t in searcher.study.trials}
    base = trials[("joint", 0.07)]
    assert base.state == TrialState.COMPLETE and base.value == 0.4 and base.intermediate_values == {1: 0.2, 2: 0.3, 3: 0.4}
    two = trials[("two_stage", 0.05)]
    assert two.state == TrialState.COMPLETE and two.value == 0.35 and two.intermediate_values == {1: 0.25, 2: 0.35}
    states = {t.number: t.state for t in searcher.study.trials}
    assert sorted(s.name for s in states.values()) == ["COMPLETE", "COMPLETE", "FAIL", "PRUNED", "RUNNING"]
    pruned = next(t for t in searcher.study.trials if t.state == TrialState.PRUNED)
    assert pruned.intermediate_values == {1: 0.05}
    assert all(0.9 not in t.intermediate_values.values() for t in searcher.study.trials)


def test_a_point_is_in_the_space_only_if_every_field_it_sets_is_drawn_there():
    spec = _spec()
    assert drawn_params(spec, {}) == {"schedule.kind": "joint", "objective.temperature": 0.07}
    assert drawn_params(spec, {"schedule.kind": "two_stage"}) == {"schedule.kind": "two_stage", "objective.temperature": 0.07}
    assert drawn_params(spec, {"optim.lr": 1e-9}) is None  # not searched
    assert drawn_params(spec, {"objective.temperature": 0.2}) is None  # off the range


def test_the_demos_baseline_and_sine_point_lie_inside_its_space():
    """omega's default is pi/2 exactly; a space whose bound is 1.5707963 (2.7e-8 below it) left
    the sine point out of the study."""
    spec = SweepSpec.from_yaml(str(Path(__file__).parents[1] / "search_spaces" / "default.yaml"))
    assert drawn_params(spec, {}) is not None
    assert drawn_params(spec, {"objective.logit_transform": "sine"})["objective.omega"] == math.pi / 2


@pytest.mark.parametrize("algorithm", ["random", "grid"])
def test_other_algorithms(algorithm):
    space = {"objective": {"logit_transform": {"type": "choice", "values": ["identity", "sine"]},
                           "omega": {"type": "choice", "values": [0.8, 1.2], "when": {"objective.logit_transform": ["sine"]}}}}  # fmt: skip
    spec = SweepSpec.from_dict({"name": "s", "search_space": space, "search": {"algorithm": algorithm, "num_samples": 9}})
    searcher = StudySearcher(spec)
    assert searcher.suggest("base") == {"role": "baseline"}
    drawn = [searcher.suggest(f"t{i}") for i in range(8)]
    if algorithm == "grid":  # identity, sine x 2 omegas: three configs, then done
        assert drawn[:3] == [
            {"role": "search", "objective.logit_transform": "identity"},
            {"role": "search", "objective.logit_transform": "sine", "objective.omega": 0.8},
            {"role": "search", "objective.logit_transform": "sine", "objective.omega": 1.2},
        ]
        assert drawn[3] == "FINISHED"
    else:
        assert {d["objective.logit_transform"] for d in drawn} == {"identity", "sine"}


def _study(n: int) -> optuna.Study:
    """n completed trials whose score follows the transform and not the temperature."""
    study = optuna.create_study(direction="maximize")
    space = {"objective.logit_transform": CategoricalDistribution(["identity", "sine"]), "objective.temperature": FloatDistribution(0.03, 0.1)}
    for i in range(n):
        params = {"objective.logit_transform": ["identity", "sine"][i % 2], "objective.temperature": 0.03 + 0.07 * ((i * 7) % n) / n}
        value = 0.3 + 0.2 * (params["objective.logit_transform"] == "sine") + 0.001 * (i % 3)
        study.add_trial(optuna.trial.create_trial(params=params, distributions=space, value=value))
    return study


def test_importances_find_the_knob_that_matters_and_refuse_too_few_trials(tmp_path):
    importances = param_importances(_study(16))
    assert list(importances.index) == ["objective.logit_transform", "objective.temperature"]
    assert importances.iloc[0] > 0.9 and importances.sum() == pytest.approx(1.0)
    few = param_importances(_study(5))
    assert few.empty and "5 completed trials" in few.attrs["note"] and "fewer than the 8" in few.attrs["note"]
    pictures = write_importance(_study(16), str(tmp_path))
    for path in pictures.values():
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "param_importance.csv").read_text().startswith("knob,importance\nobjective.logit_transform,")


def test_the_study_is_the_latest_sessions_whatever_the_files_times(tmp_path):
    """A resumed sweep is a new Tune session with its own `searcher-state-<start>.pkl`; syncing to
    storage copies them all at once, so the newest mtime can be a stale session's (seen in CI)."""
    for i, session in enumerate(["2026-12-01_22-27-18", "2026-12-01_22-29-33", "2026-12-01_22-30-23"]):
        study = optuna.create_study()
        study.add_trial(optuna.trial.create_trial(params={"x": float(i)}, distributions={"x": FloatDistribution(0, 9)}, value=0.0))
        path = tmp_path / f"searcher-state-{session}.pkl"
        path.write_bytes(pickle.dumps({"study": study}))
        os.utime(path, (1_000_000 - i, 1_000_000 - i))  # the oldest session has the newest time
    assert load_study(str(tmp_path)).trials[0].params == {"x": 2.0}


def test_define_space_draws_a_conditional_field_only_where_its_condition_holds():
    spec = SweepSpec.from_dict({
        "name": "s",
        "search_space": {"objective": {
            "logit_transform": {"type": "choice", "values": ["identity", "sine"]},
            "omega": {"type": "uniform", "low": 0.5, "high": 1.5, "when": {"objective.logit_transform": ["sine"]}},
            "temperature": {"type": "loguniform", "low": 0.03, "high": 0.1},
        }},
    })  # fmt: skip
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    space = DefineSpace(spec)
    draws = [space(study.ask()) for _ in range(40)]
    for drawn in draws:
        assert ("objective.omega" in drawn) == (drawn["objective.logit_transform"] == "sine")
        assert 0.03 <= drawn["objective.temperature"] <= 0.1
        assert list(drawn)[0] == "objective.logit_transform"  # spec order: the condition is drawn first
    assert {d["objective.logit_transform"] for d in draws} == {"identity", "sine"}
    assert pickle.loads(pickle.dumps(space)).params == space.params  # Tune pickles the searcher


def build_scheduler(spec: SweepSpec):
    return spec.scheduler.build(spec.baseline.optim.epochs)


def test_asha_stops_a_trailing_search_trial_but_never_the_baseline():
    def trial(name: str, role: str) -> SimpleNamespace:
        return SimpleNamespace(trial_id=name, config={"role": role}, status="RUNNING")

    asha = build_scheduler(_spec(scheduler={"name": "asha", "grace_period": 1, "reduction_factor": 2}))
    assert isinstance(asha, SparingBaselineAsha)
    leader, baseline, trailing = trial("lead", "search"), trial("base", "baseline"), trial("trail", "search")
    for t in (leader, baseline, trailing):
        asha.on_trial_add(None, t)
    result = lambda score: {FINAL_STAGE_EPOCH: 1, FINAL_STAGE_SCORE: score, "training_iteration": 1}  # noqa: E731
    assert asha.on_trial_result(None, leader, result(0.9)) == TrialScheduler.CONTINUE
    # the baseline is below the rung's cut, as the trailing search trial is: only the latter stops
    assert asha.on_trial_result(None, baseline, result(0.1)) == TrialScheduler.CONTINUE
    assert asha.on_trial_result(None, trailing, result(0.1)) == TrialScheduler.STOP
    plain = build_scheduler(_spec(scheduler={"name": "asha", "grace_period": 1, "reduction_factor": 2}))
    searched = trial("base", "search")  # the same trial and scores, were it not the baseline
    for t in (leader, searched):
        plain.on_trial_add(None, t)
    plain.on_trial_result(None, leader, result(0.9))
    assert plain.on_trial_result(None, searched, result(0.1)) == TrialScheduler.STOP
    assert build_scheduler(_spec(scheduler={"name": "none"})) is None


def test_completed_means_the_same_to_the_study_and_to_the_records_under_max_t():
    """ASHA with max_t=2 of 3 epochs stops every trial at epoch 2: that trial is complete for
    Optuna and for MLflow and the console alike (`SweepSpec.full_fidelity`), and one stopped at
    epoch 1 is stopped early for all of them."""
    from clipsweep.orchestrator.tune import end_status

    def spec(scheduler: dict) -> SweepSpec:
        return SweepSpec.from_dict({
            "name": "s", "trial": {"optim": {"epochs": 3}}, "scheduler": scheduler,
            "search_space": {"objective": {"temperature": {"type": "uniform", "low": 0.03, "high": 0.1}}},
        })  # fmt: skip

    asha = spec({"name": "asha", "grace_period": 1, "max_t": 2})
    searcher = StudySearcher(asha)
    searcher.suggest("base")
    endings = {"s0": 2, "s1": 1}  # search trials the scheduler stopped at these epochs
    for trial_id, epochs in endings.items():
        searcher.suggest(trial_id)
        for epoch in range(1, epochs + 1):
            last = _report(searcher, trial_id, epoch, 0.1 * epoch)
        searcher.on_trial_complete(trial_id, last)
    assert [t.state for t in searcher.study.trials] == [TrialState.COMPLETE, TrialState.PRUNED]
    overrides = {k: v for k, v in searcher.configs["s0"].items() if k != "role"}
    assert [end_status(asha, overrides, epochs) for epochs in endings.values()] == ["completed", "stopped_early"]
    assert end_status(spec({"name": "none"}), overrides, 2) == "stopped_early"  # no scheduler: all 3 epochs
