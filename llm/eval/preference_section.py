"""The `preference` section of `llm eval`: the model as a policy against its reference (llm/eval/preference.py).

    llm eval model=runs/dpo/model preference.reference=runs/sft/model preference.pairs=held_out.jsonl
    llm eval model=runs/dpo/model preference.reference=runs/sft/model preference.reward=check.py:score \
        preference.prompts=prompts.txt

Off while preference.reference is null. preference.pairs gives the implicit-reward accuracy and margins on
held-out pairs; preference.reward (a function fn(prompt, completion) -> number) the win rate of the model's
continuations over the reference's, on preference.prompts or, when that is null, on the prompts of the pairs.
`check` reads the reference's config and tokenizer, the pairs and the prompts, and imports the reward function
before any section runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from rich.table import Table

from llm.data.preference import encode_pair
from llm.data.preference_io import HF_PREFIX, read_pairs
from llm.errors import ConfigError
from llm.eval.preference import preference_eval, read_prompts, win_rate
from llm.eval.rewards import load_reward_fn, shorten
from llm.eval.sections import Section, markdown_table, rich_table
from llm.eval.settings import count
from llm.export.model_dir import FILES, ModelDirError, read_model_config
from llm.infer.generate import start_tokens
from llm.infer.settings import check_seed, check_temperature, show
from llm.model import GPT
from llm.tokenizer import Tokenizer, TokenizerError, load_tokenizer

REFERENCE_HINT = "give preference.reference=<the model directory the model was trained from, e.g. runs/sft/model>"
PAIRS_HINT = (
    "give held-out pairs as llm dpo reads them: JSONL of {prompt, chosen, rejected} or Anthropic HH dialogues "
    "(gzip or not), parquet, or hf:GLOB"
)


def named(key: str, check: Callable[[Any], Any], value: Any) -> Any:
    """check(value), its ConfigError naming preference.<key> instead of the bare key."""
    try:
        return check(value)
    except ConfigError as e:
        raise ConfigError(f"preference.{e}") from None


# --- check ---------------------------------------------------------------------------------------------------


def check_reference(value: Any, model: GPT, tokenizer: Tokenizer, model_dir: str) -> int:
    """A model directory with the policy's tokenizer and vocabulary; returns the context both models share."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"preference.reference={show(value)} must be a model directory, or null; {REFERENCE_HINT}")
    path = Path(value).expanduser()
    if not path.is_dir():
        raise ConfigError(
            f"preference.reference={value}: no such directory (looked from {Path.cwd()}); {REFERENCE_HINT}"
        )
    missing = [name for name in FILES if not (path / name).is_file()]
    if missing:
        raise ModelDirError(
            f"preference.reference={value} is not a model directory: it lacks {', '.join(missing)}; {REFERENCE_HINT}"
        )
    config = read_model_config(path)
    try:
        reference_tokenizer = load_tokenizer(path / "tokenizer.json")
    except TokenizerError as e:
        raise ModelDirError(f"preference.reference={value}: {e}") from None
    if reference_tokenizer.to_dict() != tokenizer.to_dict() or config.vocab_size != model.config.vocab_size:
        raise ConfigError(
            f"preference.reference={value} has another tokenizer or vocabulary than model={model_dir}; compare a "
            "policy with the model it was trained from"
        )
    return min(config.block_size, model.config.block_size)


def check_pairs(value: Any, tokenizer: Tokenizer, block_size: int) -> list[str]:
    """The pairs read and encoded as preference_eval will; returns their prompts."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"preference.pairs={show(value)} must be a file of preference pairs, or null; {PAIRS_HINT}")
    if not value.startswith(HF_PREFIX) and not Path(value).expanduser().is_file():
        raise ConfigError(f"preference.pairs={value}: no such file (looked from {Path.cwd()}); {PAIRS_HINT}")
    pairs, _ = read_pairs(value)
    try:
        kept = [encode_pair(pair, tokenizer, block_size) for pair in pairs]
    except TokenizerError as e:
        raise TokenizerError(f"preference.pairs={value}: {e}") from None
    if all(pair is None for pair in kept):
        raise ConfigError(
            f"preference.pairs={value}: no pair keeps a response token within the context of {block_size} tokens; "
            "use pairs with shorter prompts"
        )
    return [pair.prompt for pair in pairs]


def check_prompts(value: Any, pairs_prompts: list[str] | None, tokenizer: Tokenizer) -> None:
    """The win rate's prompts: a file, or the pairs' prompts when null; each one encodable."""
    if value is None and pairs_prompts is None:
        raise ConfigError(
            'preference.reward needs prompts to continue: give preference.prompts=<a file: JSONL with "prompt", '
            "or one prompt a line>, or preference.pairs=<held-out pairs> to use their prompts"
        )
    if value is None:
        prompts = pairs_prompts or []
    elif not isinstance(value, str) or not value or not Path(value).expanduser().is_file():
        raise ConfigError(
            f"preference.prompts={show(value)}: no such file (looked from {Path.cwd()}); give a file of prompts "
            '(JSONL with "prompt", or one prompt a line), or null for the prompts of preference.pairs'
        )
    else:
        prompts = read_prompts(Path(value).expanduser())
    for i, prompt in enumerate(prompts):
        try:
            tokenizer.encode(prompt) if prompt else start_tokens(tokenizer)
        except TokenizerError as e:
            where = "preference.pairs" if value is None else f"preference.prompts={value}"
            raise ConfigError(f"{where}: prompt {i} {shorten(prompt)} cannot be encoded: {e}") from None


def check_beta(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise ConfigError(
            f"preference.beta={show(value)} must be a positive number: the beta the model was trained with "
            "(objective.beta of llm dpo, e.g. 0.1)"
        )


def check_reward(value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise ConfigError(
            f'preference.reward={show(value)} must name a function, "module:function" or "file.py:function", or be null'
        )
    load_reward_fn(value)  # a RewardError naming the function when it cannot be imported


def check_preference(model: GPT, tokenizer: Tokenizer, cfg: DictConfig) -> None:
    node = cfg.preference
    if not isinstance(node, DictConfig):
        raise ConfigError("preference must hold reference, pairs, beta, reward, prompts, max_new_tokens, ...")
    if node.get("reference") is None:
        given = [key for key in ("pairs", "reward", "prompts") if node.get(key) is not None]
        if given:
            raise ConfigError(f"preference.{given[0]} is set but preference.reference is null; {REFERENCE_HINT}")
        return
    block_size = check_reference(node.reference, model, tokenizer, cfg.model)
    pairs, reward, prompts = node.get("pairs"), node.get("reward"), node.get("prompts")
    if pairs is None and reward is None:
        raise ConfigError(
            f"preference.reference={node.reference} is given but nothing to compare: give preference.pairs=FILE "
            "(implicit-reward accuracy and margins) and/or preference.reward=file.py:function (win rate)"
        )
    check_beta(node.get("beta"))
    pairs_prompts = None if pairs is None else check_pairs(pairs, tokenizer, block_size)
    if reward is None and prompts is not None:
        raise ConfigError(
            "preference.prompts is set but preference.reward is null: the prompts are for the win rate; give "
            "preference.reward=module:function or file.py:function"
        )
    if reward is not None:
        check_reward(reward)
        check_prompts(prompts, pairs_prompts, tokenizer)
    count("preference.max_new_tokens", node.get("max_new_tokens"), "tokens each model generates for a prompt", 64)
    named("temperature", check_temperature, node.get("temperature"))
    named("seed", check_seed, node.get("seed"))


# --- evaluate --------------------------------------------------------------------------------------------------


def evaluate_preference(model: GPT, tokenizer: Tokenizer, cfg: DictConfig) -> dict[str, Any] | None:
    """{"reference", "implicit_reward": preference_eval's result, "win_rate": win_rate's result} (each when
    asked for); None when preference.reference is null."""
    node = cfg.preference
    if node.reference is None:
        return None
    reference = str(Path(node.reference).expanduser())
    out: dict[str, Any] = {"reference": str(Path(reference).resolve())}
    common = {"batch_size": cfg.batch_size, "device": cfg.device}
    if node.pairs is not None:
        scores = preference_eval(cfg.model, reference, node.pairs, beta=float(node.beta), **common)
        out["implicit_reward"] = {"pairs_file": node.pairs, **scores}
    if node.reward is not None:
        if node.prompts is None:
            prompts: list[str] | Path = [pair.prompt for pair in read_pairs(node.pairs)[0]]
        else:
            prompts = Path(node.prompts).expanduser()
        settings = {"max_new_tokens": node.max_new_tokens, "temperature": float(node.temperature), "seed": node.seed}
        wins = win_rate(cfg.model, reference, prompts, node.reward, **settings, **common)
        out["win_rate"] = {"prompts_file": node.prompts if node.prompts is not None else node.pairs, **wins}
    return out


# --- rendering -------------------------------------------------------------------------------------------------


def reward_rows(value: dict[str, Any]) -> list[list[str]]:
    r = value["implicit_reward"]
    return [
        ["pairs scored", f"{r['pairs']:,} of {r['pairs_file']} (dropped {r['dropped']:,})"],
        ["accuracy (chosen reward > rejected)", f"{r['accuracy']:.4f}"],
        ["mean margin (chosen - rejected)", f"{r['margin']:.4f}"],
        ["mean chosen reward", f"{r['chosen_reward']:.4f}"],
        ["mean rejected reward", f"{r['rejected_reward']:.4f}"],
        ["beta", f"{r['beta']:g}"],
    ]


def win_rows(value: dict[str, Any]) -> list[list[str]]:
    w = value["win_rate"]
    return [
        ["prompts continued", f"{w['prompts']:,} of {w['prompts_file']}"],
        ["reward function", w["reward_fn"]],
        ["win rate (a tie counts half)", f"{w['win_rate']:.4f}"],
        ["wins / ties / losses", f"{w['wins']} / {w['ties']} / {w['losses']}"],
        ["mean score of the model", f"{w['policy_score']:.4f}"],
        ["mean score of the reference", f"{w['reference_score']:.4f}"],
    ]


def example_rows(value: dict[str, Any]) -> list[list[str]]:
    return [
        [e["prompt"], e["policy"], e["reference"], f"{e['policy_score']:g}", f"{e['reference_score']:g}"]
        for e in value["win_rate"]["examples"]
    ]


def preference_markdown(value: dict[str, Any]) -> str:
    parts = [f"The model against the reference {value['reference']}."]
    if "implicit_reward" in value:
        parts.append("Implicit rewards beta * (log p_model - log p_reference) of the responses of held-out pairs:")
        parts.append(markdown_table(["metric", "value"], reward_rows(value)))
    if "win_rate" in value:
        parts.append("Win rate of the model's continuations over the reference's under the reward function:")
        parts.append(markdown_table(["metric", "value"], win_rows(value)))
        header = ["prompt", "model", "reference", "model score", "reference score"]
        parts.append(markdown_table(header, example_rows(value)))
    return "\n\n".join(parts)


def preference_table(value: dict[str, Any]) -> Table:
    rows = [["reference", value["reference"]]]
    rows += reward_rows(value) if "implicit_reward" in value else []
    rows += win_rows(value) if "win_rate" in value else []
    return rich_table("preference", ["metric", "value"], rows)


PREFERENCE = Section(
    "Preference (against the reference)", evaluate_preference, preference_markdown, preference_table, check_preference
)
