"""The searcher: the baseline and explicit points first, then an Optuna study that learns only
from what ASHA compares.

Ray's `OptunaSearch` tells the study a trial's last reported value as COMPLETE, whatever
stopped it, so TPE would weigh the epoch-1 score of a trial ASHA stopped against the epoch-3
scores of trials that finished, and a two-stage trial's stage-1 scores (which ASHA ignores) too.
`StudySearcher` speaks to the study itself (Optuna's ask-and-tell interface):

- it reports only final-stage scores, at their final-stage epoch;
- a trial that reached full fidelity (all its final-stage epochs, or the scheduler's `max_t`)
  is COMPLETE with its last final-stage score; one the scheduler stopped before that is PRUNED
  with its intermediate values (TPE ranks pruned trials below complete ones, by how far they
  got); one that raised is FAIL;
- the baseline and the explicit points that lie inside the space are added to the study when
  they end, so TPE learns from them too.
"""

from __future__ import annotations

import math
import pickle
from typing import Any

import optuna
import pyarrow.fs
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState
from ray.tune.search import Searcher

from clipsweep.trainers.schedules import stage_plan

from .keys import FINAL_STAGE_EPOCH, FINAL_STAGE_SCORE
from .searchers import ALGORITHMS
from .space import Param
from .space_liveness import skeletons
from .spec import SweepSpec
from .trial_data import absolute_path


def distribution(p: Param) -> BaseDistribution:
    """The Optuna distribution a searched field is drawn from."""
    if p.type == "choice":
        return CategoricalDistribution(list(p.values))
    if p.type == "int":
        return IntDistribution(int(p.low), int(p.high))  # type: ignore[arg-type]
    return FloatDistribution(p.low, p.high, log=p.type == "loguniform")  # type: ignore[arg-type]


def drawn_params(spec: SweepSpec, overrides: dict[str, Any]) -> dict[str, Any] | None:
    """The values each active searched field has in a config, or None when the config lies
    outside the space (it sets a field the space does not draw there, or a value off its range)."""
    chosen = spec.config_for(overrides).flat()
    fixed = spec.baseline.flat()
    drawn = {}
    for p in spec.params:
        if p.active(chosen):
            value = chosen[p.field]
            inside = value in p.values if p.type == "choice" else p.low <= value <= p.high  # type: ignore[operator]
            if not inside or p.type == "int" and value != int(value):
                return None
            drawn[p.field] = value
    if any(name not in drawn and value != fixed[name] for name, value in overrides.items()):
        return None
    return drawn


class DefineSpace:
    """Optuna define-by-run: samples each active field in spec order (conditions see earlier ones).

    A class, not a closure: Tune pickles the searcher (with this) into its experiment state.
    """

    def __init__(self, spec: SweepSpec) -> None:
        self.params = spec.params
        self.fixed = spec.baseline.flat()

    def __call__(self, trial: optuna.Trial) -> dict[str, Any]:
        chosen = dict(self.fixed)
        drawn = {}
        for p in self.params:
            if not p.active(chosen):
                continue
            if p.type == "choice":
                drawn[p.field] = trial.suggest_categorical(p.field, list(p.values))
            elif p.type == "int":
                drawn[p.field] = trial.suggest_int(p.field, int(p.low), int(p.high))  # type: ignore[arg-type]
            else:
                drawn[p.field] = trial.suggest_float(p.field, p.low, p.high, log=p.type == "loguniform")  # type: ignore[arg-type]
            chosen[p.field] = drawn[p.field]
        return drawn


class StudySearcher(Searcher):
    """Hands out the baseline, then the spec's explicit points, then the study's suggestions.

    The ranking normalises every trial against the baseline, so it runs in every sweep. The
    explicit points may set fields outside the search space, so they are handed out as whole
    overrides (Optuna's own `enqueue_trial` would drop those fields).

    Args:
        spec: the sweep (its space, searcher and scheduler settings).
    """

    def __init__(self, spec: SweepSpec) -> None:
        super().__init__(metric=FINAL_STAGE_SCORE, mode="max")
        self.spec = spec
        self.space = DefineSpace(spec)
        self.fixed = [{"role": "baseline"}] + [{"role": "point", **p} for p in spec.points_to_evaluate]
        self.configs: dict[str, dict[str, Any]] = {}  # trial id -> what it was handed
        self.asked: dict[str, optuna.Trial] = {}  # trial id -> its study trial (suggested ones)
        self.steps: dict[str, dict[int, float]] = {}  # trial id -> final-stage epoch -> score
        self.told: set[str] = set()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        algorithm = ALGORITHMS[spec.search.algorithm]
        self.study = optuna.create_study(direction="maximize", sampler=algorithm.sampler(spec.search.seed))
        self.grid_left = 0
        if algorithm.enumerates:  # every combination of the choices, conditions included, in order
            for chosen, drawn in skeletons(spec):
                self.study.enqueue_trial({name: chosen[name] for name in drawn})
                self.grid_left += 1

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if len(self.configs) < len(self.fixed):
            self.configs[trial_id] = dict(self.fixed[len(self.configs)])
            return dict(self.configs[trial_id])
        if ALGORITHMS[self.spec.search.algorithm].enumerates:
            if self.grid_left == 0:
                return Searcher.FINISHED
            self.grid_left -= 1
        trial = self.study.ask()
        self.asked[trial_id] = trial
        self.configs[trial_id] = {"role": "search", **self.space(trial)}
        return dict(self.configs[trial_id])

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        value, step = result.get(FINAL_STAGE_SCORE), result.get(FINAL_STAGE_EPOCH)
        if step is None or value is None or math.isnan(value) or trial_id not in self.configs:
            return
        if int(step) in self.steps.get(trial_id, {}):
            return  # Tune hands the last result to `on_trial_complete` again
        self.steps.setdefault(trial_id, {})[int(step)] = float(value)
        if trial_id in self.asked:
            self.asked[trial_id].report(float(value), int(step))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self.told or trial_id not in self.configs:
            return
        if result:
            self.on_trial_result(trial_id, result)
        state, value = self._outcome(trial_id, error)
        if state is None:
            return  # no final-stage score and no error: nothing to learn from
        self.told.add(trial_id)
        if trial_id in self.asked:
            self.study.tell(self.asked[trial_id], value, state=state)
            return
        params = drawn_params(self.spec, overrides_of(self.configs[trial_id]))
        if params is not None:  # a fixed trial inside the space: the study learns from it too
            self.study.add_trial(
                optuna.trial.create_trial(
                    params=params,
                    distributions={p.field: distribution(p) for p in self.spec.params if p.field in params},
                    value=value,
                    state=state,
                    intermediate_values=self.steps.get(trial_id) or None,
                )
            )

    def _outcome(self, trial_id: str, error: bool) -> tuple[TrialState | None, float | None]:
        """The study's verdict on an ended trial: (state, value)."""
        if error:
            return TrialState.FAIL, None
        steps = self.steps.get(trial_id)
        if not steps:
            return None, None
        last = max(steps)
        if last >= self._full_fidelity(trial_id):
            return TrialState.COMPLETE, steps[last]
        return TrialState.PRUNED, None  # Optuna keeps the last intermediate value as its value

    def _full_fidelity(self, trial_id: str) -> int:
        """Final-stage epochs at which a trial counts as complete (`SweepSpec.full_fidelity`)."""
        cfg = self.spec.config_for(overrides_of(self.configs[trial_id]))
        return self.spec.full_fidelity(cfg) - (cfg.optim.epochs - stage_plan(cfg)[-1].epochs)

    # Tune checkpoints the searcher with these (a resumed sweep continues the same study).
    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))


def overrides_of(config: dict[str, Any]) -> dict[str, Any]:
    """The searched fields of a Tune trial config ({dotted field: value}; empty for the baseline)."""
    return {k: v for k, v in config.items() if "." in k}


def load_study(experiment_dir: str) -> optuna.Study | None:
    """The study of a sweep's search, from the searcher state Tune saved in its experiment
    folder (`searcher-state-*.pkl`); None when there is none (e.g. the sweep never started)."""
    fs, root = pyarrow.fs.FileSystem.from_uri(absolute_path(experiment_dir))
    try:
        found = fs.get_file_info(pyarrow.fs.FileSelector(root))
    except (FileNotFoundError, OSError):
        return None
    # One file per session (`searcher-state-<session start, %Y-%m-%d_%H-%M-%S>.pkl`; a resumed sweep
    # is a new session); the latest session's is the study. Not by mtime: syncing the staging folder
    # to storage copies every file at once, and left the first session's newest (seen in CI).
    saved = sorted((f for f in found if f.base_name.startswith("searcher-state-")), key=lambda f: f.base_name)
    if not saved:
        return None
    with fs.open_input_stream(saved[-1].path) as f:
        return pickle.loads(f.read())["study"]
