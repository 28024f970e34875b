"""Export to ONNX: onnxruntime's prefill and cached decoding steps equal the model's (GPT.infer), for learned and
rotary positions, GQA, and the components transformers has no equivalent for."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from llm.export import save_model_dir
from llm.export.formats import export_model
from llm.export.onnx import input_names
from llm.model import GPT, ModelConfig, Part, build_gpt
from llm.model.kv_cache import KVCache
from llm.tokenizer import train_tokenizer

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

CONFIGS = {
    "learned": dict(),
    "rope-gqa-rmsnorm-swiglu": dict(
        position=Part("rope", {"theta": 500.0}),
        norm=Part("rmsnorm"),
        mlp=Part("swiglu", {"multiple_of": 16}),
        n_head=4,
        n_kv_head=2,
        bias=False,
        tie_weights=False,
    ),
    "alibi-qknorm-window-post-relu2": dict(
        position=Part("alibi"),
        attention=Part("fused", {"qk_norm": True, "window": 5}),
        block=Part("post"),
        mlp=Part("relu2"),
    ),
    "sinusoidal-multi-query": dict(position=Part("sinusoidal"), n_head=4, n_kv_head=1),
}


def exported(name: str, tmp_path: Path) -> tuple[GPT, Path]:
    tokenizer = train_tokenizer("byte", ["x"])
    shape: dict[str, object] = dict(block_size=16, n_layer=2, n_head=2, n_embd=32)
    config = ModelConfig(vocab_size=tokenizer.vocab_size, **{**shape, **CONFIGS[name]})  # type: ignore[arg-type]
    torch.manual_seed(0)
    model = build_gpt(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    out = export_model(save_model_dir(tmp_path / "model", model, tokenizer), "onnx", tmp_path / "onnx")
    return model, out


def run(
    session: object, names: list[str], idx: torch.Tensor, pos: torch.Tensor, mask: torch.Tensor, cache: list[np.ndarray]
) -> list[np.ndarray]:
    inputs = [idx.numpy(), pos.numpy(), mask.numpy(), *cache]
    return session.run(None, dict(zip(names, inputs, strict=True)))  # type: ignore[attr-defined]


def empty(model: GPT, batch: int) -> list[np.ndarray]:
    c = model.config
    kv = [np.zeros((batch, c.kv_heads, 0, c.head_dim), np.float32) for _ in range(2 * c.n_layer)]
    return [np.zeros((batch, 0), np.int64), np.zeros((batch, 0), bool), *kv]


@pytest.mark.parametrize("name", list(CONFIGS))
def test_prefill_and_cached_steps_equal_ours(name: str, tmp_path: Path) -> None:
    model, out = exported(name, tmp_path)
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    names = input_names(model.config.n_layer)
    for batch, length in [(1, 1), (3, 6)]:
        idx = torch.randint(0, 257, (batch, length))
        pos = torch.arange(length)[None].expand(batch, length).contiguous()
        mask = torch.ones(batch, length, dtype=torch.bool)
        theirs = run(session, names, idx, pos, mask, empty(model, batch))
        with torch.no_grad():
            ours, cache = model.infer(idx, last_only=True)
        np.testing.assert_allclose(theirs[0], ours.numpy(), atol=1e-4, rtol=0)
        for step in range(3):  # decoding steps, each on the cache the runtime returned
            new = torch.randint(0, 257, (batch, 1))
            next_pos = torch.full((batch, 1), length + step)
            theirs = run(session, names, new, next_pos, torch.ones(batch, 1, dtype=torch.bool), theirs[1:])
            with torch.no_grad():
                ours, cache = model.infer(new, cache=cache, last_only=True)
            np.testing.assert_allclose(theirs[0], ours.numpy(), atol=1e-4, rtol=0)
            np.testing.assert_array_equal(theirs[1], cache.pos.numpy())
            for theirs_kv, ours_kv in zip(theirs[3:], KVCache.tensors(cache)[2:], strict=True):
                np.testing.assert_allclose(theirs_kv, ours_kv.numpy(), atol=1e-4, rtol=0)


def test_a_left_padded_batch_equals_ours(tmp_path: Path) -> None:
    model, out = exported("rope-gqa-rmsnorm-swiglu", tmp_path)
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    idx = torch.randint(0, 257, (2, 5))
    mask = torch.tensor([[True] * 5, [False, False, True, True, True]])
    pos = (torch.arange(5)[None] - (~mask).sum(1, keepdim=True)).clamp(min=0)
    theirs = run(session, input_names(model.config.n_layer), idx, pos, mask, empty(model, 2))
    with torch.no_grad():
        ours, _ = model.infer(idx, pos=pos, key_mask=mask, last_only=True)
    np.testing.assert_allclose(theirs[0], ours.numpy(), atol=1e-4, rtol=0)


def test_the_folder_describes_the_graph_and_holds_no_pickle(tmp_path: Path) -> None:
    model, out = exported("learned", tmp_path)
    assert sorted(p.name for p in out.iterdir()) == [
        "model.onnx",
        "onnx_model.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    about = json.loads((out / "onnx_model.json").read_text())
    assert about["format"] == "llm.onnx" and about["model"] == model.config.to_dict()
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == [i["name"] for i in about["inputs"]]
    assert [o.name for o in session.get_outputs()] == [o["name"] for o in about["outputs"]]
