"""Autoregressive generation with temperature and top-k sampling (no KV cache yet: the window is recomputed)."""

from __future__ import annotations

import torch
from torch import Tensor

from llm.errors import ConfigError
from llm.model import GPT
from llm.tokenizer import Tokenizer


def next_token(logits: Tensor, temperature: float, top_k: int | None, generator: torch.Generator | None) -> Tensor:
    """Picks one token per row of logits (B, V): greedy at temperature 0, else sampled from the top k."""
    if temperature < 0:
        raise ConfigError(f"temperature must be >= 0, got {temperature}")
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits / temperature
    if top_k is not None and top_k > 0:
        kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits.float(), dim=-1).cpu()  # the generator lives on the CPU
    return torch.multinomial(probs, 1, generator=generator)


@torch.no_grad()
def generate(
    model: GPT,
    prompt: list[int],
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> list[int]:
    """Extends `prompt` by `max_new_tokens` tokens, conditioning on at most the model's context."""
    if not prompt:
        raise ConfigError("generation needs a prompt of at least one token")
    limit = model.position.max_positions
    if limit is not None and len(prompt) > limit:
        raise ConfigError(
            f"the prompt is {len(prompt)} tokens but the model's learned position table holds {limit}; "
            f"shorten the prompt to at most {limit} tokens"
        )
    device = next(model.parameters()).device
    ids = torch.tensor([prompt], dtype=torch.long, device=device)
    context = model.config.block_size
    for _ in range(max_new_tokens):
        logits = model(ids[:, -context:])[:, -1, :]  # (1, V)
        ids = torch.cat([ids, next_token(logits, temperature, top_k, generator).to(device)], dim=1)
    return ids[0, len(prompt) :].tolist()


def sample_text(
    model: GPT,
    tokenizer: Tokenizer,
    prompt: str,
    max_new_tokens: int,
    temperature: float = 0.8,
    top_k: int | None = 50,
    seed: int | None = None,
) -> str:
    """The prompt followed by its generated continuation. An empty prompt starts from end-of-text or a newline."""
    was_training = model.training
    model.eval()
    ids = tokenizer.encode(prompt) if prompt else start_tokens(tokenizer)
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    new = generate(model, ids, max_new_tokens, temperature, top_k, generator)
    model.train(was_training)
    return prompt + tokenizer.decode(new)


def start_tokens(tokenizer: Tokenizer) -> list[int]:
    if tokenizer.eot_id is not None:
        return [tokenizer.eot_id]
    return tokenizer.encode("\n")
