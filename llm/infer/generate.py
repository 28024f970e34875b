"""Autoregressive generation on the model's inference interface: one prefill, then one token per step with the
key/value cache.

- `generate_batch(model, prompts, settings)`: several prompts of different lengths at once (left-padded);
- `stream(model, prompt, settings)`: a generator yielding each new token id as soon as it is chosen;
- `stream_text` / `complete`: the same as text, cut before the first stop string;
- `stream_pieces`: the text of each new token with the count so far and, at the end, why it ended (the server);
- `generate` and `sample_text`: the original single-prompt calls, now on top of these.

Context policy (`GenerationSettings.context`), when prompt and new tokens outgrow the model's block_size:
- "slide" (the default): the model always conditions on at most the last block_size tokens, at positions
  0 .. block_size-1, exactly as in training. While they fit, each step is one cached token; once the window is
  full, each step rebuilds the cache from the last block_size tokens (a fresh prefill), so a full window costs what
  the uncached window did. A prompt longer than the context is cropped to its last block_size tokens, except with
  learned positions, which refuse it.
- "error": refuse, before any work, a prompt whose length plus max_new_tokens - 1 exceeds block_size.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from llm.errors import ConfigError
from llm.infer.sampling import next_token
from llm.model import GPT
from llm.model.kv_cache import KVCache
from llm.tokenizer import Tokenizer

__all__ = [
    "CONTEXT_POLICIES",
    "GenerationSettings",
    "Completion",
    "Piece",
    "complete",
    "complete_batch",
    "generate",
    "generate_batch",
    "next_token",
    "sample_text",
    "start_tokens",
    "stream",
    "stream_pieces",
    "stream_text",
]

CONTEXT_POLICIES = ("slide", "error")


@dataclass(frozen=True)
class GenerationSettings:
    """How to continue prompts; see the module's docstring for `context`."""

    max_new_tokens: int = 100
    temperature: float = 1.0  # 0: greedy
    top_k: int | None = None  # None: the whole vocabulary
    top_p: float | None = None  # None (or 1): no nucleus cut
    repetition_penalty: float = 1.0  # 1: none
    seed: int | None = None  # for a generator of its own when none is passed
    context: str = "slide"
    use_cache: bool = True  # False: every step recomputes the whole window (for comparison and benchmarks)

    def __post_init__(self) -> None:
        if self.context not in CONTEXT_POLICIES:
            raise ConfigError(f"context={self.context!r} is not a context policy; use one of {CONTEXT_POLICIES}")
        if self.temperature < 0:
            raise ConfigError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.repetition_penalty <= 0:
            raise ConfigError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")


def prefill(model: GPT, rows: list[list[int]], device: torch.device) -> tuple[Tensor, KVCache]:
    """Last-position logits (B, 1, V) and the cache of rows of different lengths, left-padded: each row's
    positions start at 0 at its first real token and its padding is masked out."""
    lengths = [len(r) for r in rows]
    width = max(lengths)
    idx = torch.tensor([[0] * (width - len(r)) + r for r in rows], dtype=torch.long, device=device)
    if min(lengths) == width:
        return model.infer(idx, last_only=True)
    pad = torch.tensor([width - n for n in lengths], device=device)[:, None]
    columns = torch.arange(width, device=device)[None]
    return model.infer(idx, pos=(columns - pad).clamp(min=0), key_mask=columns >= pad, last_only=True)


def check_prompts(model: GPT, prompts: Sequence[Sequence[int]], settings: GenerationSettings) -> None:
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ConfigError("generation needs a prompt of at least one token")
    longest, context = max(len(p) for p in prompts), model.config.block_size
    limit = model.position.max_positions
    if limit is not None and longest > limit:
        raise ConfigError(
            f"the prompt is {longest} tokens but the model's learned position table holds {limit}; "
            f"shorten the prompt to at most {limit} tokens"
        )
    if settings.context == "error" and longest + settings.max_new_tokens - 1 > context:
        raise ConfigError(
            f"a prompt of {longest} tokens and max_new_tokens={settings.max_new_tokens} need "
            f"{longest + settings.max_new_tokens - 1} positions but the model's context (block_size) is {context}; "
            "shorten the prompt, lower max_new_tokens, or use context='slide'"
        )


@torch.inference_mode()
def decode(
    model: GPT,
    prompts: Sequence[Sequence[int]],
    settings: GenerationSettings,
    generator: torch.Generator | None = None,
) -> Iterator[list[int]]:
    """Yields, step by step, the next token of every prompt (a list of B ids), max_new_tokens times."""
    check_prompts(model, prompts, settings)
    if generator is None and settings.seed is not None:
        generator = torch.Generator().manual_seed(settings.seed)
    device = next(model.parameters()).device
    context = model.config.block_size
    seqs = [list(p) for p in prompts]
    seen = None
    if settings.repetition_penalty != 1.0:
        seen = torch.zeros(len(seqs), model.config.vocab_size, dtype=torch.bool)
        for i, p in enumerate(seqs):
            seen[i, p] = True
    logits, cache = prefill(model, [s[-context:] for s in seqs], device)
    length = min(max(len(s) for s in seqs), context)  # columns in the cache, padding included
    for n in range(settings.max_new_tokens):
        s = settings
        tokens = next_token(logits[:, -1], s.temperature, s.top_k, generator, s.top_p, s.repetition_penalty, seen)
        new = tokens.flatten().tolist()
        yield new
        for i, t in enumerate(new):
            seqs[i].append(t)
            if seen is not None:
                seen[i, t] = True
        if n + 1 == settings.max_new_tokens:
            break
        if length + 1 > context or not settings.use_cache:  # the window is full: slide it, rebuilding the cache
            logits, cache = prefill(model, [s[-context:] for s in seqs], device)
            length = min(length + 1, context)
        else:
            logits, cache = model.infer(tokens.to(device), cache=cache, last_only=True)
            length += 1


def generate_batch(
    model: GPT,
    prompts: Sequence[Sequence[int]],
    settings: GenerationSettings,
    generator: torch.Generator | None = None,
) -> list[list[int]]:
    """The new tokens of each prompt (prompts of different lengths run together, left-padded)."""
    out: list[list[int]] = [[] for _ in prompts]
    for step in decode(model, prompts, settings, generator):
        for row, t in zip(out, step, strict=True):
            row.append(t)
    return out


def stream(
    model: GPT, prompt: Sequence[int], settings: GenerationSettings, generator: torch.Generator | None = None
) -> Iterator[int]:
    """Yields the new token ids of one prompt as they are chosen."""
    for step in decode(model, [prompt], settings, generator):
        yield step[0]


@dataclass(frozen=True)
class Piece:
    """One step of `stream_pieces`: the text it releases (may be empty), the tokens generated so far, and why
    generation ended on the last piece ("stop": a stop string or end-of-text; "length": max_new_tokens)."""

    text: str
    tokens: int
    finish: str | None = None


def stream_pieces(
    model: GPT,
    tokenizer: Tokenizer,
    prompt: Sequence[int],
    settings: GenerationSettings,
    stop: Sequence[str] = (),
    generator: torch.Generator | None = None,
    stop_at_eot: bool = False,
) -> Iterator[Piece]:
    """One Piece per new token: the continuation's text as it comes, ending before the first stop string
    (excluded), or before the end-of-text token when `stop_at_eot`; the last piece says why it ended.

    Text that could still become a stop string (or an unfinished character) is held back until it cannot."""
    stop = [s for s in stop if s]
    hold = max((len(s) for s in stop), default=1) - 1
    eot = tokenizer.eot_id if stop_at_eot else None
    ids: list[int] = []
    sent = 0
    for token in stream(model, prompt, settings, generator):
        if token == eot:
            yield Piece(tokenizer.decode(ids)[sent:], len(ids) + 1, "stop")
            return
        ids.append(token)
        text = tokenizer.decode(ids)
        found = [i for i in (text.find(s, max(0, sent - hold)) for s in stop) if i >= 0]
        if found:
            yield Piece(text[sent : max(sent, min(found))], len(ids), "stop")
            return
        safe = len(text) - hold
        while safe > sent and text[safe - 1] == "\ufffd":  # an unfinished multi-byte character
            safe -= 1
        piece = text[sent:safe] if safe > sent else ""
        sent += len(piece)
        if len(ids) == settings.max_new_tokens:
            yield Piece(piece + text[sent:], len(ids), "length")
            return
        yield Piece(piece, len(ids))
    yield Piece(tokenizer.decode(ids)[sent:], len(ids), "length")  # (the tokens ran out early: none were asked)


def stream_text(
    model: GPT,
    tokenizer: Tokenizer,
    prompt: Sequence[int],
    settings: GenerationSettings,
    stop: Sequence[str] = (),
    generator: torch.Generator | None = None,
) -> Iterator[str]:
    """Yields the continuation's text in pieces as it comes, ending before the first stop string (excluded).

    Text that could still become a stop string (or an unfinished character) is held back until it cannot."""
    for piece in stream_pieces(model, tokenizer, prompt, settings, stop, generator):
        if piece.text:
            yield piece.text


def complete(
    model: GPT,
    tokenizer: Tokenizer,
    prompt: Sequence[int],
    settings: GenerationSettings,
    stop: Sequence[str] = (),
    generator: torch.Generator | None = None,
) -> str:
    """The continuation's text (all new tokens decoded together), cut before the first stop string."""
    stop = [s for s in stop if s]
    longest = max((len(s) for s in stop), default=0)
    ids: list[int] = []
    for token in stream(model, prompt, settings, generator):
        ids.append(token)
        if stop:
            text = tokenizer.decode(ids)
            tail = max(0, len(text) - longest - 8)  # a new token adds a few characters; look only near the end
            found = [i for i in (text.find(s, tail) for s in stop) if i >= 0]
            if found:
                return text[: min(found)]
    return tokenizer.decode(ids)


@dataclass
class Completion:
    """One prompt's continuation: its text (cut before a stop string), the tokens it took, and why it ended:
    "stop" (a stop string or the end-of-text token) or "length" (max_new_tokens)."""

    text: str = ""
    tokens: list[int] = field(default_factory=list)
    finish_reason: str | None = None


def first_stop(text: str, stop: Sequence[str], since: int) -> int:
    """Where the earliest stop string starts in text (looking from `since`), or -1."""
    found = [i for i in (text.find(s, since) for s in stop) if i >= 0]
    return min(found) if found else -1


def complete_batch(
    model: GPT,
    tokenizer: Tokenizer,
    prompts: Sequence[Sequence[int]],
    settings: GenerationSettings,
    stop: Sequence[str] = (),
    generator: torch.Generator | None = None,
    stop_at_eot: bool = True,
) -> list[Completion]:
    """Continues several prompts together; each row ends on its own at its first stop string (left out) or at the
    end-of-text token (with `stop_at_eot`), and generation ends as soon as every row has."""
    stop = [s for s in stop if s]
    longest = max((len(s) for s in stop), default=0)
    eot = tokenizer.eot_id if stop_at_eot else None
    rows = [Completion() for _ in prompts]
    for step in decode(model, prompts, settings, generator):
        for row, token in zip(rows, step, strict=True):
            if row.finish_reason is not None:
                continue
            if token == eot:
                row.text, row.finish_reason = tokenizer.decode(row.tokens), "stop"
                continue
            row.tokens.append(token)
            if stop:
                text = tokenizer.decode(row.tokens)
                cut = first_stop(text, stop, max(0, len(text) - longest - 8))
                if cut >= 0:
                    row.text, row.finish_reason = text[:cut], "stop"
        if all(row.finish_reason is not None for row in rows):
            break
    for row in rows:
        if row.finish_reason is None:
            row.text, row.finish_reason = tokenizer.decode(row.tokens), "length"
    return rows


def generate(
    model: GPT,
    prompt: list[int],
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> list[int]:
    """Extends `prompt` by `max_new_tokens` tokens, conditioning on at most the model's context."""
    settings = GenerationSettings(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k)
    return generate_batch(model, [prompt], settings, generator)[0]


def sample_text(
    model: GPT,
    tokenizer: Tokenizer,
    prompt: str,
    max_new_tokens: int,
    temperature: float = 0.8,
    top_k: int | None = 50,
    seed: int | None = None,
    *,
    top_p: float | None = None,
    repetition_penalty: float = 1.0,
    stop: Sequence[str] = (),
) -> str:
    """The prompt followed by its generated continuation. An empty prompt starts from end-of-text or a newline."""
    was_training = model.training
    model.eval()
    ids = tokenizer.encode(prompt) if prompt else start_tokens(tokenizer)
    settings = GenerationSettings(max_new_tokens, temperature, top_k, top_p, repetition_penalty, seed)
    try:
        return prompt + complete(model, tokenizer, ids, settings, stop)
    finally:
        model.train(was_training)


def start_tokens(tokenizer: Tokenizer) -> list[int]:
    if tokenizer.eot_id is not None:
        return [tokenizer.eot_id]
    return tokenizer.encode("\n")
