"""Next-token cross-entropy, and the per-sequence log-probability that later objectives build on."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from llm.registry import Registry

OBJECTIVES: Registry = Registry("objective")
IGNORE_INDEX = -100


@OBJECTIVES.register("causal_lm")
def causal_lm_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy (nats per token) of logits (B, T, V) against next tokens (B, T); -100 is ignored."""
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_INDEX)


def sequence_logprobs(logits: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
    """Summed log p(target) per sequence over positions where mask is true: (B, T, V), (B, T), (B, T) -> (B,)."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    picked = logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # (B, T)
    return (picked * mask.to(picked.dtype)).sum(dim=-1)
