"""DPO, IPO, cDPO, hinge and SimPO against losses and rewards worked out here with math.log and math.exp."""

from __future__ import annotations

import math

import pytest
import torch

from llm.errors import ConfigError
from llm.objectives import OBJECTIVES, PairLogps, PreferenceObjective
from llm.registry import RegistryError


def softplus(x: float) -> float:
    """−log σ(−x) = log(1 + e^x), written out."""
    return math.log(1 + math.exp(x))


def neg_logsigmoid(x: float) -> float:
    """−log σ(x) = log(1 + e^−x)."""
    return math.log(1 + math.exp(-x))


# Three pairs. Policy and reference summed log-probs, and the margins h = (π_c − π_r) − (ref_c − ref_r):
#   pair 0: (−10 − −12) − (−11 − −11.5) = 2 − 0.5 = 1.5     (the policy prefers chosen more than the reference)
#   pair 1: (−6 − −5) − (−5.5 − −5)     = −1 + 0.5 = −0.5  (less than the reference does)
#   pair 2: (−20 − −20) − (−18 − −18)   = 0
H = [1.5, -0.5, 0.0]
POLICY_CHOSEN, POLICY_REJECTED = [-10.0, -6.0, -20.0], [-12.0, -5.0, -20.0]
REF_CHOSEN, REF_REJECTED = [-11.0, -5.5, -18.0], [-11.5, -5.0, -18.0]
CHOSEN_TOKENS, REJECTED_TOKENS = [5, 3, 4], [4, 2, 10]
# β·(π − ref) with β = 0.1: chosen (1, −0.5, −2)·0.1, rejected (−0.5, 0, −2)·0.1
DPO_CHOSEN_REWARDS, DPO_REJECTED_REWARDS = [0.1, -0.05, -0.2], [-0.05, 0.0, -0.2]


def pairs(dtype: torch.dtype = torch.float32, requires_grad: bool = False, reference: bool = True) -> PairLogps:
    def t(values: list[float]) -> torch.Tensor:
        return torch.tensor(values, dtype=dtype, requires_grad=requires_grad)

    return PairLogps(
        chosen=t(POLICY_CHOSEN),
        rejected=t(POLICY_REJECTED),
        chosen_tokens=torch.tensor(CHOSEN_TOKENS),
        rejected_tokens=torch.tensor(REJECTED_TOKENS),
        ref_chosen=t(REF_CHOSEN) if reference else None,
        ref_rejected=t(REF_REJECTED) if reference else None,
    )


def close(got: torch.Tensor, expected: list[float]) -> None:
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, torch.tensor(expected), rtol=1e-6, atol=1e-6)


def test_dpo_by_hand() -> None:
    """−log σ(0.1·h) for h = 1.5, −0.5, 0; rewards 0.1·(π − ref)."""
    out = OBJECTIVES.build("dpo")(pairs())
    close(out.losses, [neg_logsigmoid(0.15), neg_logsigmoid(-0.05), math.log(2)])
    close(out.chosen_rewards, DPO_CHOSEN_REWARDS)
    close(out.rejected_rewards, DPO_REJECTED_REWARDS)
    # β = 0.5: −log σ(0.75), −log σ(−0.25), ln 2; rewards five times larger
    out = OBJECTIVES.build("dpo", beta=0.5)(pairs())
    close(out.losses, [math.log(1 + math.exp(-0.75)), math.log(1 + math.exp(0.25)), math.log(2)])
    close(out.chosen_rewards, [0.5, -0.25, -1.0])


def test_dpo_at_the_reference_is_ln2_with_zero_rewards() -> None:
    """Policy = reference: every margin is 0, so every loss is −log σ(0) = ln 2 and every reward 0."""
    same = PairLogps(
        chosen=torch.tensor([-3.0, -40.0]),
        rejected=torch.tensor([-7.0, -1.0]),
        chosen_tokens=torch.tensor([2, 9]),
        rejected_tokens=torch.tensor([4, 1]),
        ref_chosen=torch.tensor([-3.0, -40.0]),
        ref_rejected=torch.tensor([-7.0, -1.0]),
    )
    out = OBJECTIVES.build("dpo", beta=0.3)(same)
    close(out.losses, [math.log(2), math.log(2)])
    close(out.chosen_rewards, [0.0, 0.0])
    close(out.rejected_rewards, [0.0, 0.0])


def test_preferring_chosen_lowers_every_ratio_loss() -> None:
    """Swapping chosen and rejected turns h = 1.5 into −1.5: the loss of the pair the policy gets right is lower."""
    for name in ("dpo", "ipo", "cdpo", "hinge"):
        objective = OBJECTIVES.build(name)
        right = objective(pairs()).losses[0]
        p = pairs()
        swapped = PairLogps(p.rejected, p.chosen, p.rejected_tokens, p.chosen_tokens, p.ref_rejected, p.ref_chosen)
        wrong = objective(swapped).losses[0]
        assert right < wrong, name
    # simpo: pair 0's normalised chosen log-prob −2 beats rejected −3; swapped, the loss grows
    simpo = OBJECTIVES.build("simpo")
    p = pairs(reference=False)
    assert simpo(p).losses[0] < simpo(PairLogps(p.rejected, p.chosen, p.rejected_tokens, p.chosen_tokens)).losses[0]


def test_dpo_gradient_pushes_chosen_up_and_rejected_down() -> None:
    """d/dπ_c of mean(−log σ(β·h)) is −β·(1 − σ(β·h))/B; for pair 2 (h = 0) that is −0.1·0.5/3, for π_r +0.1·0.5/3."""
    p = pairs(requires_grad=True)
    out = OBJECTIVES.build("dpo")(p)
    out.losses.mean().backward()
    assert p.chosen.grad is not None and p.rejected.grad is not None
    assert p.chosen.grad[2].item() == pytest.approx(-0.1 * 0.5 / 3, rel=1e-5)
    assert p.rejected.grad[2].item() == pytest.approx(0.1 * 0.5 / 3, rel=1e-5)
    sigma = 1 / (1 + math.exp(-0.15))
    assert p.chosen.grad[0].item() == pytest.approx(-0.1 * (1 - sigma) / 3, rel=1e-5)
    assert not out.chosen_rewards.requires_grad and not out.rejected_rewards.requires_grad


def test_ipo_by_hand() -> None:
    """(h − 1/(2β))² with β = 0.1, so the target margin is 5: (1.5 − 5)², (−0.5 − 5)², (0 − 5)²."""
    out = OBJECTIVES.build("ipo")(pairs())
    close(out.losses, [12.25, 30.25, 25.0])
    close(out.chosen_rewards, DPO_CHOSEN_REWARDS)
    close(out.rejected_rewards, DPO_REJECTED_REWARDS)
    # β = 0.25: target 2; (1.5 − 2)² = 0.25, (−0.5 − 2)² = 6.25, 4
    close(OBJECTIVES.build("ipo", beta=0.25)(pairs()).losses, [0.25, 6.25, 4.0])


def test_cdpo_by_hand() -> None:
    """−(1−ε)·log σ(β·h) − ε·log σ(−β·h) with β = 0.1, ε = 0.1, and with ε = 0.3 (at h = 0 both terms are ln 2);
    ε = 0 is plain DPO."""
    out = OBJECTIVES.build("cdpo")(pairs())
    expected = [0.9 * neg_logsigmoid(0.1 * h) + 0.1 * neg_logsigmoid(-0.1 * h) for h in H]
    close(out.losses, expected)
    close(out.chosen_rewards, DPO_CHOSEN_REWARDS)
    close(out.rejected_rewards, DPO_REJECTED_REWARDS)
    out = OBJECTIVES.build("cdpo", beta=1.0, label_smoothing=0.3)(pairs())
    expected = [0.7 * softplus(-1.5) + 0.3 * softplus(1.5), 0.7 * softplus(0.5) + 0.3 * softplus(-0.5), math.log(2)]
    close(out.losses, expected)
    close(OBJECTIVES.build("cdpo", label_smoothing=0)(pairs()).losses, [neg_logsigmoid(0.1 * h) for h in H])


def test_hinge_by_hand() -> None:
    """max(0, 1 − β·h): β = 0.1 gives 0.85, 1.05, 1; β = 1 gives 0 for pair 0 (margin past 1), 1.5, 1."""
    out = OBJECTIVES.build("hinge")(pairs())
    close(out.losses, [0.85, 1.05, 1.0])
    close(out.chosen_rewards, DPO_CHOSEN_REWARDS)
    close(OBJECTIVES.build("hinge", beta=1.0)(pairs()).losses, [0.0, 1.5, 1.0])


def test_simpo_by_hand() -> None:
    """Length-normalised log-probs: chosen −10/5, −6/3, −20/4 = −2, −2, −5; rejected −12/4, −5/2, −20/10 = −3, −2.5, −2.
    With β = 2, γ = 0.5 the logits β·(c − r) − γ are 1.5, 0.5, −6.5; rewards 2·c and 2·r. No reference needed."""
    out = OBJECTIVES.build("simpo")(pairs(reference=False))
    close(out.losses, [neg_logsigmoid(1.5), neg_logsigmoid(0.5), neg_logsigmoid(-6.5)])
    close(out.chosen_rewards, [-4.0, -4.0, -10.0])
    close(out.rejected_rewards, [-6.0, -5.0, -4.0])
    # β = 1, γ = 0: logits 1, 0.5, −3; a reference given anyway is ignored
    out = OBJECTIVES.build("simpo", beta=1.0, gamma=0.0)(pairs(reference=True))
    close(out.losses, [neg_logsigmoid(1.0), neg_logsigmoid(0.5), neg_logsigmoid(-3.0)])


def test_losses_are_float32_and_stable_at_large_margins() -> None:
    """bfloat16 inputs give float32 losses; a margin of ±10000 gives 0 and 1000 (β = 0.1), not inf or nan."""
    out = OBJECTIVES.build("dpo")(pairs(dtype=torch.bfloat16))
    assert out.losses.dtype == torch.float32 and out.chosen_rewards.dtype == torch.float32
    assert out.losses[2].item() == pytest.approx(math.log(2), rel=1e-6)
    big = PairLogps(
        chosen=torch.tensor([0.0, -10000.0]),
        rejected=torch.tensor([-10000.0, 0.0]),
        chosen_tokens=torch.tensor([1, 1]),
        rejected_tokens=torch.tensor([1, 1]),
        ref_chosen=torch.tensor([0.0, 0.0]),
        ref_rejected=torch.tensor([0.0, 0.0]),
    )
    for name in ("dpo", "cdpo"):
        losses = OBJECTIVES.build(name, beta=0.1)(big).losses
        assert torch.isfinite(losses).all(), name
    torch.testing.assert_close(OBJECTIVES.build("dpo")(big).losses, torch.tensor([0.0, 1000.0]))
    simpo = OBJECTIVES.build("simpo")(PairLogps(big.chosen, big.rejected, big.chosen_tokens, big.rejected_tokens))
    torch.testing.assert_close(simpo.losses, torch.tensor([0.0, 20000.5]))


def test_registry_defaults_and_flags() -> None:
    """Each objective is built by name with keyword-only options and the documented defaults."""
    assert OBJECTIVES.options("dpo") == {"beta": 0.1}
    assert OBJECTIVES.options("ipo") == {"beta": 0.1}
    assert OBJECTIVES.options("cdpo") == {"beta": 0.1, "label_smoothing": 0.1}
    assert OBJECTIVES.options("hinge") == {"beta": 0.1}
    assert OBJECTIVES.options("simpo") == {"beta": 2.0, "gamma": 0.5}
    for name in ("dpo", "ipo", "cdpo", "hinge", "simpo"):
        objective = OBJECTIVES.build(name)
        assert isinstance(objective, PreferenceObjective)
        assert objective.kind == "preference"
        assert objective.reference_free is (name == "simpo")
    assert "causal_lm" in OBJECTIVES.names()  # the one registry, shared with pretraining


@pytest.mark.parametrize("name", ["dpo", "ipo", "cdpo", "hinge", "simpo"])
@pytest.mark.parametrize("beta", [0, -0.1, float("nan"), float("inf"), "0.1", True, None])
def test_bad_beta_is_a_config_error_naming_the_setting(name: str, beta: object) -> None:
    with pytest.raises(ConfigError, match=r"objective\.beta must be a positive number, got .*objective\.beta="):
        OBJECTIVES.build(name, beta=beta)


@pytest.mark.parametrize("value", [0.5, 0.7, -0.1, float("nan"), "0.1"])
def test_bad_label_smoothing(value: object) -> None:
    fix = r"; it is the probability that a label is wrong \(e\.g\. objective\.label_smoothing=0\.1\)$"
    with pytest.raises(ConfigError, match=r"objective\.label_smoothing must be a number in \[0.0, 0.5\)" + ".*" + fix):
        OBJECTIVES.build("cdpo", label_smoothing=value)


@pytest.mark.parametrize("value", [-0.5, float("inf"), float("nan"), None])
def test_bad_gamma(value: object) -> None:
    with pytest.raises(
        ConfigError,
        match=r"objective\.gamma must be a finite number >= 0.0.*it is the target reward margin "
        r"\(e\.g\. objective\.gamma=0\.5\)$",
    ):
        OBJECTIVES.build("simpo", gamma=value)


def test_unknown_options_and_names_are_refused() -> None:
    with pytest.raises(RegistryError, match="objective 'dpo' has no option 'gamma'; its options are: beta"):
        OBJECTIVES.build("dpo", gamma=0.5)
    with pytest.raises(RegistryError, match="'ipo' has no option 'label_smoothing'"):
        OBJECTIVES.build("ipo", label_smoothing=0.1)
    with pytest.raises(RegistryError, match="'simpo' has no option 'label_smoothing'; its options are: beta, gamma"):
        OBJECTIVES.build("simpo", label_smoothing=0.1)
    with pytest.raises(RegistryError, match="unknown objective 'orpo'; choose one of: causal_lm, cdpo, dpo, hinge"):
        OBJECTIVES.build("orpo")
    with pytest.raises(TypeError):  # options are keyword-only
        OBJECTIVES.build("dpo", 0.1)


@pytest.mark.parametrize("name", ["dpo", "ipo", "cdpo", "hinge"])
def test_a_missing_reference_is_a_clear_error(name: str) -> None:
    with pytest.raises(ValueError, match=f"the {name} objective needs the reference model's log-probabilities"):
        OBJECTIVES.build(name)(pairs(reference=False))
    p = pairs()
    with pytest.raises(ValueError, match="reference-free objective such as simpo"):
        OBJECTIVES.build(name)(PairLogps(p.chosen, p.rejected, p.chosen_tokens, p.rejected_tokens, p.ref_chosen))


def test_mismatched_shapes_are_refused() -> None:
    p = pairs()
    with pytest.raises(ValueError, match=r"same shape \(B,\)"):
        short = PairLogps(p.chosen, p.rejected[:2], p.chosen_tokens, p.rejected_tokens, p.ref_chosen, p.ref_rejected)
        OBJECTIVES.build("dpo")(short)
    with pytest.raises(ValueError, match=r"must have shape \(B,\), got \(1, 3\)"):
        OBJECTIVES.build("simpo")(PairLogps(p.chosen[None], p.rejected[None], p.chosen_tokens, p.rejected_tokens))
