"""paper10: every loader on a fixture in its dataset's real format, tiers, and the suite's
metrics against CLIP_benchmark's own evaluation code on the same model."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
import yaml
from paper10_fixtures import write_paper10
from run_metrics import checkpoint_metrics
from torch.utils.data import DataLoader, Dataset

from clipsweep.orchestrator.cli import main
from clipsweep.orchestrator.train_cli import load_train_config
from clipsweep.trainers.config import ModelConfig, ObjectiveConfig
from clipsweep.trainers.data.tokenizer import build_tokenizer
from clipsweep.trainers.data.transforms import normalize, square_pixels
from clipsweep.trainers.evaluation import paper10
from clipsweep.trainers.evaluation.datasets import DATASETS, ClassificationSet, check_root, load_dataset, prompts
from clipsweep.trainers.evaluation.paper10 import load_paper10, score_paper10, stratified_subset
from clipsweep.trainers.evaluation.settings import SuiteSettings
from clipsweep.trainers.models.dual_encoder import DualEncoder

N_CLASSES = {"cifar10": 10, "cifar100": 100, "food101": 101, "fgvc_aircraft": 100, "pcam": 2, "pets": 37, "flowers102": 102, "dtd": 47}
IMAGE_SIZE, MAX_LENGTH = 32, 32


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    return write_paper10(str(tmp_path_factory.mktemp("paper10")))


@pytest.mark.parametrize("name", list(DATASETS))
def test_loader_reads_the_real_layout(fixtures, name):
    data = load_dataset(name, fixtures[name].root)
    if isinstance(data, ClassificationSet):
        assert len(data.classes) == N_CLASSES[name]
        assert data.labels.tolist() == fixtures[name].labels
    else:
        assert data.captions == fixtures[name].captions  # test split only, first 5 captions each
        assert all(len(c) == 5 for c in data.captions)
    assert data.image(len(data) - 1).mode == "RGB"


def test_missing_root_names_the_dataset_the_path_and_the_layout(tmp_path):
    with pytest.raises(ValueError, match=r"suite\.roots\.food101=.*food-101/images does not exist.*meta/test\.json"):
        check_root("food101", str(tmp_path))
    with pytest.raises(ValueError, match=r"suite\.roots\.imagenet: unknown dataset; allowed: cifar10"):
        check_root("imagenet", str(tmp_path))


def test_unconfigured_datasets_are_reported_as_skipped(fixtures):
    settings = SuiteSettings("paper10", roots={"pets": fixtures["pets"].root, "coco": fixtures["coco"].root})
    settings.check()
    assert settings.skipped() == ["cifar10", "cifar100", "food101", "fgvc_aircraft", "pcam", "flowers102", "dtd", "flickr30k"]
    assert list(load_paper10(settings, "full")) == ["pets", "coco"]


def test_class_names_and_templates_are_clip_benchmarks():
    """The names CLIP_benchmark curates (pets, flowers, pcam) and every template set are the same."""
    import clip_benchmark

    folder = os.path.join(os.path.dirname(clip_benchmark.__file__), "datasets")
    with open(os.path.join(folder, "en_classnames.json")) as f:
        names = json.load(f)
    with open(os.path.join(folder, "en_zeroshot_classification_templates.json")) as f:
        templates = json.load(f)
    theirs = {"flowers102": "flowers"}
    for name in N_CLASSES:
        ours = prompts()[name]
        assert [t.replace("{}", "{c}") for t in ours["templates"]] == templates[theirs.get(name, name)]
        if theirs.get(name, name) in names:
            assert list(ours["classes"]) == names[theirs.get(name, name)]


def test_stratified_subset_keeps_class_proportions_and_is_seeded():
    labels = np.repeat([0, 1, 2], [600, 300, 100])
    chosen = stratified_subset(labels, 100, seed=1)
    assert np.bincount(labels[chosen]).tolist() == [60, 30, 10]
    assert np.array_equal(chosen, stratified_subset(labels, 100, seed=1))
    assert not np.array_equal(chosen, stratified_subset(labels, 100, seed=2))
    assert len(np.unique(chosen)) == 100
    assert np.array_equal(stratified_subset(labels[:10], 50), np.arange(10))  # smaller than asked: all


def test_cheap_tier_is_a_subset_of_the_full_one(fixtures):
    roots = {name: f.root for name, f in fixtures.items()}
    cheap = load_paper10(SuiteSettings("paper10", roots=roots, cheap_size=3, cheap_retrieval_size=2), "cheap")
    full = load_paper10(SuiteSettings("paper10", roots=roots), "full")
    for name in DATASETS:
        assert len(cheap[name].indices) == min(3 if name in N_CLASSES else 2, len(full[name].indices))
        assert set(cheap[name].indices) <= set(full[name].indices)


class _ReferencePixels(Dataset):
    """What CLIP_benchmark's DataLoaders yield: (transformed image, label) or (image, captions)."""

    def __init__(self, data):
        self.data = data

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        image = normalize(torch.from_numpy(square_pixels(self.data.image(i), IMAGE_SIZE))[None])[0]
        return (image, int(self.data.labels[i])) if isinstance(self.data, ClassificationSet) else (image, self.data.captions[i])


class _ClipBenchmarkModel(torch.nn.Module):
    """Our dual encoder behind the `encode_image` / `encode_text(tokens)` interface CLIP_benchmark calls."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def encode_image(self, images):
        return self.model.encode_image(images)

    def encode_text(self, tokens):
        return self.model.encode_text(tokens["input_ids"], tokens["attention_mask"])


def test_suite_metrics_match_clip_benchmark_on_all_ten(fixtures, tmp_path):
    from clip_benchmark.metrics import zeroshot_classification as cb_zs
    from clip_benchmark.metrics import zeroshot_retrieval as cb_ret
    from sklearn.metrics import balanced_accuracy_score

    roots = {name: f.root for name, f in fixtures.items()}
    sets = load_paper10(SuiteSettings("paper10", roots=roots), "full")
    texts = [t.format(c) for p in prompts().values() for c in p["classes"] for t in p["templates"]]
    texts += [c for name in ("flickr30k", "coco") for cs in sets[name].data.captions for c in cs]
    tokenizer = build_tokenizer(texts, str(tmp_path / "tokenizer"), vocab_size=4000)  # every word known: no ties
    torch.manual_seed(0)
    model = DualEncoder(ModelConfig(image_size=IMAGE_SIZE, vocab_size=len(tokenizer), max_length=MAX_LENGTH), ObjectiveConfig()).eval()
    results, items = score_paper10(model, sets, tokenizer, IMAGE_SIZE, MAX_LENGTH)
    assert list(results) == list(DATASETS)

    reference = _ClipBenchmarkModel(model)
    tokenize = lambda batch: tokenizer(batch, padding="max_length", truncation=True, max_length=MAX_LENGTH, return_tensors="pt")  # noqa: E731
    for name, tier_set in sets.items():
        ours, data = results[name], tier_set.data
        assert items[name].value() == pytest.approx(ours["primary"], abs=1e-6)
        loader_kwargs = {"batch_size": 4}
        if name in N_CLASSES:
            classifier = cb_zs.zero_shot_classifier(
                reference, tokenize, list(data.classes), [t.replace("{}", "{c}") for t in data.templates], "cpu", amp=False
            )
            logits, target = cb_zs.run_classification(reference, classifier, DataLoader(_ReferencePixels(data), **loader_kwargs), "cpu", amp=False)
            top = logits.topk(min(5, logits.shape[1]), 1)[1]  # cb_zs.accuracy's own logic; its float() breaks on NumPy >= 2.4
            assert ours["acc1"] == pytest.approx((top[:, 0] == target).float().mean().item(), abs=1e-6), name
            if N_CLASSES[name] >= 5:
                assert ours["acc5"] == pytest.approx((top == target[:, None]).any(1).float().mean().item(), abs=1e-6), name
            else:
                assert np.isnan(ours["acc5"])
            assert ours["mean_per_class_recall"] == pytest.approx(balanced_accuracy_score(target, logits.argmax(1)), abs=1e-6), name
            primary = "mean_per_class_recall" if name in ("fgvc_aircraft", "pets", "flowers102") else "acc1"
            assert ours["primary"] == ours[primary]
        else:
            loader = DataLoader(_ReferencePixels(data), collate_fn=lambda b: (torch.stack([x for x, _ in b]), [c for _, c in b]), **loader_kwargs)
            theirs = cb_ret.evaluate(reference, loader, tokenize, "cpu", amp=False, recall_k_list=[1, 5, 10])
            for k in (1, 5, 10):
                assert ours[f"t2i_R@{k}"] == pytest.approx(theirs[f"image_retrieval_recall@{k}"], abs=1e-6), name
                assert ours[f"i2t_R@{k}"] == pytest.approx(theirs[f"text_retrieval_recall@{k}"], abs=1e-6), name
            assert ours["primary"] == pytest.approx((ours["i2t_R@1"] + ours["t2i_R@1"]) / 2)


def _train_config(tmp_path, corpus, suite) -> str:
    doc = {
        "trial": {"optim": {"batch_size": 64, "warmup_steps": 2, "epochs": 1}},
        "data": {"train": corpus.split_dir("train"), "tokenizer": corpus.tokenizer_dir},
        "suite": suite,
    }
    path = tmp_path / "trial.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def test_a_paper10_trial_config_is_checked_before_ray(tmp_path, small_corpus, fixtures):
    with pytest.raises(ValueError, match=r"suite\.roots\.pets=.*oxford-iiit-pet/images does not exist"):
        load_train_config(_train_config(tmp_path, small_corpus, {"name": "paper10", "roots": {"pets": str(tmp_path)}}))
    with pytest.raises(ValueError, match=r"unknown field suite\.tiers; did you mean tier\? allowed: cheap_retrieval_size, cheap_size, name, roots, seed, tier"):
        load_train_config(_train_config(tmp_path, small_corpus, {"name": "paper10", "tiers": "full"}))
    with pytest.raises(ValueError, match=r"suite\.heldout is not a suite field; the held-out split is data\.heldout"):
        load_train_config(_train_config(tmp_path, small_corpus, {"heldout": str(tmp_path)}))
    with pytest.raises(ValueError, match=r"suite\.tier='test'; allowed: cheap, full"):
        load_train_config(_train_config(tmp_path, small_corpus, {"tier": "test"}))
    with pytest.raises(ValueError, match=r"suite\.roots is empty; paper10 needs at least one of: cifar10"):
        load_train_config(_train_config(tmp_path, small_corpus, {"name": "paper10"}))


@pytest.mark.usefixtures("ray_local")
def test_a_trial_scores_the_configured_paper10_datasets_each_epoch(tmp_path, small_corpus, fixtures, capsys):
    suite = {"name": "paper10", "roots": {"pets": fixtures["pets"].root, "coco": fixtures["coco"].root}}
    assert main(["train", _train_config(tmp_path, small_corpus, suite), "--storage", str(tmp_path / "runs"), "--name", "p10"]) == 0
    [epoch] = checkpoint_metrics(str(tmp_path / "runs" / "p10"))
    for name in ("pets", "coco"):
        assert 0.0 <= epoch[f"bench/{name}/primary"] <= 1.0
    assert epoch["bench/pets/primary"] == epoch["bench/pets/mean_per_class_recall"]
    assert not any(k.startswith("bench/cifar10/") for k in epoch)
    out = capsys.readouterr().out
    assert "paper10: skipped (no root configured): cifar10, cifar100, food101" in out
    assert "paper10 (cheap tier)" in " ".join(out.split())  # the table title, however rich wraps it


def test_a_paper10_sweep_spec_is_checked_before_ray(tmp_path, small_corpus, fixtures, capsys):
    from clipsweep.orchestrator.preflight import check_sweep
    from clipsweep.orchestrator.spec import SweepSpec
    from clipsweep.orchestrator.yaml_docs import SpecError

    def doc(roots):
        return {
            "name": "p10", "storage_path": str(tmp_path / "runs"), "mlflow": {"tracking_uri": f"sqlite:///{tmp_path}/m.db"},
            "data": {"train": small_corpus.split_dir("train"), "tokenizer": small_corpus.tokenizer_dir},
            "suite": {"name": "paper10", "roots": roots, "cheap_size": 100},
            "trial": {"optim": {"batch_size": 64}},
            "search_space": {"objective": {"temperature": {"type": "loguniform", "low": 0.03, "high": 0.1}}},
        }  # fmt: skip

    assert check_sweep(SweepSpec.from_dict(doc({"dtd": fixtures["dtd"].root}))).n_train > 0  # no data.heldout needed
    with pytest.raises(SpecError, match=r"suite\.roots\.dtd=.*dtd/dtd/images does not exist; DTD is expected as ROOT/dtd/dtd/"):
        check_sweep(SweepSpec.from_dict(doc({"dtd": str(tmp_path)})))
    space = tmp_path / "p10.yaml"
    space.write_text(yaml.safe_dump(doc({"dtd": fixtures["dtd"].root, "coco": fixtures["coco"].root})))
    assert main(["validate", str(space)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "paper10: skipped (no root configured): cifar10, cifar100, food101, fgvc_aircraft, pcam, pets, flowers102, flickr30k" in out


def test_chance_is_one_over_classes_or_over_retrieval_images(fixtures):
    roots = {name: fixtures[name].root for name in ("pcam", "pets", "flowers102", "coco")}
    full = paper10.chance_levels(SuiteSettings("paper10", roots=roots), "full")
    assert full == {"pcam": 0.5, "pets": 1 / 37, "flowers102": 1 / 102, "coco": 1 / 11}  # 11 Karpathy test images
    cheap = paper10.chance_levels(SuiteSettings("paper10", roots=roots, cheap_retrieval_size=4), "cheap")
    assert cheap["coco"] == 1 / 4 and cheap["pcam"] == 0.5
