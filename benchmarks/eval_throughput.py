"""Evaluation throughput: embedding images from disk, and COCO-5k-sized retrieval.

    python benchmarks/eval_throughput.py [--images 512] [--repeats 3]

Embedding: paper10's own path (`embed_images`: a DataLoader decoding JPEGs, CLIP's resize +
centre crop, the image tower) on generated 320x240 JPEGs in a Karpathy-style layout, for the
tiny CPU tower at 64 px and ResNet-50 at 224 px, with 0 and 2 DataLoader workers.

Retrieval: 5,000 images x 25,000 captions of random L2-normalised d = 512 embeddings (the COCO
5k test split's shape), image->text and text->image R@1/5/10: `metrics.retrieval` (faiss exact
inner product) against a plain torch matmul + topk computing the same recalls. Median of
`--repeats` runs each.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

import numpy as np
import torch
from PIL import Image
from rich.console import Console
from rich.table import Table

from clipsweep.trainers.config import ModelConfig, ObjectiveConfig
from clipsweep.trainers.evaluation.datasets import load_dataset
from clipsweep.trainers.evaluation.metrics import retrieval
from clipsweep.trainers.evaluation.paper10 import TierSet, embed_images
from clipsweep.trainers.models.dual_encoder import DualEncoder


def write_flickr_like(root: str, n: int) -> None:
    """n random 320x240 JPEGs with 5 captions each, as Karpathy's Flickr30k test split."""
    rng = np.random.default_rng(0)
    os.makedirs(os.path.join(root, "flickr30k-images"))
    images = []
    for i in range(n):
        pixels = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(os.path.join(root, "flickr30k-images", f"{i}.jpg"), quality=90)
        images.append({"filename": f"{i}.jpg", "split": "test", "sentences": [{"raw": f"caption {j}"} for j in range(5)]})
    with open(os.path.join(root, "dataset_flickr30k.json"), "w") as f:
        json.dump({"images": images, "dataset": "flickr30k"}, f)


def embedding_rate(model: torch.nn.Module, tier_set: TierSet, size: int, workers: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        embed_images(model, tier_set, size, torch.device("cpu"), batch_size=64, num_workers=workers)
        times.append(time.perf_counter() - start)
    return len(tier_set.indices) / statistics.median(times)


def torch_retrieval(image: torch.Tensor, text: torch.Tensor, text_image: torch.Tensor, ks=(1, 5, 10)) -> dict[str, float]:
    """The same recalls as `metrics.retrieval`, from a dense matmul and torch.topk."""
    scores = text @ image.T  # (T, I)
    t2i = scores.topk(max(ks), dim=1).indices == text_image[:, None]
    i2t = text_image[scores.T.topk(max(ks), dim=1).indices] == torch.arange(len(image))[:, None]
    out = {}
    for k in ks:
        out[f"i2t_R@{k}"] = i2t[:, :k].any(1).float().mean().item()
        out[f"t2i_R@{k}"] = t2i[:, :k].any(1).float().mean().item()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=512, help="JPEGs to embed per configuration")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    console = Console(width=140)

    embed = Table(title=f"embedding JPEGs (320x240) from disk, {os.cpu_count()} cores: decode, resize, crop, tower")
    for column in ("image tower", "px", "loader workers", "images", "images/s"):
        embed.add_column(column, justify="left" if column == "image tower" else "right")
    with tempfile.TemporaryDirectory() as root:
        write_flickr_like(root, args.images)
        data = load_dataset("flickr30k", root)
        for tower, size, count in (("tiny_resnet", 64, args.images), ("resnet50", 224, min(args.images, 128))):
            model = DualEncoder(ModelConfig(image_tower=tower, image_size=size), ObjectiveConfig()).eval()
            tier_set = TierSet(data, np.arange(count))
            for workers in (0, 2):
                rate = embedding_rate(model, tier_set, size, workers, args.repeats)
                embed.add_row(tower, str(size), str(workers), str(count), f"{rate:,.1f}")
    console.print(embed)

    rng = np.random.default_rng(0)
    n_images, per_image, dim = 5000, 5, 512
    image = rng.normal(size=(n_images, dim)).astype(np.float32)
    image /= np.linalg.norm(image, axis=1, keepdims=True)
    text_image = np.repeat(np.arange(n_images), per_image)
    noise = rng.normal(scale=0.15, size=(n_images * per_image, dim)).astype(np.float32)  # |noise| ~ 3.4 |image|
    text = image[text_image] + noise  # related, not identical: recalls well inside (0, 1)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    timings, results = {}, {}
    for name, run in (
        ("faiss (metrics.retrieval)", lambda: retrieval(image, text, text_image)),
        ("torch matmul + topk", lambda: torch_retrieval(torch.from_numpy(image), torch.from_numpy(text), torch.from_numpy(text_image))),
    ):
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            results[name] = run()
            times.append(time.perf_counter() - start)
        timings[name] = statistics.median(times)
    faiss_r, torch_r = results["faiss (metrics.retrieval)"], results["torch matmul + topk"]
    assert all(abs(faiss_r[k] - torch_r[k]) < 1e-6 for k in torch_r), "the two retrieval paths disagree"
    table = Table(title=f"retrieval, {n_images:,} images x {n_images * per_image:,} captions, d = {dim}: R@1/5/10 both ways")
    for column in ("path", "seconds", "speed vs torch"):
        table.add_column(column, justify="left" if column == "path" else "right")
    base = timings["torch matmul + topk"]
    for name, seconds in timings.items():
        table.add_row(name, f"{seconds:.2f}", f"{base / seconds:.2f}x")
    console.print(table)
    console.print(f"i2t R@1 {faiss_r['i2t_R@1']:.4f}, t2i R@1 {faiss_r['t2i_R@1']:.4f} (both paths agree to 1e-6)")


if __name__ == "__main__":
    main()
