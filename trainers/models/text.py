"""Text towers: transformers DistilBERT/BERT built from a config, or loaded from a local dir."""

from __future__ import annotations

import os

import torch
from torch import nn
from transformers import AutoModel, BertConfig, BertModel, DistilBertConfig, DistilBertModel

# Tiny configs train on CPU in seconds per epoch: 2 layers, hidden 128.
_TINY = {
    "tiny_distilbert": lambda vocab, length: DistilBertModel(
        DistilBertConfig(vocab_size=vocab, dim=128, n_layers=2, n_heads=2, hidden_dim=256, max_position_embeddings=length)
    ),
    "tiny_bert": lambda vocab, length: BertModel(
        BertConfig(
            vocab_size=vocab,
            hidden_size=128,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=256,
            max_position_embeddings=length,
        ),
        add_pooling_layer=False,
    ),
    "distilbert": lambda vocab, length: DistilBertModel(DistilBertConfig(vocab_size=vocab)),
    "bert": lambda vocab, length: BertModel(BertConfig(vocab_size=vocab), add_pooling_layer=False),
}


class TextTower(nn.Module):
    """A transformer encoder whose masked mean of token states is the caption feature.

    Mean pooling rather than the [CLS] state: a small tower trained from scratch then sees
    every word's contribution directly (measured on the synthetic corpus: see the README).
    """

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.out_dim = encoder.config.hidden_size if hasattr(encoder.config, "hidden_size") else encoder.config.dim

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, L, H)
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, L, 1)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)


def build_text_tower(name: str, vocab_size: int, max_length: int, pretrained_dir: str | None = None) -> TextTower:
    """Builds a text tower from a config, or loads `pretrained_dir` (local only, never a hub).

    Raises:
        ValueError: unknown name, or a pretrained directory that does not exist.
    """
    if pretrained_dir is not None:
        if not os.path.isdir(pretrained_dir):
            raise ValueError(f"model.text_weights={pretrained_dir!r}: no such directory")
        encoder = AutoModel.from_pretrained(pretrained_dir, local_files_only=True)
        family = name.removeprefix("tiny_")
        if encoder.config.model_type != family:
            raise ValueError(
                f"model.text_weights={pretrained_dir!r} holds a {encoder.config.model_type} checkpoint; "
                f"model.text_tower={name!r} expects {family}"
            )
        return TextTower(encoder)
    if name not in _TINY:
        raise ValueError(f"model.text_tower={name!r}; allowed: {', '.join(_TINY)}")
    return TextTower(_TINY[name](vocab_size, max(max_length, 8)))
