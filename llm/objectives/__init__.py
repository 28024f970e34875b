"""Training objectives as pure functions of logits and targets, chosen by name."""

from llm.objectives.causal_lm import OBJECTIVES, causal_lm_loss, sequence_logprobs

__all__ = ["OBJECTIVES", "causal_lm_loss", "sequence_logprobs"]
