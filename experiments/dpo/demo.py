"""The DPO demonstration: does direct preference optimisation move a model toward answers a program can
check, on prompts it never saw, on every seed?

Task: copy a word. A prompt is a random lowercase word and "=", the right answer the same word and a
newline ("kqzf=" -> "kqzf\n"). The pretraining text is noisy in one consistent way: most lines append a "!"
to the copy ("kqzf=kqzf!\n"), so the pretrained model answers wrongly. Preference pairs on the training
words say: chosen = the copy, rejected = the copy with "!". Held-out words (never in the pretraining text
or the pairs) measure, before and after DPO: the rate of correct greedy answers, the preference accuracy
(how often the model gives the chosen answer a higher log-probability than the rejected one), and the KL
of the policy from the reference (on answers sampled from the policy). Three seeds, dpo and ipo.

    python experiments/dpo/demo.py [--out runs/dpo-demo] [--quick]     (make dpo-demo)
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import torch

from llm.configs import compose_config
from llm.export import load_model_dir
from llm.infer import generate
from llm.model import GPT
from llm.objectives import IGNORE_INDEX, sequence_logprobs
from llm.run.recipes import dpo, pretrain
from llm.run.runner import run
from llm.tokenizer import Tokenizer

SETTINGS = {
    "full": {"words": 2000, "held_out": 200, "noise": 0.7, "pretrain_steps": 800, "dpo_steps": 60, "seeds": [0, 1, 2]},
    "quick": {"words": 60, "held_out": 10, "noise": 0.7, "pretrain_steps": 30, "dpo_steps": 4, "seeds": [0]},
}
LETTERS = "abcdefghijklmnopqrstuvwxyz"


def words(count: int, seed: int) -> list[str]:
    """`count` distinct random 4-letter words."""
    rng, found = random.Random(seed), set()
    while len(found) < count:
        found.add("".join(rng.choice(LETTERS) for _ in range(4)))
    return sorted(found)


def right(word: str) -> str:
    return f"{word}\n"


def wrong(word: str) -> str:
    return f"{word}!\n"


def write_data(out: Path, s: dict) -> tuple[Path, Path, list[str]]:
    vocabulary = words(s["words"] + s["held_out"], 0)
    random.Random(1).shuffle(vocabulary)
    held_out, train = vocabulary[: s["held_out"]], vocabulary[s["held_out"] :]
    rng = random.Random(2)
    lines = [f"{w}={wrong(w) if rng.random() < s['noise'] else right(w)}" for _ in range(20) for w in train]
    rng.shuffle(lines)
    corpus = out / "corpus.txt"
    corpus.write_text("".join(lines))
    pairs = out / "pairs.jsonl"
    pairs.write_text(
        "".join(json.dumps({"prompt": f"{w}=", "chosen": right(w), "rejected": wrong(w)}) + "\n" for w in train)
    )
    return corpus, pairs, held_out


def model_overrides(out: Path, name: str) -> list[str]:
    return [
        "trainer.enable_progress_bar=false",
        "samples.num=0",
        f"paths.run_dir={out / name}",
        f"paths.cache_dir={out / 'cache'}",
        "overwrite=true",
    ]


def pretrain_base(out: Path, corpus: Path, steps: int) -> Path:
    cfg = compose_config(
        "train",
        [
            "data=text",
            f"data.path={corpus}",
            "tokenizer=char",
            "model.n_layer=2",
            "model.n_head=4",
            "model.n_embd=64",
            "model.block_size=16",
            "samples.prompt=",
            "data.batch_size=32",
            "data.val_batches=4",
            "optim.lr=3e-3",
            f"trainer.max_steps={steps}",
            f"trainer.val_check_interval={max(1, steps // 3)}",
            f"scheduler.warmup_steps={min(50, steps // 3)}",
            *model_overrides(out, "base"),
        ],
    )
    run(cfg, pretrain)
    return out / "base" / "model"


def align(out: Path, base: Path, pairs: Path, objective: str, seed: int, steps: int) -> Path:
    name = f"{objective}-seed{seed}"
    cfg = compose_config(
        "dpo",
        [
            f"model_dir={base}",
            f"data.path={pairs}",
            f"objective={objective}",
            f"seed={seed}",
            "data.batch_size=16",
            "optim.lr=1e-4",
            f"trainer.max_steps={steps}",
            f"trainer.val_check_interval={max(1, steps // 3)}",
            f"scheduler.warmup_steps={min(10, steps // 3)}",
            *model_overrides(out, name),
        ],
    )
    run(cfg, dpo)
    return out / name / "model"


def answer_logps(model: GPT, tokenizer: Tokenizer, prompts: list[str], answers: list[str]) -> torch.Tensor:
    """log p(answer | prompt) summed over the answer's tokens, for each pair."""
    rows = [(tokenizer.encode(p), tokenizer.encode(a)) for p, a in zip(prompts, answers, strict=True)]
    width = max(len(p) + len(a) for p, a in rows) - 1
    inputs = torch.zeros(len(rows), width, dtype=torch.long)
    targets = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    for i, (p, a) in enumerate(rows):
        ids = p + a
        inputs[i, : len(ids) - 1] = torch.tensor(ids[:-1])
        targets[i, len(p) - 1 : len(ids) - 1] = torch.tensor(a)
    with torch.no_grad():
        return sequence_logprobs(model(inputs), targets, targets != IGNORE_INDEX)


def greedy_answer(model: GPT, tokenizer: Tokenizer, prompt: str) -> str:
    """The greedy continuation up to and with its first newline (the whole answer)."""
    text = tokenizer.decode(generate(model, tokenizer.encode(prompt), max_new_tokens=7, temperature=0.0))
    return text[: text.index("\n") + 1] if "\n" in text else text


def sampled_kl(policy: GPT, reference: GPT, tokenizer: Tokenizer, prompts: list[str], seed: int) -> float:
    """Monte-Carlo KL(policy || reference) over answers sampled from the policy (one per prompt)."""
    generator = torch.Generator().manual_seed(seed)
    answers = []
    for prompt in prompts:
        new = generate(policy, tokenizer.encode(prompt), max_new_tokens=7, temperature=1.0, generator=generator)
        text = tokenizer.decode(new)
        answers.append(text.split("\n")[0] + "\n" if "\n" in text else text)
    diff = answer_logps(policy, tokenizer, prompts, answers) - answer_logps(reference, tokenizer, prompts, answers)
    return float(diff.mean())


def evaluate(model_dir: Path, reference_dir: Path | None, held_out: list[str], seed: int) -> dict:
    model, tokenizer = load_model_dir(model_dir)
    prompts = [f"{w}=" for w in held_out]
    correct = sum(greedy_answer(model, tokenizer, p) == right(w) for p, w in zip(prompts, held_out, strict=True))
    chosen = answer_logps(model, tokenizer, prompts, [right(w) for w in held_out])
    rejected = answer_logps(model, tokenizer, prompts, [wrong(w) for w in held_out])
    result = {"correct_rate": correct / len(held_out), "pref_accuracy": float((chosen > rejected).float().mean())}
    if reference_dir is not None:
        reference, _ = load_model_dir(reference_dir)
        result["kl"] = sampled_kl(model, reference, tokenizer, prompts, seed)
    return result


def main(out: Path, mode: str) -> dict:
    s = SETTINGS[mode]
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    corpus, pairs, held_out = write_data(out, s)
    base = pretrain_base(out, corpus, s["pretrain_steps"])
    before = evaluate(base, None, held_out, 0)
    runs = []
    for objective in ("dpo", "ipo"):
        for seed in s["seeds"]:
            policy = align(out, base, pairs, objective, seed, s["dpo_steps"])
            after = evaluate(policy, base, held_out, seed)
            runs.append({"objective": objective, "seed": seed, "before": before, "after": after})
    results = {
        "task": f"copy a random 4-letter word ('abcd=' -> 'abcd\\n'); the pretraining text appends '!' in "
        f"{s['noise']:.0%} of its lines; {len(held_out)} held-out words",
        "runs": runs,
        "seconds": round(time.perf_counter() - started, 1),
    }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    return results


def print_table(results: dict) -> None:
    print(results["task"])
    print("| objective | seed | correct before | correct after | pref. acc. before | pref. acc. after | KL |")
    print("|---|---|---|---|---|---|---|")
    for r in results["runs"]:
        b, a = r["before"], r["after"]
        print(
            f"| {r['objective']} | {r['seed']} | {b['correct_rate']:.3f} | {a['correct_rate']:.3f} | "
            f"{b['pref_accuracy']:.3f} | {a['pref_accuracy']:.3f} | {a['kl']:.3f} |"
        )
    print(f"total: {results['seconds']} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/dpo-demo"))
    parser.add_argument("--quick", action="store_true", help="a tiny run that checks the pipeline (seconds)")
    args = parser.parse_args()
    main(args.out, "quick" if args.quick else "full")
