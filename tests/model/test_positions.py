"""Positional components against their formulas, worked out by hand at chosen positions."""

from __future__ import annotations

import math

import pytest
import torch

from llm.model import ModelConfig
from llm.model.positions import POSITIONS, alibi_slopes


def at(first: int, t: int) -> torch.Tensor:
    """Positions first .. first + t - 1 as a (1, t) tensor."""
    return torch.arange(first, first + t)[None]


def position(name: str, n_embd: int = 16, n_head: int = 2, block_size: int = 32, **options):
    config = ModelConfig(vocab_size=5, block_size=block_size, n_head=n_head, n_embd=n_embd)
    return POSITIONS.build(name, config, **options)


# ---- sinusoidal ---------------------------------------------------------------------------------------


def sinusoid(p: int, dim: int, d: int) -> float:
    """PE(p, 2i) = sin(p / 10000^(2i/d)), PE(p, 2i+1) = cos(p / 10000^(2i/d))."""
    two_i = dim - dim % 2
    angle = p / 10000 ** (two_i / d)
    return math.sin(angle) if dim % 2 == 0 else math.cos(angle)


def test_sinusoidal_values_by_hand() -> None:
    pe = position("sinusoidal")  # d = 16: 10000^(2i/16) is 1, 10, 100, 1000 at 2i = 0, 4, 8, 12
    table = pe.embed(torch.zeros(1, 32, 16))[0]
    assert torch.equal(table[0, 0::2], torch.zeros(8)) and torch.equal(table[0, 1::2], torch.ones(8))
    expected = {
        (5, 0): math.sin(5.0),
        (5, 1): math.cos(5.0),
        (5, 4): math.sin(0.5),
        (5, 5): math.cos(0.5),
        (5, 8): math.sin(0.05),
        (31, 13): math.cos(0.031),
        (7, 2): math.sin(7 / 10000 ** (2 / 16)),
    }
    for (p, dim), value in expected.items():
        assert table[p, dim].item() == pytest.approx(value, abs=1e-6)
        assert sinusoid(p, dim, 16) == pytest.approx(value, abs=1e-12)


def test_sinusoidal_offset_and_beyond_the_table() -> None:
    pe = position("sinusoidal", block_size=8)
    x = torch.randn(2, 3, 16)
    shifted = pe.embed(x, at(38, 3)) - x  # positions 38, 39, 40: past the precomputed 8
    for j, p in enumerate((38, 39, 40)):
        expected = torch.tensor([sinusoid(p, dim, 16) for dim in range(16)])
        torch.testing.assert_close(shifted[1, j], expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(pe.embed(x, at(2, 3)) - x, (pe.embed(torch.zeros(1, 5, 16)))[:, 2:].expand(2, 3, 16))
    # per-row positions: row 0 at 0, 1, 2 and row 1 at 38, 39, 40 (one inside, one past the table)
    rows = pe.embed(x, torch.tensor([[0, 1, 2], [38, 39, 40]])) - x
    torch.testing.assert_close(rows[0], pe.embed(torch.zeros(1, 3, 16))[0])
    torch.testing.assert_close(rows[1], shifted[1])


# ---- rope ---------------------------------------------------------------------------------------------


def test_rope_is_a_rotation_of_half_pairs_by_hand() -> None:
    rope = position("rope", n_embd=8, n_head=2, block_size=16)  # head size 4: frequencies 1 and 1/100
    x = torch.tensor([1.0, 2.0, 3.0, 4.0])
    for p in (0, 3, 15, 20):  # 20 lies past the precomputed table
        q = x.view(1, 1, 1, 4)
        rotated, _ = rope.rotate(q, q.clone(), at(p, 1))
        a, b = p * 1.0, p / 100.0  # pair (x0, x2) turns by p·θ^0, pair (x1, x3) by p·θ^(-2/4)
        expected = [
            1 * math.cos(a) - 3 * math.sin(a),
            2 * math.cos(b) - 4 * math.sin(b),
            1 * math.sin(a) + 3 * math.cos(a),
            2 * math.sin(b) + 4 * math.cos(b),
        ]
        torch.testing.assert_close(rotated.flatten(), torch.tensor(expected), atol=1e-5, rtol=0)


def test_rope_rotates_each_sequence_position_by_its_own_angle() -> None:
    rope = position("rope", n_embd=8, n_head=2, block_size=16)
    q, k = torch.randn(2, 2, 5, 4), torch.randn(2, 2, 5, 4)
    rq, rk = rope.rotate(q, k, at(3, 5))
    for j in range(5):
        one_q, one_k = rope.rotate(q[:, :, j : j + 1], k[:, :, j : j + 1], at(3 + j, 1))
        torch.testing.assert_close(rq[:, :, j : j + 1], one_q)
        torch.testing.assert_close(rk[:, :, j : j + 1], one_k)
    # per-row positions: row 1 shifted by 20 (past the table of 16) rotates as a lone row at 23 .. 27 would
    pq, _ = rope.rotate(q, k, torch.stack([torch.arange(3, 8), torch.arange(23, 28)]))
    torch.testing.assert_close(pq[:1], rq[:1])
    torch.testing.assert_close(pq[1:], rope.rotate(q[1:], k[1:], at(23, 5))[0])


def test_rope_scores_depend_only_on_distance() -> None:
    rope = position("rope", n_embd=16, n_head=2, block_size=16)  # head size 8
    generator = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 1, 1, 8, generator=generator), torch.randn(1, 1, 1, 8, generator=generator)

    def score(m: int, n: int) -> float:
        return (rope.rotate(q, q, at(m, 1))[0] * rope.rotate(k, k, at(n, 1))[1]).sum().item()

    for s in (1, 7, 30):
        assert score(5 + s, 2 + s) == pytest.approx(score(5, 2), abs=1e-5)
    assert score(5, 3) != pytest.approx(score(5, 2), abs=1e-3)  # a different distance: a different score


def test_rope_theta_option() -> None:
    rope = position("rope", n_embd=8, n_head=2, theta=100.0)  # head size 4: frequencies 1 and 100^(-1/2)
    x = torch.tensor([0.0, 1.0, 0.0, 0.0]).view(1, 1, 1, 4)
    rotated, _ = rope.rotate(x, x, at(2, 1))
    torch.testing.assert_close(rotated.flatten(), torch.tensor([0.0, math.cos(0.2), 0.0, math.sin(0.2)]))


# ---- alibi --------------------------------------------------------------------------------------------


def test_alibi_slopes_power_of_two_heads() -> None:
    expected8 = [2**-1, 2**-2, 2**-3, 2**-4, 2**-5, 2**-6, 2**-7, 2**-8]
    torch.testing.assert_close(alibi_slopes(8), torch.tensor(expected8))
    torch.testing.assert_close(alibi_slopes(4), torch.tensor([2**-2, 2**-4, 2**-6, 2**-8]))


def test_alibi_slopes_twelve_heads() -> None:
    # the 8-head slopes, then every other slope of the 16-head series 2^(-0.5·k): k = 1, 3, 5, 7
    expected = [2**-1, 2**-2, 2**-3, 2**-4, 2**-5, 2**-6, 2**-7, 2**-8, 2**-0.5, 2**-1.5, 2**-2.5, 2**-3.5]
    torch.testing.assert_close(alibi_slopes(12), torch.tensor(expected))


def test_alibi_bias_matrix() -> None:
    alibi = position("alibi", n_embd=16, n_head=8)
    bias = alibi.score_bias(at(0, 4), at(0, 4))[0]
    assert bias.shape == (8, 4, 4)
    distance = torch.tensor(  # i - j on and below the diagonal; future keys (masked anyway) get 0
        [
            [0.0, 0.0, 0.0, 0.0],
            [1.0, 0.0, 0.0, 0.0],
            [2.0, 1.0, 0.0, 0.0],
            [3.0, 2.0, 1.0, 0.0],
        ]
    )
    torch.testing.assert_close(bias[0], -0.5 * distance)
    torch.testing.assert_close(bias[2], -0.125 * distance)
    torch.testing.assert_close(bias[7], -distance / 256)
    torch.testing.assert_close(alibi.score_bias(at(3, 1), at(0, 4))[0], bias[:, 3:])  # a decoding step
    # a left-padded row (keys at positions 0, 0, 1, 2; the first is padding): distances are by position
    padded = torch.tensor([[0, 0, 1, 2]])
    torch.testing.assert_close(alibi.score_bias(padded, padded)[0, :, 1:, 1:], bias[:, :3, :3])


# ---- the shared interface -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", POSITIONS.names())
def test_unused_hooks_are_identities(name: str) -> None:
    pe = position(name)
    x, q, k = torch.randn(1, 4, 16), torch.randn(1, 2, 4, 8), torch.randn(1, 2, 4, 8)
    adds = name in ("sinusoidal", "learned")
    assert torch.equal(pe.embed(x, at(1, 4)), x) != adds
    rotated = pe.rotate(q, k, at(1, 4))
    assert (torch.equal(rotated[0], q) and torch.equal(rotated[1], k)) != (name == "rope")
    assert (pe.score_bias(at(0, 4), at(0, 4)) is None) != (name == "alibi")


def test_learned_positions_add_table_rows_and_refuse_past_the_table() -> None:
    learned = position("learned", block_size=8)
    x = torch.zeros(1, 3, 16)
    torch.testing.assert_close(learned.embed(x, at(5, 3))[0], learned.table.weight[5:8])
    torch.testing.assert_close(learned.embed(x, torch.tensor([[0, 0, 1]]))[0], learned.table.weight[[0, 0, 1]])
    with pytest.raises(ValueError, match="positions 6..8 do not fit the learned position table of 8"):
        learned.embed(x, at(6, 3))
