"""The assembled GPT: GPT-2 initialisation, weight tying, and config groups that match the registries."""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf

from llm.configs import config_dir
from llm.model import MODEL_PARTS, ModelConfig, Part, build_gpt


def test_gpt2_initialisation_statistics() -> None:
    torch.manual_seed(0)
    n_layer = 2
    model = build_gpt(ModelConfig(vocab_size=512, block_size=64, n_layer=n_layer, n_head=4, n_embd=384))
    residual = 0.02 / math.sqrt(2 * n_layer)  # 0.01
    expected = {
        "token_embedding.weight": 0.02,
        "position.table.weight": 0.02,
        "blocks.0.attn.qkv.weight": 0.02,
        "blocks.1.mlp.fc.weight": 0.02,
        "blocks.0.attn.proj.weight": residual,
        "blocks.1.attn.proj.weight": residual,
        "blocks.0.mlp.proj.weight": residual,
    }
    params = dict(model.named_parameters())
    for name, std in expected.items():
        weight = params[name]
        assert weight.mean().abs() < 0.1 * std, name
        assert weight.std().item() == pytest.approx(std, rel=0.03), name  # ≥ 24k samples: ~0.5% noise
    for name, p in params.items():
        if name.endswith(".bias"):
            assert torch.count_nonzero(p) == 0, name
        elif "norm" in name:
            assert torch.equal(p, torch.ones_like(p)), name


def test_weight_tying_on_and_off() -> None:
    tied = build_gpt(ModelConfig(vocab_size=11, tie_weights=True))
    assert tied.head.weight is tied.token_embedding.weight
    assert "head.weight" not in dict(tied.named_parameters())  # one tensor, listed once
    untied = build_gpt(ModelConfig(vocab_size=11, tie_weights=False))
    assert untied.head.weight is not untied.token_embedding.weight
    assert not torch.equal(untied.head.weight, untied.token_embedding.weight)
    assert "head.weight" in dict(untied.named_parameters())


def test_forward_shapes_and_positions() -> None:
    torch.manual_seed(0)
    model = build_gpt(ModelConfig(vocab_size=11, block_size=16, n_layer=1, n_head=2, n_embd=8)).eval()
    idx = torch.randint(0, 11, (3, 10))
    logits = model(idx)
    assert logits.shape == (3, 10, 11)
    # a lone token at position 0 sees only itself, just as the first token of the full sequence does
    torch.testing.assert_close(model(idx[:, :1]), logits[:, :1])
    # ... but at position 4 it gets position 4's embedding, so its logits differ
    assert not torch.allclose(model(idx[:, :1], pos=torch.tensor([[4]])), logits[:, :1])


def test_weight_names_are_stable() -> None:
    config = ModelConfig(
        vocab_size=11,
        n_layer=1,
        attention=Part("fused", {"qk_norm": True}),
        mlp=Part("swiglu"),
        tie_weights=False,
    )
    names = set(dict(build_gpt(config).named_parameters()))
    assert names == {
        "token_embedding.weight",
        "position.table.weight",
        *(f"blocks.0.{n}" for n in ("norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias")),
        *(f"blocks.0.attn.{n}" for n in ("qkv.weight", "qkv.bias", "proj.weight", "proj.bias")),
        "blocks.0.attn.q_norm.weight",
        "blocks.0.attn.k_norm.weight",
        *(f"blocks.0.mlp.{n}" for n in ("fc.weight", "fc.bias", "proj.weight", "proj.bias")),
        "final_norm.weight",
        "final_norm.bias",
        "head.weight",
    }


@pytest.mark.parametrize("group", sorted(MODEL_PARTS))
def test_config_group_matches_registry(group: str) -> None:
    registry = MODEL_PARTS[group]
    folder = config_dir() / "model" / group
    files = {path.stem: path for path in folder.glob("*.yaml")}
    assert set(files) == set(registry.names()), f"conf/model/{group}/ and the {group} registry differ"
    for stem, path in files.items():
        node = OmegaConf.to_container(OmegaConf.load(path))
        assert isinstance(node, dict)
        assert node.pop("name") == stem, f"{path}: `name` must equal the file name"
        accepted = registry.options(stem)
        assert set(node) == set(accepted), f"{path}: keys {sorted(node)} vs options {sorted(accepted)}"
