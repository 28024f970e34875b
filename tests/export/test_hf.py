"""Export to transformers: their logits and greedy generations equal ours, for GPT-2- and Llama-style models; every
component without an equivalent is refused by name; the folder holds safetensors and JSON only."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from llm.export import ModelDirError, save_model_dir
from llm.export.errors import ExportError
from llm.export.formats import export_model
from llm.export.hf import to_transformers
from llm.export.hf_layout import GPT2, LLAMA, architecture_for
from llm.infer.generate import GenerationSettings, generate_batch
from llm.model import GPT, ModelConfig, Part, build_gpt
from llm.tokenizer import Tokenizer, train_tokenizer
from tests.model.test_presets import preset_config

transformers = pytest.importorskip("transformers")

TEXT = "the cat sat on the mat.\nthe dog ate the cat's food!\n"
SHAPES = [(1, 1), (2, 7), (3, 16)]  # (batch, tokens); 16 is the whole context


def char_tokenizer() -> Tokenizer:
    return train_tokenizer("char", [TEXT])


def shaped(vocab_size: int, **settings: object) -> ModelConfig:
    base: dict[str, object] = dict(vocab_size=vocab_size, block_size=16, n_layer=2, n_head=2, n_embd=32)
    return ModelConfig(**{**base, **settings})  # type: ignore[arg-type]


def llama(vocab_size: int, **settings: object) -> ModelConfig:
    parts = dict(position=Part("rope"), norm=Part("rmsnorm"), mlp=Part("swiglu", {"multiple_of": 16}))
    return shaped(vocab_size, **{"bias": False, "tie_weights": False, **parts, **settings})


CONFIGS = {
    "gpt2": lambda v: shaped(v),
    "gpt2-untied-no-bias-mlp2": lambda v: shaped(
        v, bias=False, tie_weights=False, mlp=Part("gelu", {"hidden_mult": 2}), norm=Part("layernorm", {"eps": 1e-6})
    ),
    "gpt2-manual-attention": lambda v: shaped(v, attention=Part("manual")),
    "llama-gqa-2-of-8-theta": lambda v: llama(
        v, n_head=8, n_embd=64, n_kv_head=2, position=Part("rope", {"theta": 500.0})
    ),
    "llama-tied-bias-eps": lambda v: llama(v, tie_weights=True, bias=True, norm=Part("rmsnorm", {"eps": 1e-5})),
    "preset-gpt2_small": lambda v: preset_config(
        "gpt2_small", v, "model.n_layer=2", "model.n_embd=48", "model.n_head=4", "model.block_size=16"
    ),
    "preset-nanogpt_cpu": lambda v: preset_config(
        "nanogpt_cpu", v, "model.n_layer=2", "model.n_embd=32", "model.block_size=16"
    ),
    "preset-llama_tiny": lambda v: preset_config(
        "llama_tiny", v, "model.n_layer=2", "model.n_embd=64", "model.block_size=16"
    ),
}


def random_model(config: ModelConfig, seed: int = 0) -> GPT:
    """A model whose every weight (norms and biases included) is random, so a misplaced tensor shows."""
    torch.manual_seed(seed)
    model = build_gpt(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


def ids_of(tokenizer: Tokenizer, batch: int, length: int) -> torch.Tensor:
    ids = tokenizer.encode(TEXT * 2)
    return torch.tensor([ids[row * 3 : row * 3 + length] for row in range(batch)])


@pytest.mark.parametrize("name", list(CONFIGS))
def test_in_memory_logits_equal_ours(name: str) -> None:
    tokenizer = char_tokenizer()
    model = random_model(CONFIGS[name](tokenizer.vocab_size))
    hf_model, hf_tokenizer = to_transformers(model, tokenizer)
    expected = GPT2.hf_class if model.config.position.name == "learned" else LLAMA.hf_class
    assert type(hf_model).__name__ == expected
    for batch, length in SHAPES:
        idx = ids_of(tokenizer, batch, length)
        with torch.no_grad():
            torch.testing.assert_close(hf_model(idx).logits, model(idx), atol=1e-4, rtol=0)
    assert hf_tokenizer.encode(TEXT, add_special_tokens=False) == tokenizer.encode(TEXT)


@pytest.mark.parametrize("name", ["gpt2-untied-no-bias-mlp2", "llama-gqa-2-of-8-theta", "preset-gpt2_small"])
def test_a_saved_export_loads_with_auto_classes_and_agrees(name: str, tmp_path: Path) -> None:
    tokenizer = char_tokenizer()
    model = random_model(CONFIGS[name](tokenizer.vocab_size))
    out = export_model(save_model_dir(tmp_path / "model", model, tokenizer), "hf", tmp_path / "hf")
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    for batch, length in SHAPES:
        idx = ids_of(tokenizer, batch, length)
        with torch.no_grad():
            torch.testing.assert_close(hf_model(idx).logits, model(idx), atol=1e-4, rtol=0)
    assert hf_tokenizer.encode(TEXT, add_special_tokens=False) == tokenizer.encode(TEXT)
    assert hf_tokenizer.model_max_length == model.config.block_size
    assert {p.suffix for p in out.iterdir()} <= {".json", ".safetensors"}  # no pickle
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left


@pytest.mark.parametrize("name", ["gpt2", "gpt2-untied-no-bias-mlp2", "llama-gqa-2-of-8-theta", "llama-tied-bias-eps"])
def test_greedy_generations_agree_token_for_token(name: str) -> None:
    tokenizer = char_tokenizer()
    model = random_model(CONFIGS[name](tokenizer.vocab_size), seed=1)
    hf_model, _ = to_transformers(model, tokenizer)
    prompts = [tokenizer.encode("the cat"), tokenizer.encode("dog ate")]
    new = model.config.block_size - 7
    ours = generate_batch(model, prompts, GenerationSettings(max_new_tokens=new, temperature=0.0))
    for prompt, expected in zip(prompts, ours, strict=True):
        with torch.no_grad():
            theirs = hf_model.generate(torch.tensor([prompt]), max_new_tokens=new, min_new_tokens=new, do_sample=False)
        assert theirs[0, len(prompt) :].tolist() == expected


def gpt2_with(vocab: int, **settings: object) -> ModelConfig:
    return shaped(vocab, **settings)


REFUSED = {
    "position-sinusoidal": (gpt2_with(8, position=Part("sinusoidal")), "position 'sinusoidal' has no transformers"),
    "position-alibi": (gpt2_with(8, position=Part("alibi")), "position 'alibi' has no transformers equivalent"),
    "position-none": (gpt2_with(8, position=Part("none")), "position 'none' has no transformers equivalent"),
    "block-post": (gpt2_with(8, block=Part("post")), "block 'post' has no GPT-2 equivalent"),
    "mlp-relu": (gpt2_with(8, mlp=Part("relu")), "mlp 'relu' has no GPT-2 equivalent"),
    "mlp-relu2-llama": (llama(8, mlp=Part("relu2")), "mlp 'relu2' has no Llama equivalent"),
    "mlp-gelu-llama": (llama(8, mlp=Part("gelu")), "mlp 'gelu' has no Llama equivalent"),
    "mlp-swiglu-gpt2": (gpt2_with(8, mlp=Part("swiglu")), "mlp 'swiglu' has no GPT-2 equivalent"),
    "norm-rmsnorm-gpt2": (gpt2_with(8, norm=Part("rmsnorm")), "norm 'rmsnorm' has no GPT-2 equivalent"),
    "norm-layernorm-llama": (llama(8, norm=Part("layernorm")), "norm 'layernorm' has no Llama equivalent"),
    "qk-norm": (llama(8, attention=Part("fused", {"qk_norm": True})), "qk_norm=true (QK-norm) has no Llama"),
    "window": (gpt2_with(8, attention=Part("manual", {"window": 4})), "window=4 (sliding window) has no GPT-2"),
    "gqa-gpt2": (gpt2_with(8, n_head=4, n_kv_head=2), "n_kv_head=2 (grouped-query attention) has no GPT-2"),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_a_component_without_equivalent_is_named(name: str) -> None:
    config, fragment = REFUSED[name]
    with pytest.raises(ExportError, match=None) as error:
        architecture_for(config)
    assert fragment in str(error.value)


@pytest.mark.parametrize(
    ("preset", "exportable"),
    [
        ("gpt2_small", True),
        ("nanogpt_cpu", True),
        ("llama_tiny", True),
        ("modern_tiny", False),
        ("transformer_original", False),
    ],
)
def test_presets_are_exported_or_refused(preset: str, exportable: bool) -> None:
    config = preset_config(preset, 65)
    if exportable:
        architecture_for(config)
    else:
        with pytest.raises(ExportError, match="has no"):
            architecture_for(config)


def test_a_refused_model_writes_nothing(tmp_path: Path) -> None:
    tokenizer = char_tokenizer()
    model_dir = save_model_dir(
        tmp_path / "model", build_gpt(gpt2_with(tokenizer.vocab_size, block=Part("post"))), tokenizer
    )
    with pytest.raises(ExportError, match="block 'post' has no GPT-2 equivalent"):
        export_model(model_dir, "hf", tmp_path / "hf")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_weights_that_do_not_match_the_config_are_reported(tmp_path: Path) -> None:
    tokenizer = char_tokenizer()
    model_dir = save_model_dir(tmp_path / "model", build_gpt(shaped(tokenizer.vocab_size)), tokenizer)
    other = save_model_dir(tmp_path / "other", build_gpt(shaped(tokenizer.vocab_size, n_embd=16)), tokenizer)
    (other / "config.json").replace(model_dir / "config.json")
    with pytest.raises(ModelDirError, match="model.safetensors does not match config.json"):
        export_model(model_dir, "hf", tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


def test_a_missing_optional_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    real = importlib.import_module

    def without_transformers(name: str, *args: object) -> object:
        if name == "transformers":
            raise ImportError("No module named 'transformers'")
        return real(name, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(importlib, "import_module", without_transformers)
    tokenizer = char_tokenizer()
    with pytest.raises(ExportError, match=r"needs the Python package 'transformers'.*pip install 'llm\[export\]'"):
        to_transformers(build_gpt(shaped(tokenizer.vocab_size)), tokenizer)


def test_the_network_and_the_export_package_import_no_transformers_or_onnx() -> None:
    import os
    import subprocess
    import sys

    code = (
        "import sys, llm.model, llm.export, llm.export.formats, llm.cli.export; "
        "print(sorted(m for m in ('transformers', 'onnx', 'onnxruntime') if m in sys.modules))"
    )
    root = str(Path(__file__).resolve().parents[2])  # this checkout's llm first
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": root}
    )
    assert done.stdout.strip() == "[]"


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["gpt2", "llama-gqa-2-of-8-theta"])
def test_to_transformers_keeps_a_cuda_model_on_its_device(name: str) -> None:
    tokenizer = char_tokenizer()
    model = random_model(CONFIGS[name](tokenizer.vocab_size)).cuda()
    hf_model, _ = to_transformers(model, tokenizer)
    assert next(hf_model.parameters()).device == next(model.parameters()).device
    idx = ids_of(tokenizer, 3, 16).cuda()
    with torch.no_grad():
        torch.testing.assert_close(hf_model(idx).logits, model(idx), atol=1e-4, rtol=0)
    prompt = tokenizer.encode("the cat")
    ours = generate_batch(model, [prompt], GenerationSettings(max_new_tokens=9, temperature=0.0))[0]
    with torch.no_grad():
        theirs = hf_model.generate(torch.tensor([prompt]).cuda(), max_new_tokens=9, do_sample=False)
    assert theirs[0, len(prompt) :].tolist() == ours
