"""Attention: manual and fused agree exactly, nothing looks ahead, a sliding window cuts influence off."""

from __future__ import annotations

import itertools

import pytest
import torch

from llm.model import GPT, ModelConfig, Part, build_gpt
from llm.model.attention import causal_mask
from llm.model.positions import POSITIONS

VOCAB, T, N_HEAD = 13, 8, 4
POSITION_NAMES = POSITIONS.names()
KV_HEADS = [N_HEAD, 2, 1]  # multi-head, grouped-query, multi-query
WINDOWS = [None, 3]


def tiny_config(attention: str, position: str = "learned", block: str = "pre", n_layer: int = 1, **opts) -> ModelConfig:
    kv = opts.pop("n_kv_head", None)
    return ModelConfig(
        vocab_size=VOCAB,
        block_size=T,
        n_layer=n_layer,
        n_head=N_HEAD,
        n_embd=16,
        n_kv_head=kv,
        position=Part(position),
        attention=Part(attention, opts),
        block=Part(block),
    )


def seeded(config: ModelConfig, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return build_gpt(config).eval()


def tokens(batch: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, T), generator=torch.Generator().manual_seed(seed))


VARIANTS = list(itertools.product(KV_HEADS, [False, True], WINDOWS))


@pytest.mark.parametrize("block", ["pre", "post"])
@pytest.mark.parametrize("kv,qk_norm,window", VARIANTS)
@pytest.mark.parametrize("position", POSITION_NAMES)
def test_manual_and_fused_agree(position: str, kv: int, qk_norm: bool, window: int | None, block: str) -> None:
    idx = tokens()
    results = []
    for attention in ("manual", "fused"):
        model = seeded(tiny_config(attention, position, block, n_kv_head=kv, qk_norm=qk_norm, window=window))
        logits = model(idx)
        (logits * torch.linspace(-1, 1, VOCAB)).sum().backward()  # an uneven loss: gradients differ per logit
        results.append((logits, {n: p.grad for n, p in model.named_parameters()}))
    (manual, manual_grads), (fused, fused_grads) = results
    torch.testing.assert_close(fused, manual, atol=1e-5, rtol=1e-4)
    assert manual_grads.keys() == fused_grads.keys()
    for name, grad in manual_grads.items():
        assert grad is not None and grad.abs().sum() > 0, name
        torch.testing.assert_close(fused_grads[name], grad, atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("block", ["pre", "post"])
@pytest.mark.parametrize("attention", ["manual", "fused"])
@pytest.mark.parametrize("kv,qk_norm,window", [(N_HEAD, False, None), (2, True, None), (1, False, 3), (2, True, 2)])
@pytest.mark.parametrize("position", POSITION_NAMES)
def test_no_position_sees_the_future(
    position: str, kv: int, qk_norm: bool, window: int | None, attention: str, block: str
) -> None:
    model = seeded(tiny_config(attention, position, block, n_kv_head=kv, qk_norm=qk_norm, window=window))
    base = tokens(batch=1)
    variants = base.repeat(T - 1, 1)  # row t changes token t + 1 only
    for t in range(T - 1):
        variants[t, t + 1] = (base[0, t + 1] + 1) % VOCAB
    with torch.no_grad():
        reference, changed = model(base)[0], model(variants)
    for t in range(T - 1):
        torch.testing.assert_close(changed[t, : t + 1], reference[: t + 1], atol=1e-6, rtol=0)
        assert not torch.allclose(changed[t, t + 1], reference[t + 1]), "the changed token itself must matter"


@pytest.mark.parametrize("position", POSITION_NAMES)
@pytest.mark.parametrize("attention", ["manual", "fused"])
def test_sliding_window_cuts_off_older_tokens(attention: str, position: str) -> None:
    window = 3
    model = seeded(tiny_config(attention, position, n_layer=1, window=window))
    base = tokens(batch=1)
    source = 1
    changed = base.clone()
    changed[0, source] = (base[0, source] + 1) % VOCAB
    with torch.no_grad():
        delta = (model(changed) - model(base))[0].abs().amax(dim=-1)  # (T,) effect on each position
    for target in range(T):
        inside = 0 <= target - source < window
        assert (delta[target] > 1e-6) == inside, (target, delta.tolist())


def test_causal_mask_by_hand() -> None:
    expected = torch.tensor(
        [
            [1, 0, 0, 0],
            [1, 1, 0, 0],
            [0, 1, 1, 0],
            [0, 0, 1, 1],
        ],
        dtype=torch.bool,
    )
    pos = torch.arange(4)[None]
    assert torch.equal(causal_mask(pos, pos, 2)[0], expected)
    assert torch.equal(causal_mask(pos, pos, None)[0], torch.ones(4, 4).tril().bool())
    # a cached step: one query at position 3 over keys 0..3
    assert torch.equal(causal_mask(pos[:, 3:], pos, 2)[0], expected[3:])
    # by position, not by index: a left-padded row whose keys sit at positions 0, 0, 1, 2 (the first is padding)
    padded = torch.tensor([[0, 0, 1, 2]])
    assert torch.equal(causal_mask(padded[:, 3:], padded, 2)[0], torch.tensor([[0, 0, 1, 1]], dtype=torch.bool))
