"""Scoring and continuing token sequences with a GPT, in batches: what the lm-evaluation-harness adapter asks for.

- `split_request`: the token ids of a (context, continuation) text pair;
- `windows`: the model-sized windows that score the tail of a sequence, each token given as much of what
  precedes it as the context (block_size) holds: one window, left-truncated, when the scored tokens fit;
  several, each with a full context, when they do not (the harness's rolling log-likelihood);
- `score_sequences`: the summed log-probability of each sequence's scored tail and whether greedy decoding
  would have produced it, windows of many sequences run together (right-padded, one forward per batch);
- `continue_until`: greedy or sampled continuations of several prompts with the key/value cache, each cut before
  its first stop string, stopping as soon as every row has met one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from llm.infer.generate import GenerationSettings, decode, start_tokens
from llm.model import GPT
from llm.tokenizer import Tokenizer

PAD_ID = 0  # any valid id: right padding sits after every real token, which causal attention never lets it see


@dataclass(frozen=True)
class Window:
    """At most block_size + 1 tokens: the model reads tokens[:-1] and the last `scored` tokens are scored."""

    tokens: list[int]
    scored: int


def split_request(tokenizer: Tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Token ids of the context and of the continuation.

    An empty context conditions on the start token (end-of-text, or a newline without one). Spaces that end the
    context are moved to the continuation (most tokenizers attach a space to the word after it). The two texts
    are encoded together and split after the context's own tokens, so the continuation is tokenized as the model
    saw such text in training; where a token would straddle the boundary (the joint encoding does not begin with
    the context's tokens) the two are encoded separately instead, so no continuation text is ever scored as
    context.
    """
    if not context:
        return start_tokens(tokenizer), tokenizer.encode(continuation)
    stripped = context.rstrip()
    if stripped:
        context, continuation = stripped, context[len(stripped) :] + continuation
    head = tokenizer.encode(context)
    whole = tokenizer.encode(context + continuation)
    if whole[: len(head)] == head:
        return head, whole[len(head) :]
    return head, tokenizer.encode(continuation)


def windows(tokens: Sequence[int], first: int, block_size: int) -> list[Window]:
    """Windows that score tokens[first:], each token conditioned on up to block_size tokens before it.

    The scored tokens are taken in runs of at most block_size from the front; each run's window ends with it
    and reaches back block_size + 1 tokens (or to the start), so every token is scored exactly once and the
    last run keeps a full context. Needs first >= 1: the first token has nothing to condition on."""
    if first < 1:
        raise ValueError(f"the first scored token must have a token before it, got first={first}")
    out = []
    start = first
    while start < len(tokens):
        end = min(len(tokens), start + block_size)
        out.append(Window(list(tokens[max(0, end - block_size - 1) : end]), end - start))
        start = end
    return out


def is_truncated(tokens: Sequence[int], block_size: int) -> bool:
    """Whether a sequence outgrows one window (block_size + 1 tokens), so its start is cut off for some of the
    scored tokens: the harness's left truncation of a long request."""
    return len(tokens) > block_size + 1


@torch.no_grad()
def score_windows(model: GPT, items: Sequence[Window], batch_size: int) -> list[tuple[float, bool]]:
    """(summed log-probability of the scored tokens, all of them the argmax) for each window.

    Windows are run longest first in batches of `batch_size`, right-padded, one forward a batch."""
    device = next(model.parameters()).device
    order = sorted(range(len(items)), key=lambda i: -len(items[i].tokens))
    out: list[tuple[float, bool]] = [(0.0, True)] * len(items)
    for at in range(0, len(order), batch_size):
        batch = [items[i] for i in order[at : at + batch_size]]
        width = max(len(w.tokens) for w in batch) - 1
        inputs = torch.full((len(batch), width), PAD_ID, dtype=torch.long)
        for row, w in enumerate(batch):
            inputs[row, : len(w.tokens) - 1] = torch.tensor(w.tokens[:-1])
        logits = model(inputs.to(device))
        for row, (i, w) in enumerate(zip(order[at : at + batch_size], batch, strict=True)):
            end = len(w.tokens) - 1  # the logits at end - 1 predict the last token
            logp = torch.log_softmax(logits[row, end - w.scored : end].float(), dim=-1)
            targets = torch.tensor(w.tokens[-w.scored :], device=logp.device)
            picked = logp.gather(-1, targets[:, None]).squeeze(-1)
            out[i] = (float(picked.sum()), bool((logp.argmax(-1) == targets).all()))
    return out


def score_sequences(
    model: GPT, sequences: Sequence[tuple[Sequence[int], int]], batch_size: int
) -> list[tuple[float, bool]]:
    """For each (tokens, first): the summed log-probability of tokens[first:] and whether greedy decoding gives
    them all; a sequence with nothing to score gives (0.0, True)."""
    block_size = model.config.block_size
    owners: list[int] = []
    items: list[Window] = []
    for n, (tokens, first) in enumerate(sequences):
        for w in windows(tokens, first, block_size):
            owners.append(n)
            items.append(w)
    totals = [0.0] * len(sequences)
    greedy = [True] * len(sequences)
    for n, (logp, best) in zip(owners, score_windows(model, items, batch_size), strict=True):
        totals[n] += logp
        greedy[n] = greedy[n] and best
    return list(zip(totals, greedy, strict=True))


def cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """`text` up to its first stop string (excluded), and whether one was found."""
    found = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return (text[: min(found)], True) if found else (text, False)


def continue_until(
    model: GPT,
    tokenizer: Tokenizer,
    prompts: Sequence[Sequence[int]],
    settings: GenerationSettings,
    stops: Sequence[str] = (),
    generator: torch.Generator | None = None,
) -> list[str]:
    """The continuation text of each prompt, at most settings.max_new_tokens tokens, cut before its first stop
    string or end-of-text token. Prompts run together with the key/value cache (left-padded); decoding ends
    once every row has stopped."""
    eot = tokenizer.eot_id
    ids: list[list[int]] = [[] for _ in prompts]
    texts: list[str | None] = [None] * len(prompts)  # the final text of a row that has stopped
    for step in decode(model, prompts, settings, generator):
        for row, token in enumerate(step):
            if texts[row] is not None:
                continue
            if token == eot:
                texts[row] = cut_at_stop(tokenizer.decode(ids[row]), stops)[0]
                continue
            ids[row].append(token)
            text, stopped = cut_at_stop(tokenizer.decode(ids[row]), stops)
            if stopped:
                texts[row] = text
        if all(t is not None for t in texts):
            break
    return [t if t is not None else cut_at_stop(tokenizer.decode(i), stops)[0] for t, i in zip(texts, ids, strict=True)]
