"""The GPT: token embedding, a position component, N blocks, a final norm and the LM head.

`build_gpt` is the one place where component names become classes.

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

import math

from torch import Tensor, nn

from llm.model.attention import ATTENTIONS
from llm.model.block import BLOCKS, Block
from llm.model.config import ModelConfig
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
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        """GPT-2 initialisation: N(0, 0.02), residual projections scaled by 1/sqrt(2·n_layer)."""
        if isinstance(module, nn.Linear):
            std = 0.02
            if getattr(module, "is_residual_projection", False):
                std /= math.sqrt(2 * self.config.n_layer)
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx: Tensor, offset: int = 0) -> Tensor:
        """Token ids (B, T) -> next-token logits (B, T, V); `offset` is the position of idx[:, 0]."""
        x = self.position.embed(self.token_embedding(idx), offset)  # (B, T, C)
        x = self.dropout(x)
        for block in self.blocks:
            x = block(x, self.position, offset)
        return self.head(self.final_norm(x))


def build_gpt(config: ModelConfig) -> GPT:
    """Builds a GPT from its description, looking every component up in its registry."""

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
