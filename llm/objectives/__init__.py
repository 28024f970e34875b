"""Training objectives as pure functions of logits and targets, chosen by name from the OBJECTIVES registry."""

from llm.objectives.causal_lm import (
    IGNORE_INDEX,
    OBJECTIVES,
    SFT,
    CausalLM,
    LanguageModeling,
    causal_lm_loss,
    sequence_logprobs,
)

__all__ = [
    "IGNORE_INDEX",
    "OBJECTIVES",
    "SFT",
    "CausalLM",
    "LanguageModeling",
    "causal_lm_loss",
    "sequence_logprobs",
]
