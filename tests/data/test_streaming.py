"""Corpora larger than RAM: pieces cut where ids do not change, threads that write the sequential token file, and
training windows read from a token file much larger than what the test process ever holds."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from llm.data.corpora import CorpusError, TextCorpus
from llm.data.encode import encode_all, ordered_map, tokenize_threads
from llm.data.pretrain import RandomWindows
from llm.data.tokens import prepare_token_splits, token_dtype
from llm.tokenizer import Tokenizer, train_tokenizer
from llm.tokenizer.cuts import safe_cut, text_pieces

TOKENIZERS = [{"name": "char"}, {"name": "byte"}, {"name": "bpe", "vocab_size": 300}]
TINY_CHUNK_MB = 64 / (1 << 20)  # 64 characters a piece


def awkward_text(lines: int = 60, seed: int = 0) -> str:
    """Short and very long lines (longer than a piece), blank lines, CRLF, and characters of 1 to 4 UTF-8 bytes."""
    rng = random.Random(seed)
    words = [
        "the",
        "cat",
        "naïve",
        "café",
        "日本語",
        "😀ok",
        "x",
        "12",
        "'s",
        "it's",
        "don't",
        "λόγος",
        "<|endoftext|>",
    ]
    out = []
    for i in range(lines):
        n = rng.choice([0, 1, 3, 8, 40, 120])  # 120 words: a line of several pieces
        line = " ".join(rng.choice(words) for _ in range(n))
        out.append(line + ("\r\n" if i % 7 == 3 else "\n"))
    return "".join(out) + "no newline at the end"


def whole_tokenizer(config: dict, text: str) -> Tokenizer:
    options = {k: v for k, v in config.items() if k != "name"}
    return train_tokenizer(config["name"], [text], **options)


def test_pieces_join_back_and_keep_to_the_size() -> None:
    text = awkward_text()
    for size in (1, 5, 64, 1000):
        for blocks in ([text], [text[i : i + 7] for i in range(0, len(text), 7)]):
            pieces = list(text_pieces(blocks, size))
            assert "".join(pieces) == text and max(map(len, pieces)) <= size and all(pieces)


def test_a_cut_falls_after_a_newline_or_before_a_space_between_non_spaces() -> None:
    assert safe_cut("ab\ncd ef", 0, 7) == 3  # "ab\n|cd ef": a newline near the end is taken before a space
    far = "ab\n" + "c" * 5000 + " d"
    assert safe_cut(far, 0, len(far) - 1) == len(far) - 2  # the newline is 5000 characters back: "cc…c| d"
    assert safe_cut("ab\ncdef", 0, 6) == 3  # "ab\n|cdef"
    assert safe_cut("ab\n\ncd", 0, 5) is None  # a newline beside another whitespace is no safe cut
    assert safe_cut("ab  cd", 0, 5) is None and safe_cut("ab\r\ncd", 0, 5) is None
    assert safe_cut("日本語の文章", 0, 5) is None  # no space, no newline: a piece is cut at its size
    assert list(text_pieces(["日本語の文章"], 4)) == ["日本語の", "文章"]


@pytest.mark.parametrize("config", TOKENIZERS, ids=lambda c: c["name"])
def test_pieces_of_a_file_encode_to_the_ids_of_the_whole_text(tmp_path: Path, config: dict) -> None:
    text = awkward_text()
    (tmp_path / "corpus.txt").write_text(text, newline="")
    pieces = list(TextCorpus(path=str(tmp_path / "corpus.txt"), chunk_mb=TINY_CHUNK_MB).documents())
    assert len(pieces) > 50 and max(map(len, pieces)) <= 64 and "".join(pieces) == text
    tokenizer = whole_tokenizer(config, text)
    whole = tokenizer.encode(text)
    assert [i for piece in pieces for i in tokenizer.encode(piece)] == whole
    assert np.concatenate([tokenizer.encode_array(piece) for piece in pieces]).tolist() == whole
    # trained on the pieces, the tokenizer is the one trained on the whole text
    assert (
        whole_tokenizer(config, text).to_dict()
        == train_tokenizer(config["name"], pieces, **{k: v for k, v in config.items() if k != "name"}).to_dict()
    )


@pytest.mark.parametrize("config", TOKENIZERS, ids=lambda c: c["name"])
def test_token_files_of_a_chunked_corpus_are_the_whole_texts_ids(tmp_path: Path, config: dict) -> None:
    text = awkward_text(seed=1)
    (tmp_path / "corpus.txt").write_text(text, newline="")
    corpus = TextCorpus(path=str(tmp_path / "corpus.txt"), chunk_mb=TINY_CHUNK_MB)
    splits = prepare_token_splits(corpus, config, 0.2, tmp_path / "cache", threads=3)
    assert np.concatenate([splits.train, splits.val]).tolist() == whole_tokenizer(config, text).encode(text)
    assert splits.train_bytes + splits.val_bytes == len(text.encode())
    assert splits.val_bytes == int(splits.tokenizer.byte_lengths()[splits.val].sum())


@pytest.mark.parametrize("config", TOKENIZERS, ids=lambda c: c["name"])
def test_threads_write_the_file_one_thread_writes(tmp_path: Path, config: dict) -> None:
    text = awkward_text(lines=200, seed=2)
    (tmp_path / "corpus.txt").write_text(text, newline="")
    corpus = TextCorpus(path=str(tmp_path / "corpus.txt"), chunk_mb=TINY_CHUNK_MB)
    tokenizer = whole_tokenizer(config, text)
    dtype = token_dtype(tokenizer.vocab_size)
    one = encode_all(corpus, tokenizer, tmp_path / "one.bin", dtype, threads=1)
    four = encode_all(corpus, tokenizer, tmp_path / "four.bin", dtype, threads=4)
    assert one == four == (len(tokenizer.encode(text)), len(text.encode()))
    assert (tmp_path / "one.bin").read_bytes() == (tmp_path / "four.bin").read_bytes()


def test_ordered_map_keeps_the_order_and_raises_at_the_failing_item() -> None:
    def slow_square(i: int) -> int:
        if i == 57:
            raise ValueError("item 57")
        return i * i

    assert list(ordered_map(slow_square, range(50), 4)) == [i * i for i in range(50)]
    seen = []
    with pytest.raises(ValueError, match="item 57"):
        for value in ordered_map(slow_square, range(100), 4):
            seen.append(value)
    assert seen == [i * i for i in range(57)]


def test_the_thread_count_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    char, bpe = train_tokenizer("char", ["abc"]), train_tokenizer("bpe", [awkward_text()], vocab_size=260)
    monkeypatch.setenv("LLM_TOKENIZE_THREADS", "3")
    assert tokenize_threads(char) == tokenize_threads(bpe) == 3
    monkeypatch.setenv("LLM_TOKENIZE_THREADS", "0")
    with pytest.raises(CorpusError, match="LLM_TOKENIZE_THREADS='0' must be a whole number >= 1"):
        tokenize_threads(char)
    monkeypatch.delenv("LLM_TOKENIZE_THREADS")
    assert tokenize_threads(char) == 1 and 1 <= tokenize_threads(bpe) <= 8  # threads only slow char encoding


def test_char_encode_array_names_a_character_outside_the_vocabulary() -> None:
    tokenizer = train_tokenizer("char", ["abc😀é"])
    assert tokenizer.encode_array("é😀cba").tolist() == tokenizer.encode("é😀cba")
    for text in ("abz", "ab\U0010ffff", "ab\x00"):
        with pytest.raises(Exception) as from_list:
            tokenizer.encode(text)
        with pytest.raises(type(from_list.value), match="is not in the char tokenizer's vocabulary") as from_array:
            tokenizer.encode_array(text)
        assert str(from_array.value) == str(from_list.value)


@pytest.mark.parametrize("bad", [0, -1, "abc", True, float("nan")])
def test_chunk_mb_must_be_a_positive_number(tmp_path: Path, bad: object) -> None:
    with pytest.raises(CorpusError, match="data.corpus.chunk_mb must be a positive number"):
        TextCorpus(path=str(tmp_path / "x.txt"), chunk_mb=bad)  # type: ignore[arg-type]


def test_a_long_hf_row_comes_in_pieces(tmp_path: Path) -> None:
    pytest.importorskip("datasets")
    from llm.data.hf import HFCorpus

    text = awkward_text(lines=20, seed=3)
    (tmp_path / "rows.jsonl").write_text(json.dumps({"text": text}) + "\n" + json.dumps({"text": "short"}) + "\n")
    corpus = HFCorpus(data_files=str(tmp_path / "rows.jsonl"), chunk_mb=TINY_CHUNK_MB, cache_dir=str(tmp_path / "hf"))
    pieces = list(corpus.documents())
    assert len(pieces) > 10 and max(map(len, pieces)) <= 64 and "".join(pieces) == text + "\nshort\n"


def vm_rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    pytest.skip("no /proc/self/status VmRSS on this system")


def test_training_windows_of_a_multi_gb_token_file_touch_only_their_pages(tmp_path: Path) -> None:
    path = tmp_path / "train.bin"
    n_tokens = 3 << 30  # 6 GiB of uint16 ids, as a sparse file: no disk space used
    with path.open("wb") as f:
        f.truncate(n_tokens * 2)
    dataset = RandomWindows(path, "uint16", block_size=256, batch_size=8, seed=0, rank=0, start=0)
    before = vm_rss_kib()
    batches = iter(dataset)
    for _ in range(10):
        x, y = next(batches)
        assert x.shape == y.shape == (8, 256)
    assert vm_rss_kib() - before < 64 * 1024  # 80 windows of 514 bytes: a few MiB of pages, not the 6 GiB file
