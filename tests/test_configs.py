"""Every option of every config group composes with the train config and instantiates."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from llm.configs import compose_config, config_dir
from llm.model import MODEL_PARTS, build_gpt
from llm.tokenizer import TOKENIZERS, train_tokenizer
from llm.train import instantiate_all, model_config
from tests.conftest import tiny_overrides

CONF = config_dir()


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def compose(tmp_path: Path, corpus: Path, *overrides: str):
    return compose_config("train", [*tiny_overrides(tmp_path, corpus), *overrides])


def test_every_group_has_options() -> None:
    for group in (
        "data",
        "tokenizer",
        "model",
        "optim",
        "scheduler",
        "trainer",
        "logger",
        "callbacks",
        "experiment",
    ):
        assert options(group), group


@pytest.mark.parametrize("option", options("data"))
def test_data_options_instantiate(tmp_path: Path, corpus_file: Path, option: str) -> None:
    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text('{"text": "hello there"}\n{"text": "general kenobi"}\n')
    extra = {"hf": [f"data.corpus.data_files={jsonl}"], "pystdlib": []}.get(option, [f"data.path={corpus_file}"])
    general = [o for o in tiny_overrides(tmp_path, corpus_file) if not o.startswith("data")]
    cfg = compose_config("train", [*general, f"data={option}", *extra])
    if option == "pystdlib":
        cfg.data.corpus.max_bytes = 20_000
    corpus = instantiate(cfg.data.corpus)
    assert next(iter(corpus.documents()))
    assert cfg.data.batch_size > 0 and 0 < cfg.data.val_fraction < 1


@pytest.mark.parametrize("option", options("tokenizer"))
def test_tokenizer_options_train(tmp_path: Path, corpus_file: Path, option: str) -> None:
    small_vocab = ["tokenizer.vocab_size=280"] if option == "bpe" else []  # the tiny corpus has no 1024 tokens
    cfg = compose(tmp_path, corpus_file, f"tokenizer={option}", *small_vocab)
    node = dict(cfg.tokenizer)
    tokenizer = train_tokenizer(node.pop("name"), [corpus_file.read_text()], **node)
    assert tokenizer.decode(tokenizer.encode("the cat sat")) == "the cat sat"


def test_tokenizer_configs_and_registry_agree() -> None:
    assert options("tokenizer") == TOKENIZERS.names()


MODEL_CASES = [("model", o) for o in options("model")] + [
    (f"model/{part}", o) for part in MODEL_PARTS for o in options(f"model/{part}")
]


@pytest.mark.parametrize(("group", "option"), MODEL_CASES)
def test_model_options_build_and_run(tmp_path: Path, corpus_file: Path, group: str, option: str) -> None:
    cfg = compose(tmp_path, corpus_file, f"{group}={option}")
    if group == "model":  # shrink presets to a test size, keeping their parts and head layout
        heads, kv = cfg.model.n_head, cfg.model.n_kv_head
        cfg.model.n_layer, cfg.model.n_embd, cfg.model.block_size = 1, 16 * heads, 16
        if kv is not None:
            assert heads % kv == 0
    model = build_gpt(model_config(cfg, vocab_size=40))
    logits = model(torch.randint(0, 40, (2, 16)))
    assert logits.shape == (2, 16, 40) and torch.isfinite(logits).all()


@pytest.mark.parametrize("option", options("optim"))
def test_optim_options_step(tmp_path: Path, corpus_file: Path, option: str) -> None:
    cfg = compose(tmp_path, corpus_file, f"optim={option}")
    model = build_gpt(model_config(cfg, vocab_size=40))
    optimizer = instantiate(cfg.optim)(model)
    model(torch.randint(0, 40, (2, 8))).sum().backward()
    optimizer.step()


@pytest.mark.parametrize("option", options("scheduler"))
def test_scheduler_options(tmp_path: Path, corpus_file: Path, option: str) -> None:
    cfg = compose(tmp_path, corpus_file, f"scheduler={option}")
    schedule = instantiate(cfg.scheduler)(total_steps=100)
    values = [schedule(step) for step in range(100)]
    assert all(0.0 <= v <= 1.0 for v in values) and max(values) == pytest.approx(1.0)


@pytest.mark.parametrize("option", options("trainer"))
def test_trainer_options(tmp_path: Path, corpus_file: Path, option: str) -> None:
    cfg = compose(tmp_path, corpus_file, f"trainer={option}")
    if cfg.trainer.accelerator == "gpu" and not torch.cuda.is_available():
        pytest.skip("trainer=gpu needs a CUDA device")
    cfg.trainer.accelerator = "cpu" if option != "gpu" else cfg.trainer.accelerator
    assert instantiate(cfg.trainer).max_steps == cfg.trainer.max_steps


@pytest.mark.parametrize("group", ["logger", "callbacks"])
def test_logger_and_callback_options(tmp_path: Path, corpus_file: Path, group: str) -> None:
    for option in options(group):
        cfg = compose(tmp_path, corpus_file, f"{group}={option}")
        assert instantiate_all(cfg[group]), option


@pytest.mark.parametrize("option", options("experiment"))
def test_experiments_compose(option: str) -> None:
    cfg = compose_config("train", [f"experiment={option}", "paths.run_dir=/nonexistent"])
    assert model_config(cfg, vocab_size=65).n_layer >= 1
    assert cfg.trainer.max_steps > 0


def test_shakespeare_char_is_nanogpts_cpu_recipe() -> None:
    cfg = compose_config("train", ["experiment=shakespeare_char", "paths.run_dir=/x", "data.path=x.txt"])
    m = cfg.model
    assert (m.n_layer, m.n_head, m.n_embd, m.block_size, m.dropout) == (4, 4, 128, 64, 0.0)
    assert (cfg.data.batch_size, cfg.optim.lr, cfg.trainer.max_steps, cfg.tokenizer.name) == (
        12,
        1e-3,
        2000,
        "char",
    )
    assert cfg.data.val_fraction == 0.1
