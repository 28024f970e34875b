"""Training-step speed and model FLOPs utilisation (MFU) of a model preset on one device, in one process.

    python benchmarks/mfu.py --model gpt2_small --device cuda --precision bf16 --compile --batch 16
    python benchmarks/mfu.py --model gpt2_small --device cuda --precision bf16 --compile --compile-loss --sdpa cudnn
    python benchmarks/mfu.py --model gpt2_small --device cuda --precision bf16 --compile --compile-loss \
        --compile-mode max-autotune-no-cudagraphs --inductor coordinate_descent_tuning=True --batch 64
    python benchmarks/mfu.py --model nanogpt_cpu --batch 12                         # CPU, fp32, eager

A bare PyTorch loop over our GPT (forward, cross-entropy, backward, AdamW — fused on CUDA) on random tokens, after
warm-up steps. Model FLOPs per token are those of run summaries (llm/model/counting.py, PaLM's count): 6·N (N: the
weights of every matrix multiply, the LM head included) plus 12·n_layer·n_embd·T for attention scores and values, so
MFU = FLOPs/s ÷ peak. The peak is measured in the same run: the best of several large matrix products in the same dtype
on the same device. For a card whose datasheet bf16 dense peak is known (NOMINAL_BF16_TFLOPS), the row also gives MFU
against that peak (`mfu_nominal`).
`--compile-loss` compiles the cross-entropy too (as training does when it compiles; with `--compile-mode` when given),
`--inductor KEY=VALUE` sets a torch._inductor.config entry before compiling (e.g. combo_kernels=True), `--sdpa` picks
the attention kernel on CUDA, and `--profile N` prints the kernels that took the most device time over N more steps.
Prints one JSON row and appends it to runs/bench/mfu.json.
"""

from __future__ import annotations

import argparse
import ast
import json
import time
from pathlib import Path

import torch
from common import DTYPES, matmul_peak, sync

from llm.configs import compose_config
from llm.model import GPT, build_gpt
from llm.model.counting import training_flops_per_token
from llm.objectives import CausalLM
from llm.run.recipes import model_config

# datasheet dense bf16 tensor-core peaks (TFLOP/s, no sparsity), by a part of the name CUDA reports
NOMINAL_BF16_TFLOPS = {"H100 PCIe": 756.0, "H100": 989.4, "H200": 989.4, "A100": 312.0, "L4": 121.0}


def nominal_peak(device_name: str) -> float | None:
    """The datasheet bf16 peak in FLOP/s of the first NOMINAL_BF16_TFLOPS entry in `device_name`, else None."""
    return next((1e12 * tf for part, tf in NOMINAL_BF16_TFLOPS.items() if part in device_name), None)


SDPA_BACKENDS = {"flash": "flash", "efficient": "mem_efficient", "cudnn": "cudnn", "math": "math"}


def set_inductor_options(options: list[str]) -> list[str]:
    """Sets torch._inductor.config entries given as KEY=VALUE (the value a Python literal); returns them as given."""
    import torch._inductor.config as inductor_config

    for option in options:
        key, _, value = option.partition("=")
        if not hasattr(inductor_config, key):
            raise SystemExit(f"--inductor {option}: torch._inductor.config has no entry {key!r}")
        setattr(inductor_config, key, ast.literal_eval(value))
    return options


def use_sdpa_backend(name: str) -> None:
    """Leaves only the SDPA kernel `name` enabled on CUDA ("auto": torch's own choice among all of them)."""
    if name != "auto":
        for backend in SDPA_BACKENDS.values():
            getattr(torch.backends.cuda, f"enable_{backend}_sdp")(backend == SDPA_BACKENDS[name])


class Stepper:
    """One optimizer step of `model` on a fixed random batch: forward, loss, backward, AdamW (fused on CUDA)."""

    def __init__(self, model: GPT, batch: int, device: torch.device, precision: str, objective: CausalLM) -> None:
        config = model.config
        self.model, self.objective, self.device, self.precision = model, objective, device, precision
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
        self.x = torch.randint(0, config.vocab_size, (batch, config.block_size + 1), device=device)

    def __call__(self) -> None:
        torch.compiler.cudagraph_mark_step_begin()  # outputs of a CUDA-graphed step may be overwritten by the next
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            loss = self.objective(self.model(self.x[:, :-1]), self.x[:, 1:])
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


def step_time(step: Stepper, steps: int, warmup: int) -> float:
    """Seconds per optimizer step, the median of `steps` timed steps after `warmup` untimed ones."""
    times = []
    for index in range(warmup + steps):
        sync(step.device)
        started = time.perf_counter()
        step()
        sync(step.device)
        if index >= warmup:
            times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


def print_profile(step: Stepper, steps: int) -> None:
    """The 25 kernels and ops with the most device (or CPU) time over `steps` more steps."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if step.device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as profiler:
        for _ in range(steps):
            step()
        sync(step.device)
    key = "self_cuda_time_total" if step.device.type == "cuda" else "self_cpu_time_total"
    print(profiler.key_averages().table(sort_by=key, row_limit=25, max_name_column_width=70))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="nanogpt_cpu", help="a conf/model preset")
    parser.add_argument("--vocab", type=int, default=None, help="vocabulary size (default: 50304 on CUDA, 65 on CPU)")
    parser.add_argument("--batch", type=int, default=12)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--compile-mode", default=None, help="torch.compile's mode, e.g. max-autotune-no-cudagraphs")
    parser.add_argument("--compile-loss", action="store_true", help="compile the cross-entropy as well")
    parser.add_argument("--inductor", action="append", default=[], metavar="KEY=VALUE", help="an inductor option")
    parser.add_argument("--sdpa", choices=["auto", *SDPA_BACKENDS], default="auto", help="attention kernel (CUDA)")
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="print a kernel profile of N steps")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/mfu.json"))
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.sdpa != "auto" and device.type != "cuda":
        parser.error(f"--sdpa {args.sdpa} picks a CUDA kernel; leave it at auto with --device {args.device}")
    torch.backends.cuda.matmul.allow_tf32 = True
    use_sdpa_backend(args.sdpa)
    inductor_options = set_inductor_options(args.inductor)
    vocab = args.vocab or (50304 if device.type == "cuda" else 65)
    config = model_config(compose_config("train", [f"model={args.model}"]), vocab)
    torch.manual_seed(0)
    model = build_gpt(config).to(device).train()
    flops = training_flops_per_token(config)
    if args.compile:
        model = torch.compile(model, mode=args.compile_mode)  # type: ignore[assignment]
    objective = CausalLM()
    if args.compile_loss:
        objective.compile(args.compile_mode)
    step = Stepper(model, args.batch, device, args.precision, objective)
    seconds = step_time(step, args.steps, args.warmup)
    if args.profile:
        print_profile(step, args.profile)
    tokens = args.batch * config.block_size
    peak = matmul_peak(device, DTYPES[args.precision], 8192 if device.type == "cuda" else 2048)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    nominal = nominal_peak(device_name) if args.precision == "bf16" else None
    compiled = ["compile", *([args.compile_mode] if args.compile_mode else [])] if args.compile else []
    if args.compile_loss:
        compiled.append("compiled loss")
    compiled.extend(inductor_options)
    if args.sdpa != "auto":
        compiled.append(f"sdpa {args.sdpa}")
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
