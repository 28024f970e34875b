"""Model presets (conf/model/<preset>.yaml) compose with Hydra, build, and train."""

from __future__ import annotations

import copy
import functools
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from llm.configs import config_dir
from llm.model import ModelConfig, build_gpt
from llm.model.counting import count_parameters

PRESETS = ["gpt2_small", "llama_tiny", "modern_tiny", "nanogpt_cpu", "transformer_original"]

# what each preset is meant to be: parts, then the settings that define it
EXPECTED: dict[str, dict[str, Any]] = {
    "transformer_original": {
        "parts": ("sinusoidal", "manual", "layernorm", "relu", "post"),
        "tie_weights": True,
        "bias": True,
    },
    "gpt2_small": {
        "parts": ("learned", "fused", "layernorm", "gelu", "pre"),
        "n_layer": 12,
        "n_head": 12,
        "n_embd": 768,
        "block_size": 1024,
        "tie_weights": True,
        "bias": True,
    },
    "llama_tiny": {
        "parts": ("rope", "fused", "rmsnorm", "swiglu", "pre"),
        "n_layer": 4,
        "n_head": 8,
        "n_kv_head": 2,
        "n_embd": 256,
        "tie_weights": False,
        "bias": False,
    },
    "nanogpt_cpu": {
        "parts": ("learned", "fused", "layernorm", "gelu", "pre"),
        "n_layer": 4,
        "n_head": 4,
        "n_embd": 128,
        "block_size": 64,
        "dropout": 0.0,
        "tie_weights": True,
        "bias": False,
    },
    "modern_tiny": {
        "parts": ("rope", "fused", "rmsnorm", "relu2", "pre"),
        "tie_weights": False,
        "bias": False,
    },
}


@functools.cache
def model_node(preset: str, overrides: tuple[str, ...] = ()) -> dict[str, Any]:
    """Composes only the model group: conf/model/<preset>.yaml and the part defaults it lists."""
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(overrides=[f"+model={preset}", *overrides])
    node = OmegaConf.to_container(cfg.model, resolve=True)
    assert isinstance(node, dict)
    return node


def preset_config(preset: str, vocab_size: int, *overrides: str) -> ModelConfig:
    return ModelConfig.from_dict({**copy.deepcopy(model_node(preset, overrides)), "vocab_size": vocab_size})


def test_every_preset_is_listed() -> None:
    files = {p.stem for p in (config_dir() / "model").glob("*.yaml")}
    assert set(PRESETS) <= files
    assert set(EXPECTED) == set(PRESETS)


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_composes_to_what_it_claims(preset: str) -> None:
    config = preset_config(preset, 65)
    expected = dict(EXPECTED[preset])
    parts = (config.position, config.attention, config.norm, config.mlp, config.block)
    assert tuple(p.name for p in parts) == expected.pop("parts")
    for setting, value in expected.items():
        assert getattr(config, setting) == value, setting
    assert config.attention.options.get("qk_norm") is (preset == "modern_tiny")
    with torch.device("meta"):  # full size, shapes only
        assert count_parameters(build_gpt(config))["params"] > 0


def test_preset_parts_can_still_be_swapped() -> None:
    config = preset_config("llama_tiny", 65, "model/position=alibi", "model.n_layer=2")
    assert (config.position.name, config.mlp.name, config.n_layer) == ("alibi", "swiglu", 2)


def test_gpt2_small_has_124m_parameters() -> None:
    config = preset_config("gpt2_small", 50257)
    with torch.device("meta"):
        model = build_gpt(config)
    c, hidden, vocab, context = 768, 3072, 50257, 1024
    embeddings = vocab * c + context * c  # 38,597,376 + 786,432 (the head is tied: no more)
    layer = (
        2 * (c + c)  # two LayerNorms, weight and bias
        + c * 3 * c
        + 3 * c  # qkv: 768·2304 + 2304
        + c * c
        + c  # attention output projection
        + c * hidden
        + hidden  # mlp fc
        + hidden * c
        + c  # mlp proj
    )  # 7,087,872
    total = embeddings + 12 * layer + 2 * c
    assert layer == 7_087_872 and total == 124_439_808
    assert count_parameters(model) == {"params": total, "params_non_embedding": 12 * layer + 2 * c}


@pytest.mark.parametrize("preset", [p for p in PRESETS if p != "gpt2_small"])
def test_preset_trains(preset: str) -> None:
    vocab = 65
    config = preset_config(
        preset, vocab, "model.n_layer=1", "model.n_embd=32", "model.block_size=16", "model.dropout=0.0"
    )
    torch.manual_seed(0)
    model = build_gpt(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    batch = torch.randint(0, vocab, (4, 17))
    inputs, targets = batch[:, :-1], batch[:, 1:]
    losses = []
    for _ in range(12):
        loss = F.cross_entropy(model(inputs).flatten(0, 1), targets.flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(torch.log(torch.tensor(float(vocab))).item(), rel=0.15)
    assert losses[-1] < 0.7 * losses[0], losses
