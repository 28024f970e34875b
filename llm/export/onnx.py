"""Export to ONNX: the model's inference step (llm.model.gpt.InferenceGraph) with its key/value cache as inputs
and outputs, checked with onnxruntime against the model before anything is kept.

The folder holds
    model.onnx              the graph, float32; dynamic batch, sequence and cache lengths (over 2 GB, torch
                            writes the weights as external data files beside it)
    onnx_model.json         what the inputs and outputs are, the model's config, the opset
    tokenizer.json          the tokenizer in the Hugging Face `tokenizers` format (and tokenizer_config.json)

One graph serves both calls: a prefill passes a cache of length 0 (past_* with 0 columns), a decoding step
passes the present_* of the call before. The graph is traced from a copy of the model with attention=manual:
the same weights and the same math as fused attention, in operators every exporter and runtime has (the
TorchScript exporter has no grouped-query SDPA), and with RMSNorm written out (nor aten::rms_norm). Models of
every component export; the dynamo exporter is not used, since the TorchScript one takes them all.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from llm.export.errors import ExportError, optional_module
from llm.export.hf_tokenizer import write_hf_tokenizer
from llm.model import GPT, Part, build_gpt
from llm.model.gpt import InferenceGraph
from llm.tokenizer import Tokenizer

FORMAT, VERSION, OPSET = "llm.onnx", 1, 18
PURPOSE = "exporting to ONNX"
TOLERANCE = 1e-3  # largest difference of logits (float32) the export accepts between onnxruntime and the model


def input_names(n_layer: int) -> list[str]:
    names = ["idx", "pos", "key_mask", "past_pos", "past_mask"]
    return names + [f"past_{kv}_{i}" for i in range(n_layer) for kv in ("key", "value")]


def output_names(n_layer: int) -> list[str]:
    names = ["logits", "present_pos", "present_mask"]
    return names + [f"present_{kv}_{i}" for i in range(n_layer) for kv in ("key", "value")]


def dynamic_axes(n_layer: int) -> dict[str, dict[int, str]]:
    """batch, sequence (the new tokens), past (the cached ones) and total (past + sequence)."""
    axes: dict[str, dict[int, str]] = {name: {0: "batch", 1: "sequence"} for name in ("idx", "pos", "key_mask")}
    axes |= {name: {0: "batch", 1: "past"} for name in ("past_pos", "past_mask")}
    axes |= {name: {0: "batch", 1: "total"} for name in ("present_pos", "present_mask")}
    axes["logits"] = {0: "batch"}
    for i in range(n_layer):
        for kv in ("key", "value"):
            axes[f"past_{kv}_{i}"] = {0: "batch", 2: "past"}
            axes[f"present_{kv}_{i}"] = {0: "batch", 2: "total"}
    return axes


class ExplicitRMSNorm(nn.Module):
    """nn.RMSNorm written out, x / sqrt(mean(x²) + eps) * weight: the TorchScript exporter has no aten::rms_norm."""

    def __init__(self, norm: nn.RMSNorm) -> None:
        super().__init__()
        assert norm.weight is not None and norm.eps is not None, "llm's RMSNorms have a weight and an eps"
        self.weight, self.eps = norm.weight, norm.eps

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def explicit_rms_norms(model: nn.Module) -> None:
    """Replaces every nn.RMSNorm inside `model` by ExplicitRMSNorm, keeping its weight."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.RMSNorm):
                setattr(parent, name, ExplicitRMSNorm(child))


def traceable_copy(model: GPT) -> GPT:
    """The model with attention=manual and RMSNorms written out (the same weights and math), in float32 on the
    CPU, in evaluation mode."""
    config = model.config
    manual = dataclasses.replace(config, attention=Part("manual", dict(config.attention.options)))
    copy = build_gpt(manual)
    copy.load_state_dict({name: t.detach().cpu().float() for name, t in model.state_dict().items()})
    explicit_rms_norms(copy)
    return copy.eval()


def empty_cache(model: GPT, batch: int) -> list[Tensor]:
    """past_pos, past_mask and every layer's keys and values, with no column: a prefill's cache."""
    c = model.config
    layers = [torch.zeros(batch, c.kv_heads, 0, c.head_dim) for _ in range(2 * c.n_layer)]
    return [torch.zeros(batch, 0, dtype=torch.long), torch.zeros(batch, 0, dtype=torch.bool), *layers]


def example_calls(model: GPT) -> tuple[list[Tensor], list[Tensor]]:
    """A prefill of two rows (the second left-padded) and the decoding step after it: graph inputs both."""
    t = min(4, model.config.block_size - 1)
    idx = torch.arange(2 * t).view(2, t) % model.config.vocab_size
    mask = torch.ones(2, t, dtype=torch.bool)
    mask[1, 0] = False
    pos = (torch.arange(t)[None] - (~mask).sum(1, keepdim=True)).clamp(min=0)
    prefill = [idx, pos, mask, *empty_cache(model, 2)]
    with torch.no_grad():
        cache = InferenceGraph(model)(*prefill)[1:]
    step = [idx[:, -1:], pos[:, -1:] + 1, torch.ones(2, 1, dtype=torch.bool), *cache]
    return prefill, step


def trace_to_onnx(graph: InferenceGraph, example: list[Tensor], path: Path) -> None:
    n_layer = graph.model.config.n_layer
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
            torch.onnx.export(
                graph,
                tuple(example),
                str(path),
                input_names=input_names(n_layer),
                output_names=output_names(n_layer),
                dynamic_axes=dynamic_axes(n_layer),
                opset_version=OPSET,
                dynamo=False,
            )
    except Exception as e:  # the exporter raises many kinds of error for an operator it cannot convert
        text = " ".join(str(e).split())[:300]
        raise ExportError(
            f"torch.onnx (the TorchScript exporter of torch {torch.__version__}) cannot export this model: {text}"
        ) from e


def check_with_onnxruntime(path: Path, graph: InferenceGraph, calls: list[list[Tensor]]) -> float:
    """Runs each call in onnxruntime and in PyTorch; the largest difference of logits and caches. A decoding
    call is given onnxruntime's own cache of the call before."""
    ort = optional_module("onnxruntime", PURPOSE)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = input_names(graph.model.config.n_layer)
    worst, previous = 0.0, None
    for call in calls:
        inputs = [t.numpy() for t in call[:3]] + (previous or [t.numpy() for t in call[3:]])
        theirs = session.run(None, dict(zip(names, inputs, strict=True)))
        with torch.no_grad():
            ours = graph(*call[:3], *(torch.from_numpy(a) for a in inputs[3:]))
        for a, b in zip(theirs, ours, strict=True):
            worst = max(worst, float((torch.from_numpy(a).double() - b.double()).abs().max()) if b.numel() else 0.0)
        previous = theirs[1:]
    return worst


def description(model: GPT, tokenizer: Tokenizer) -> dict[str, Any]:
    c, dtype = model.config, "float32"
    cache = ["batch", c.kv_heads, "past", c.head_dim]
    inputs = [
        {"name": "idx", "dtype": "int64", "shape": ["batch", "sequence"], "about": "token ids of the new tokens"},
        {"name": "pos", "dtype": "int64", "shape": ["batch", "sequence"], "about": "their positions"},
        {"name": "key_mask", "dtype": "bool", "shape": ["batch", "sequence"], "about": "false for left padding"},
        {"name": "past_pos", "dtype": "int64", "shape": ["batch", "past"], "about": "positions of the cache"},
        {"name": "past_mask", "dtype": "bool", "shape": ["batch", "past"], "about": "false for padding"},
    ] + [{"name": n, "dtype": dtype, "shape": cache} for n in input_names(c.n_layer)[5:]]
    present = ["batch", c.kv_heads, "total", c.head_dim]
    outputs = [
        {"name": "logits", "dtype": dtype, "shape": ["batch", 1, c.vocab_size], "about": "at the last new token"},
        {"name": "present_pos", "dtype": "int64", "shape": ["batch", "total"], "about": "past_pos then pos"},
        {"name": "present_mask", "dtype": "bool", "shape": ["batch", "total"], "about": "past_mask then key_mask"},
    ] + [{"name": n, "dtype": dtype, "shape": present} for n in output_names(c.n_layer)[3:]]
    return {
        "format": FORMAT,
        "version": VERSION,
        "file": "model.onnx",
        "opset": OPSET,
        "usage": "a prefill passes past_* with 0 columns; each decoding step passes the present_* of the call "
        "before as past_*; total = past + sequence must stay within block_size for learned positions",
        "inputs": inputs,
        "outputs": outputs,
        "tokenizer": "tokenizer.json (Hugging Face tokenizers format)",
        "eot_id": tokenizer.eot_id,
        "model": c.to_dict(),
    }


def write_onnx(model: GPT, tokenizer: Tokenizer, directory: Path) -> None:
    """model.onnx, onnx_model.json and the tokenizer into `directory` (a staging folder); refuses a graph whose
    onnxruntime logits differ from the model's by more than TOLERANCE."""
    onnx = optional_module("onnx", PURPOSE)
    optional_module("onnxruntime", PURPOSE)
    graph = InferenceGraph(traceable_copy(model)).eval()
    prefill, step = example_calls(graph.model)
    path = directory / "model.onnx"
    trace_to_onnx(graph, step, path)
    onnx.checker.check_model(str(path))
    worst = check_with_onnxruntime(path, graph, [prefill, step])
    if not worst <= TOLERANCE:
        raise ExportError(
            f"the exported ONNX graph computes other outputs than the model (largest difference {worst:.3g} > "
            f"{TOLERANCE}) in onnxruntime; this is a bug of the export, please report it"
        )
    text = json.dumps(description(model, tokenizer), indent=2) + "\n"
    (directory / "onnx_model.json").write_text(text, encoding="utf-8")
    write_hf_tokenizer(tokenizer, model.config.block_size, directory)
