"""Training-step speed and model FLOPs utilisation (MFU) of a model preset on one device, in one process.

    python benchmarks/mfu.py --model gpt2_small --device cuda --precision bf16 --compile --batch 16
    python benchmarks/mfu.py --model nanogpt_cpu --batch 12                         # CPU, fp32, eager

A bare PyTorch loop over our GPT (forward, cross-entropy, backward, AdamW — fused on CUDA) on random tokens, after
warm-up steps. Model FLOPs per token are 6·N (N: the weights of every matrix multiply, the LM head included) plus
12·n_layer·n_embd·T for attention scores and values (PaLM's count), so MFU = FLOPs/s ÷ peak. The peak is measured in
the same run: the best of several large matrix products in the same dtype on the same device. For a card whose
datasheet bf16 dense peak is known (NOMINAL_BF16_TFLOPS), the row also gives MFU against that peak (`mfu_nominal`).
Prints one JSON row and appends it to runs/bench/mfu.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from common import DTYPES, flops_per_token, matmul_peak, sync

from llm.configs import compose_config
from llm.model import GPT, build_gpt
from llm.objectives import causal_lm_loss
from llm.run.recipes import model_config

# datasheet dense bf16 tensor-core peaks (TFLOP/s, no sparsity), by a part of the name CUDA reports
NOMINAL_BF16_TFLOPS = {"H100 PCIe": 756.0, "H100": 989.4, "H200": 989.4, "A100": 312.0, "L4": 121.0}


def nominal_peak(device_name: str) -> float | None:
    """The datasheet bf16 peak in FLOP/s of the first NOMINAL_BF16_TFLOPS entry in `device_name`, else None."""
    return next((1e12 * tf for part, tf in NOMINAL_BF16_TFLOPS.items() if part in device_name), None)


def step_time(model: GPT, batch: int, steps: int, warmup: int, device: torch.device, precision: str) -> float:
    """Seconds per optimizer step, the median of `steps` timed steps."""
    config = model.config
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    x = torch.randint(0, config.vocab_size, (batch, config.block_size + 1), device=device)
    times = []
    for step in range(warmup + steps):
        sync(device)
        started = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = causal_lm_loss(model(x[:, :-1]), x[:, 1:])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync(device)
        if step >= warmup:
            times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="nanogpt_cpu", help="a conf/model preset")
    parser.add_argument("--vocab", type=int, default=None, help="vocabulary size (default: 50304 on CUDA, 65 on CPU)")
    parser.add_argument("--batch", type=int, default=12)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--compile-mode", default=None, help="torch.compile's mode, e.g. max-autotune-no-cudagraphs")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/mfu.json"))
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = True
    vocab = args.vocab or (50304 if device.type == "cuda" else 65)
    config = model_config(compose_config("train", [f"model={args.model}"]), vocab)
    torch.manual_seed(0)
    model = build_gpt(config).to(device).train()
    flops = flops_per_token(model)
    if args.compile:
        model = torch.compile(model, mode=args.compile_mode)  # type: ignore[assignment]
    seconds = step_time(model, args.batch, args.steps, args.warmup, device, args.precision)
    tokens = args.batch * config.block_size
    peak = matmul_peak(device, DTYPES[args.precision], 8192 if device.type == "cuda" else 2048)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    nominal = nominal_peak(device_name) if args.precision == "bf16" else None
    compiled = ["compile", *([args.compile_mode] if args.compile_mode else [])] if args.compile else []
    row = {
        "name": " ".join(["bare", args.model, args.device, args.precision, *compiled]),
        "device": device_name,
        "batch": args.batch,
        "block_size": config.block_size,
        "tokens_per_sec": tokens / seconds,
        "ms_per_step": 1000 * seconds,
        "model_tflops_per_sec": flops * tokens / seconds / 1e12,
        "matmul_peak_tflops": peak / 1e12,
        "mfu": flops * tokens / seconds / peak,
        "mfu_nominal": None if nominal is None else flops * tokens / seconds / nominal,
        "torch": torch.__version__,
    }
    print(json.dumps(row))
    rows = json.loads(args.out.read_text()) if args.out.is_file() else []
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps([*rows, row], indent=1) + "\n")


if __name__ == "__main__":
    main()
