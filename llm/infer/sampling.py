"""Choosing the next token from logits: repetition penalty, temperature (0 = greedy), top-k, top-p.

The order is that of common practice: the penalty acts on raw logits, then temperature, then the top-k cut, then
the top-p (nucleus) cut on the tempered distribution, then one draw.
"""

from __future__ import annotations

import torch
from torch import Tensor

from llm.errors import ConfigError


def repetition_penalty(logits: Tensor, seen: Tensor, penalty: float) -> Tensor:
    """CTRL's penalty (Keskar et al., 2019): a token already seen (seen (B, V) True) has a positive logit divided
    by `penalty` and a negative one multiplied by it, so it becomes less likely for penalty > 1."""
    if penalty == 1.0:
        return logits
    penalised = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalised, logits)


def top_k_cut(logits: Tensor, top_k: int | None) -> Tensor:
    """Keeps the k largest logits of each row (ties with the k-th are kept), the rest -inf."""
    if top_k is None or top_k <= 0:
        return logits
    kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_cut(logits: Tensor, top_p: float | None) -> Tensor:
    """Keeps the smallest set of most likely tokens whose probabilities add up to at least top_p (always at least
    the most likely one), the rest -inf."""
    if top_p is None or top_p >= 1.0:
        return logits
    ordered, order = torch.sort(logits, dim=-1, descending=True)
    probs = torch.softmax(ordered.float(), dim=-1)
    before = probs.cumsum(dim=-1) - probs  # the mass of the tokens ranked above each one
    drop_sorted = before >= top_p
    drop_sorted[:, 0] = False
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def next_token(
    logits: Tensor,
    temperature: float,
    top_k: int | None,
    generator: torch.Generator | None,
    top_p: float | None = None,
    penalty: float = 1.0,
    seen: Tensor | None = None,
) -> Tensor:
    """Picks one token per row of logits (B, V) -> (B, 1): greedy at temperature 0, else sampled after the top-k
    and top-p cuts; `seen` (B, V) marks the tokens the repetition penalty applies to."""
    if temperature < 0:
        raise ConfigError(f"temperature must be >= 0, got {temperature}")
    if seen is not None:
        logits = repetition_penalty(logits, seen.to(logits.device), penalty)
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = top_p_cut(top_k_cut(logits / temperature, top_k), top_p)
    probs = torch.softmax(logits.float(), dim=-1).cpu()  # the generator lives on the CPU
    return torch.multinomial(probs, 1, generator=generator)
