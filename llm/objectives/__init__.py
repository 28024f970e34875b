"""Training objectives as pure functions of logits and targets (or of log-probabilities), chosen by name.

Importing this package registers every objective in OBJECTIVES (explicitly, below).
"""

from llm.objectives.causal_lm import (
    IGNORE_INDEX,
    OBJECTIVES,
    SFT,
    CausalLM,
    LanguageModeling,
    causal_lm_loss,
    sequence_logprobs,
)
from llm.objectives.preference import (
    DPO,
    IPO,
    ConservativeDPO,
    Hinge,
    PairLogps,
    PreferenceLoss,
    PreferenceObjective,
    SimPO,
)

__all__ = [
    "DPO",
    "IGNORE_INDEX",
    "IPO",
    "OBJECTIVES",
    "SFT",
    "CausalLM",
    "ConservativeDPO",
    "Hinge",
    "LanguageModeling",
    "PairLogps",
    "PreferenceLoss",
    "PreferenceObjective",
    "SimPO",
    "causal_lm_loss",
    "sequence_logprobs",
]
