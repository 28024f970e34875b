"""The DPO demonstration: does direct preference optimisation move a model toward answers a program can
check, on prompts it never saw, on every seed?

Task: addition, "a+b=" -> "c\n" with a, b in 0..N-1. The pretraining text is noisy in one consistent way:
most lines give a+b+1 instead of the sum, so the pretrained model prefers the wrong answer. Preference
pairs on the training prompts say: chosen = the sum, rejected = the sum + 1. Held-out prompts (never in
the pretraining text or the pairs) measure, before and after DPO: the rate of correct greedy answers,
the preference accuracy (how often the model gives the chosen answer a higher log-probability than the
rejected one), and the KL of the policy from the reference (sampled answers). Three seeds, dpo and ipo.

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
    "full": {"n": 30, "wrong_share": 0.7, "pretrain_steps": 1500, "dpo_steps": 150, "seeds": [0, 1, 2]},
    "quick": {"n": 10, "wrong_share": 0.7, "pretrain_steps": 30, "dpo_steps": 4, "seeds": [0]},
}


def split_prompts(n: int, seed: int = 0) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    pairs = [(a, b) for a in range(n) for b in range(n)]
    random.Random(seed).shuffle(pairs)
    held_out = len(pairs) // 6
    return pairs[held_out:], pairs[:held_out]


def write_data(out: Path, n: int, wrong_share: float) -> tuple[Path, Path, list[tuple[int, int]]]:
    train, held_out = split_prompts(n)
    rng = random.Random(1)
    lines = []
    for _ in range(40):  # each training prompt 40 times, mostly with the consistent wrong answer
        for a, b in train:
            answer = a + b + 1 if rng.random() < wrong_share else a + b
            lines.append(f"{a}+{b}={answer}\n")
    rng.shuffle(lines)
    corpus = out / "corpus.txt"
    corpus.write_text("".join(lines))
    pairs = out / "pairs.jsonl"
    rows = [{"prompt": f"{a}+{b}=", "chosen": f"{a + b}\n", "rejected": f"{a + b + 1}\n"} for a, b in train]
    pairs.write_text("".join(json.dumps(row) + "\n" for row in rows))
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
            "optim.lr=3e-4",
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
    new = generate(model, tokenizer.encode(prompt), max_new_tokens=4, temperature=0.0)
    return tokenizer.decode(new).split("\n")[0]


def sampled_kl(policy: GPT, reference: GPT, tokenizer: Tokenizer, prompts: list[str], seed: int) -> float:
    """Monte-Carlo KL(policy || reference) over answers sampled from the policy (one per prompt)."""
    generator = torch.Generator().manual_seed(seed)
    answers = []
    for prompt in prompts:
        new = generate(policy, tokenizer.encode(prompt), max_new_tokens=4, temperature=1.0, generator=generator)
        text = tokenizer.decode(new)
        answers.append(text.split("\n")[0] + "\n" if "\n" in text else text)
    diff = answer_logps(policy, tokenizer, prompts, answers) - answer_logps(reference, tokenizer, prompts, answers)
    return float(diff.mean())


def evaluate(model_dir: Path, reference_dir: Path | None, held_out: list[tuple[int, int]], seed: int) -> dict:
    model, tokenizer = load_model_dir(model_dir)
    prompts = [f"{a}+{b}=" for a, b in held_out]
    correct = sum(greedy_answer(model, tokenizer, p) == str(a + b) for p, (a, b) in zip(prompts, held_out, strict=True))
    chosen = answer_logps(model, tokenizer, prompts, [f"{a + b}\n" for a, b in held_out])
    rejected = answer_logps(model, tokenizer, prompts, [f"{a + b + 1}\n" for a, b in held_out])
    result = {"correct_rate": correct / len(held_out), "pref_accuracy": float((chosen > rejected).float().mean())}
    if reference_dir is not None:
        reference, _ = load_model_dir(reference_dir)
        result["kl"] = sampled_kl(model, reference, tokenizer, prompts, seed)
    return result


def main(out: Path, mode: str) -> dict:
    s = SETTINGS[mode]
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    corpus, pairs, held_out = write_data(out, s["n"], s["wrong_share"])
    base = pretrain_base(out, corpus, s["pretrain_steps"])
    before = evaluate(base, None, held_out, 0)
    runs = []
    for objective in ("dpo", "ipo"):
        for seed in s["seeds"]:
            policy = align(out, base, pairs, objective, seed, s["dpo_steps"])
            after = evaluate(policy, base, held_out, seed)
            runs.append({"objective": objective, "seed": seed, "before": before, "after": after})
    results = {
        "task": f"a+b= with a, b < {s['n']}; pretraining text gives a+b+1 in {s['wrong_share']:.0%} of lines; "
        f"{len(held_out)} held-out prompts",
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
