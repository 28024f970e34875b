"""Sampling: determinism under a seed, greedy decoding, top-k, temperature, the context crop, the position limit."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from llm.errors import ConfigError
from llm.infer import GenerationSettings, generate, generate_batch, sample_text
from llm.infer.generate import next_token
from llm.model import ModelConfig, Part, build_gpt
from llm.model.kv_cache import KVCache
from llm.model.positions import Position
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


def record_calls(model) -> list[tuple[list[int], int]]:
    """Each call of model.infer as (the ids of row 0, the length of the cache passed in, 0 without one)."""
    calls: list[tuple[list[int], int]] = []
    infer = model.infer

    def spy(idx, **kwargs):
        cache = kwargs.get("cache")
        calls.append((idx[0].tolist(), 0 if cache is None else cache.length))
        return infer(idx, **kwargs)

    model.infer = spy
    return calls


def test_each_step_sees_only_the_last_block_size_tokens() -> None:
    """The model is called on the last block_size ids (prompt and generated so far), never on more or older ones:
    with a full window, each step rebuilds the cache from the last block_size tokens (the context policy "slide")."""
    model = tiny_model("rope").eval()  # rope has no position table, so an uncropped window would run too
    calls = record_calls(model)
    prompt = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]  # longer than block_size = 8
    new = generate(model, prompt, 5, temperature=0.0)
    ids = prompt + new
    assert calls == [(ids[: len(prompt) + i][-8:], 0) for i in range(5)]
    assert calls[0][0] == [3, 4, 5, 6, 7, 8, 9, 10]


def test_steps_use_the_cache_until_the_window_is_full_then_slide() -> None:
    """A 3-token prompt and 8 new tokens with block_size 8: prefill 3, then 5 cached one-token steps (the cache
    grows 3 .. 7), and once 8 tokens fill the window, each step rebuilds the cache from the last 8 tokens."""
    model = tiny_model("learned").eval()
    calls = record_calls(model)
    prompt = [1, 2, 3]
    ids = prompt + generate(model, prompt, 8, temperature=0.0)
    # the call after j new tokens: the sequence holds 3 + j tokens, the cache all but the newest
    expected = [(prompt, 0)] + [([ids[2 + j]], 2 + j) for j in range(1, 6)]
    expected += [(ids[: 3 + j][-8:], 0) for j in (6, 7)]
    assert calls == expected


def test_the_error_policy_refuses_what_does_not_fit() -> None:
    """context="error": prompt + max_new_tokens - 1 positions must fit block_size (8); 3 + 6 - 1 = 8 fits."""
    model = tiny_model("rope").eval()
    settings = GenerationSettings(max_new_tokens=6, temperature=0.0, context="error")
    assert generate_batch(model, [[1, 2, 3]], settings)[0] == generate(model, [1, 2, 3], 6, temperature=0.0)
    with pytest.raises(ConfigError, match="need 9 positions but the model's context \\(block_size\\) is 8"):
        generate_batch(model, [[1, 2, 3]], GenerationSettings(max_new_tokens=7, context="error"))


def test_greedy_tokens_are_the_argmax_over_the_cropped_window() -> None:
    """Greedy generation equals calling the model yourself on the last block_size tokens at each step."""
    model = tiny_model("sinusoidal").eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # large weights: the argmax depends on the context, not only on the last token
        for p in model.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=generator))
    prompt = [5, 3, 9, 1, 0, 7, 2, 8, 4, 6, 10, 1]  # 12 tokens, block_size 8
    new = generate(model, prompt, 6, temperature=0.0)
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(6):
            ids.append(int(model(torch.tensor([ids[-8:]]))[0, -1].argmax()))
    assert new == ids[len(prompt) :]


def softmax(logits: list[float], temperature: float) -> list[float]:
    scaled = [math.exp(v / temperature) for v in logits]
    return [s / sum(scaled) for s in scaled]


def frequencies(logits: list[float], temperature: float, top_k: int | None = None, n: int = 4000) -> list[float]:
    """How often next_token picks each id over n rows of the same logits, from one seeded generator."""
    rows = torch.tensor([logits]).repeat(n, 1)
    picks = next_token(rows, temperature, top_k, torch.Generator().manual_seed(0)).flatten()
    return (torch.bincount(picks, minlength=len(logits)).double() / n).tolist()


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_sampling_frequencies_follow_softmax_of_logits_over_temperature(temperature: float) -> None:
    """Sampled frequencies match softmax(logits / T) worked out by hand (4000 draws: 3 sigma is at most 0.024)."""
    logits = [0.0, 1.0, 2.0]
    expected = softmax(logits, temperature)  # T=0.5: [.016, .117, .867]; T=2: [.186, .307, .506]
    assert frequencies(logits, temperature) == pytest.approx(expected, abs=0.03)


def test_low_and_high_temperature_differ_clearly() -> None:
    """T=0.5 picks the top logit about 87% of the time, T=2 about 51%."""
    logits = [0.0, 1.0, 2.0]
    assert frequencies(logits, 0.5)[2] > 0.8 and frequencies(logits, 2.0)[2] < 0.6


def test_temperature_applies_before_the_top_k_cut() -> None:
    """top_k=2 keeps ids 1 and 2, sampled as softmax([1, 2] / T) by hand: T=0.5 gives [.119, .881]."""
    expected = [0.0, *softmax([1.0, 2.0], 0.5)]
    assert frequencies([0.0, 1.0, 2.0], 0.5, top_k=2) == pytest.approx(expected, abs=0.03)


class FixedLogits(nn.Module):
    """A stand-in GPT whose next-token logits are always the same, whatever the context."""

    def __init__(self, logits: list[float]) -> None:
        super().__init__()
        self.config = ModelConfig(vocab_size=len(logits), block_size=4)
        self.position = Position()
        self.logits = nn.Parameter(torch.tensor(logits), requires_grad=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(idx.size(0), idx.size(1), -1)

    def infer(self, idx: torch.Tensor, *, last_only: bool = False, **kwargs) -> tuple[torch.Tensor, KVCache]:
        logits = self(idx[:, -1:] if last_only else idx)
        return logits, KVCache((), torch.zeros_like(idx), torch.ones_like(idx, dtype=torch.bool))


def test_generate_passes_the_temperature_on() -> None:
    """600 tokens generated at T=0.5 and T=2 from fixed logits follow softmax(logits / T)."""
    logits = [0.0, 1.0, 2.0]
    for temperature in (0.5, 2.0):
        new = generate(FixedLogits(logits), [0], 600, temperature, generator=torch.Generator().manual_seed(1))
        counts = [new.count(i) / 600 for i in range(3)]
        assert counts == pytest.approx(softmax(logits, temperature), abs=0.06)  # 3 sigma <= 0.061


def test_sample_text_passes_temperature_and_top_k_on() -> None:
    """sample_text at temperature 0 is greedy: the prompt plus the argmax tokens, worked out step by step."""
    tokenizer = train_tokenizer("char", ["abcdefghij\n"])
    model = FixedLogits([0.0] * 10 + [0.5])  # the argmax is id 10 ("j"), but sampling at T=1 rarely picks it
    text = sample_text(model, tokenizer, "abc", 12, temperature=0.0, top_k=None, seed=0)
    assert text == "abc" + "j" * 12
    sampled = sample_text(model, tokenizer, "abc", 12, temperature=1.0, top_k=1, seed=0)
    assert sampled == "abc" + "j" * 12  # top_k=1 keeps only the argmax
