"""An evaluation during training: every N optimizer steps, loss, perplexity and bits per byte of a fixed text.

Configured by the `eval` block of train.yaml (off while eval.every_n_steps is null). The text is a UTF-8 file
(eval.path) or the run's validation split, cut to its first eval.max_tokens tokens once, before training; it is
scored as `llm eval` scores it (llm/eval/perplexity.py: windows of eval.window tokens, eval.stride new targets a
window), with the network in evaluation mode and without gradients. eval/loss, eval/perplexity and
eval/bits_per_byte go to every logger of the run (metrics.csv, TensorBoard, wandb, MLflow), at the step of the
train/loss row of the optimizer step just taken, as validation metrics are. In a distributed run rank 0 scores (under
FSDP on the weights gathered from every process).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
from omegaconf import DictConfig

from llm.errors import ConfigError
from llm.eval.perplexity import check_length, check_window, score_tokens
from llm.eval.texts import encoded, read_utf8
from llm.lit.sharding import whole_network
from llm.tokenizer import Tokenizer


class TextEvaluation(L.Callback):
    """Scores `ids` (tokens of `tokenizer`) every `every_n_steps` optimizer steps and logs eval/*."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        ids: np.ndarray,
        every_n_steps: int,
        *,
        window: int,
        stride: int,
        batch_size: int,
    ) -> None:
        self.tokenizer, self.ids, self.every_n_steps = tokenizer, ids, every_n_steps
        self.window, self.stride, self.batch_size = window, stride, batch_size
        self.done_at = -1  # the optimizer step last evaluated (micro-batches of one step share it)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        step = trainer.global_step
        if step == 0 or step % self.every_n_steps or step == self.done_at:
            return
        self.done_at = step
        network = whole_network(trainer, pl_module.model)  # type: ignore[arg-type]
        if network is None or not trainer.is_global_zero:
            return
        score = score_tokens(
            network,
            self.tokenizer,
            self.ids,
            window=self.window,
            stride=self.stride,
            batch_size=self.batch_size,
        )
        metrics = {
            "eval/loss": score.loss,
            "eval/perplexity": score.perplexity,
            "eval/bits_per_byte": score.bits_per_byte,
        }
        for logger in trainer.loggers:  # straight to the loggers: pl_module.log waits for log_every_n_steps
            logger.log_metrics(metrics, step=step - 1)


def evaluation_tokens(node: DictConfig, tokenizer: Tokenizer, datamodule: Any) -> tuple[np.ndarray, str]:
    """The tokens to score and what they are: eval.path, or the validation split of a pretraining run (only its
    first eval.max_tokens + 1 are read from the token file, so a large split is never loaded whole)."""
    from llm.data.tokens import TokenSplits

    if node.get("path") is not None:
        path = str(node.path)
        return encoded(tokenizer, read_utf8(Path(path), "eval.path"), f"eval.path={path}"), f"eval.path={path}"
    splits = getattr(datamodule, "splits", None)
    if not isinstance(splits, TokenSplits):
        raise ConfigError(
            "eval.path=null scores the validation split of a pretraining corpus, and this run has none; give "
            "eval.path=<a UTF-8 text file>"
        )
    limit = node.get("max_tokens")
    val = splits.val if limit is None else splits.val[: limit + 1]  # one more, so a longer split is seen as such
    return np.asarray(val, dtype=np.int64), "the validation split"


def evaluation_callbacks(node: DictConfig | None, tokenizer: Tokenizer, datamodule: Any, block_size: int) -> list:
    """[TextEvaluation] as the `eval` block asks, or [] when eval.every_n_steps is null (or there is no block)."""
    if node is None or node.get("every_n_steps") is None:
        return []
    window, stride = check_window(node.get("window"), node.get("stride"), block_size, "eval.")
    ids, what = evaluation_tokens(node, tokenizer, datamodule)
    limit = node.get("max_tokens")
    if limit is not None and len(ids) > limit:
        ids = ids[:limit]
        what, longer = f"{what} (its first eval.max_tokens={limit} tokens)", "more of it (a larger eval.max_tokens)"
    else:
        longer = "a longer text (eval.path=FILE)"
    check_length(len(ids), window, what, "eval.window", longer)
    every, batch_size = int(node.every_n_steps), int(node.get("batch_size") or 8)
    return [TextEvaluation(tokenizer, ids, every, window=window, stride=stride, batch_size=batch_size)]
