"""Next-token cross-entropy, and the per-sequence log-probability that later objectives build on.

Objectives are registry entries built by name from config (`objective=...`); language-modelling ones
(`kind = "lm"`) are called as `objective(logits, targets)` and return the mean loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from llm.registry import Registry

OBJECTIVES: Registry = Registry("objective")
IGNORE_INDEX = -100


def causal_lm_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy (nats per token) of logits (B, T, V) against next tokens (B, T); -100 is ignored."""
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_INDEX)


def sequence_logprobs(logits: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
    """Summed log p(target) per sequence over positions where mask is true: (B, T, V), (B, T), (B, T) -> (B,)."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    picked = logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # (B, T)
    return (picked * mask.to(picked.dtype)).sum(dim=-1)


class LanguageModeling:
    """Mean next-token cross-entropy over the target positions that are not IGNORE_INDEX."""

    kind = "lm"
    loss = staticmethod(causal_lm_loss)

    def compile(self, mode: str | None = None) -> None:
        """Compiles the loss (`compile=true` does, with the network; `mode` is torch.compile's): one fused pass
        over the logits, which are otherwise copied to fp32 whole before the softmax (at a 50k vocabulary, as large
        as the network's activations)."""
        self.loss = torch.compile(causal_lm_loss, mode=mode)

    def __call__(self, logits: Tensor, targets: Tensor) -> Tensor:
        return self.loss(logits, targets)


@OBJECTIVES.register("causal_lm")
class CausalLM(LanguageModeling):
    """Pretraining: every position of a window predicts the next token."""


@OBJECTIVES.register("sft")
class SFT(LanguageModeling):
    """Supervised fine-tuning: the loss on response tokens only (the SFT data marks the rest IGNORE_INDEX)."""
