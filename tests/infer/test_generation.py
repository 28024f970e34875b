"""Generation on the cache: the same tokens as the uncached window, batches of different lengths equal one prompt at
a time, streaming equals batching, top-p and the repetition penalty by hand, stop strings, seeds."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from llm.infer import (
    GenerationSettings,
    complete,
    complete_batch,
    generate,
    generate_batch,
    sample_text,
    stream,
    stream_text,
)
from llm.infer.sampling import next_token, repetition_penalty, top_p_cut
from llm.model import ModelConfig, Part, build_gpt
from llm.model.kv_cache import KVCache
from llm.model.positions import Position
from llm.tokenizer import train_tokenizer

POSITIONS = ["none", "learned", "sinusoidal", "rope", "alibi"]
GREEDY = GenerationSettings(max_new_tokens=12, temperature=0.0)


def loud_model(position: str, attention: str = "manual", n_kv_head: int | None = None, **options):
    """A tiny model with large weights, so that the argmax depends on the whole context."""
    config = ModelConfig(
        vocab_size=11,
        block_size=8,
        n_layer=2,
        n_head=4,
        n_kv_head=n_kv_head,
        n_embd=16,
        position=Part(position),
        attention=Part(attention, options),
    )
    model = build_gpt(config).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=generator))
    return model


def uncached_greedy(model, prompt: list[int], n: int) -> list[int]:
    """The argmax of the full forward over the last block_size tokens, step by step: no cache at all."""
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(n):
            ids.append(int(model(torch.tensor([ids[-8:]]))[0, -1].argmax()))
    return ids[len(prompt) :]


@pytest.mark.parametrize(
    ("attention", "n_kv_head", "window"), [("manual", None, None), ("fused", 2, 3), ("manual", 1, 5)]
)
@pytest.mark.parametrize("position", POSITIONS)
def test_cached_greedy_tokens_equal_the_uncached_ones(
    position: str, attention: str, n_kv_head: int | None, window: int | None
) -> None:
    """3 prompt tokens and 12 new ones with block_size 8: cached steps, then a sliding full window."""
    model = loud_model(position, attention, n_kv_head, window=window)
    prompt = [5, 3, 9]
    assert generate_batch(model, [prompt], GREEDY)[0] == uncached_greedy(model, prompt, 12)


@pytest.mark.parametrize("position", POSITIONS)
def test_a_batch_of_different_lengths_equals_one_prompt_at_a_time(position: str) -> None:
    """Prompts of 1, 4, 7 and 10 tokens (the last cropped to 8 unless learned, which refuses it) together, left-padded,
    give each prompt's own greedy tokens, through cached steps and the sliding window."""
    model = loud_model(position, "fused", 2)
    prompts = [[4], [1, 2, 3, 4], [7, 6, 5, 4, 3, 2, 1], [2, 9, 4, 8, 1, 7, 3, 10, 6, 5]]
    if position == "learned":
        prompts = prompts[:3]
    together = generate_batch(model, prompts, GREEDY)
    assert together == [generate_batch(model, [p], GREEDY)[0] for p in prompts]
    assert together == [uncached_greedy(model, p, 12) for p in prompts]


def test_streaming_yields_what_generate_batch_returns() -> None:
    """Sampled (T=1, top-k 5, top-p 0.9, penalty 1.3) with the same seed: the stream and the batch agree."""
    model = loud_model("rope")
    settings = GenerationSettings(
        max_new_tokens=15, temperature=1.0, top_k=5, top_p=0.9, repetition_penalty=1.3, seed=7
    )
    tokens = stream(model, [1, 2, 3], settings)
    first = next(tokens)  # a generator: tokens come one at a time
    assert [first, *tokens] == generate_batch(model, [[1, 2, 3]], settings)[0]
    assert generate_batch(model, [[1, 2, 3]], settings) == generate_batch(model, [[1, 2, 3]], settings)  # the seed


def test_top_p_by_hand() -> None:
    """Probabilities .5, .3, .15, .05 (ranked by mass already above: 0, .5, .8, .95): top_p=.7 keeps the first two,
    .5 keeps only the first, .81 keeps three; sampled frequencies follow .5/.8 and .3/.8."""
    logits = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()
    kept = {p: torch.isfinite(top_p_cut(logits, p))[0].tolist() for p in (0.7, 0.5, 0.81, 1.0)}
    assert kept[0.7] == [True, True, False, False]
    assert kept[0.5] == [True, False, False, False]
    assert kept[0.81] == [True, True, True, False]
    assert kept[1.0] == [True] * 4
    shuffled = logits[:, [2, 0, 3, 1]]  # the cut follows the ranking, not the index
    assert torch.isfinite(top_p_cut(shuffled, 0.7))[0].tolist() == [False, True, False, True]
    rows = logits.repeat(4000, 1)
    picks = next_token(rows, 1.0, None, torch.Generator().manual_seed(0), top_p=0.7).flatten()
    frequencies = (torch.bincount(picks, minlength=4).double() / 4000).tolist()
    assert frequencies == pytest.approx([0.625, 0.375, 0.0, 0.0], abs=0.03)


def test_repetition_penalty_by_hand() -> None:
    """Penalty 2 on seen ids 0 and 2: logit 3 -> 1.5, -1 -> -2 (multiplied when negative); 2 unseen stays.
    Greedy then picks id 1; sampling at T=1 follows softmax([1.5, 2, -2])."""
    logits = torch.tensor([[3.0, 2.0, -1.0]])
    seen = torch.tensor([[True, False, True]])
    torch.testing.assert_close(repetition_penalty(logits, seen, 2.0), torch.tensor([[1.5, 2.0, -2.0]]))
    assert next_token(logits, 0.0, None, None, penalty=2.0, seen=seen).item() == 1
    assert next_token(logits, 0.0, None, None).item() == 0
    rows, many = logits.repeat(4000, 1), seen.repeat(4000, 1)
    picks = next_token(rows, 1.0, None, torch.Generator().manual_seed(0), penalty=2.0, seen=many).flatten()
    frequencies = (torch.bincount(picks, minlength=3).double() / 4000).tolist()
    scaled = [math.exp(v) for v in (1.5, 2.0, -2.0)]
    assert frequencies == pytest.approx([s / sum(scaled) for s in scaled], abs=0.03)


class Counter(nn.Module):
    """A stand-in GPT whose next token is always the last one plus 1 (mod the vocabulary)."""

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.config = ModelConfig(vocab_size=vocab_size, block_size=4)
        self.position = Position()
        self.dummy = nn.Parameter(torch.zeros(1), requires_grad=False)

    def infer(self, idx: torch.Tensor, **kwargs) -> tuple[torch.Tensor, KVCache]:
        logits = nn.functional.one_hot((idx[:, -1:] + 1) % self.config.vocab_size, self.config.vocab_size).float()
        return logits, KVCache((), torch.zeros_like(idx), torch.ones_like(idx, dtype=torch.bool))


def test_stop_strings_end_the_text_and_are_left_out() -> None:
    """ids 1..10 are a..j and 0 is a newline: from "a" the counter writes "bcdefghij\\nab..."."""
    tokenizer = train_tokenizer("char", ["abcdefghij\n"])
    model = Counter(11)
    settings = GenerationSettings(max_new_tokens=30, temperature=0.0)
    prompt = tokenizer.encode("a")
    assert complete(model, tokenizer, prompt, settings) == ("bcdefghij\na" * 3)[:30]
    assert complete(model, tokenizer, prompt, settings, stop=["ef"]) == "bcd"
    assert complete(model, tokenizer, prompt, settings, stop=["zz", "\n", "hi"]) == "bcdefg"  # the first to occur
    assert complete(model, tokenizer, prompt, settings, stop=["zz"]) == ("bcdefghij\na" * 3)[:30]
    assert sample_text(model, tokenizer, "a", 30, temperature=0.0, stop=["j\n"]) == "abcdefghi"


def test_generate_keeps_its_signature_and_seeded_sampling() -> None:
    model = loud_model("alibi")
    a = generate(model, [1, 2], 10, 1.0, 3, torch.Generator().manual_seed(4))
    b = generate_batch(model, [[1, 2]], GenerationSettings(max_new_tokens=10, temperature=1.0, top_k=3, seed=4))[0]
    assert a == b and len(a) == 10


def test_streamed_text_comes_in_pieces_and_holds_back_a_possible_stop() -> None:
    """stream_text yields as tokens come, holding back only what could still start a stop string."""
    tokenizer = train_tokenizer("char", ["abcdefghij\n"])
    model, settings = Counter(11), GenerationSettings(max_new_tokens=30, temperature=0.0)
    prompt = tokenizer.encode("a")
    assert list(stream_text(model, tokenizer, prompt, settings))[:3] == ["b", "c", "d"]
    for stop in ([], ["ef"], ["zz", "\n", "hi"], ["zzz"]):
        pieces = list(stream_text(model, tokenizer, prompt, settings, stop))
        assert "".join(pieces) == complete(model, tokenizer, prompt, settings, stop)
    assert list(stream_text(model, tokenizer, prompt, settings, ["ef"])) == ["b", "c", "d"]


def test_each_row_of_a_batch_stops_at_its_own_stop_string_or_end_of_text() -> None:
    """Counter continues each prompt through the alphabet: rows reach "ef" and the newline at different steps."""
    tokenizer = train_tokenizer("char", ["abcdefghij\n"])
    model, settings = Counter(11), GenerationSettings(max_new_tokens=30, temperature=0.0)
    prompts = [tokenizer.encode(p) for p in ("a", "g", "ef")]
    rows = complete_batch(model, tokenizer, prompts, settings, stop=["ef", "\n"])
    assert [r.text for r in rows] == ["bcd", "hij", "ghij"]
    assert [r.finish_reason for r in rows] == ["stop"] * 3
    assert [r.text for r in rows] == [complete(model, tokenizer, p, settings, ["ef", "\n"]) for p in prompts]
    short = complete_batch(model, tokenizer, prompts, GenerationSettings(max_new_tokens=2, temperature=0.0), ["\n"])
    assert [(r.text, r.finish_reason, len(r.tokens)) for r in short] == [("bc", "length", 2), ("hi", "length", 2)] + [
        ("gh", "length", 2)
    ]


def test_a_row_ends_at_the_end_of_text_token() -> None:
    tokenizer = train_tokenizer("byte", ["abc"])
    eot = tokenizer.eot_id
    assert eot is not None
    model = Counter(tokenizer.vocab_size)
    prompt = [eot - 3]
    rows = complete_batch(model, tokenizer, [prompt], GenerationSettings(max_new_tokens=10, temperature=0.0))
    assert rows[0].tokens == [eot - 2, eot - 1] and rows[0].finish_reason == "stop"
    kept = complete_batch(
        model, tokenizer, [prompt], GenerationSettings(max_new_tokens=4, temperature=0.0), stop_at_eot=False
    )
    assert kept[0].tokens == [eot - 2, eot - 1, eot, 0] and kept[0].finish_reason == "length"


@pytest.mark.parametrize("position", POSITIONS)
def test_uncached_generation_equals_cached(position: str) -> None:
    model = loud_model(position, "fused", 2)
    prompts = [[1, 2, 3], [4], [5, 6, 7, 8, 9]]
    cached = generate_batch(model, prompts, GREEDY)
    assert (
        generate_batch(model, prompts, GenerationSettings(max_new_tokens=12, temperature=0.0, use_cache=False))
        == cached
    )
