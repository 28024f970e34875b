"""Training tokens/s, ms/step, MFU and peak memory of the nanogpt_cpu shape (batch 12, context 64, 4 layers, 4
heads, 128 wide, vocabulary 65), every figure from this one process:

    python benchmarks/training.py                                         # every variant (long on a CPU)
    python benchmarks/training.py --attention fused --precision 32 --compile off
    python benchmarks/training.py --quick                                 # a smoke run: a few steps of each
    python benchmarks/training.py --attention fused --precision 32 --compile off --rows llm-train bare \
        --set model.n_layer=1 model.n_embd=32 model.n_head=2 model.block_size=16 data.batch_size=8
                                # a model so small that the step is mostly the training loop's own cost

For each variant of attention (manual, fused) x precision (32, bf16-mixed) x compile (off, on):
  llm train <variant>  the real training, llm.train.train of `experiment=shakespeare_char data=text`: Lightning,
                       the data module, loggers, the checkpoint at the end; no samples, no validation during
                       training. Each repeat is a fresh run (after one warm-up run); tokens/s is its summary.json's
                       (training wall time: waiting for data counted, validation left out; the first step is
                       included, with compile on its compilation too unless the warm-up run cached it).
  bare <variant>       the same network (build_gpt of the same composed config) in a plain PyTorch loop: the same
                       batches from the same token file, forward, cross-entropy, backward, gradient clipping and
                       the config's AdamW; autocast for bf16-mixed, torch.compile for compile on.
and once, eager fp32:
  reference            a minimal GPT written in this file (learned positions, pre-norm blocks, one qkv matrix,
                       F.scaled_dot_product_attention, GELU MLP, tied head) of the same shape, in the bare loop
  hf-gpt2              transformers' GPT2LMHeadModel of the same shape (sdpa attention), in the bare loop

The data is tiny Shakespeare from ../shared/data/tinyshakespeare.txt beside the checkout (or --data FILE), else a
generated corpus of the same 65 characters; each row says which. tokens/s is the median of --repeats repeats of
--steps steps (after --warmup steps, at least 3 with compile on), with the smallest and largest beside it;
ms/step goes with the median. MFU: model FLOPs/s (6·N + attention, llm/model/counting.py; one count for every row,
as the shapes match) over the best matrix product measured in this run in the row's dtype (fp32 for 32 rows,
bf16 for bf16 rows; where a CPU emulates bf16 products, a compiled bf16 run can beat that peak: MFU > 1).
peak_rss_mb is the process's peak resident memory when the row ends (it never goes down). A row whose time
would pass --max-seconds-per-row (compilation and warm-up included) is skipped and says why: bf16 is emulated,
very slowly, on CPUs without bf16 instructions. Prints a table and writes the rows to runs/bench/training.json.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from common import (
    DTYPES,
    bounded_matmul_peak,
    command_line,
    peak_rss_mb,
    pick_data,
    print_table,
    spread,
    sync,
    write_rows,
)
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from llm.configs import compose_config
from llm.data.pretrain import RandomWindows
from llm.data.tokens import prepare_token_splits
from llm.model import build_gpt
from llm.model.counting import training_flops_per_token
from llm.run.recipes import build_objective, model_config
from llm.train import train

ATTENTIONS, PRECISIONS, COMPILES = ("manual", "fused"), ("32", "bf16-mixed"), ("off", "on")
KINDS = ("llm-train", "bare", "reference", "hf-gpt2")


class TooSlow(Exception):
    """A row that would run past --max-seconds-per-row; the message says by how much."""


@dataclass(frozen=True)
class Variant:
    attention: str
    precision: str
    compile: bool

    @property
    def label(self) -> str:
        return f"{self.attention} {self.precision} compile {'on' if self.compile else 'off'}"

    def fields(self) -> dict[str, Any]:
        return {"attention": self.attention, "precision": self.precision, "compile": self.compile}


EAGER_FP32 = Variant("fused", "32", False)
COMPILED_WARMUP = 3


@dataclass(frozen=True)
class Settings:
    steps: int
    warmup: int
    repeats: int
    max_seconds: float
    device: torch.device
    quick: bool = False  # a smoke run: the figures mean nothing, the peak is measured on small products
    overrides: tuple[str, ...] = ()  # --set: Hydra overrides of every row's config (the shape, the batch)

    def warmup_steps(self, variant: Variant) -> int:
        """--warmup, and at least 3 with compile on: the first step compiles, the last one predicts the rest."""
        return max(self.warmup, COMPILED_WARMUP) if variant.compile else self.warmup


# --- the reference: a minimal GPT of the same shape --------------------------------------------------------------


class ReferenceBlock(nn.Module):
    """Pre-norm: x + attention(norm(x)), then x + MLP(norm(x)); one matrix makes queries, keys and values."""

    def __init__(self, n_embd: int, n_head: int) -> None:
        super().__init__()
        self.n_head = n_head
        self.norm_1, self.norm_2 = nn.LayerNorm(n_embd, bias=False), nn.LayerNorm(n_embd, bias=False)
        self.qkv = nn.Linear(n_embd, 3 * n_embd, bias=False)
        self.out = nn.Linear(n_embd, n_embd, bias=False)
        self.up = nn.Linear(n_embd, 4 * n_embd, bias=False)
        self.down = nn.Linear(4 * n_embd, n_embd, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        batch, context, width = x.shape
        heads = self.qkv(self.norm_1(x)).view(batch, context, 3, self.n_head, width // self.n_head)
        q, k, v = heads.permute(2, 0, 3, 1, 4)  # each (batch, head, context, head width)
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.out(attended.transpose(1, 2).reshape(batch, context, width))
        return x + self.down(F.gelu(self.up(self.norm_2(x)), approximate="tanh"))


class ReferenceGPT(nn.Module):
    """Token and learned position embeddings, the blocks, a final norm and a head tied to the token embedding."""

    def __init__(self, vocab_size: int, block_size: int, n_layer: int, n_head: int, n_embd: int) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab_size, n_embd)
        self.positions = nn.Embedding(block_size, n_embd)
        self.blocks = nn.ModuleList(ReferenceBlock(n_embd, n_head) for _ in range(n_layer))
        self.norm = nn.LayerNorm(n_embd, bias=False)
        self.head = nn.Linear(n_embd, vocab_size, bias=False)
        self.head.weight = self.tokens.weight
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                nn.init.normal_(module.weight, std=0.02)

    def forward(self, idx: Tensor) -> Tensor:
        x = self.tokens(idx) + self.positions(torch.arange(idx.size(1), device=idx.device))
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


# --- timing ----------------------------------------------------------------------------------------------------------


def check_time(started: float, more: float, cap: float) -> None:
    """TooSlow when the time spent so far plus `more` seconds would pass `cap`."""
    spent = time.perf_counter() - started
    if spent + more > cap:
        raise TooSlow(f"would take about {spent + more:.0f} s, over --max-seconds-per-row={cap:g}")


def loop_rates(step: Callable[[], None], tokens_per_step: int, warmup: int, s: Settings) -> list[float]:
    """Tokens/s of each of `repeats` runs of `steps` steps, after `warmup` steps (the last one predicts the rest)."""
    started = time.perf_counter()
    last = 0.0
    for _ in range(warmup):
        began = time.perf_counter()
        step()
        sync(s.device)
        last = time.perf_counter() - began
    check_time(started, last * s.steps * s.repeats, s.max_seconds)
    rates = []
    for _ in range(s.repeats):
        began = time.perf_counter()
        for _ in range(s.steps):
            step()
        sync(s.device)
        seconds = time.perf_counter() - began
        rates.append(s.steps * tokens_per_step / seconds)
        if len(rates) < s.repeats:
            check_time(started, seconds, s.max_seconds)
    return rates


def bare_step(
    model: nn.Module, forward: Callable[[Tensor], Tensor], cfg: DictConfig, batches: Iterator[Any], precision: str
) -> Callable[[], None]:
    """One optimizer step as `llm train` takes it: next batch, forward, loss, backward, clip, the config's AdamW;
    the loss is the config's objective, compiled with compile=true as in training."""
    objective = build_objective(cfg)
    optimizer = instantiate(cfg.optim)(model)
    params = [p for p in model.parameters() if p.requires_grad]
    device = next(model.parameters()).device
    clip = float(cfg.trainer.gradient_clip_val)

    def step() -> None:
        inputs, targets = (t.to(device, non_blocking=True) for t in next(batches))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16-mixed"):
            loss = objective(forward(inputs), targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


# --- the benchmark -----------------------------------------------------------------------------------------------


class Bench:
    """What the rows share: the data, its token file, the composed configs, the FLOP count and measured peaks."""

    def __init__(self, settings: Settings, data: Path, data_name: str, folder: Path) -> None:
        self.s, self.data, self.data_name, self.folder = settings, data, data_name, folder
        self.cache = folder / "cache"
        self.runs = itertools.count()
        cfg = self.config(EAGER_FP32, settings.steps, folder / "unused")
        node = OmegaConf.to_container(cfg.tokenizer, resolve=True)
        assert isinstance(node, dict)
        tokenizer = {str(k): v for k, v in node.items()}
        # the very token file `llm train` reads: the same corpus, tokenizer, split and cache folder
        splits = prepare_token_splits(instantiate(cfg.data.corpus), tokenizer, cfg.data.val_fraction, self.cache)
        self.train_file, self.token_dtype = Path(str(splits.train.filename)), str(splits.train.dtype)
        self.vocab = splits.tokenizer.vocab_size
        self.batch, self.block_size = int(cfg.data.batch_size), int(cfg.model.block_size)
        self.tokens_per_step = self.batch * self.block_size
        self.flops = training_flops_per_token(model_config(cfg, self.vocab))
        self.seed = int(cfg.seed)
        self.peaks: dict[str, float] = {}

    def config(self, variant: Variant, steps: int, run_dir: Path) -> DictConfig:
        """`llm train`'s composed config of the nanogpt_cpu recipe for this variant, writing into `run_dir`."""
        return compose_config(
            "train",
            [
                "experiment=shakespeare_char",
                "data=text",
                f"data.path={self.data}",
                "data.val_batches=1",
                f"model/attention={variant.attention}",
                f"trainer.precision={variant.precision}" + ("-true" if variant.precision == "32" else ""),
                f"compile={str(variant.compile).lower()}",
                f"trainer.max_steps={steps}",
                f"trainer.val_check_interval={steps + 1}",  # no validation during training
                f"trainer.accelerator={self.s.device.type}",
                "trainer.enable_progress_bar=false",
                "scheduler.warmup_steps=0",
                "samples.num=0",
                f"paths.run_dir={run_dir}",
                f"paths.cache_dir={self.cache}",
                *self.s.overrides,
            ],
        )

    def peak(self, precision: str) -> float:
        """The best matrix product's FLOP/s in the dtype of `precision`, measured once in this run."""
        dtype = "bf16" if precision == "bf16-mixed" else "fp32"
        if dtype not in self.peaks:
            max_size = 8192 if self.s.device.type == "cuda" else 2048 if not self.s.quick else 512
            self.peaks[dtype] = bounded_matmul_peak(self.s.device, DTYPES[dtype], max_size)
        return self.peaks[dtype]

    def batches(self) -> Iterator[Any]:
        """The training batches `llm train` reads: random windows of the same token file, the same seed."""
        dataset = RandomWindows(self.train_file, self.token_dtype, self.block_size, self.batch, self.seed, 0, 0)
        return iter(dataset)

    def row(self, name: str, kind: str, variant: Variant, rates: list[float], **extra: Any) -> dict[str, Any]:
        figures = spread(rates)
        peak = self.peak(variant.precision)
        return {
            "name": name,
            "kind": kind,
            **variant.fields(),
            **figures,
            "ms_per_step": 1000 * self.tokens_per_step / figures["tokens_per_sec"],
            "repeats": len(rates),
            "steps": self.s.steps,
            "mfu": figures["tokens_per_sec"] * self.flops / peak,
            "matmul_peak_gflops": peak / 1e9,
            "peak_rss_mb": peak_rss_mb(),
            **extra,
            **self.common_fields(),
            "skipped": None,
        }

    def skipped(self, name: str, kind: str, variant: Variant, reason: str) -> dict[str, Any]:
        empty = dict.fromkeys(("tokens_per_sec", "tokens_per_sec_min", "tokens_per_sec_max", "ms_per_step", "mfu"))
        return {
            "name": name,
            "kind": kind,
            **variant.fields(),
            **empty,
            "repeats": 0,
            "steps": self.s.steps,
            "peak_rss_mb": peak_rss_mb(),
            **self.common_fields(),
            "skipped": reason,
        }

    def common_fields(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "block_size": self.block_size,
            "vocab_size": self.vocab,
            "flops_per_token": self.flops,
            "data": self.data_name,
            "device": torch.cuda.get_device_name(self.s.device) if self.s.device.type == "cuda" else "cpu",
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "command": command_line(),
        }

    # --- the four kinds of row ---

    def llm_train(self, variant: Variant, bare_ms: float | None) -> dict[str, Any]:
        """Fresh `llm train` runs: one warm-up run, then `repeats` runs; the figures of each summary.json."""
        name = f"llm train {variant.label}"
        started = time.perf_counter()
        try:
            warm = self.train_once(variant, self.s.warmup_steps(variant))
            per_step = bare_ms / 1000 if bare_ms is not None else warm["train_seconds"] / max(1, warm["steps"])
            overhead = warm["wall_seconds"] - warm["train_seconds"]
            check_time(started, self.s.repeats * (overhead + per_step * self.s.steps), self.s.max_seconds)
            summaries = []
            for _ in range(self.s.repeats):
                began = time.perf_counter()
                summaries.append(self.train_once(variant, self.s.steps))
                if len(summaries) < self.s.repeats:
                    check_time(started, time.perf_counter() - began, self.s.max_seconds)
        except TooSlow as e:
            return self.skipped(name, "llm-train", variant, str(e))
        compute = spread([s["tokens_per_sec_compute"] for s in summaries])["tokens_per_sec"]
        return self.row(
            name, "llm-train", variant, [s["tokens_per_sec"] for s in summaries], tokens_per_sec_compute=compute
        )

    def train_once(self, variant: Variant, steps: int) -> dict[str, Any]:
        """One `llm train` run into a fresh folder; its summary.json, with train_seconds worked out."""
        run_dir = self.folder / "runs" / str(next(self.runs))
        with contextlib.redirect_stdout(io.StringIO()):  # the run's summary table and samples: not ours to print
            train(self.config(variant, steps, run_dir))
        summary = json.loads((run_dir / "summary.json").read_text())
        summary["train_seconds"] = summary["tokens_seen"] / summary["tokens_per_sec"]
        return summary

    def bare(self, variant: Variant) -> dict[str, Any]:
        name = f"bare {variant.label}"
        cfg = self.config(variant, self.s.steps, self.folder / "unused")
        torch.manual_seed(0)
        model = build_gpt(model_config(cfg, self.vocab)).to(self.s.device).train()
        if variant.compile:
            model.compile()
        step = bare_step(model, model, cfg, self.batches(), variant.precision)
        return self.timed_row(name, "bare", variant, step)

    def reference(self) -> dict[str, Any]:
        cfg = self.config(EAGER_FP32, self.s.steps, self.folder / "unused")
        m = cfg.model
        torch.manual_seed(0)
        model = ReferenceGPT(self.vocab, m.block_size, m.n_layer, m.n_head, m.n_embd).to(self.s.device).train()
        step = bare_step(model, model, cfg, self.batches(), EAGER_FP32.precision)
        return self.timed_row("reference", "reference", EAGER_FP32, step)

    def hf_gpt2(self) -> dict[str, Any]:
        try:
            from transformers import GPT2Config, GPT2LMHeadModel
        except ImportError:
            return self.skipped(
                "hf-gpt2", "hf-gpt2", EAGER_FP32, "transformers is not installed (pip install transformers)"
            )
        cfg = self.config(EAGER_FP32, self.s.steps, self.folder / "unused")
        m = cfg.model
        config = GPT2Config(
            vocab_size=self.vocab,
            n_positions=m.block_size,
            n_embd=m.n_embd,
            n_layer=m.n_layer,
            n_head=m.n_head,
            activation_function="gelu_new",
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            tie_word_embeddings=True,
            use_cache=False,
        )
        config._attn_implementation = "sdpa"
        torch.manual_seed(0)
        model = GPT2LMHeadModel(config)
        model.to(self.s.device)  # type: ignore[arg-type]  # transformers' typing of .to
        model.train()
        step = bare_step(model, lambda idx: model(input_ids=idx).logits, cfg, self.batches(), EAGER_FP32.precision)
        return self.timed_row("hf-gpt2", "hf-gpt2", EAGER_FP32, step, attention="sdpa")

    def timed_row(self, name: str, kind: str, variant: Variant, step: Callable[[], None], **extra: Any) -> dict:
        try:
            rates = loop_rates(step, self.tokens_per_step, self.s.warmup_steps(variant), self.s)
        except TooSlow as e:
            return self.skipped(name, kind, variant, str(e))
        return self.row(name, kind, variant, rates, **extra)


def run(bench: Bench, variants: list[Variant], kinds: list[str]) -> list[dict[str, Any]]:
    rows = []
    if "reference" in kinds:
        rows.append(bench.reference())
    if "hf-gpt2" in kinds:
        rows.append(bench.hf_gpt2())
    for variant in variants:
        bare = bench.bare(variant) if "bare" in kinds else None
        if "llm-train" in kinds:
            rows.append(bench.llm_train(variant, bare["ms_per_step"] if bare else None))
        if bare is not None:
            rows.append(bare)
        print(f"done: {variant.label}", flush=True)
    return rows


COLUMNS = {
    "name": ("row", "<36"),
    "tokens_per_sec": ("tokens/s", ",.0f"),
    "tokens_per_sec_min": ("min", ",.0f"),
    "tokens_per_sec_max": ("max", ",.0f"),
    "ms_per_step": ("ms/step", ".1f"),
    "mfu": ("MFU", ".3f"),
    "peak_rss_mb": ("peak RSS MB", ",.0f"),
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--attention", nargs="+", choices=ATTENTIONS, default=list(ATTENTIONS))
    parser.add_argument("--precision", nargs="+", choices=PRECISIONS, default=list(PRECISIONS))
    parser.add_argument("--compile", nargs="+", choices=COMPILES, default=list(COMPILES))
    parser.add_argument("--rows", nargs="+", choices=KINDS, default=list(KINDS), help="which kinds of row to run")
    parser.add_argument("--steps", type=int, default=50, help="timed steps a repeat")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (and the warm-up run's steps)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-seconds-per-row", type=float, default=300.0)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 2 steps, 1 warm-up step, 3 repeats")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--data", type=Path, default=None, help="a text file (default: tiny Shakespeare, if found)")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="Hydra overrides for every row")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/training.json"))
    args = parser.parse_args()
    if args.quick:
        args.steps, args.warmup, args.repeats = 2, 1, 3
    if min(args.steps, args.warmup, args.repeats) < 1:
        parser.error("--steps, --warmup and --repeats must each be at least 1")
    return args


def main() -> None:
    args = parse_args()
    device = torch.device(args.device)
    settings = Settings(
        args.steps, args.warmup, args.repeats, args.max_seconds_per_row, device, args.quick, tuple(args.set)
    )
    variants = [Variant(a, p, c == "on") for a, p, c in itertools.product(args.attention, args.precision, args.compile)]
    with tempfile.TemporaryDirectory(prefix="llm-bench-") as folder:
        data, data_name = pick_data(args.data, Path(folder))
        bench = Bench(settings, data, data_name, Path(folder))
        print(
            f"torch {torch.__version__}, {torch.get_num_threads()} threads, {settings.device}, data: {data_name}, "
            f"batch {bench.batch} x context {bench.block_size}, {settings.steps} steps x {settings.repeats} repeats"
        )
        rows = run(bench, variants, args.rows)
    print_table(rows, COLUMNS)
    print(", ".join(f"{k} matmul peak {v / 1e9:,.1f} GFLOP/s" for k, v in bench.peaks.items()))
    write_rows(args.out, rows)


if __name__ == "__main__":
    main()
