"""Trial config: defaults are the baseline, bad input names field, value and what is allowed."""

from __future__ import annotations

import dataclasses

import pytest

from clipsweep.trainers.config import TrialConfig


def test_default_is_every_knob_at_its_first_value():
    flat = TrialConfig().flat()
    assert flat["objective.logit_transform"] == "identity"
    assert flat["negatives.weighting"] == "none"
    assert flat["negatives.features"] == "initial"
    assert flat["batching.mode"] == "random"
    assert flat["schedule.kind"] == "joint"
    assert flat["unimodal.image_weight"] == flat["unimodal.text_weight"] == 0.0


def test_from_dict_round_trips_and_is_frozen():
    cfg = TrialConfig.from_dict({"objective": {"logit_transform": "sine", "omega": 1.2}, "optim": {"epochs": 2}})
    assert TrialConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.objective.omega = 3.0  # type: ignore[misc]


@pytest.mark.parametrize(
    "data, message",
    [
        ({"objective": {"logit_transform": "cosine"}}, "objective.logit_transform='cosine'; allowed: identity, sine"),
        ({"objective": {"temperature": -0.1}}, "objective.temperature=-0.1; allowed: a number > 0.0"),
        ({"objective": {"temperature": 0.001}}, "objective.temperature=0.001; allowed: >= 0.01"),
        ({"negatives": {"weighting": "cluster"}}, "negatives.weighting='cluster'; allowed: none, cluster_weight"),
        ({"negatives": {"strenght": 1.0}}, "unknown field negatives.strenght; did you mean strength\\? allowed: features, n_clusters_image"),
        ({"negatives": {"threshold": 1.5}}, "negatives.threshold=1.5; allowed: a number >= -1.0 and <= 1.0"),
        ({"schedule": {"kind": "three_stage"}}, "schedule.kind='three_stage'; allowed: joint, multi_stage, two_stage"),
        ({"optim": {"precision": "fp8"}}, "optim.precision='fp8'; allowed: bf16, fp16, fp32"),
        ({"optim": {"deterministic": "yes"}}, "optim.deterministic='yes'; allowed: true or false"),
        ({"schedule": {"kind": "two_stage", "stage1_epochs": 5}}, "schedule.stage1_epochs=5; allowed: fewer than"),
        ({"optim": {"epochs": "3"}}, "optim.epochs='3'; allowed: an integer"),
        ({"objective": {"learnable_temperature": "yes"}}, "objective.learnable_temperature='yes'; allowed: true or false"),
        ({"model": {"text_weights": "/no/such/dir"}}, "model.text_weights='/no/such/dir': no such path"),
        ({"model": {"image_tower": "vit"}}, "model.image_tower='vit'; allowed: tiny_resnet, resnet18"),
        ({"modle": {}}, "unknown field modle; did you mean model\\? allowed: batching, model"),
        ({"unimodal": 0.5}, "unimodal=0.5; expected a mapping of fields"),
        ({"objective": {"logit_transform": "sine", "omega": 1.6}}, "objective.omega=1.6; allowed: 0 < omega <= pi/2"),
        ({"objective": {"omega": 0.0}}, "objective.omega=0.0; allowed: 0 < omega <= pi/2"),
        ({"objective": {"transform_before_temperature": False}}, "objective.transform_before_temperature was removed: only z = f(s)/t"),
        (
            {"schedule": {"kind": "two_stage", "stage1_loss": "simclr"}, "unimodal": {"text_weight": 0.5}},
            "unimodal.text_weight=0.5 has no effect under schedule.kind='two_stage' (stage 1 trains simclr",
        ),
    ],
)
def test_bad_fields_are_named(data, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        TrialConfig.from_dict(data)


def test_data_dependent_checks():
    with pytest.raises(ValueError, match=r"negatives.n_clusters_image=50; allowed: at most the 30 training items"):
        TrialConfig.from_dict({"negatives": {"weighting": "cluster_weight"}}).check_data(30, has_labels=True)
    TrialConfig().check_data(30, has_labels=False)  # weighting none: cluster counts unused
    arcface = TrialConfig.from_dict({"schedule": {"kind": "two_stage"}})
    with pytest.raises(ValueError, match=r"stage1_loss='arcface' needs a `label` column.*allowed without labels: 'simclr'"):
        arcface.check_data(1000, has_labels=False)


def test_flat_keys_are_dotted_paths():
    cfg = TrialConfig()
    flat = cfg.flat()
    assert len(flat) == sum(len(dataclasses.fields(getattr(cfg, f.name))) for f in dataclasses.fields(cfg))
    assert flat["objective.temperature"] == 0.07 and all(key.count(".") == 1 for key in flat)


def test_every_knob_says_when_it_acts():
    assert TrialConfig().dead_knobs().keys() >= {"objective.omega", "objective.k", "negatives.strength", "schedule.arcface_margin"}
    sine = TrialConfig.from_dict({"objective": {"logit_transform": "sine"}})
    assert "objective.omega" not in sine.dead_knobs() and "objective.k" in sine.dead_knobs()
    weight = TrialConfig.from_dict({"negatives": {"weighting": "cluster_weight"}})
    assert str(weight.dead_knobs()["negatives.n_clusters_text"]) == "negatives.weighting in ('cluster_mask', 'cluster_both')"
    simclr = TrialConfig.from_dict({"schedule": {"kind": "two_stage", "stage1_loss": "simclr"}, "optim": {"epochs": 3}})
    assert "schedule.arcface_margin" in simclr.dead_knobs()  # neither arcface nor pseudo-captions
    mcip = TrialConfig.from_dict({"schedule": {"kind": "two_stage", "stage1_loss": "simclr", "pseudo_captions": True}, "optim": {"epochs": 3}})
    assert "schedule.arcface_margin" not in mcip.dead_knobs()  # MCIP's pseudo-caption loss uses s and m
    assert TrialConfig.acts("optim.lr") is None  # always acts
