"""The position component reaches the whole GPT: token order matters exactly when a position says it should.

Kernel-level tests (test_attention.py, test_positions.py) check each part alone; these check that the GPT's
forward pass actually uses the part's hooks (`embed`, `rotate`, `score_bias`).

What causal attention without positions guarantees: in one layer, the output at position t is a function of
x_t and the *set* of tokens x_0..x_t (attention sums over its keys in no particular order), so permuting the
earlier tokens leaves it unchanged. From two layers on, the keys of layer 2 are layer-1 outputs, each of
which saw a different prefix, so order leaks through the causal mask (the NoPE result) and the invariance
is gone.
"""

from __future__ import annotations

import pytest
import torch

from llm.model import GPT, ModelConfig, Part, build_gpt

VOCAB, T = 13, 8
ORDERED_POSITIONS = ["learned", "sinusoidal", "rope", "alibi"]
ATTENTIONS = ["manual", "fused"]
TOKENS = torch.arange(T)[None]  # distinct tokens 0..7
# permutations of the first T-1 tokens; the last token (7) stays in place
PERMUTED = [
    torch.tensor([[6, 5, 4, 3, 2, 1, 0, 7]]),  # reversed
    torch.tensor([[1, 2, 3, 4, 5, 6, 0, 7]]),  # rotated by one
    torch.tensor([[0, 1, 2, 3, 4, 6, 5, 7]]),  # the two tokens next to the last swapped
]
CLEARLY = 1e-3  # observed differences are 3e-3 or more; float noise is below 1e-6


def gpt(position: str, attention: str = "fused", n_layer: int = 1, seed: int = 0) -> GPT:
    """A tiny GPT whose weights are N(0, 0.3²): large enough that every part visibly moves the output."""
    config = ModelConfig(
        vocab_size=VOCAB,
        block_size=T,
        n_layer=n_layer,
        n_head=4,
        n_embd=16,
        position=Part(position),
        attention=Part(attention),
    )
    model = build_gpt(config).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=generator))
    return model


@torch.no_grad()
def last_output(model: GPT, idx: torch.Tensor) -> torch.Tensor:
    return model(idx)[0, -1]


@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("position", ORDERED_POSITIONS)
@pytest.mark.parametrize("permuted", PERMUTED, ids=["reversed", "rotated", "swapped"])
def test_order_of_earlier_tokens_changes_the_last_output(position: str, attention: str, permuted) -> None:
    """With a position component, one layer already tells a permuted prefix apart (a position-free one cannot)."""
    model = gpt(position, attention)
    difference = (last_output(model, permuted) - last_output(model, TOKENS)).abs().max()
    assert difference > CLEARLY, f"{position}: permuting the prefix changed the last logits by only {difference}"


@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("permuted", PERMUTED, ids=["reversed", "rotated", "swapped"])
def test_without_positions_one_layer_ignores_the_order_of_earlier_tokens(attention: str, permuted) -> None:
    """position=none, one layer: the output at the last position sees only the set of earlier tokens."""
    model = gpt("none", attention)
    torch.testing.assert_close(last_output(model, permuted), last_output(model, TOKENS), atol=1e-5, rtol=0)


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_without_positions_each_position_sees_a_set(attention: str) -> None:
    """position=none, one layer: at every t, reversing x_0..x_{t-1} leaves the output at t unchanged."""
    model = gpt("none", attention)
    with torch.no_grad():
        reference = model(TOKENS)[0]
        for t in range(1, T):
            permuted = torch.cat([TOKENS[:, :t].flip(1), TOKENS[:, t:]], dim=1)
            torch.testing.assert_close(model(permuted)[0, t], reference[t], atol=1e-5, rtol=0, msg=f"t={t}")


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_without_positions_two_layers_order_leaks_through_the_causal_mask(attention: str) -> None:
    """position=none, two layers: layer-2 keys saw different prefixes, so the prefix order matters again.

    A model without the causal mask (full attention, no positions) would be invariant here.
    """
    model = gpt("none", attention, n_layer=2)
    difference = (last_output(model, PERMUTED[0]) - last_output(model, TOKENS)).abs().max()
    assert difference > CLEARLY


@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("position", ["rope", "alibi"])
def test_rope_and_alibi_change_outputs_versus_none_with_the_same_weights(position: str, attention: str) -> None:
    """rope and alibi have no weights, so a `none` GPT's weights load into them unchanged. The outputs then
    agree at position 0 (rotation by angle 0, bias at distance 0) and differ at every later position."""
    plain = gpt("none", attention)
    positioned = gpt(position, attention, seed=1)
    positioned.load_state_dict(plain.state_dict(), strict=True)
    with torch.no_grad():
        expected, got = plain(TOKENS)[0], positioned(TOKENS)[0]
    torch.testing.assert_close(got[0], expected[0], atol=1e-5, rtol=0)
    for t in range(1, T):
        assert (got[t] - expected[t]).abs().max() > CLEARLY, f"{position} had no effect at position {t}"


@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("position", ORDERED_POSITIONS)
def test_only_absolute_positions_depend_on_the_offset(position: str, attention: str) -> None:
    """rope and alibi see only distances, so shifting the whole sequence (to positions 5, 6, 7) changes nothing;
    learned and sinusoidal add the embedding of the absolute position, so it does."""
    model = gpt(position, attention)
    idx = TOKENS[:, :3]
    with torch.no_grad():
        at_zero, shifted = model(idx), model(idx, pos=torch.arange(5, 8)[None])
    if position in ("rope", "alibi"):
        torch.testing.assert_close(shifted, at_zero, atol=1e-5, rtol=0)
    else:
        assert (shifted - at_zero).abs().max() > CLEARLY
