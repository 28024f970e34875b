"""Loss, perplexity and bits per byte (llm/eval/perplexity.py) against sums worked out here, token by token."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from llm.data.corpora import CorpusError
from llm.errors import ConfigError
from llm.eval.perplexity import plan_windows, score_text, score_tokens, token_byte_lengths
from llm.model import GPT, ModelConfig, build_gpt
from llm.tokenizer import Tokenizer, train_tokenizer
from tests.conftest import tiny_corpus_text

TEXT = "the cat sat on the mat. le café coûte 3 €; the dog ran to a red hat.\n"  # é, û: 2 bytes; €: 3 bytes


def tiny_model(tokenizer: Tokenizer, block_size: int = 32, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    config = ModelConfig(vocab_size=tokenizer.vocab_size, block_size=block_size, n_layer=2, n_head=2, n_embd=32)
    return build_gpt(config).eval()


def nll_of_next(model: GPT, context: list[int], target: int) -> float:
    """-log p(target | context), from a forward over the context alone."""
    with torch.no_grad():
        logits = model(torch.tensor([context]))[0, -1].double()
    return float(-torch.log_softmax(logits, dim=-1)[target])


def test_bits_per_byte_is_nats_over_bytes_ln2_computed_by_hand(tmp_path: Path) -> None:
    """One window over a whole small file: the loss by a direct forward, the bytes by len(text.encode())."""
    path = tmp_path / "small.txt"
    path.write_text(TEXT, encoding="utf-8")
    text = path.read_text(encoding="utf-8")
    tokenizer = train_tokenizer("char", [text])
    ids = tokenizer.encode(text)
    model = tiny_model(tokenizer, block_size=len(ids))  # room for the whole text in one window
    with torch.no_grad():
        logits = model(torch.tensor([ids[:-1]]))[0].double()
    nats = float(-torch.log_softmax(logits, dim=-1).gather(1, torch.tensor(ids[1:])[:, None]).sum())
    scored_bytes = len(text.encode("utf-8")) - len(text[0].encode("utf-8"))  # all but the first token
    assert scored_bytes > len(ids) - 1  # the multi-byte characters make bytes outnumber tokens

    score = score_text(model, tokenizer, text, window=len(ids) - 1)
    assert score.tokens == len(ids) - 1 and score.bytes == scored_bytes and score.windows == 1
    assert score.nats == pytest.approx(nats, rel=1e-6)
    assert score.loss == pytest.approx(nats / (len(ids) - 1), rel=1e-6)
    assert score.perplexity == pytest.approx(math.exp(nats / (len(ids) - 1)), rel=1e-6)
    assert score.bits_per_byte == pytest.approx(nats / (scored_bytes * math.log(2)), rel=1e-6)


def test_non_overlapping_windows_score_each_target_from_the_start_of_its_window() -> None:
    text = tiny_corpus_text(8)
    tokenizer = train_tokenizer("char", [text])
    ids = tokenizer.encode(text)[: 4 * 16 + 1]  # 64 targets: exactly 4 windows of 16
    model = tiny_model(tokenizer, block_size=16)
    by_hand = sum(nll_of_next(model, ids[16 * ((i - 1) // 16) : i], ids[i]) for i in range(1, len(ids)))
    score = score_tokens(model, tokenizer, np.array(ids))  # window = stride = block_size
    assert (score.window, score.stride, score.windows, score.tokens) == (16, 16, 4, 64)
    assert score.nats == pytest.approx(by_hand, rel=1e-5)


def test_stride_one_gives_every_target_the_full_window_of_context() -> None:
    text = tiny_corpus_text(4)
    tokenizer = train_tokenizer("char", [text])
    ids = tokenizer.encode(text)[:40]
    model = tiny_model(tokenizer, block_size=8)
    by_hand = sum(nll_of_next(model, ids[max(0, i - 8) : i], ids[i]) for i in range(1, len(ids)))
    score = score_tokens(model, tokenizer, np.array(ids), stride=1, batch_size=5)
    assert score.tokens == len(ids) - 1 and score.windows == 1 + (len(ids) - 1 - 8)
    assert score.nats == pytest.approx(by_hand, rel=1e-5)


@pytest.mark.parametrize("n_tokens", [9, 10, 17, 33, 50])
@pytest.mark.parametrize("stride", [1, 3, 7, 8])
def test_every_target_is_scored_exactly_once(n_tokens: int, stride: int) -> None:
    window = 8
    scored: list[int] = []
    plan = plan_windows(n_tokens, window, stride)
    for w in plan:
        assert 0 <= w.start and w.start + window <= n_tokens - 1  # every window is whole
        scored += [w.start + 1 + j for j in range(w.skip, window)]
    assert sorted(scored) == scored == list(range(1, n_tokens))
    assert len(plan) == 1 + math.ceil((n_tokens - 1 - window) / stride)


def test_batching_does_not_change_the_sum() -> None:
    text = tiny_corpus_text(10)
    tokenizer = train_tokenizer("char", [text])
    model = tiny_model(tokenizer, block_size=16)
    one = score_text(model, tokenizer, text, stride=5, batch_size=1)
    many = score_text(model, tokenizer, text, stride=5, batch_size=7)
    assert one.tokens == many.tokens and one.nats == pytest.approx(many.nats, rel=1e-6)


def zeroed(model: GPT) -> GPT:
    """All weights zero: every logit is 0, so the model is uniform over its vocabulary."""
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    return model


@pytest.mark.parametrize("kind", ["char", "byte", "bpe"])
def test_bits_per_byte_puts_char_byte_and_bpe_models_on_one_scale(kind: str) -> None:
    """A uniform model over V tokens costs ln V nats a token, so on the same text its bits per byte is
    log2(V) · tokens / bytes: char and byte models on ASCII text have one token a byte (log2 V bits a byte), a BPE
    model fewer tokens than bytes; per-token loss would compare ln V alone, ignoring how much text a token holds."""
    corpus = tiny_corpus_text(200)
    options = {"vocab_size": 280} if kind == "bpe" else {}
    tokenizer = train_tokenizer(kind, [corpus], **options)
    text = tiny_corpus_text(30)
    model = zeroed(tiny_model(tokenizer, block_size=16))
    score = score_text(model, tokenizer, text)
    vocab = tokenizer.vocab_size
    ids = tokenizer.encode(text)
    first_bytes = len(tokenizer.decode(ids[:1]).encode())
    assert score.tokens == len(ids) - 1 and score.bytes == len(text.encode()) - first_bytes
    assert score.loss == pytest.approx(math.log(vocab), rel=1e-6)
    assert score.bits_per_byte == pytest.approx(math.log2(vocab) * score.tokens / score.bytes, rel=1e-6)
    if kind in ("char", "byte"):
        assert score.tokens == score.bytes and score.bits_per_byte == pytest.approx(math.log2(vocab), rel=1e-6)
    else:
        assert score.tokens < 0.7 * score.bytes


@pytest.mark.parametrize("kind", ["byte", "bpe"])
def test_bytes_are_exact_when_a_token_is_part_of_a_character(kind: str) -> None:
    """A byte-level token inside 'é' or '€' counts its own bytes, so tokens' bytes add up to the text's."""
    text = "é€ the cat 中文🙂 sat" * 3
    tokenizer = train_tokenizer(kind, [tiny_corpus_text(100) + text], **({"vocab_size": 280} if kind == "bpe" else {}))
    ids = tokenizer.encode(text)
    lengths = token_byte_lengths(tokenizer)
    assert int(lengths[ids].sum()) == len(text.encode())
    score = score_text(tiny_model(tokenizer, block_size=8), tokenizer, text)
    assert score.bytes == len(text.encode()) - int(lengths[ids[0]])


def test_a_text_shorter_than_one_window_says_how_long_it_is() -> None:
    tokenizer = train_tokenizer("char", [TEXT])
    model = tiny_model(tokenizer, block_size=32)
    with pytest.raises(CorpusError, match=r"is 11 tokens long, shorter than one window of 32 tokens \+ 1") as e:
        score_text(model, tokenizer, "the cat sat", what="the text")
    assert "window=10 or less" in str(e.value)


def test_window_and_stride_out_of_range() -> None:
    tokenizer = train_tokenizer("char", [TEXT])
    model = tiny_model(tokenizer, block_size=16)
    with pytest.raises(ConfigError, match="window=17 must be between 1 and the model's context"):
        score_text(model, tokenizer, TEXT, window=17)
    with pytest.raises(ConfigError, match="stride=9 must be between 1 and the window of 8 tokens"):
        score_text(model, tokenizer, TEXT, window=8, stride=9)


def test_scoring_leaves_a_training_model_in_training_mode() -> None:
    tokenizer = train_tokenizer("char", [TEXT])
    model = tiny_model(tokenizer, block_size=16).train()
    score_text(model, tokenizer, TEXT)
    assert model.training
