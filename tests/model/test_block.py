"""Pre- and post-norm blocks compose their parts exactly as their formulas say.

The parts are stand-ins with simple elementwise rules, so each composition gives its own numbers, worked
out by hand below:
    attention a(x) = 2x + 1,  mlp m(x) = x²,  norm1 n1(x) = x + 10,  norm2 n2(x) = 3x.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

from llm.model.block import BLOCKS, PostNormBlock, PreNormBlock
from llm.model.kv_cache import LayerKV, Step
from llm.model.positions import Position


class Elementwise(nn.Module):
    def __init__(self, rule: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.rule = rule

    def forward(self, x: Tensor) -> Tensor:
        return self.rule(x)


class StubAttention(nn.Module):
    """a(x) = 2x + 1; remembers the position component, step and past keys/values it was called with."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[Position, Step | None, LayerKV | None]] = []

    def forward(
        self, x: Tensor, position: Position, step: Step | None = None, past: LayerKV | None = None
    ) -> tuple[Tensor, LayerKV]:
        self.calls.append((position, step, past))
        return 2 * x + 1, (x, -x)


def stub_block(name: str) -> tuple[nn.Module, StubAttention]:
    attention = StubAttention()
    mlp = Elementwise(lambda x: x * x)
    block = BLOCKS.build(name, attention, mlp, Elementwise(lambda x: x + 10), Elementwise(lambda x: 3 * x))
    return block, attention


X = torch.tensor([1.0, -2.0, 0.5]).view(1, 3, 1)  # (B, T, C): three positions, one channel


def test_pre_norm_block_by_hand() -> None:
    """pre: h = x + a(n1(x)) = 3x + 21; out = h + m(n2(h)) = h + 9h².
    x = 1: h = 24, 24 + 5184 = 5208;  x = -2: h = 15, 15 + 2025 = 2040;  x = 0.5: h = 22.5, 22.5 + 4556.25."""
    block, _ = stub_block("pre")
    assert isinstance(block, PreNormBlock)
    out = block(X, Position())[0]
    assert torch.equal(out, torch.tensor([5208.0, 2040.0, 4578.75]).view(1, 3, 1))


def test_post_norm_block_by_hand() -> None:
    """post: h = n1(x + a(x)) = 3x + 11; out = n2(h + m(h)) = 3(h + h²).
    x = 1: h = 14, 3·210 = 630;  x = -2: h = 5, 3·30 = 90;  x = 0.5: h = 12.5, 3·168.75 = 506.25."""
    block, _ = stub_block("post")
    assert isinstance(block, PostNormBlock)
    out = block(X, Position())[0]
    assert torch.equal(out, torch.tensor([630.0, 90.0, 506.25]).view(1, 3, 1))


@pytest.mark.parametrize("name", ["pre", "post"])
def test_blocks_match_their_formulas_on_random_inputs(name: str) -> None:
    """The same compositions, written with the stand-in rules, on a random (2, 5, 4) input."""
    x = torch.randn(2, 5, 4, generator=torch.Generator().manual_seed(0))
    block, _ = stub_block(name)
    if name == "pre":
        h = x + (2 * (x + 10) + 1)
        expected = h + (3 * h) ** 2
    else:
        h = (x + (2 * x + 1)) + 10
        expected = 3 * (h + h**2)
    torch.testing.assert_close(block(x, Position())[0], expected)


@pytest.mark.parametrize("name", ["pre", "post"])
def test_blocks_hand_the_position_step_and_cache_to_attention(name: str) -> None:
    """Attention gets the block's own position component, the step and the layer's cache (rope and alibi act
    there), and the block returns attention's keys and values unchanged."""
    block, attention = stub_block(name)
    position = Position()
    step = Step(torch.tensor([[5, 6, 7]]), torch.tensor([[4, 5, 6, 7]]), None)
    past = (torch.zeros(1, 1, 1, 1), torch.ones(1, 1, 1, 1))
    _, kv = block(X, position, step, past)
    assert len(attention.calls) == 1
    assert attention.calls[0][0] is position and attention.calls[0][1] is step and attention.calls[0][2] is past
    assert isinstance(kv, tuple) and len(kv) == 2 and kv[1].shape == X.shape
