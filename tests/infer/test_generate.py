"""Sampling: determinism under a seed, greedy decoding, top-k, and the learned-position limit."""

from __future__ import annotations

import pytest
import torch

from llm.infer import generate, sample_text
from llm.infer.generate import next_token
from llm.model import ModelConfig, Part, build_gpt
from llm.tokenizer import train_tokenizer


def tiny_model(position: str = "learned"):
    torch.manual_seed(0)
    return build_gpt(ModelConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=16, position=Part(position)))


def test_same_seed_same_tokens_and_context_is_cropped() -> None:
    model = tiny_model("rope").eval()
    a = generate(model, [1, 2, 3], 20, temperature=1.0, generator=torch.Generator().manual_seed(3))
    b = generate(model, [1, 2, 3], 20, temperature=1.0, generator=torch.Generator().manual_seed(3))
    assert a == b and len(a) == 20 and all(0 <= t < 11 for t in a)


def test_greedy_picks_the_argmax_and_top_k_one_is_greedy() -> None:
    logits = torch.tensor([[0.1, 2.0, -1.0, 1.9]])
    assert next_token(logits, 0.0, None, None).item() == 1
    assert next_token(logits, 5.0, 1, torch.Generator().manual_seed(0)).item() == 1
    picks = {next_token(logits, 1.0, 2, torch.Generator().manual_seed(s)).item() for s in range(50)}
    assert picks == {1, 3}


def test_prompt_longer_than_learned_table_is_refused() -> None:
    model = tiny_model("learned").eval()
    with pytest.raises(ValueError, match="learned position table holds 8; shorten the prompt"):
        generate(model, list(range(9)), 1)


def test_sample_text_starts_with_the_prompt() -> None:
    tokenizer = train_tokenizer("char", ["abcdefghij\n"])
    model = tiny_model().eval()
    text = sample_text(model, tokenizer, "abc", 5, seed=1)
    assert text.startswith("abc") and len(text) == 8
