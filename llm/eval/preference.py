"""Preference evaluation of a policy against its reference.

- `preference_eval`: on held-out preference pairs (the JSONL that `llm dpo` reads), the implicit rewards
  r(y) = β·(log π(y|x) − log π_ref(y|x)): how often the chosen response's reward beats the rejected one's
  (a tie counts as a miss), the mean margin and the mean rewards. Pairs are tokenized and truncated exactly as
  for training (llm/data/preference.py), so the numbers match the DPO run's validation rewards.
- `win_rate`: the policy and the reference each continue the same prompts with the same settings and seed; a
  user's function `fn(prompt, completion) -> number` scores each continuation; the policy wins a prompt when
  its score is higher, a tie counts half.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from llm.data.preference import EncodedPair, collate_pairs, encode_pair
from llm.data.preference_io import read_pairs
from llm.errors import ConfigError
from llm.eval.rewards import RewardFn, call_reward, load_reward_fn
from llm.eval.scoring import continue_until
from llm.export import load_model_dir
from llm.infer.generate import GenerationSettings, start_tokens
from llm.model import GPT
from llm.objectives import IGNORE_INDEX, sequence_logprobs
from llm.objectives.preference import check_beta
from llm.tokenizer import Tokenizer

EXAMPLES = 5  # continuations kept in win_rate's result, to read


def load_pair_of_models(policy_dir: str | Path, reference_dir: str | Path, device: str) -> tuple[GPT, GPT, Tokenizer]:
    """Policy, reference and their shared tokenizer; models with different tokenizers are refused."""
    policy, tokenizer = load_model_dir(policy_dir, device)
    reference, ref_tokenizer = load_model_dir(reference_dir, device)
    if tokenizer.to_dict() != ref_tokenizer.to_dict() or policy.config.vocab_size != reference.config.vocab_size:
        raise ConfigError(
            f"the policy {policy_dir} and the reference {reference_dir} have different tokenizers or vocabularies; "
            "compare a policy with the model it was trained from"
        )
    return policy, reference, tokenizer


def check_batch_size(batch_size: int) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive whole number, got {batch_size!r}")
    return batch_size


@torch.no_grad()
def response_logps(model: GPT, pairs: Sequence[EncodedPair], batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probabilities of the chosen and of the rejected responses of every pair, (N,) each."""
    device = next(model.parameters()).device
    chosen, rejected = [], []
    for at in range(0, len(pairs), batch_size):
        batch = collate_pairs(list(enumerate(pairs[at : at + batch_size])))
        targets = batch["targets"].to(device)
        logps = sequence_logprobs(model(batch["input_ids"].to(device)), targets, targets != IGNORE_INDEX).cpu()
        half = logps.numel() // 2
        chosen.append(logps[:half])
        rejected.append(logps[half:])
    return torch.cat(chosen), torch.cat(rejected)


def preference_eval(
    policy_dir: str | Path,
    reference_dir: str | Path,
    pairs_path: str | Path,
    *,
    beta: float = 0.1,
    batch_size: int = 8,
    device: str = "cpu",
    prompt_budget: int | None = None,
) -> dict[str, Any]:
    """Implicit-reward accuracy and margins of a policy against its reference on preference pairs.

    pairs_path: JSONL of {prompt, chosen, rejected} (or Anthropic HH dialogues, gzip, parquet, hf:GLOB: whatever
    `llm dpo` reads). prompt_budget: prompt tokens kept (default half the context), as data.prompt_budget in
    training. Returns {"pairs", "accuracy", "margin", "chosen_reward", "rejected_reward", "beta", "dropped",
    "prompt_truncated", "response_truncated"}; rewards are β·(log π − log π_ref) summed over response tokens,
    accuracy the share of pairs whose chosen reward is strictly higher, margin the mean chosen − rejected.
    """
    beta = check_beta(beta)
    batch_size = check_batch_size(batch_size)
    policy, reference, tokenizer = load_pair_of_models(policy_dir, reference_dir, device)
    block_size = min(policy.config.block_size, reference.config.block_size)
    raw, stats = read_pairs(pairs_path)
    encoded = [encode_pair(pair, tokenizer, block_size, prompt_budget) for pair in raw]
    pairs = [p for p in encoded if p is not None]
    if not pairs:
        raise ConfigError(
            f"{pairs_path}: no pair keeps a response token within the context of {block_size} tokens; "
            "use shorter prompts or a smaller prompt_budget"
        )
    chosen, rejected = response_logps(policy, pairs, batch_size)
    ref_chosen, ref_rejected = response_logps(reference, pairs, batch_size)
    chosen_rewards = beta * (chosen - ref_chosen)
    rejected_rewards = beta * (rejected - ref_rejected)
    margins = chosen_rewards - rejected_rewards
    return {
        "pairs": len(pairs),
        "accuracy": float((margins > 0).float().mean()),
        "margin": float(margins.mean()),
        "chosen_reward": float(chosen_rewards.mean()),
        "rejected_reward": float(rejected_rewards.mean()),
        "beta": beta,
        "dropped": stats.identical + len(encoded) - len(pairs),
        "prompt_truncated": sum(p.prompt_cut > 0 for p in pairs),
        "response_truncated": sum(p.response_cut > 0 for p in pairs),
    }


def read_prompts(source: Sequence[str] | str | Path) -> list[str]:
    """Prompts from a list of strings, or from a file: JSONL (each object's "prompt", so held-out preference
    pairs serve) or plain text, one prompt a line. A bare string is a file path."""
    if not isinstance(source, str | Path):
        prompts = list(source)
        if not all(isinstance(p, str) for p in prompts):
            raise ConfigError("prompts must be strings, or the path of a file of prompts")
    else:
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"prompts file {path} does not exist (looked from {Path.cwd()}); check the path")
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        prompts = [prompt_of(line, path, n) for n, line in enumerate(lines, 1)] if path.suffix == ".jsonl" else lines
    if not prompts:
        raise ConfigError(f"no prompts in {source}; give at least one")
    return prompts


def prompt_of(line: str, path: Path, number: int) -> str:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path} line {number} is not JSON ({err.msg}); each line must be an object") from None
    if not isinstance(record, dict) or not isinstance(record.get("prompt"), str):
        raise ConfigError(f'{path} line {number} has no "prompt" text; each line must be {{"prompt": "..."}}')
    return record["prompt"]


def continuations(
    model: GPT, tokenizer: Tokenizer, prompts: Sequence[str], settings: GenerationSettings, batch_size: int
) -> list[str]:
    """Each prompt's continuation (to end-of-text or max_new_tokens), a fresh generator seeded from settings."""
    block_size = model.config.block_size
    ids = [(tokenizer.encode(p) if p else start_tokens(tokenizer))[-block_size:] for p in prompts]
    generator = torch.Generator().manual_seed(settings.seed if settings.seed is not None else 0)
    out: list[str] = []
    for at in range(0, len(ids), batch_size):
        out += continue_until(model, tokenizer, ids[at : at + batch_size], settings, (), generator)
    return out


def win_rate(
    policy_dir: str | Path,
    reference_dir: str | Path,
    prompts: Sequence[str] | str | Path,
    reward_fn: str | RewardFn,
    *,
    max_new_tokens: int = 64,
    temperature: float = 0.0,
    seed: int = 0,
    batch_size: int = 8,
    device: str = "cpu",
) -> dict[str, Any]:
    """The win rate of the policy's continuations over the reference's, scored by `reward_fn(prompt, completion)`.

    prompts: a list, or a file (JSONL with "prompt", or one prompt a line). reward_fn: a callable or
    "module:function" / "path/to/file.py:function". Both models continue every prompt with the same settings and
    seed (temperature 0: greedy). Returns {"prompts", "win_rate", "wins", "ties", "losses", "policy_score",
    "reference_score", "reward_fn", "examples"}: win_rate = (wins + ties / 2) / prompts, scores are means, and
    examples the first few prompts with both continuations and their scores.
    """
    fn, name = load_reward_fn(reward_fn)
    texts = read_prompts(prompts)
    batch_size = check_batch_size(batch_size)
    policy, reference, tokenizer = load_pair_of_models(policy_dir, reference_dir, device)
    settings = GenerationSettings(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
    ours = continuations(policy, tokenizer, texts, settings, batch_size)
    theirs = continuations(reference, tokenizer, texts, settings, batch_size)
    ours_scores = [call_reward(fn, name, p, c) for p, c in zip(texts, ours, strict=True)]
    theirs_scores = [call_reward(fn, name, p, c) for p, c in zip(texts, theirs, strict=True)]
    wins = sum(a > b for a, b in zip(ours_scores, theirs_scores, strict=True))
    ties = sum(a == b for a, b in zip(ours_scores, theirs_scores, strict=True))
    n = len(texts)
    return {
        "prompts": n,
        "win_rate": (wins + ties / 2) / n,
        "wins": wins,
        "ties": ties,
        "losses": n - wins - ties,
        "policy_score": sum(ours_scores) / n,
        "reference_score": sum(theirs_scores) / n,
        "reward_fn": name,
        "examples": [
            {"prompt": p, "policy": a, "reference": b, "policy_score": x, "reference_score": y}
            for p, a, b, x, y in list(zip(texts, ours, theirs, ours_scores, theirs_scores, strict=True))[:EXAMPLES]
        ],
    }
