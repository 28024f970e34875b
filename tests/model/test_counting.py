"""Parameter and FLOP counts against hand counts of small shapes."""

from __future__ import annotations

import pytest
import torch

from llm.model import ModelConfig, Part, build_gpt
from llm.model.counting import count_parameters, training_flops_per_token


def small(**settings) -> ModelConfig:
    return ModelConfig(**{"vocab_size": 10, "block_size": 8, "n_layer": 2, "n_head": 2, "n_embd": 4, **settings})


# V=10, T=8, L=2, H=2, C=4 (head size 2), learned positions, LayerNorm with bias, GELU 4x, pre-norm:
#   token embedding 10·4 = 40, position table 8·4 = 32
#   per layer: norms 2·(4+4) = 16, qkv 4·12+12 = 60, proj 4·4+4 = 20, fc 4·16+16 = 80, proj 16·4+4 = 68 -> 244
#   final norm 4+4 = 8
PARAMS_TIED = 40 + 32 + 2 * 244 + 8  # 568
NON_EMBEDDING = 2 * 244 + 8  # 496
# FLOPs: 6·(496 + V·C = 40) = 3216, attention 12·L·H·hs·T = 12·2·2·2·8 = 768
FLOPS = 6 * (496 + 40) + 12 * 2 * 2 * 2 * 8


def test_hand_count_tied() -> None:
    counts = count_parameters(build_gpt(small()))
    assert counts == {"params": PARAMS_TIED, "params_non_embedding": NON_EMBEDDING}
    assert PARAMS_TIED == 568 and FLOPS == 3984
    assert training_flops_per_token(small()) == FLOPS


def test_untied_head_counts_twice_in_params_but_not_in_compute() -> None:
    counts = count_parameters(build_gpt(small(tie_weights=False)))
    assert counts == {"params": PARAMS_TIED + 40, "params_non_embedding": NON_EMBEDDING}
    assert training_flops_per_token(small(tie_weights=False)) == FLOPS


def test_window_shortens_the_attention_term() -> None:
    config = small(attention=Part("manual", {"window": 3}))
    assert training_flops_per_token(config) == 6 * (496 + 40) + 12 * 2 * 2 * 2 * 3  # 3504


def test_hand_count_llama_shape() -> None:
    # V=10, T=8, L=1, H=4, 2 kv heads, C=8 (head size 2), no bias, RMSNorm, SwiGLU (multiple_of 8),
    # rope, untied:
    #   qkv (4 + 2·2)·2 = 16 rows · 8 = 128, proj 8·8 = 64
    #   SwiGLU hidden: 8·8/3 = 21.3 -> 21 -> 24: fc 2·24·8 = 384, proj 8·24 = 192
    #   norms 8 + 8 (+ final 8), embedding 80, head 80, no position parameters
    config = ModelConfig(
        vocab_size=10,
        block_size=8,
        n_layer=1,
        n_head=4,
        n_kv_head=2,
        n_embd=8,
        bias=False,
        tie_weights=False,
        position=Part("rope"),
        norm=Part("rmsnorm"),
        mlp=Part("swiglu", {"multiple_of": 8}),
    )
    layer = 128 + 64 + 384 + 192 + 16
    assert count_parameters(build_gpt(config)) == {
        "params": 80 + 80 + layer + 8,
        "params_non_embedding": layer + 8,
    }
    assert training_flops_per_token(config) == 6 * (792 + 80) + 12 * 1 * 4 * 2 * 8  # 6000


def test_counts_on_meta_device_match() -> None:
    config = small(n_layer=3, tie_weights=False)
    with torch.device("meta"):
        meta = build_gpt(config)
    assert count_parameters(meta) == count_parameters(build_gpt(config))


@pytest.mark.parametrize("position", ["none", "sinusoidal", "rope", "alibi"])
def test_parameter_free_positions(position: str) -> None:
    counts = count_parameters(build_gpt(small(position=Part(position))))
    assert counts == {"params": PARAMS_TIED - 32, "params_non_embedding": NON_EMBEDDING}
