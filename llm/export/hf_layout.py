"""Our weights in the layout of a `transformers` architecture: which architecture a model is, its config there,
and one declarative table per architecture from our weight names to theirs.

A table row (`Rule`) maps one of our weight names (llm/model/gpt.py lists them; `{i}` is the block index) to one
or more of theirs, through a named transform (`TRANSFORMS`) for the few tensors that must be transposed or
split. Nothing here imports `transformers`: it is plain tensors and dicts, so another layout (GGUF, say) is one
more table.

    GPT-2 style (learned positions, pre-norm LayerNorm, GELU)  -> GPT2LMHeadModel
    Llama style (rotary, pre-norm RMSNorm, SwiGLU, GQA)        -> LlamaForCausalLM
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from llm.export.errors import ExportError
from llm.model import ModelConfig
from llm.model.mlp import swiglu_hidden

Transform = Callable[[Tensor, ModelConfig], tuple[Tensor, ...]]


def split_qkv(t: Tensor, config: ModelConfig) -> tuple[Tensor, ...]:
    """Our fused qkv rows [q; k; v] (weight or bias) -> q, k, v."""
    q, kv = config.n_head * config.head_dim, config.kv_heads * config.head_dim
    return tuple(t.split([q, kv, kv], dim=0))


def split_gate_up(t: Tensor, config: ModelConfig) -> tuple[Tensor, ...]:
    """SwiGLU's stacked fc rows [gate; up] -> gate, up."""
    return tuple(t.chunk(2, dim=0))


TRANSFORMS: dict[str, Transform] = {
    "copy": lambda t, config: (t,),
    "transpose": lambda t, config: (t.t(),),  # GPT-2's Conv1D keeps its weight as (in, out)
    "split_qkv": split_qkv,
    "split_gate_up": split_gate_up,
}

# what a row does when our model lacks its weight (a model built with bias=false has no biases)
ABSENT = ("error", "skip", "zeros")


@dataclass(frozen=True)
class Rule:
    """Our weight `ours` becomes their weights `theirs` through TRANSFORMS[transform]; `{i}`: the block index.

    absent: what our model lacking the weight means: "error"; "skip" (their model has no such weight either,
    e.g. Llama with attention_bias=false); "zeros" (a bias theirs always has: zeros as long as the weight's
    rows, which computes what no bias does)."""

    ours: str
    theirs: tuple[str, ...]
    transform: str = "copy"
    absent: str = "error"

    def __post_init__(self) -> None:
        assert self.transform in TRANSFORMS and self.absent in ABSENT, self


def rule(ours: str, *theirs: str, transform: str = "copy", absent: str = "error") -> Rule:
    return Rule(ours, theirs, transform, absent)


GPT2_RULES = (
    rule("token_embedding.weight", "transformer.wte.weight"),
    rule("position.table.weight", "transformer.wpe.weight"),
    rule("blocks.{i}.norm1.weight", "transformer.h.{i}.ln_1.weight"),
    rule("blocks.{i}.norm1.bias", "transformer.h.{i}.ln_1.bias", absent="zeros"),
    rule("blocks.{i}.attn.qkv.weight", "transformer.h.{i}.attn.c_attn.weight", transform="transpose"),
    rule("blocks.{i}.attn.qkv.bias", "transformer.h.{i}.attn.c_attn.bias", absent="zeros"),
    rule("blocks.{i}.attn.proj.weight", "transformer.h.{i}.attn.c_proj.weight", transform="transpose"),
    rule("blocks.{i}.attn.proj.bias", "transformer.h.{i}.attn.c_proj.bias", absent="zeros"),
    rule("blocks.{i}.norm2.weight", "transformer.h.{i}.ln_2.weight"),
    rule("blocks.{i}.norm2.bias", "transformer.h.{i}.ln_2.bias", absent="zeros"),
    rule("blocks.{i}.mlp.fc.weight", "transformer.h.{i}.mlp.c_fc.weight", transform="transpose"),
    rule("blocks.{i}.mlp.fc.bias", "transformer.h.{i}.mlp.c_fc.bias", absent="zeros"),
    rule("blocks.{i}.mlp.proj.weight", "transformer.h.{i}.mlp.c_proj.weight", transform="transpose"),
    rule("blocks.{i}.mlp.proj.bias", "transformer.h.{i}.mlp.c_proj.bias", absent="zeros"),
    rule("final_norm.weight", "transformer.ln_f.weight"),
    rule("final_norm.bias", "transformer.ln_f.bias", absent="zeros"),
    rule("head.weight", "lm_head.weight"),  # tied: the embedding again, and tied again in theirs
)

LLAMA_RULES = (
    rule("token_embedding.weight", "model.embed_tokens.weight"),
    rule("blocks.{i}.norm1.weight", "model.layers.{i}.input_layernorm.weight"),
    rule(
        "blocks.{i}.attn.qkv.weight",
        *(f"model.layers.{{i}}.self_attn.{p}_proj.weight" for p in "qkv"),
        transform="split_qkv",
    ),
    rule(
        "blocks.{i}.attn.qkv.bias",
        *(f"model.layers.{{i}}.self_attn.{p}_proj.bias" for p in "qkv"),
        transform="split_qkv",
        absent="skip",
    ),
    rule("blocks.{i}.attn.proj.weight", "model.layers.{i}.self_attn.o_proj.weight"),
    rule("blocks.{i}.attn.proj.bias", "model.layers.{i}.self_attn.o_proj.bias", absent="skip"),
    rule("blocks.{i}.norm2.weight", "model.layers.{i}.post_attention_layernorm.weight"),
    rule(
        "blocks.{i}.mlp.fc.weight",
        "model.layers.{i}.mlp.gate_proj.weight",
        "model.layers.{i}.mlp.up_proj.weight",
        transform="split_gate_up",
    ),
    rule(
        "blocks.{i}.mlp.fc.bias",
        "model.layers.{i}.mlp.gate_proj.bias",
        "model.layers.{i}.mlp.up_proj.bias",
        transform="split_gate_up",
        absent="skip",
    ),
    rule("blocks.{i}.mlp.proj.weight", "model.layers.{i}.mlp.down_proj.weight"),
    rule("blocks.{i}.mlp.proj.bias", "model.layers.{i}.mlp.down_proj.bias", absent="skip"),
    rule("final_norm.weight", "model.norm.weight"),
    rule("head.weight", "lm_head.weight"),
)


def option(config: ModelConfig, part: str, name: str, default: Any) -> Any:
    return getattr(config, part).options.get(name, default)


def gpt2_config(config: ModelConfig) -> dict[str, Any]:
    return {
        "model_type": "gpt2",
        "architectures": ["GPT2LMHeadModel"],
        "vocab_size": config.vocab_size,
        "n_positions": config.block_size,
        "n_embd": config.n_embd,
        "n_layer": config.n_layer,
        "n_head": config.n_head,
        "n_inner": option(config, "mlp", "hidden_mult", 4) * config.n_embd,
        "activation_function": "gelu_new",  # GELU's tanh approximation, as ours
        "layer_norm_epsilon": option(config, "norm", "eps", 1e-5),
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
        "tie_word_embeddings": config.tie_weights,
    }


def llama_config(config: ModelConfig) -> dict[str, Any]:
    theta = float(option(config, "position", "theta", 10000.0))
    return {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "vocab_size": config.vocab_size,
        "max_position_embeddings": config.block_size,
        "hidden_size": config.n_embd,
        "intermediate_size": swiglu_hidden(config.n_embd, option(config, "mlp", "multiple_of", 64)),
        "num_hidden_layers": config.n_layer,
        "num_attention_heads": config.n_head,
        "num_key_value_heads": config.kv_heads,
        "head_dim": config.head_dim,
        "hidden_act": "silu",
        "rms_norm_eps": option(config, "norm", "eps", 1e-6),
        "rope_parameters": {"rope_type": "default", "rope_theta": theta},
        "rope_theta": theta,  # where transformers 4.x reads it
        "attention_bias": config.bias,  # our bias covers qkv and proj: theirs q, k, v and o
        "mlp_bias": config.bias,  # and fc and proj: theirs gate, up and down
        "attention_dropout": 0.0,
        "tie_word_embeddings": config.tie_weights,
    }


@dataclass(frozen=True)
class Architecture:
    """A `transformers` architecture: the parts a model needs to be one, its config and its weight table."""

    name: str
    hf_class: str
    parts: dict[str, str]  # our component -> the name it must have
    multi_head_only: bool  # no grouped-query attention
    rules: tuple[Rule, ...]
    hf_config: Callable[[ModelConfig], dict[str, Any]]


GPT2 = Architecture(
    "GPT-2",
    "GPT2LMHeadModel",
    {"position": "learned", "norm": "layernorm", "mlp": "gelu", "block": "pre"},
    True,
    GPT2_RULES,
    gpt2_config,
)
LLAMA = Architecture(
    "Llama",
    "LlamaForCausalLM",
    {"position": "rope", "norm": "rmsnorm", "mlp": "swiglu", "block": "pre"},
    False,
    LLAMA_RULES,
    llama_config,
)
ARCHITECTURES = (GPT2, LLAMA)


def architecture_for(config: ModelConfig) -> Architecture:
    """The architecture whose position component is the model's, if every other part fits it; else an
    ExportError naming each component (and value) that has no equivalent."""
    position = config.position.name
    matching = [arch for arch in ARCHITECTURES if arch.parts["position"] == position]
    if not matching:
        needs = ", ".join(f"{arch.name} export needs position={arch.parts['position']}" for arch in ARCHITECTURES)
        raise ExportError(f"position {position!r} has no transformers equivalent; {needs}")
    arch = matching[0]
    problems = misfits(config, arch)
    if problems:
        wanted = ", ".join(f"{part}={name}" for part, name in arch.parts.items())
        raise ExportError(
            f"cannot export to transformers: {'; '.join(problems)}. A {arch.name}-style model "
            f"(position={position}) becomes {arch.hf_class}, which needs {wanted}, full causal attention without "
            "QK-norm" + (" and one key/value head per query head" if arch.multi_head_only else "")
        )
    return arch


def misfits(config: ModelConfig, arch: Architecture) -> list[str]:
    """One phrase per component of `config` that `arch` has no equivalent for."""
    problems = [
        f"{part} {getattr(config, part).name!r} has no {arch.name} equivalent"
        for part, name in arch.parts.items()
        if getattr(config, part).name != name
    ]
    if option(config, "attention", "qk_norm", False):
        problems.append(f"attention qk_norm=true (QK-norm) has no {arch.name} equivalent")
    window = option(config, "attention", "window", None)
    if window is not None:
        problems.append(f"attention window={window} (sliding window) has no {arch.name} equivalent")
    if arch.multi_head_only and config.kv_heads != config.n_head:
        problems.append(
            f"n_kv_head={config.kv_heads} (grouped-query attention) has no {arch.name} equivalent; "
            "Llama-style models (position=rope) take it"
        )
    return problems


def layer_indices(rule: Rule, config: ModelConfig) -> range:
    return range(config.n_layer) if "{i}" in rule.ours else range(1)


def convert_weights(state: dict[str, Tensor], config: ModelConfig, arch: Architecture) -> dict[str, Tensor]:
    """Our state dict -> theirs, row by row of the architecture's table; every weight of ours must find a row."""
    out: dict[str, Tensor] = {}
    used: set[str] = set()
    for row in arch.rules:
        for i in layer_indices(row, config):
            ours, theirs = row.ours.format(i=i), [name.format(i=i) for name in row.theirs]
            if ours in state:
                tensors = TRANSFORMS[row.transform](state[ours], config)
                used.add(ours)
            elif row.absent == "skip":
                continue
            elif row.absent == "zeros":
                weight = state[ours.removesuffix("bias") + "weight"]
                tensors = (torch.zeros(weight.shape[0], dtype=weight.dtype, device=weight.device),)
            else:
                raise ExportError(f"the model has no weight {ours!r}, which {arch.hf_class} needs")
            out.update((name, t.contiguous()) for name, t in zip(theirs, tensors, strict=True))
    left = sorted(set(state) - used)
    if left:
        raise ExportError(f"{len(left)} weight(s) have no place in {arch.hf_class}, e.g. {left[0]!r}")
    return out
