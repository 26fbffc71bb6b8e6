"""Dual encoder, local-only pretrained weights, stage plans that freeze what they say."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from clipsweep.trainers.config import TrialConfig
from clipsweep.trainers.data.tokenizer import build_tokenizer, load_tokenizer
from clipsweep.trainers.data.transforms import drop_tokens
from clipsweep.trainers.models.dual_encoder import MAX_LOGIT_SCALE, DualEncoder
from clipsweep.trainers.models.image import build_image_tower
from clipsweep.trainers.objectives import ContrastiveObjective, ObjectiveInputs, WorkerGroup
from clipsweep.trainers.objectives.clusters import cluster_hard_order, kmeans
from clipsweep.trainers.schedules import param_groups, stage_plan


def _batch(n=6, vocab=2000):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, vocab, (n, 12), generator=g)
    return torch.randn(n, 3, 64, 64, generator=g), ids, torch.ones_like(ids)


def test_dual_encoder_embeddings_are_unit_norm_and_scale_is_clamped():
    cfg = TrialConfig()
    model = DualEncoder(cfg.model, cfg.objective)
    u, v = model(*_batch())
    assert u.shape == v.shape == (6, cfg.model.embed_dim)
    assert torch.allclose(u.norm(dim=-1), torch.ones(6), atol=1e-5) and torch.allclose(v.norm(dim=-1), torch.ones(6), atol=1e-5)
    assert model.logit_scale.item() == pytest.approx(math.log(1 / 0.07))
    with torch.no_grad():
        model.logit_scale.fill_(7.0)
    model.clamp_logit_scale()
    assert model.logit_scale.item() == pytest.approx(MAX_LOGIT_SCALE)


def test_fixed_temperature_is_a_buffer():
    cfg = TrialConfig.from_dict({"objective": {"learnable_temperature": False, "temperature": 0.05}})
    model = DualEncoder(cfg.model, cfg.objective)
    assert "logit_scale" not in dict(model.named_parameters())
    assert model.logit_scale.item() == pytest.approx(math.log(20))


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_torchvision_towers_build_without_download(name):
    tower, dim = build_image_tower(name)
    assert tower(torch.randn(2, 3, 64, 64)).shape == (2, dim)


def test_image_tower_loads_local_state_dict(tmp_path):
    tower, _ = build_image_tower("resnet18")
    torch.save(tower.state_dict(), tmp_path / "resnet18.pth")
    loaded, _ = build_image_tower("resnet18", str(tmp_path / "resnet18.pth"))
    x = torch.randn(1, 3, 64, 64)
    tower.eval(), loaded.eval()
    assert torch.equal(tower(x), loaded(x))
    with pytest.raises(ValueError, match="does not fit tiny_resnet"):
        build_image_tower("tiny_resnet", str(tmp_path / "resnet18.pth"))


def test_text_tower_loads_local_transformers_checkpoint(tmp_path):
    cfg = TrialConfig()
    model = DualEncoder(cfg.model, cfg.objective)
    model.text_tower.encoder.save_pretrained(tmp_path / "distilbert")
    local = TrialConfig.from_dict({"model": {"text_weights": str(tmp_path / "distilbert")}})
    loaded = DualEncoder(local.model, local.objective)
    _, ids, mask = _batch()
    model.eval(), loaded.eval()
    assert torch.allclose(model.text_tower(ids, mask), loaded.text_tower(ids, mask), atol=1e-6)


def _stage_run(cfg: TrialConfig, stage_index: int):
    model = DualEncoder(cfg.model, cfg.objective)
    objective = ContrastiveObjective(cfg, cfg.model.embed_dim, n_classes=4, group=WorkerGroup())
    modules = {"": model, **({"arcface": objective.arcface} if hasattr(objective, "arcface") else {})}
    stage = stage_plan(cfg)[stage_index]
    groups = param_groups(modules, stage, lr=1e-3, weight_decay=0.1, proxy_lr_multiplier=100.0)
    images, ids, mask = _batch(8)
    u, v = model(images, ids, mask)
    u2, _ = model(images.flip(-1), ids, mask)
    pseudo = torch.nn.functional.normalize(torch.randn(8, 2, cfg.model.embed_dim), dim=-1)
    inputs = ObjectiveInputs(
        u, v, image_view=u2, text_view=v, labels=torch.arange(8) % 4, pseudo_text=pseudo, pseudo_mask=torch.ones(8, 2, dtype=torch.bool)
    )
    objective(inputs, model.logit_scale, stage.weights)["total"].backward()
    return model, modules, stage, groups


def _grad_prefixes(modules) -> set[str]:
    return {
        (f"{p}." if p else "") + n.split(".")[0]
        for p, m in modules.items()
        for n, param in m.named_parameters()
        if param.grad is not None and param.grad.abs().sum() > 0
    }


@pytest.mark.parametrize(
    "overrides, stage, trained",
    [
        ({}, 0, {"image_tower", "image_proj", "text_tower", "text_proj", "logit_scale"}),
        ({"schedule": {"kind": "multi_stage"}}, 0, {"image_tower", "image_proj", "text_tower", "text_proj", "logit_scale"}),
        ({"schedule": {"kind": "two_stage"}}, 0, {"image_tower", "image_proj", "arcface.weight"}),
        ({"schedule": {"kind": "two_stage", "stage1_loss": "simclr"}}, 0, {"image_tower", "image_proj", "logit_scale"}),
        ({"schedule": {"kind": "two_stage", "pseudo_captions": True}}, 0, {"image_tower", "image_proj", "arcface.weight"}),
        ({"schedule": {"kind": "two_stage"}}, 1, {"text_tower", "text_proj", "logit_scale"}),
    ],
)
def test_stage_trains_only_its_parameters(overrides, stage, trained):
    cfg = TrialConfig.from_dict({"optim": {"epochs": 3}, **overrides})
    model, modules, plan_stage, groups = _stage_run(cfg, stage)
    assert _grad_prefixes(modules) == trained
    in_groups = {id(p) for g in groups for p in g["params"]}
    requires = {id(p) for m in modules.values() for p in m.parameters() if p.requires_grad}
    assert in_groups == requires
    if "arcface.weight" in trained:
        assert [g["lr"] for g in groups if g["params"][0] is modules["arcface"].weight] == [pytest.approx(0.1)]


def test_stage_plans_split_the_epochs():
    two = stage_plan(TrialConfig.from_dict({"optim": {"epochs": 5}, "schedule": {"kind": "two_stage", "stage1_epochs": 2}}))
    assert [(s.name, s.epochs, s.trainable[0]) for s in two] == [("image", 2, "image_tower"), ("realign", 3, "text_tower")]
    multi = stage_plan(
        TrialConfig.from_dict({"optim": {"epochs": 4}, "schedule": {"kind": "multi_stage"}, "unimodal": {"image_weight": 0.5}})
    )
    assert [s.weights for s in multi] == [{"clip": 1.0}, {"clip": 1.0, "image_image": 0.5}]
    mcip = stage_plan(TrialConfig.from_dict({"schedule": {"kind": "two_stage", "pseudo_captions": True}}))
    assert mcip[0].weights == {"arcface": 0.75, "pseudo_caption": 0.25}


def test_drop_tokens_keeps_specials_and_packs_left():
    ids = torch.tensor([[2, 10, 11, 12, 13, 3, 0, 0]])
    mask = (ids != 0).long()
    same_ids, same_mask = drop_tokens(ids, mask, p=0.0)
    assert torch.equal(same_ids, ids) and torch.equal(same_mask, mask)
    dropped, dropped_mask = drop_tokens(ids.repeat(200, 1), mask.repeat(200, 1), p=0.5, generator=torch.Generator().manual_seed(0))
    lengths = dropped_mask.sum(1)
    assert (dropped[:, 0] == 2).all() and (dropped[torch.arange(200), lengths - 1] == 3).all()
    assert 2 <= lengths.min() and lengths.float().mean().item() == pytest.approx(2 + 4 * 0.5, abs=0.3)
    assert ((dropped != 0) == dropped_mask.bool()).all()  # packed: no holes before padding


def test_kmeans_finds_separated_clusters_and_hard_batches_stay_within_them():
    rng = np.random.default_rng(0)
    centres = np.eye(8)[:4] * 10
    features = np.concatenate([c + rng.normal(size=(50, 8)) for c in centres])
    result = kmeans(features, 4, seed=0)
    truth = np.repeat(np.arange(4), 50)
    assert all(len(set(result.assignments[truth == c])) == 1 for c in range(4))
    assert result.centroid_cosine.shape == (4, 4) and np.allclose(np.diag(result.centroid_cosine), 1, atol=1e-5)
    order = cluster_hard_order(result.assignments, batch_size=25, seed=0)
    assert sorted(order) == list(range(200))
    assert max(len(set(result.assignments[order[i : i + 25]])) for i in range(0, 200, 25)) == 1
    with pytest.raises(ValueError, match=r"k=300; allowed: 2 <= k <= 200"):
        kmeans(features, 300)


def test_resnet50_and_distilbert_restore_from_local_weights_exactly(tmp_path):
    """Paper A's towers from files in the formats they ship in: a torchvision state dict (with
    its ImageNet classifier) and a transformers model directory with its tokenizer."""
    from torchvision.models import resnet50
    from transformers import DistilBertConfig, DistilBertModel

    torch.manual_seed(0)
    image_source = resnet50(weights=None)
    torch.save(image_source.state_dict(), tmp_path / "resnet50.pth")
    text_source = DistilBertModel(DistilBertConfig())  # distilbert-base's shape: 6 layers, dim 768
    text_source.save_pretrained(tmp_path / "distilbert")
    tokenizer = build_tokenizer(["a photo of a cat"], str(tmp_path / "distilbert"), vocab_size=100)  # a BERT WordPiece

    cfg = TrialConfig.from_dict({"model": {
        "image_tower": "resnet50", "image_weights": str(tmp_path / "resnet50.pth"),
        "text_tower": "distilbert", "text_weights": str(tmp_path / "distilbert"),
    }})  # fmt: skip
    model = DualEncoder(cfg.model, cfg.objective)
    expected_image = {k: v for k, v in image_source.state_dict().items() if not k.startswith("fc.")}
    assert model.image_tower.state_dict().keys() == expected_image.keys()
    assert all(torch.equal(model.image_tower.state_dict()[k], v) for k, v in expected_image.items())
    expected_text = text_source.state_dict()
    assert model.text_tower.encoder.state_dict().keys() == expected_text.keys()
    assert all(torch.equal(model.text_tower.encoder.state_dict()[k], v) for k, v in expected_text.items())
    # The checkpoint's own tokenizer is the one that fits it, not the corpus'.
    assert cfg.model.tokenizer_dir("/corpus/tokenizer") == str(tmp_path / "distilbert")
    ids = load_tokenizer(cfg.model.tokenizer_dir("/corpus/tokenizer"))("a photo of a cat")["input_ids"]
    assert ids == tokenizer("a photo of a cat")["input_ids"] and len(ids) == 7  # [CLS] 5 words [SEP]
    with pytest.raises(ValueError, match=r"holds a distilbert checkpoint; model.text_tower='bert' expects bert"):
        DualEncoder(TrialConfig.from_dict({"model": {"text_tower": "bert", "text_weights": str(tmp_path / "distilbert")}}).model, cfg.objective)


def test_the_full_objective_and_its_views_come_from_the_term_registry():
    """A term's weight knob and needs are declared where it is registered; the stage plan and
    the data loader's second views follow from them."""
    from clipsweep.trainers.objectives import TERMS, full_weights
    from clipsweep.trainers.schedules import needs_views

    cfg = TrialConfig.from_dict({"unimodal": {"image_weight": 0.5}})
    assert full_weights(cfg) == {"clip": 1.0, "image_image": 0.5}
    assert stage_plan(cfg)[0].weights == full_weights(cfg)
    assert needs_views(cfg) and not needs_views(TrialConfig())
    simclr = TrialConfig.from_dict({"schedule": {"kind": "two_stage", "stage1_loss": "simclr"}, "optim": {"epochs": 2}})
    assert needs_views(simclr)  # stage 1 trains image_image, which reads image views
    assert {name for name, term in TERMS.items() if term.needs_views} == {"image_image", "text_text"}
