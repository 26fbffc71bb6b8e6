"""Sweep specs: `clipsweep validate` on good and bad input (no Ray), and the shipped spaces."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from specs import spec_doc

from clipsweep.orchestrator.cli import main
from clipsweep.orchestrator.resources import plan_resources, trial_resources
from clipsweep.orchestrator.spec import SweepSpec
from clipsweep.orchestrator.tune import trial_failures
from clipsweep.orchestrator.yaml_docs import SpecError

SPACES = Path(__file__).resolve().parent.parent / "search_spaces"


def _validate(tmp_path, doc_or_text, capsys) -> tuple[int, str]:
    path = tmp_path / "space.yaml"
    path.write_text(doc_or_text if isinstance(doc_or_text, str) else yaml.safe_dump(doc_or_text, sort_keys=False))
    code = main(["validate", str(path)])
    captured = capsys.readouterr()
    return code, " ".join((captured.out + captured.err).split())  # rich wraps long lines


def test_a_good_spec_validates(small_corpus, tmp_path, capsys):
    code, out = _validate(tmp_path, spec_doc(small_corpus, str(tmp_path)), capsys)
    assert code == 0, out
    assert "ok" in out and "4 trials" in out


def _set(doc: dict, dotted: str, value) -> dict:
    node = doc
    *parents, last = dotted.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return doc


BAD = [
    # (dotted path in the spec to set, value, what the error must say)
    ("search_space.objective.logit_transfrom", {"type": "choice", "values": ["sine"]}, "unknown knob search_space.objective.logit_transfrom"),
    ("search_space.objective.logit_transform.values", [], "search_space.objective.logit_transform.values=[]"),
    ("search_space.objective.logit_transform.values", ["identity", "cosine"], "values[1]='cosine'"),
    ("search_space.objective.temperature.low", 0.5, "search_space.objective.temperature.low=0.5 is above"),
    ("search_space.objective.temperature.type", "normal", "type='normal'; allowed: choice, uniform, loguniform, int"),
    ("search_space.negatives.strength", {"type": "uniform", "low": -1.0, "high": 1.0}, "search_space.negatives.strength.low=-1.0"),
    ("storage_path", "nosuchfs://bucket/sweeps", "no filesystem for nosuchfs://"),
    ("mlflow.tracking_uri", "http://127.0.0.1:9", "mlflow.tracking_uri='http://127.0.0.1:9': no MLflow server answers"),
    ("scheduler.grace_period", 3, "scheduler.grace_period=3; allowed: 1 to max_t=2"),
    ("scheduler.grace_period", 0, "scheduler.grace_period=0; allowed: a number >= 1"),
    ("scheduler.name", "hyperband", "scheduler.name='hyperband'; allowed: asha, none"),
    ("asha", {"grace_period": 1}, "asha was removed: write `scheduler: {name: asha"),
    ("search.algorithm", "bohb", "search.algorithm='bohb'; allowed: tpe, random, grid"),
    ("search.algorithm", "grid", "search_space.objective.temperature.type='loguniform' with search.algorithm='grid'; allowed: choice"),
    ("search_space.objective.omega", {"type": "uniform", "low": 0.5, "high": 2.0, "when": {"objective.logit_transform": ["sine"]}},
     "search_space.objective.omega.high=2.0 is not a valid objective.omega: objective.omega=2.0; allowed: 0 < omega <= pi/2"),
    ("search_space.objective.omega", {"type": "uniform", "low": 0.5, "high": 1.5},
     "search_space.objective.omega can be drawn where it has no effect: with objective.logit_transform='identity' (it acts "
     "only when objective.logit_transform='sine'); add `when: {objective.logit_transform: [sine]}` to it"),
    ("search_space.objective.transform_before_temperature", {"type": "choice", "values": [True, False]},
     "objective.transform_before_temperature was removed: only z = f(s)/t is a variant"),
    ("trial.objective.transform_before_temperature", False, "trial.objective.transform_before_temperature was removed"),
    ("search_space.schedule", {
        "kind": {"type": "choice", "values": ["joint", "two_stage"]},
        "stage1_loss": {"type": "choice", "values": ["arcface", "simclr"], "when": {"schedule.kind": ["two_stage"]}},
        "arcface_margin": {"type": "uniform", "low": 0.05, "high": 0.5, "when": {"schedule.stage1_loss": ["arcface"]}},
    }, "search_space.schedule.arcface_margin can be drawn where it has no effect: with schedule.kind='joint'"),
    ("search_space", {"schedule": {"kind": {"type": "choice", "values": ["joint", "two_stage"]}},
                      "unimodal": {"image_weight": {"type": "uniform", "low": 0.0, "high": 1.0}}},
     "search_space.unimodal.image_weight can be drawn where it has no effect: with schedule.kind='two_stage' (it acts "
     "only when schedule.kind in ('joint', 'multi_stage')); add `when: {schedule.kind: [joint, multi_stage]}` to it"),
    ("search_space.objective.omega", {"type": "uniform", "low": 0.5, "high": 1.5, "when": {"objective.logit_transform": ["cosine"]}},
     "search_space.objective.omega.when.objective.logit_transform='cosine' is not a valid objective.logit_transform"),
    ("search.num_samples", "many", "search.num_samples='many'; allowed: an integer"),
    ("resources.workers_per_trial", 0, "resources.workers_per_trial=0; allowed: a number >= 1"),
    ("points_to_evaluate", [{"negatives.weighting": "cluster_all"}], "points_to_evaluate[0]"),
    ("trial.optim.lr", -1.0, "trial.optim.lr=-1.0"),
    ("trial.optim.deterministic", "yes", "trial.optim.deterministic='yes'; allowed: true or false"),
    ("leaderboard.seeds", 0, "leaderboard.seeds=0; allowed: an integer >= 1"),
    ("leaderboard.seeds", 2.5, "leaderboard.seeds=2.5; allowed: an integer, or a mapping {min, max}"),
    ("leaderboard.seeds", {"min": 5, "max": 3}, "leaderboard.seeds={'min': 5, 'max': 3}; allowed: {min: M, max: N} with 2 <= M < N"),
    ("leaderboard.seeds", {"min": 1}, "leaderboard.seeds={'min': 1}; allowed: {min: M, max: N} with 2 <= M < N"),
    ("leaderboard.seeds", {"max": 3}, "leaderboard.seeds={'max': 3}; allowed: {min: M, max: N}"),
    ("leaderboard.seeds", {"min": 2.5, "max": 6}, "leaderboard.seeds.min=2.5; allowed: an integer"),
    ("leaderboard.seeds", {"min": 3, "most": 6}, "unknown field leaderboard.seeds.most; allowed: max, min"),
    ("leaderboard.margin_pts", 0, "leaderboard.margin_pts=0.0; allowed: a number > 0.0"),
    ("leaderboard.margin_pts", -1.5, "leaderboard.margin_pts=-1.5; allowed: a number > 0.0"),
    ("leaderboard.margin_pts", "one", "leaderboard.margin_pts='one'; allowed: a finite number"),
    ("data.train", "/no/such/shards", "/no/such/shards"),
    ("colour", "red", "unknown field colour"),
]


@pytest.mark.parametrize("dotted, value, message", BAD, ids=[b[0] for b in BAD])
def test_bad_specs_fail_validation_naming_the_field(small_corpus, tmp_path, capsys, dotted, value, message):
    code, out = _validate(tmp_path, _set(spec_doc(small_corpus, str(tmp_path)), dotted, value), capsys)
    assert code == 2
    assert message in out


def test_malformed_yaml_names_the_line(tmp_path, capsys):
    text = "name: broken\nsearch_space:\n  objective: {logit_transform: {type: choice, values: [identity, sine}}\n"
    code, out = _validate(tmp_path, text, capsys)
    assert code == 2 and "line 3" in out and "malformed YAML" in out


@pytest.mark.parametrize("path", sorted(SPACES.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_search_spaces_parse_and_fit_a_cluster(path):
    spec = SweepSpec.from_yaml(str(path))
    assert spec.params and spec.search.num_samples >= 1 + len(spec.points_to_evaluate)  # every point runs
    if path.name != "findings.yaml":  # a search, not a fixed list of claims: TPE gets draws of its own
        assert spec.search.num_samples >= 8
    # e.g. 2 nodes of 8 GPUs and cluster.yaml's head, which holds the drivers' resource
    plan = plan_resources(spec, cluster={"CPU": 256.0, "GPU": 16.0, "clipsweep_driver": 8.0})
    assert 1 <= plan.max_concurrent <= spec.search.num_samples


def test_driver_resources_must_exist_in_the_cluster_and_bound_concurrency():
    doc = SweepSpec.from_yaml(str(SPACES / "default.yaml")).to_doc()
    doc["resources"]["driver_resources"] = {"clipsweep_driver": 1}
    spec = SweepSpec.from_dict(doc)
    with pytest.raises(ValueError, match=r"resources.driver_resources.clipsweep_driver=1; allowed: at most the cluster's 0"):
        plan_resources(spec, cluster={"CPU": 64.0})
    assert plan_resources(spec, cluster={"CPU": 64.0, "clipsweep_driver": 1.0}).max_concurrent == 1
    local = plan_resources(spec, cores=2)  # a local Ray plays the head: it gets the resource
    assert local.ray_resources == {"clipsweep_driver": local.max_concurrent}
    doc["resources"]["driver_resources"] = {"clipsweep_driver": "one"}
    with pytest.raises(SpecError, match="resources.driver_resources.clipsweep_driver='one'; allowed: a finite number"):
        SweepSpec.from_dict(doc)
    doc["resources"]["driver_resources"] = {}
    doc["failure_config"] = {"max_failures": -2}
    with pytest.raises(SpecError, match=r"failure_config.max_failures=-2; allowed: >= 0, or -1"):
        SweepSpec.from_dict(doc)


def test_default_space_covers_every_method_family_and_fits_two_cores():
    spec = SweepSpec.from_yaml(str(SPACES / "default.yaml"))
    assert spec.suite.name == "synthetic10"
    configs = [spec.baseline] + [spec.config_for(p) for p in spec.points_to_evaluate]
    assert any(c.objective.logit_transform != "identity" for c in configs)  # A
    assert any(c.negatives.weighting != "none" for c in configs)  # B
    assert any(c.unimodal.image_weight > 0 or c.batching.mode == "cluster_hard" for c in configs)  # C
    assert any(c.schedule.kind == "two_stage" for c in configs)  # D
    plan = plan_resources(spec, cores=2)
    # Every running trial's driver and worker fit the logical CPUs, with 2 left for Ray Data.
    assert plan.max_concurrent * plan.cpus_per_trial + 2 <= plan.ray_cpus


def test_a_trial_bigger_than_the_cluster_is_refused():
    spec = SweepSpec.from_yaml(str(SPACES / "default.yaml"))
    with pytest.raises(ValueError, match="one trial needs 1.5 CPUs"):
        plan_resources(spec, cluster={"CPU": 3.0})
    with pytest.raises(SpecError, match="search_space is empty"):
        SweepSpec.from_dict({"name": "x"})


@pytest.mark.parametrize(
    ("resources", "in_actor"),
    [
        ({}, True),  # auto, one worker
        ({"workers_per_trial": 2}, False),
        ({"driver_resources": {"clipsweep_driver": 1}}, False),  # drivers pinned away from workers
        ({"trainer": "torch_trainer"}, False),
        ({"trainer": "trial_actor", "driver_resources": {"clipsweep_driver": 1}}, True),
    ],
)
def test_where_a_trial_trains_and_what_its_tune_actor_reserves(resources, in_actor):
    doc = SweepSpec.from_yaml(str(SPACES / "default.yaml")).to_doc()
    doc["resources"] = {"cpus_per_worker": 1, "driver_cpus": 0.5, "gpus_per_worker": 0.5, **resources}
    doc["failure_config"] = {"max_failures": 2}
    spec = SweepSpec.from_dict(doc)
    assert spec.resources.in_trial_actor is in_actor
    # The actor that trains reserves the worker's share too; Tune retries it, not Ray Train.
    reserved = trial_resources(spec)
    assert (reserved["cpu"], reserved.get("gpu", 0)) == ((1.5, 0.5) if in_actor else (0.5, 0))
    assert trial_failures(spec).max_failures == (2 if in_actor else 0)
