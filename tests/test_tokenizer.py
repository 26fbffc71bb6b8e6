"""The caption tokenizer: a transformers fast tokenizer, deterministic, no [UNK] on its corpus."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from clipsweep.trainers.data.shards import DataFormatError
from clipsweep.trainers.data.tokenizer import load_tokenizer, train_tokenizer


def test_loads_as_transformers_fast_tokenizer(small_corpus):
    tokenizer = AutoTokenizer.from_pretrained(small_corpus.tokenizer_dir, local_files_only=True)
    assert isinstance(tokenizer, PreTrainedTokenizerFast)
    ids = tokenizer("Two small striped RED stars")["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids) == ["[CLS]", "two", "small", "striped", "red", "stars", "[SEP]"]
    assert tokenizer.decode(ids, skip_special_tokens=True) == "two small striped red stars"


def test_corpus_captions_have_no_unknown_tokens(small_corpus):
    tokenizer = load_tokenizer(small_corpus.tokenizer_dir)
    captions = [c for cs in pq.read_table(small_corpus.split_dir("heldout")).column("captions").to_pylist() for c in cs]
    unk = tokenizer.unk_token_id
    assert all(unk not in ids for ids in tokenizer(captions)["input_ids"])


def test_unseen_word_splits_into_pieces(small_corpus):
    tokens = load_tokenizer(small_corpus.tokenizer_dir).tokenize("teacup")
    assert "[UNK]" not in tokens and len(tokens) > 1 and all(t.startswith("##") for t in tokens[1:])


def test_vocab_size_caps_words_but_keeps_characters(small_corpus, tmp_path):
    small = train_tokenizer(small_corpus.shards["train"], str(tmp_path), vocab_size=80)
    assert len(small) == 80
    with pytest.raises(ValueError, match=r"vocab_size=10; the captions need at least"):
        train_tokenizer(small_corpus.shards["train"], str(tmp_path), vocab_size=10)


def test_missing_tokenizer_directory_is_named(tmp_path):
    with pytest.raises(DataFormatError, match=r"tokenizer path .*/nope: no such directory"):
        load_tokenizer(str(tmp_path / "nope"))
