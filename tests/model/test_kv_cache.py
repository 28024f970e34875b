"""The inference interface: cached decoding equals the uncached forward, for every position type, both attention
paths, grouped-query attention, QK-norm and a sliding window; left-padded rows equal the same rows alone."""

from __future__ import annotations

import pytest
import torch

from llm.model import ModelConfig, Part, build_gpt
from llm.model.gpt import InferenceGraph
from llm.model.kv_cache import KVCache

POSITIONS = ["none", "learned", "sinusoidal", "rope", "alibi"]
ATTENTIONS = ["manual", "fused"]


def gpt(position: str, attention: str = "manual", n_kv_head: int | None = None, **options):
    torch.manual_seed(0)
    config = ModelConfig(
        vocab_size=13,
        block_size=16,
        n_layer=2,
        n_head=4,
        n_kv_head=n_kv_head,
        n_embd=16,
        position=Part(position),
        attention=Part(attention, options),
    )
    return build_gpt(config).eval()


@pytest.mark.parametrize("window", [None, 3])
@pytest.mark.parametrize("qk_norm", [False, True])
@pytest.mark.parametrize("n_kv_head", [4, 2, 1])
@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("position", POSITIONS)
def test_cached_decoding_gives_the_uncached_logits(
    position: str, attention: str, n_kv_head: int, qk_norm: bool, window: int | None
) -> None:
    """Prefill 5 tokens, then decode 6 one at a time with the cache: each step's logits are those of the full
    uncached forward over the whole sequence at that position."""
    model = gpt(position, attention, n_kv_head, qk_norm=qk_norm, window=window)
    idx = torch.randint(0, 13, (2, 11), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model(idx)
        logits, cache = model.infer(idx[:, :5])
        torch.testing.assert_close(logits, full[:, :5], atol=1e-5, rtol=0)
        for t in range(5, 11):
            logits, cache = model.infer(idx[:, t : t + 1], cache=cache, last_only=True)
            assert logits.shape == (2, 1, 13)
            torch.testing.assert_close(logits, full[:, t : t + 1], atol=1e-5, rtol=0)
    assert cache.length == 11 and len(cache.layers) == 2
    assert cache.layers[0][0].shape == (2, n_kv_head, 11, 4)  # GQA caches the shared heads only
    assert torch.equal(cache.pos, torch.arange(11).expand(2, 11)) and bool(cache.mask.all())


@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("position", POSITIONS)
def test_a_decoding_step_is_not_the_step_at_position_zero(position: str, attention: str) -> None:
    """The old `model(idx[:, -1:], offset=t)` ran but saw nothing before it; with the cache the step sees the prefix.
    Without a cache a lone last token gives different logits (the prefix matters)."""
    model = gpt(position, attention)
    idx = torch.randint(0, 13, (1, 6), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        for p in model.parameters():  # large weights: the context visibly moves the logits
            p.copy_(0.3 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
        full = model(idx)
        _, cache = model.infer(idx[:, :5])
        step, _ = model.infer(idx[:, 5:], cache=cache)
        alone = model(idx[:, 5:], pos=torch.tensor([[5]]))
    torch.testing.assert_close(step, full[:, 5:], atol=1e-4, rtol=1e-4)
    assert (alone - full[:, 5:]).abs().max() > 1e-3


@pytest.mark.parametrize("window", [None, 3])
@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("position", POSITIONS)
def test_left_padded_rows_equal_each_row_alone(position: str, attention: str, window: int | None) -> None:
    """Prompts of 3, 7 and 5 tokens, left-padded to 7: positions count from 0 at each row's first real token and
    padding keys are masked, so prefill and four decoding steps give each row's own logits."""
    model = gpt(position, attention, 2, window=window)
    generator = torch.Generator().manual_seed(3)
    rows = [torch.randint(0, 13, (n + 4,), generator=generator) for n in (3, 7, 5)]
    lengths = [3, 7, 5]
    width = max(lengths)
    pad = torch.tensor([width - n for n in lengths])[:, None]
    idx = torch.stack(
        [torch.cat([torch.zeros(width - n, dtype=torch.long), r[:n]]) for r, n in zip(rows, lengths, strict=True)]
    )
    columns = torch.arange(width)[None]
    pos, mask = (columns - pad).clamp(min=0), columns >= pad
    with torch.no_grad():
        alone = [model(r[None])[0] for r in rows]  # (n + 4, V) each
        logits, cache = model.infer(idx, pos=pos, key_mask=mask, last_only=True)
        for i, n in enumerate(lengths):
            torch.testing.assert_close(logits[i, 0], alone[i][n - 1], atol=1e-5, rtol=0)
        for s in range(4):
            nxt = torch.stack([r[n + s] for r, n in zip(rows, lengths, strict=True)])[:, None]
            logits, cache = model.infer(nxt, cache=cache)  # positions continue each row's own
            for i, n in enumerate(lengths):
                torch.testing.assert_close(logits[i, 0], alone[i][n + s], atol=1e-5, rtol=0)
    assert cache.pos[0].tolist() == [0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6]


def test_the_cache_flattens_to_tensors_and_back() -> None:
    """pos, mask, then k and v per layer: the form an exported graph takes and returns."""
    model = gpt("rope", "fused", 2)
    idx = torch.randint(0, 13, (1, 4), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        _, cache = model.infer(idx)
        flat = cache.tensors()
        assert len(flat) == 2 + 2 * 2 and all(isinstance(t, torch.Tensor) for t in flat)
        a, _ = model.infer(idx[:, :1], cache=cache)
        b, _ = model.infer(idx[:, :1], cache=KVCache.from_tensors(flat))
    assert torch.equal(a, b)


def test_training_forward_keeps_the_fused_causal_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """model(idx) (and a plain prefill) hands SDPA no mask: is_causal, its fastest kernel."""
    calls: list[dict] = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    model = gpt("rope", "fused", 2)
    idx = torch.randint(0, 13, (2, 6))
    with torch.no_grad():
        model(idx)
        model.infer(idx)
    assert len(calls) == 4 and all(c.get("is_causal") and c.get("attn_mask") is None for c in calls)


@pytest.mark.parametrize("position", POSITIONS)
def test_the_inference_step_traces_into_one_graph_for_every_cache_length(position: str) -> None:
    """InferenceGraph (tensors in, tensors out) traced once on a one-token step over a 3-token cache runs a step over
    a 6-token cache and a left-padded batch as the eager model does: no value of the inputs is baked in."""
    model = gpt(position, "fused", 2)
    graph = InferenceGraph(model).eval()
    idx = torch.randint(0, 13, (2, 8), generator=torch.Generator().manual_seed(5))
    pos, mask = torch.tensor([[0, 1, 2], [0, 0, 1]]), torch.tensor([[True, True, True], [False, True, True]])
    with torch.no_grad():
        _, cache = model.infer(idx[:, :3], pos=pos, key_mask=mask)
        example = (idx[:, 3:4], pos[:, -1:] + 1, torch.ones(2, 1, dtype=torch.bool), *cache.tensors())
        traced = torch.jit.trace(graph, example, check_trace=False)
        _, cache = model.infer(idx[:, 3:6], cache=cache)
        expected, after = model.infer(idx[:, 6:7], cache=cache, last_only=True)
        got = traced(idx[:, 6:7], cache.pos[:, -1:] + 1, torch.ones(2, 1, dtype=torch.bool), *cache.tensors())
    torch.testing.assert_close(got[0], expected, atol=1e-5, rtol=0)
    assert len(got) == 1 + len(after.tensors())
    for a, b in zip(got[1:], after.tensors(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_only_alibi_biases_scores() -> None:
    """Training's attention asks for a bias only from components that override score_bias."""
    assert [name for name in POSITIONS if gpt(name).position.biases_scores] == ["alibi"]
