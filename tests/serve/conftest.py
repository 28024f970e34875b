"""A tiny model directory for the server's tests: a random GPT (loud weights, so greedy text varies) with a char
tokenizer over printable ASCII, and what llm.infer makes of a prompt when called directly."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
import torch

from llm.data.chat import DEFAULT_TEMPLATE
from llm.export import load_model_dir, save_model_dir
from llm.infer import GenerationSettings, complete
from llm.model import GPT, ModelConfig, build_gpt
from llm.tokenizer.char import CharTokenizer

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

ALPHABET = sorted(set(string.printable) - set("\x0b\x0c"))


def tiny_model(block_size: int) -> tuple[GPT, CharTokenizer]:
    tokenizer = CharTokenizer(ALPHABET)
    config = ModelConfig(vocab_size=tokenizer.vocab_size, block_size=block_size, n_layer=2, n_head=2, n_embd=32)
    model = build_gpt(config).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=generator))
    return model, tokenizer


def make_model_dir(directory: Path, block_size: int) -> Path:
    model, tokenizer = tiny_model(block_size)
    return save_model_dir(directory, model, tokenizer)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model directory named `tiny` with a context of 256 tokens."""
    return make_model_dir(tmp_path_factory.mktemp("serve") / "tiny", 256)


def expected(model_dir: Path, prompt: str, max_tokens: int, stop: tuple[str, ...] = ()) -> str:
    """The greedy continuation llm.infer gives, called directly on the model directory."""
    model, tokenizer = load_model_dir(model_dir)
    settings = GenerationSettings(max_new_tokens=max_tokens, temperature=0.0)
    return complete(model, tokenizer, tokenizer.encode(prompt), settings, stop)


def expected_chat(model_dir: Path, messages: list[dict[str, str]], max_tokens: int) -> str:
    """The greedy answer to `messages`: the default template's prompt, stopped at the next user turn."""
    return expected(model_dir, DEFAULT_TEMPLATE.generation_prompt(messages), max_tokens, ("\nUser:",))
