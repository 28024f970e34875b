"""The GPT: token embedding, a position component, N blocks, a final norm and the LM head.

`build_gpt` is the one place where component names become classes.

Two entry points share one body:
    model(idx)                  training: logits (B, T, V) at positions 0 .. T-1 (the fast path)
    model.infer(idx, pos=..., cache=..., key_mask=..., last_only=...) -> (logits, cache)
                                inference: per-row positions, left padding, a KV cache in and out

Weight names (stable; export and checkpoints rely on them):
    token_embedding.weight                 (V, C)
    position.table.weight                  (block_size, C), learned positions only
    blocks.{i}.norm1.*, blocks.{i}.norm2.*
    blocks.{i}.attn.qkv.{weight,bias}      ((nh + 2·nkv)·hs, C): rows [q; k; v]
    blocks.{i}.attn.proj.{weight,bias}     (C, C)
    blocks.{i}.attn.{q_norm,k_norm}.weight (hs,), with QK-norm only
    blocks.{i}.mlp.fc.{weight,bias}        (hidden, C); SwiGLU stacks [gate; up]
    blocks.{i}.mlp.proj.{weight,bias}      (C, hidden)
    final_norm.*
    head.weight                            (V, C), the same tensor as token_embedding.weight when tied
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from llm.model.attention import ATTENTIONS
from llm.model.block import BLOCKS, Block
from llm.model.config import ModelConfig
from llm.model.init import initialize_gpt, load_weights
from llm.model.kv_cache import KVCache, LayerKV, Step
from llm.model.mlp import MLPS
from llm.model.norm import NORMS
from llm.model.positions import POSITIONS, Position


class GPT(nn.Module):
    """A decoder-only Transformer assembled from parts that are passed in."""

    def __init__(self, config: ModelConfig, position: Position, blocks: list[Block], final_norm: nn.Module) -> None:
        super().__init__()
        self.config = config
        self.token_embedding = nn.Embedding(config.vocab_size, config.n_embd)
        self.position = position
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(blocks)
        self.final_norm = final_norm
        self.head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_weights:
            self.head.weight = self.token_embedding.weight

    def initialize(self, seed: int) -> None:
        """Gives every weight its starting value, from `seed` alone (GPT-2's scheme; llm/model/init.py)."""
        initialize_gpt(self, self.config.n_layer, seed)

    def forward(self, idx: Tensor, pos: Tensor | None = None) -> Tensor:
        """Token ids (B, T) -> next-token logits (B, T, V). `pos` (B or 1, T): each token's position; None is
        0 .. T-1 (training)."""
        step = None if pos is None else Step(pos, pos, None)
        logits, _ = self.run(idx, step, None, last_only=False)
        return logits

    def infer(
        self,
        idx: Tensor,
        *,
        pos: Tensor | None = None,
        cache: KVCache | None = None,
        key_mask: Tensor | None = None,
        last_only: bool = False,
    ) -> tuple[Tensor, KVCache]:
        """One inference call: a prefill (no cache) or a decoding step (the cache of the tokens before idx).

        idx (B, T) token ids; pos (B, T) their positions, by default continuing each row's cache
        (0 .. T-1 without one); key_mask (B, T) True for real tokens, False for (left) padding, by default all
        real. Returns logits (B, T, V), or (B, 1, V) for the last position with `last_only`, and the cache
        extended by idx. Keys of padding are never attended to; a padding query's output is meaningless.
        """
        b, t = idx.shape
        device = idx.device
        if pos is None:
            start = 0 if cache is None else cache.pos[:, -1:] + 1
            pos = (torch.arange(t, device=device)[None] + start).expand(b, t)
        mask = torch.ones(b, t, dtype=torch.bool, device=device) if key_mask is None else key_mask
        key_pos = pos if cache is None else torch.cat([cache.pos, pos], dim=1)
        all_mask = mask if cache is None else torch.cat([cache.mask, mask], dim=1)
        plain = cache is None and key_mask is None and bool((pos == torch.arange(t, device=device)).all())
        step = None if plain else Step(pos, key_pos, None if bool(all_mask.all()) else all_mask)
        logits, layers = self.run(idx, step, None if cache is None else cache.layers, last_only=last_only)
        return logits, KVCache(layers, key_pos, all_mask)

    def run(
        self, idx: Tensor, step: Step | None, past: tuple[LayerKV, ...] | None, *, last_only: bool
    ) -> tuple[Tensor, tuple[LayerKV, ...]]:
        x = self.position.embed(self.token_embedding(idx), None if step is None else step.pos)  # (B, T, C)
        x = self.dropout(x)
        layers = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, self.position, step, None if past is None else past[i])
            layers.append(kv)
        if last_only:
            x = x[:, -1:]
        return self.head(self.final_norm(x)), tuple(layers)


class InferenceGraph(nn.Module):
    """GPT.infer with every input and output a tensor and no branch on their values: the form to trace or export
    (ONNX). A prefill passes a cache of length 0.

    forward(idx (B, T), pos (B, T), key_mask (B, T), cache_pos (B, S), cache_mask (B, S), k_0, v_0, k_1, ...)
        -> (last-position logits (B, 1, V), cache_pos (B, S + T), cache_mask (B, S + T), k_0, v_0, k_1, ...)
    """

    def __init__(self, model: GPT) -> None:
        super().__init__()
        self.model = model

    def forward(self, idx: Tensor, pos: Tensor, key_mask: Tensor, *cache: Tensor) -> tuple[Tensor, ...]:
        past = KVCache.from_tensors(cache)
        key_pos, all_mask = torch.cat([past.pos, pos], dim=1), torch.cat([past.mask, key_mask], dim=1)
        logits, layers = self.model.run(idx, Step(pos, key_pos, all_mask), past.layers, last_only=True)
        return (logits, *KVCache(layers, key_pos, all_mask).tensors())


def build_gpt(config: ModelConfig, *, seed: int | None = None, empty: bool = False) -> GPT:
    """Builds a GPT from its description, looking every component up in its registry.

    Its weights are drawn from `seed` (None: a seed drawn from torch's generator, so torch.manual_seed makes a
    build repeat). With `empty`, the network stays on the meta device: shapes without memory or values, to count
    or to shard before `materialize` gives it both (trainer=fsdp creates its weights that way, shard by shard).
    """
    device = torch.get_default_device()  # the CPU, or the device of a `with torch.device(...)` around the call
    with torch.device("meta"):
        network = assemble(config)
    if not empty and device.type != "meta":
        materialize(network, device, seed)
    return network


def assemble(config: ModelConfig) -> GPT:
    """The network's modules, created wherever torch creates tensors now, with their libraries' default weights."""

    def norm() -> nn.Module:
        return NORMS.build(config.norm.name, config.n_embd, config.bias, **config.norm.options)

    position = POSITIONS.build(config.position.name, config, **config.position.options)
    blocks = [
        BLOCKS.build(
            config.block.name,
            ATTENTIONS.build(config.attention.name, config, **config.attention.options),
            MLPS.build(config.mlp.name, config, **config.mlp.options),
            norm(),
            norm(),
            **config.block.options,
        )
        for _ in range(config.n_layer)
    ]
    return GPT(config, position, blocks, norm())


def is_empty(network: nn.Module) -> bool:
    """Whether `network` is still on the meta device (build_gpt(empty=True)), waiting for `materialize`."""
    return any(p.is_meta for p in network.parameters())


def materialize(
    network: GPT, device: torch.device, seed: int | None = None, weights: Mapping[str, Tensor] | None = None
) -> None:
    """Gives a network on the meta device, whole or already sharded (FSDP), memory on `device` and its starting
    weights, this process's shard of each when sharded: the whole tensors `weights` holds by name (a model
    directory's file), or else drawn from `seed` (None: a seed drawn from torch's generator)."""
    network.to_empty(device=device)
    if network.config.tie_weights and network.head.weight is not network.token_embedding.weight:
        network.head.weight = network.token_embedding.weight  # to_empty gives each of the two its own tensor
    if weights is not None:
        load_weights(network, weights)
    else:
        network.initialize(int(torch.randint(2**62, (), device="cpu")) if seed is None else seed)
