"""What a trial derives from embedding its whole training set: paper B's clusters, paper C's batch clusters, paper D's pseudo-captions.

A mixin of the train loop's `Trial` (it reads the trial's model, data shard, config and rank):
each method embeds every training item with the current towers, gathers the pieces on every
rank, and keeps what the loss or the batching reads afterwards.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow.parquet as pq
import torch
import torch.distributed as dist

from .config import TrialConfig
from .data.epochs import TrainingSource
from .data.loading import Preprocess, to_torch
from .data.shards import resolve_shards
from .data.tokenizer import load_tokenizer
from .evaluation.metrics import top_k_scores
from .objectives import ContrastiveObjective
from .objectives.clusters import Clustering, cluster_hard_order, kmeans

if TYPE_CHECKING:
    from .train_loop import LoopSettings


def select_pseudo_captions(scores: np.ndarray, nearest: np.ndarray, caption_owner: np.ndarray, min_cosine: float) -> np.ndarray:
    """MCIP's pseudo-captions of each image: its own captions, then its nearest others above
    `min_cosine`.

    Args:
        scores, nearest: (N_images, top_k) cosines and caption indices, nearest first.
        caption_owner: (N_captions,) the image each caption belongs to.

    Returns:
        (N_images, top_k + most own captions) caption indices, -1 where there is none.
    """
    per_item = nearest.shape[1] + int(np.bincount(caption_owner).max())
    indices = np.full((len(nearest), per_item), -1, dtype=np.int64)
    for row in range(len(nearest)):
        own = np.flatnonzero(caption_owner == row)
        similar = nearest[row][(scores[row] > min_cosine) & ~np.isin(nearest[row], own)]
        kept = np.concatenate([own, similar])[:per_item]
        indices[row, : len(kept)] = kept
    return indices


class TrainingSetMining:
    """Paper B's, C's and D's state of a trial; see the module docstring."""

    model: torch.nn.Module
    objective: ContrastiveObjective
    data: TrainingSource
    centre: Preprocess
    cfg: TrialConfig
    settings: LoopSettings
    rank: int
    world: int
    device: torch.device
    local_batch: int
    assignments: dict[str, tuple[int, int]]
    batch_clusters: dict[str, int]

    @torch.no_grad()
    def embed_training_set(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Every training item's id, image and text embedding, in id order, on every rank.

        Each rank embeds its shard with the current towers; the pieces are all-gathered.
        """
        self.model.eval()
        ids, images, texts = [], [], []
        for decoded in self.data.every_item(self.rank, self.world, self.local_batch):
            batch = to_torch(self.centre.augment(decoded), self.device)
            u, v = self.model(batch["image"], batch["input_ids"], batch["attention_mask"])
            ids += batch["id"]
            images.append(u.float().cpu().numpy())
            texts.append(v.float().cpu().numpy())
        self.model.train()
        parts = [(ids, np.concatenate(images), np.concatenate(texts))]
        if self.world > 1:
            parts = [None] * self.world
            dist.all_gather_object(parts, (ids, np.concatenate(images), np.concatenate(texts)))
        all_ids = [i for p in parts for i in p[0]]
        order = np.argsort(all_ids)  # same item order on every rank, whatever the split
        return (
            [all_ids[i] for i in order],
            np.concatenate([p[1] for p in parts])[order],
            np.concatenate([p[2] for p in parts])[order],
        )

    def recluster(self, k_image: int, k_text: int | None) -> None:
        """Paper B: k-means of the training set's image and text embeddings, per modality.

        Every rank runs the same seeded faiss k-means on the same gathered embeddings, so all
        ranks agree without a broadcast. Without `k_text` (the weight alone reads only image
        clusters) every item shares one text cluster.
        """
        ids, image_features, text_features = self.embed_training_set()
        image = kmeans(image_features, min(k_image, len(ids)), self.cfg.optim.seed)
        text = (
            kmeans(text_features, min(k_text, len(ids)), self.cfg.optim.seed)
            if k_text
            else Clustering(np.zeros(len(ids), dtype=np.int64), np.ones((1, 1), dtype=np.float32))
        )
        self.objective.set_clusters(image, text)
        self.assignments = {i: (int(a), int(b)) for i, a, b in zip(ids, image.assignments, text.assignments)}

    def recluster_batches(self, k: int) -> None:
        """Paper C: k-means on [u; v] of every item; batches are then filled cluster by cluster."""
        ids, image, text = self.embed_training_set()
        clustering = kmeans(np.concatenate([image, text], axis=1), min(k, len(ids)), self.cfg.optim.seed)
        self.batch_clusters = dict(zip(ids, clustering.assignments.tolist()))

    def hard_batches(
        self, batches: Iterator[dict[str, Any]], rng: np.random.Generator, window: int = 16
    ) -> Iterator[dict[str, Any]]:
        """Regroups the stream, `window` local batches at a time, so each batch spans few clusters.

        Each rank regroups its own items; a global batch is the ranks' local batches, so it too
        draws from few clusters. The count of batches is unchanged, so ranks stay in lockstep.
        """
        while True:
            chunk = list(itertools.islice(batches, window))
            if not chunk:
                return
            ids = [i for b in chunk for i in b["id"]]
            merged = {k: torch.cat([b[k] for b in chunk]) for k in chunk[0] if k != "id"}
            clusters = np.array([self.batch_clusters.get(i, -1) for i in ids])
            order = cluster_hard_order(clusters, self.local_batch, int(rng.integers(2**31)))
            for start in range(0, len(order), self.local_batch):
                rows = order[start : start + self.local_batch]
                index = torch.from_numpy(rows).to(self.device)
                yield {"id": [ids[r] for r in rows], **{k: v.index_select(0, index) for k, v in merged.items()}}

    @torch.no_grad()
    def mine_pseudo_captions(self) -> None:
        """MCIP (paper D): each image keeps the top-k training captions by cosine above a floor.

        Captions are embedded with the frozen text tower (each rank a slice, then gathered); the
        image's own captions are always kept. Stored as caption indices into one embedding matrix.
        """
        schedule = self.cfg.schedule
        table = pq.read_table(resolve_shards(self.settings.train), columns=["id", "captions"])
        owners = dict(zip(table.column("id").to_pylist(), table.column("captions").to_pylist()))
        ids, image, _ = self.embed_training_set()
        captions = [c for i in ids for c in owners[i]]
        caption_owner = np.repeat(np.arange(len(ids)), [len(owners[i]) for i in ids])
        tokenizer = load_tokenizer(self.settings.tokenizer_dir)
        mine = np.array_split(np.arange(len(captions)), self.world)[self.rank]
        self.model.eval()
        local = []
        for start in range(0, len(mine), 512):
            chunk = [captions[j] for j in mine[start : start + 512]]
            tokens = tokenizer(chunk, padding="max_length", truncation=True, max_length=self.cfg.model.max_length, return_tensors="pt")
            local.append(self.model.encode_text(tokens["input_ids"].to(self.device), tokens["attention_mask"].to(self.device)).float().cpu())
        self.model.train()
        text = torch.cat(local) if local else torch.zeros(0, self.cfg.model.embed_dim)
        if self.world > 1:
            parts = [None] * self.world
            dist.all_gather_object(parts, text)
            text = torch.cat(parts)
        scores, nearest = top_k_scores(image, text.numpy(), schedule.pseudo_top_k)
        self.pseudo_rows = {i: r for r, i in enumerate(ids)}
        self.pseudo_indices = torch.from_numpy(select_pseudo_captions(scores, nearest, caption_owner, schedule.pseudo_min_cosine))
        self.pseudo_text = text

    def _pseudo(self, ids: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = torch.tensor([self.pseudo_rows.get(i, 0) for i in ids])
        indices = self.pseudo_indices[rows]  # (B_local, P)
        mask = indices >= 0
        return self.pseudo_text[indices.clamp(min=0)].to(self.device), mask.to(self.device)

    def _clusters(self, ids: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        # An item dropped by the equal split during the clustering pass gets cluster 0.
        pairs = [self.assignments.get(i, (0, 0)) for i in ids]
        return (
            torch.tensor([p[0] for p in pairs], device=self.device),
            torch.tensor([p[1] for p in pairs], device=self.device),
        )
