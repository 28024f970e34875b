"""`llm components`, run in-process: the printed counts equal hand counts of the model its overrides compose."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from llm.cli import main
from llm.model import ModelConfig, build_gpt


def hand_counts(vocab: int, block_size: int, n_layer: int, n_embd: int) -> dict[str, int]:
    """The default model's parts (learned positions, LayerNorm with bias, GELU 4x, pre-norm, tied head):
    a layer has norms 2·2C, qkv 3C² + 3C, proj C² + C, fc 4C² + 4C, proj 4C² + C = 12C² + 13C weights;
    FLOPs are 6 per weight in a matmul (the head, V·C, once) plus 12·L·C·T for attention scores and values."""
    c = n_embd
    non_embedding = n_layer * (12 * c * c + 13 * c) + 2 * c  # + the final norm
    return {
        "params": vocab * c + block_size * c + non_embedding,  # + token embedding and position table
        "params_non_embedding": non_embedding,
        "flops_per_token": 6 * (non_embedding + vocab * c) + 12 * n_layer * c * block_size,
    }


def printed_counts(args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch, tmp_path: Path) -> str:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["llm"])  # main() rewrites sys.argv for Hydra; restored afterwards
    main(["components", *args])
    return capsys.readouterr().out


def counts_in(out: str) -> dict[str, int]:
    rows = re.findall(r"│ (params|params_non_embedding|flops_per_token)\s*│\s*([\d,]+) │", out)
    return {name: int(value.replace(",", "")) for name, value in rows}


def test_components_counts_the_model_with_n_layer_2(capsys, monkeypatch, tmp_path: Path) -> None:
    """Defaults (V=50257, T=128, C=128) with model.n_layer=2: 6,846,080 parameters, 41,371,392 FLOPs a token."""
    out = printed_counts(["model.n_layer=2"], capsys, monkeypatch, tmp_path)
    expected = hand_counts(vocab=50257, block_size=128, n_layer=2, n_embd=128)
    assert expected == {"params": 6_846_080, "params_non_embedding": 396_800, "flops_per_token": 41_371_392}
    assert counts_in(out) == expected
    assert "n_layer=2, n_head=4, n_kv_head=4, n_embd=128" in out
    # the same number by counting the tensors of a model built here with two layers
    model = build_gpt(ModelConfig(vocab_size=50257, block_size=128, n_layer=2, n_head=4, n_embd=128))
    assert sum(p.numel() for p in model.parameters()) == expected["params"]


def test_components_follows_vocab_and_shape_overrides(capsys, monkeypatch, tmp_path: Path) -> None:
    """vocab_size, n_layer, n_embd and block_size overrides all reach the printed counts."""
    args = ["vocab_size=1000", "model.n_layer=3", "model.n_embd=64", "model.block_size=32"]
    out = printed_counts(args, capsys, monkeypatch, tmp_path)
    expected = hand_counts(vocab=1000, block_size=32, n_layer=3, n_embd=64)
    assert counts_in(out) == expected
    assert "vocab_size=1000, block_size=32" in out
