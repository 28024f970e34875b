"""Next-token cross-entropy and per-sequence log-probabilities against values worked out with math.log/exp."""

from __future__ import annotations

import math

import pytest
import torch

from llm.objectives import OBJECTIVES, causal_lm_loss, sequence_logprobs


def log_softmax(row: list[float], index: int) -> float:
    """log p(index) = row[index] - log(sum(exp(row)))."""
    return row[index] - math.log(sum(math.exp(v) for v in row))


ROWS = [[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [2.0, 0.0, -1.0], [0.0, 0.0, math.log(2.0)]]


def test_log_softmax_helper_by_hand() -> None:
    """Uniform logits over 3 ids give log(1/3); logits (0, 0, ln 2) give p = (1/4, 1/4, 1/2)."""
    assert log_softmax(ROWS[1], 1) == pytest.approx(math.log(1 / 3))
    assert log_softmax(ROWS[3], 2) == pytest.approx(math.log(1 / 2))
    assert log_softmax(ROWS[3], 0) == pytest.approx(math.log(1 / 4))


def test_causal_lm_loss_is_the_mean_negative_log_likelihood() -> None:
    """(B=2, T=2) logits: the loss is the mean over all four positions, each row paired with its own target."""
    logits = torch.tensor([[ROWS[0], ROWS[1]], [ROWS[2], ROWS[3]]])
    targets = torch.tensor([[2, 1], [0, 2]])
    expected = -(log_softmax(ROWS[0], 2) + math.log(1 / 3) + log_softmax(ROWS[2], 0) + math.log(1 / 2)) / 4
    assert causal_lm_loss(logits, targets).item() == pytest.approx(expected, rel=1e-6)
    for name in ("causal_lm", "sft"):  # the registry entries compute the same loss
        assert OBJECTIVES.build(name)(logits, targets).item() == pytest.approx(expected, rel=1e-6)


def test_causal_lm_loss_ignores_minus_100() -> None:
    """Targets of -100 are left out of both the sum and the count: the mean is over the two real targets."""
    logits = torch.tensor([[ROWS[0], ROWS[1]], [ROWS[2], ROWS[3]]])
    targets = torch.tensor([[2, -100], [-100, 2]])
    expected = -(log_softmax(ROWS[0], 2) + math.log(1 / 2)) / 2
    assert causal_lm_loss(logits, targets).item() == pytest.approx(expected, rel=1e-6)


def test_the_compiled_loss_matches_the_hand_value_and_the_eager_gradient() -> None:
    """objective.compile() (what compile=true does) gives the same loss, -100 left out, and the same gradient."""
    logits = torch.tensor([[ROWS[0], ROWS[1]], [ROWS[2], ROWS[3]]], requires_grad=True)
    targets = torch.tensor([[2, -100], [-100, 2]])
    objective = OBJECTIVES.build("causal_lm")
    objective.compile()
    assert objective.loss is not causal_lm_loss
    loss = objective(logits, targets)
    assert loss.item() == pytest.approx(-(log_softmax(ROWS[0], 2) + math.log(1 / 2)) / 2, rel=1e-6)
    (compiled_grad,) = torch.autograd.grad(loss, logits)
    (eager_grad,) = torch.autograd.grad(causal_lm_loss(logits, targets), logits)
    torch.testing.assert_close(compiled_grad, eager_grad)
    assert compiled_grad[0, 1].abs().sum() == 0  # an ignored position gets no gradient


@pytest.mark.parametrize("name", ["causal_lm", "dpo"])
def test_an_objective_compiles_with_the_mode_it_is_given(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """compile(mode) hands torch.compile the mode (e.g. the network's reduce-overhead); compile() leaves it None."""
    modes = []
    monkeypatch.setattr(torch, "compile", lambda fn, mode=None: modes.append(mode) or fn)
    objective = OBJECTIVES.build(name)
    objective.compile()
    objective.compile("reduce-overhead")
    assert modes == [None, "reduce-overhead"]


def test_causal_lm_loss_is_computed_in_float32() -> None:
    """bfloat16 logits still give a float32 loss (the softmax is taken in float32)."""
    logits = torch.tensor([[ROWS[1], ROWS[3]]]).bfloat16()
    loss = causal_lm_loss(logits, torch.tensor([[0, 2]]))
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(-(math.log(1 / 3) + math.log(1 / 2)) / 2, rel=1e-2)


def test_sequence_logprobs_sum_masked_positions_per_sequence() -> None:
    """Sequence 0 counts positions 0 and 1: log p = (3 - log(e + e² + e³)) + log(1/3).
    Sequence 1 counts positions 0 and 2: log(1/2) + log(3/5) = log(0.3); its masked position holds -100."""
    logits = torch.tensor(
        [
            [ROWS[0], ROWS[1], ROWS[2]],
            [ROWS[3], [3.0, 3.0, 3.0], [math.log(3.0), 0.0, 0.0]],
        ]
    )
    targets = torch.tensor([[2, 1, 0], [2, -100, 0]])
    mask = torch.tensor([[True, True, False], [True, False, True]])
    got = sequence_logprobs(logits, targets, mask)
    assert got.shape == (2,)
    expected = [3 - math.log(math.e + math.e**2 + math.e**3) + math.log(1 / 3), math.log(0.3)]
    torch.testing.assert_close(got, torch.tensor(expected), rtol=1e-6, atol=1e-6)


def test_a_preference_objective_compiles_its_logprobs_to_the_same_values() -> None:
    """objective.compile() (compile=true under llm dpo) gives the hand-worked sums of the test above."""
    logits = torch.tensor([[ROWS[0], ROWS[1], ROWS[2]], [ROWS[3], [3.0, 3.0, 3.0], [math.log(3.0), 0.0, 0.0]]])
    targets = torch.tensor([[2, 1, 0], [2, -100, 0]])
    mask = torch.tensor([[True, True, False], [True, False, True]])
    objective = OBJECTIVES.build("dpo")
    objective.compile()
    assert objective.logprobs is not sequence_logprobs
    expected = [3 - math.log(math.e + math.e**2 + math.e**3) + math.log(1 / 3), math.log(0.3)]
    torch.testing.assert_close(objective.logprobs(logits, targets, mask), torch.tensor(expected))


def test_sequence_logprobs_of_an_empty_mask_is_zero() -> None:
    """No position selected: the sum is 0, whatever the logits and targets (-100 included)."""
    logits = torch.tensor([[ROWS[0], ROWS[2]]])
    got = sequence_logprobs(logits, torch.tensor([[-100, 1]]), torch.zeros(1, 2, dtype=torch.bool))
    assert got.tolist() == [0.0]


def test_sequence_logprobs_take_a_float_mask_and_bfloat16_logits() -> None:
    """A 0/1 float64 mask works like a boolean one, and bfloat16 logits are summed in float32 (the mask's
    dtype does not widen the result)."""
    logits = torch.tensor([[ROWS[3], ROWS[1]]]).bfloat16()
    got = sequence_logprobs(logits, torch.tensor([[2, 0]]), torch.tensor([[1.0, 1.0]], dtype=torch.float64))
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(math.log(1 / 2) + math.log(1 / 3), rel=1e-2)
