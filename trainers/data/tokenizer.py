"""A WordPiece tokenizer built from a corpus' captions, saved as a `transformers` fast tokenizer.

BERT-style special tokens and post-processing (`[CLS] ... [SEP]`), so the same directory feeds
a DistilBERT/BERT text tower; `load_tokenizer` also reads a pretrained model's local directory.
"""

from __future__ import annotations

import functools
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence

import pyarrow.parquet as pq
from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from .shards import DataFormatError

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def _captions(shard_paths: Sequence[str]) -> Iterator[str]:
    for path in shard_paths:
        table = pq.read_table(path, columns=["captions"] if "captions" in pq.read_schema(path).names else ["caption"])
        column = table.column(0).to_pylist()
        for item in column:
            yield from (item if isinstance(item, list) else [item])


def _vocabulary(captions: Iterator[str], tokenizer: Tokenizer, vocab_size: int) -> dict[str, int]:
    """Special tokens, every character (word-initial and `##` continuation), then whole words.

    Words are ranked by count, ties by spelling, so the vocabulary depends only on the captions.
    (`tokenizers`' WordPiece trainer breaks ties between equally frequent merges in hash order,
    which differs between runs and would break byte-identical corpora.)
    """
    counts: Counter[str] = Counter()
    for caption in captions:
        normalised = tokenizer.normalizer.normalize_str(caption)
        counts.update(word for word, _ in tokenizer.pre_tokenizer.pre_tokenize_str(normalised))
    chars = sorted({c for word in counts for c in word})
    tokens = list(SPECIAL_TOKENS) + chars + [f"##{c}" for c in chars]
    if vocab_size < len(tokens):
        raise ValueError(f"vocab_size={vocab_size}; the captions need at least {len(tokens)} (specials + characters)")
    words = sorted((w for w in counts if len(w) > 1), key=lambda w: (-counts[w], w))
    tokens += words[: vocab_size - len(tokens)]
    return {token: i for i, token in enumerate(tokens)}


def train_tokenizer(shard_paths: Sequence[str], out_dir: str, vocab_size: int = 2000) -> PreTrainedTokenizerFast:
    """Builds a lower-cased WordPiece tokenizer from the shards' captions and saves it to `out_dir`.

    The vocabulary holds the `vocab_size` most frequent words plus every character, so an
    unseen word splits into known pieces rather than `[UNK]`.
    """
    return build_tokenizer(_captions(shard_paths), out_dir, vocab_size)


def build_tokenizer(captions: Iterable[str], out_dir: str, vocab_size: int = 2000) -> PreTrainedTokenizerFast:
    """`train_tokenizer` from any texts (e.g. prompts and captions of an evaluation set)."""
    tokenizer = Tokenizer(WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    vocab = _vocabulary(iter(captions), tokenizer, vocab_size)
    tokenizer.model = WordPiece(vocab, unk_token="[UNK]")
    tokenizer.decoder = decoders.WordPiece()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    fast.save_pretrained(out_dir)
    return fast


@functools.lru_cache(maxsize=4)
def load_tokenizer(path: str) -> PreTrainedTokenizerFast:
    """Loads a tokenizer from a local directory (ours, or a pretrained model's); cached per process.

    Raises:
        DataFormatError: the directory does not exist or holds no tokenizer files.
    """
    if not os.path.isdir(path):
        raise DataFormatError(f"tokenizer path {path}: no such directory; expected a saved tokenizer directory")
    try:
        return AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as e:
        raise DataFormatError(f"tokenizer path {path}: no loadable tokenizer files ({e})") from e
