"""Metric functions agree with CLIP_benchmark's code (and sklearn's, which it uses) to 1e-6."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score, top_k_accuracy_score

from clipsweep.trainers.evaluation.metrics import (
    class_embeddings,
    image_retrieval_r1,
    knn_accuracy,
    retrieval,
    zero_shot,
)


def _unit(rng, *shape):
    x = rng.normal(size=shape).astype(np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.mark.parametrize("n_classes", [3, 10, 37])
def test_zero_shot_matches_clip_benchmark(n_classes):
    from clip_benchmark.metrics import zeroshot_classification as cb

    rng = np.random.default_rng(n_classes)
    image, classes = _unit(rng, 400, 32), _unit(rng, n_classes, 32)
    labels = rng.integers(0, n_classes, 400)
    labels[:n_classes] = np.arange(n_classes)  # every class present
    ours = zero_shot(image, classes, labels)
    logits = torch.from_numpy(image @ classes.T)
    try:
        reference_acc1 = cb.accuracy(logits, torch.from_numpy(labels), topk=(1,))[0]
    except TypeError:  # its float() of a 1-element array fails on NumPy >= 2.4: run its top-k logic here
        pred = logits.topk(1, 1, True, True)[1].t()
        reference_acc1 = pred.eq(torch.from_numpy(labels).view(1, -1)).float().sum().item() / 400
    assert ours["acc1"] == pytest.approx(reference_acc1, abs=1e-6)
    assert ours["acc1"] == pytest.approx(top_k_accuracy_score(labels, logits.numpy(), k=1, labels=range(n_classes)), abs=1e-6)
    if n_classes >= 5:
        assert ours["acc5"] == pytest.approx(top_k_accuracy_score(labels, logits.numpy(), k=5, labels=range(n_classes)), abs=1e-6)
    else:
        assert np.isnan(ours["acc5"])
    # clip_benchmark's mean per-class recall is sklearn's balanced accuracy of the argmax.
    assert ours["mean_per_class_recall"] == pytest.approx(balanced_accuracy_score(labels, logits.argmax(1).numpy()), abs=1e-6)


def test_retrieval_matches_clip_benchmark_recall_at_k():
    from clip_benchmark.metrics.zeroshot_retrieval import batchify, recall_at_k

    rng = np.random.default_rng(0)
    n_images, per_image = 120, 5
    image = _unit(rng, n_images, 32)
    text_image = np.repeat(np.arange(n_images), per_image)
    text = _unit(rng, n_images * per_image, 32) + 0.8 * image[text_image]  # related, not identical
    text /= np.linalg.norm(text, axis=-1, keepdims=True)
    ours = retrieval(image, text, text_image)
    scores = torch.from_numpy(text @ image.T)
    positive = torch.zeros_like(scores, dtype=torch.bool)
    positive[torch.arange(len(text)), torch.from_numpy(text_image)] = True
    for k in (1, 5, 10):
        t2i = (batchify(recall_at_k, scores, positive, 64, "cpu", k=k) > 0).float().mean().item()
        i2t = (batchify(recall_at_k, scores.T, positive.T, 64, "cpu", k=k) > 0).float().mean().item()
        assert ours[f"t2i_R@{k}"] == pytest.approx(t2i, abs=1e-6)
        assert ours[f"i2t_R@{k}"] == pytest.approx(i2t, abs=1e-6)
    assert 0 < ours["t2i_R@1"] < ours["t2i_R@10"] <= 1
    assert ours["mean_R@1"] == pytest.approx((ours["i2t_R@1"] + ours["t2i_R@1"]) / 2)


def test_class_embedding_is_normalised_mean_of_normalised_prompts():
    prompts = np.array([[[3.0, 0.0], [0.0, 1.0]]])  # one class, two prompts of different norms
    assert np.allclose(class_embeddings(prompts), [[np.sqrt(0.5), np.sqrt(0.5)]])


def test_image_retrieval_r1_by_hand():
    # Two tight pairs: (0, 1) share a label, (2, 3) do not.
    image = np.array([[1.0, 0.0], [0.99, 0.14], [0.0, 1.0], [0.14, 0.99]], dtype=np.float32)
    image /= np.linalg.norm(image, axis=1, keepdims=True)
    assert image_retrieval_r1(image, np.array([0, 0, 1, 2])).tolist() == [1.0, 1.0, 0.0, 0.0]


def test_knn_majority_vote_and_leave_one_out():
    rng = np.random.default_rng(0)
    keys = np.concatenate([_unit(rng, 30, 8) * 0.1 + np.eye(8)[c] for c in range(3)]).astype(np.float32)
    keys /= np.linalg.norm(keys, axis=1, keepdims=True)
    labels = np.repeat(np.arange(3), 30)
    assert knn_accuracy(keys, labels, keys[::10], labels[::10], k=5).mean() == 1.0
    flipped = labels.copy()
    flipped[0] = 2  # its 29 same-cluster neighbours still say 0: leave-one-out gets it wrong
    hits = knn_accuracy(keys, flipped, keys, flipped, k=5, leave_one_out=True)
    assert hits[0] == 0.0 and hits[1:].mean() == 1.0
