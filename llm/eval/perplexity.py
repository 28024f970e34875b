"""Loss, perplexity and bits per byte of a model on a text, scored window by window.

Which tokens are scored. A text of N tokens t_0 .. t_{N-1} has N - 1 targets: t_i is predicted from the tokens
before it, for i = 1 .. N-1; t_0 has no context and is never scored. The model sees `window` tokens at a time
(window <= block_size; every window is exactly that long), and the targets are cut into windows:

- the first window is t_0 .. t_{W-1} and scores all of its W targets, t_1 .. t_W (target t_i sees i tokens);
- each next window ends `stride` targets after the previous one (the last one ends at t_{N-1}, so it may move on
  less) and scores only the targets that are new to it: its last `stride` (or fewer) positions.

So every target is scored exactly once, and the number scored is N - 1, whatever the stride. There are
1 + ceil((N - 1 - W) / stride) windows.

- stride = window (the default): non-overlapping windows, the cheapest. A target sees from 1 to W tokens of
  context, depending on where in its window it falls (the last window, moved back to end at t_{N-1}, gives the
  targets it adds more context).
- stride < window: sliding windows that overlap by W - stride tokens; every target after the first window sees at
  least W - stride + 1 tokens of context. stride = 1 gives each target the full W tokens (one forward per target).

The text must hold at least W + 1 tokens (one full window and its last target).

What is reported. `nats` is the summed negative log-likelihood of the scored targets (natural log), `tokens` their
number, `loss` = nats / tokens, `perplexity` = exp(loss). `bytes` is the number of UTF-8 bytes the scored targets
stand for: the bytes of t_1 .. t_{N-1}, which for a whole text is the bytes of the text less those of its first
token; `bits_per_byte` = nats / (bytes · ln 2). Bits per byte does not depend on how the text was cut into tokens,
so it compares char, byte and BPE models on the same text; loss and perplexity (per token) do not.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from llm.data.corpora import CorpusError
from llm.errors import ConfigError
from llm.model import GPT
from llm.tokenizer import Tokenizer


@dataclass(frozen=True)
class TextScore:
    """What scoring a text gave; see the module's docstring for each number."""

    nats: float
    tokens: int
    bytes: int
    windows: int
    window: int
    stride: int
    block_size: int

    @property
    def loss(self) -> float:
        return self.nats / self.tokens

    @property
    def perplexity(self) -> float:
        try:
            return math.exp(self.loss)
        except OverflowError:
            return math.inf

    @property
    def bits_per_byte(self) -> float:
        return self.nats / (self.bytes * math.log(2)) if self.bytes else math.nan

    def metrics(self) -> dict[str, Any]:
        """The numbers as eval.json holds them."""
        return {
            "loss": self.loss,
            "perplexity": self.perplexity,
            "bits_per_byte": self.bits_per_byte,
            "tokens": self.tokens,
            "bytes": self.bytes,
            "nats": self.nats,
            "windows": self.windows,
            "window": self.window,
            "stride": self.stride,
            "block_size": self.block_size,
        }


@dataclass(frozen=True)
class Window:
    """Inputs t[start : start + W], targets t[start + 1 : start + W + 1]; positions >= skip are scored."""

    start: int
    skip: int


def plan_windows(n_tokens: int, window: int, stride: int) -> list[Window]:
    """The windows that score each of the n_tokens - 1 targets once (see the module's docstring)."""
    if n_tokens < window + 1:
        raise CorpusError(f"{n_tokens} tokens are fewer than one window of {window} tokens + 1")
    windows = [Window(0, 0)]
    end = window  # the index of the last target scored so far
    while end < n_tokens - 1:
        new_end = min(end + stride, n_tokens - 1)
        windows.append(Window(new_end - window, window - (new_end - end)))
        end = new_end
    return windows


def check_window(window: int | None, stride: int | None, block_size: int, prefix: str = "") -> tuple[int, int]:
    """(window, stride) with null filled in: window = block_size, stride = window; ConfigError when out of range.
    `prefix` is where the settings are (`eval.` in train.yaml)."""
    window = block_size if window is None else window
    if not 1 <= window <= block_size:
        raise ConfigError(
            f"{prefix}window={window} must be between 1 and the model's context (block_size) of {block_size} tokens; "
            "null uses the whole context"
        )
    stride = window if stride is None else stride
    if not 1 <= stride <= window:
        raise ConfigError(
            f"{prefix}stride={stride} must be between 1 and the window of {window} tokens (stride = window: "
            "non-overlapping windows; smaller: sliding windows, each scoring its last stride tokens); null uses the "
            "window"
        )
    return window, stride


def check_length(
    n_tokens: int, window: int, what: str, window_key: str = "window", longer: str = "a longer text"
) -> None:
    """A text must hold one full window and the target after it; the message names the setting to lower."""
    if n_tokens < window + 1:
        smaller = f"{window_key}={n_tokens - 1} or less" if n_tokens >= 2 else f"{window_key}=..."
        raise CorpusError(
            f"{what} is {n_tokens} token{'s' if n_tokens != 1 else ''} long, shorter than one window of {window} "
            f"tokens + 1 (the first token is only context); score {longer}, or use a smaller window ({smaller})"
        )


def token_byte_lengths(tokenizer: Tokenizer) -> np.ndarray:
    """The UTF-8 bytes each token id stands for (a byte-level token that is part of a character counts its own
    bytes, not those of the U+FFFD its decode alone would give)."""
    return tokenizer.byte_lengths()


def scored_bytes(tokenizer: Tokenizer, ids: np.ndarray) -> int:
    """UTF-8 bytes of the scored targets t_1 .. t_{N-1}."""
    return int(token_byte_lengths(tokenizer)[np.asarray(ids[1:], dtype=np.int64)].sum())


def batches(windows: Sequence[Window], size: int) -> Iterator[Sequence[Window]]:
    for i in range(0, len(windows), size):
        yield windows[i : i + size]


@torch.no_grad()
def summed_nll(model: GPT, ids: np.ndarray, window: int, stride: int, batch_size: int) -> tuple[float, int, int]:
    """(nats, targets scored, windows) of the token ids under `model`, in evaluation mode, batch_size windows a
    forward pass."""
    plan = plan_windows(len(ids), window, stride)
    tokens = torch.from_numpy(np.asarray(ids, dtype=np.int64))
    device = next(model.parameters()).device
    positions = torch.arange(window, device=device)
    was_training = model.training
    model.eval()
    nats, scored = 0.0, 0
    try:
        for group in batches(plan, batch_size):
            rows = torch.stack([tokens[w.start : w.start + window + 1] for w in group]).to(device)
            logits = model(rows[:, :-1]).float()
            nll = F.cross_entropy(logits.flatten(0, 1), rows[:, 1:].flatten(), reduction="none").view(len(group), -1)
            keep = positions[None] >= torch.tensor([w.skip for w in group], device=device)[:, None]
            nats += float(nll[keep].double().sum())
            scored += int(keep.sum())
    finally:
        model.train(was_training)
    return nats, scored, len(plan)


def score_tokens(
    model: GPT,
    tokenizer: Tokenizer,
    ids: np.ndarray,
    *,
    window: int | None = None,
    stride: int | None = None,
    batch_size: int = 8,
    what: str = "the text",
) -> TextScore:
    """Scores token ids (of `tokenizer`) with `model`; window and stride default to the model's context."""
    block_size = model.config.block_size
    window, stride = check_window(window, stride, block_size)
    ids = np.asarray(ids, dtype=np.int64)
    check_length(len(ids), window, what)
    nats, scored, n_windows = summed_nll(model, ids, window, stride, batch_size)
    return TextScore(nats, scored, scored_bytes(tokenizer, ids), n_windows, window, stride, block_size)


def score_text(model: GPT, tokenizer: Tokenizer, text: str, **settings: Any) -> TextScore:
    """Scores a text: its tokens under `tokenizer`, see score_tokens."""
    return score_tokens(model, tokenizer, np.asarray(tokenizer.encode(text), dtype=np.int64), **settings)
