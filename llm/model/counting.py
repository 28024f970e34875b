"""Parameter and training-compute counts of a GPT, for run summaries and scaling comparisons."""

from __future__ import annotations

from torch import Tensor, nn

from llm.model.config import ModelConfig
from llm.model.gpt import build_gpt


def embedding_tensors(model: nn.Module) -> list[Tensor]:
    """The lookup tables (token embedding, learned positions) and the LM head `head.weight`, tied or not."""
    tables = [m.weight for m in model.modules() if isinstance(m, nn.Embedding)]
    head = getattr(model, "head", None)
    if isinstance(head, nn.Linear):
        tables.append(head.weight)
    unique = {id(p): p for p in tables}
    return list(unique.values())


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Counts parameters, a tied tensor once.

    "params": every unique parameter tensor.
    "params_non_embedding": without the token embedding, the learned position table and the LM head
    (Kaplan et al.'s N; the same number whether or not the head is tied to the embedding).
    """
    params = sum(p.numel() for p in model.parameters())  # parameters() yields a shared tensor once
    embedding = sum(p.numel() for p in embedding_tensors(model))
    return {"params": params, "params_non_embedding": params - embedding}


def training_flops_per_token(config: ModelConfig) -> int:
    """Forward plus backward FLOPs to train on one token at full context, as in PaLM's appendix B.

    6·N + 12·n_layer·n_head·head_dim·T, where
    N = params_non_embedding + V·C: every weight that takes part in a matrix product (the LM head once,
    tied or not; norms and biases are included, the lookup tables are not), at 2 FLOPs per weight
    forward and 4 backward;
    12·n_layer·n_head·head_dim·T: the score (q·kᵀ) and value (weights·v) products, 2 + 2 FLOPs per
    query head, head dimension and key forward, three times that with backward, over
    T = block_size keys (min(window, block_size) with a sliding window). Causal masking is not discounted.
    """
    model = build_gpt(config, empty=True)  # shapes only: no memory, no initialisation
    n_matmul = count_parameters(model)["params_non_embedding"] + config.vocab_size * config.n_embd
    window = config.attention.options.get("window")
    context = config.block_size if window is None else min(int(window), config.block_size)
    attention = 12 * config.n_layer * config.n_head * config.head_dim * context
    return 6 * n_matmul + attention
