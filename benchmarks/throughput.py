"""Training tokens/s of a model config on this machine, for each attention x position option.

    python benchmarks/throughput.py                       # nanogpt_cpu, every attention x position
    python benchmarks/throughput.py --model default --steps 30 --batch 12

Times forward + backward + AdamW step on random tokens (no data loading, no validation) after warm-up steps.
"""

from __future__ import annotations

import argparse
import time

import torch

from llm.configs import compose_config
from llm.model import ATTENTIONS, POSITIONS, build_gpt
from llm.objectives import causal_lm_loss
from llm.run.recipes import model_config


def tokens_per_sec(overrides: list[str], batch: int, steps: int, warmup: int, vocab: int) -> float:
    config = model_config(compose_config("train", overrides), vocab)
    torch.manual_seed(0)
    model = build_gpt(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randint(0, vocab, (batch, config.block_size + 1))
    elapsed = 0.0
    for step in range(warmup + steps):
        started = time.perf_counter()
        loss = causal_lm_loss(model(x[:, :-1]), x[:, 1:])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step >= warmup:
            elapsed += time.perf_counter() - started
    return steps * batch * config.block_size / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="nanogpt_cpu", help="a conf/model preset")
    parser.add_argument("--batch", type=int, default=12)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--vocab", type=int, default=65)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, model={args.model}, batch={args.batch}")
    print(f"{'attention':<10} {'position':<11} {'tokens/s':>10}")
    for attention in ATTENTIONS.names():
        for position in POSITIONS.names():
            overrides = [f"model={args.model}", f"model/attention={attention}", f"model/position={position}"]
            rate = tokens_per_sec(overrides, args.batch, args.steps, args.warmup, args.vocab)
            print(f"{attention:<10} {position:<11} {rate:>10,.0f}")


if __name__ == "__main__":
    main()
