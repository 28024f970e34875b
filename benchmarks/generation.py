"""Generation tokens/s: ours with the KV cache, ours recomputing the window, and `transformers`' `generate` on the
same weights (exported in memory by llm.export.hf), at batch 1 and 8, greedy, in one process.

    python benchmarks/generation.py                        # model=default, 256 new tokens, batches 1 and 8
    python benchmarks/generation.py --model llama_tiny --new-tokens 128 --repeats 5

Each figure is the median of --repeats timed runs (after one warm-up run), with the spread (min .. max). The model
has random weights (the speed does not depend on them); its context is the prompt plus the new tokens, so no
variant slides its window. Prints a table and writes a list of rows (name, batch, new_tokens, tokens_per_sec,
ms_per_step, ...) to runs/bench/generation.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from llm.configs import compose_config
from llm.infer import GenerationSettings, generate_batch
from llm.model import GPT, build_gpt
from llm.run.recipes import model_config
from llm.tokenizer import train_tokenizer

ALPHABET = "".join(chr(c) for c in range(32, 97))  # 65 characters, tiny Shakespeare's vocabulary size


def bench_model(preset: str, context: int) -> GPT:
    config = model_config(compose_config("train", [f"model={preset}", f"model.block_size={context}"]), len(ALPHABET))
    torch.manual_seed(0)
    return build_gpt(config).eval()


def ours(model: GPT, prompts: torch.Tensor, new_tokens: int, use_cache: bool) -> Callable[[], list[list[int]]]:
    settings = GenerationSettings(max_new_tokens=new_tokens, temperature=0.0, use_cache=use_cache)
    rows = prompts.tolist()
    return lambda: generate_batch(model, rows, settings)


def theirs(model: GPT, prompts: torch.Tensor, new_tokens: int) -> Callable[[], list[list[int]]]:
    from llm.export.hf import to_transformers

    hf_model, _ = to_transformers(model, train_tokenizer("char", [ALPHABET]))
    hf_model.eval()
    mask = torch.ones_like(prompts)

    def run() -> list[list[int]]:
        with torch.no_grad():
            out = hf_model.generate(
                prompts,
                attention_mask=mask,
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                do_sample=False,
                pad_token_id=0,
                eos_token_id=None,
            )
        return out[:, prompts.size(1) :].tolist()

    return run


def timed(run: Callable[[], list[list[int]]], repeats: int) -> tuple[list[float], list[list[int]]]:
    out = run()  # warm-up
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        out = run()
        seconds.append(time.perf_counter() - started)
    return seconds, out


def row(name: str, batch: int, new_tokens: int, seconds: list[float]) -> dict:
    rates = [batch * new_tokens / s for s in seconds]
    median = statistics.median(seconds)
    return {
        "name": name,
        "batch": batch,
        "new_tokens": new_tokens,
        "tokens_per_sec": batch * new_tokens / median,
        "tokens_per_sec_min": min(rates),
        "tokens_per_sec_max": max(rates),
        "ms_per_step": 1000 * median / new_tokens,
        "repeats": len(seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default", help="a conf/model preset with a transformers equivalent")
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--prompt-tokens", type=int, default=32)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/generation.json"))
    args = parser.parse_args()
    model = bench_model(args.model, args.prompt_tokens + args.new_tokens)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, model={args.model}, greedy, "
        f"{args.prompt_tokens} prompt + {args.new_tokens} new tokens, median of {args.repeats}"
    )
    rows = []
    for batch in args.batches:
        prompts = torch.randint(
            0, len(ALPHABET), (batch, args.prompt_tokens), generator=torch.Generator().manual_seed(1)
        )
        outputs = {}
        for name, run in (
            ("ours cached", ours(model, prompts, args.new_tokens, use_cache=True)),
            ("ours uncached", ours(model, prompts, args.new_tokens, use_cache=False)),
            ("transformers generate", theirs(model, prompts, args.new_tokens)),
        ):
            seconds, outputs[name] = timed(run, args.repeats)
            rows.append(row(name, batch, args.new_tokens, seconds))
        rows[-1]["same_tokens_as_ours"] = outputs["transformers generate"] == outputs["ours cached"]
        rows[-2]["same_tokens_as_ours"] = outputs["ours uncached"] == outputs["ours cached"]
    print_table(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1) + "\n")
    print(f"wrote {args.out}")


def print_table(rows: list[dict]) -> None:
    print(f"| {'variant':<22} | batch | tokens/s (min .. max)      | ms/step | x uncached | x transformers |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        same = {x["name"]: x["tokens_per_sec"] for x in rows if x["batch"] == r["batch"]}
        print(
            f"| {r['name']:<22} | {r['batch']:>5} | {r['tokens_per_sec']:>8,.0f} "
            f"({r['tokens_per_sec_min']:,.0f} .. {r['tokens_per_sec_max']:,.0f}) | {r['ms_per_step']:7.2f} | "
            f"{r['tokens_per_sec'] / same['ours uncached']:10.2f} | "
            f"{r['tokens_per_sec'] / same['transformers generate']:14.2f} |"
        )


if __name__ == "__main__":
    main()
