"""The GPU path (marked `gpu`: skipped without CUDA, run with `pytest -m gpu`): training through `trainer=gpu`
(bf16 autocast, fused AdamW), compiled or not, the two attention paths on the GPU, and cached generation on the
GPU."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from llm.configs import compose_config
from llm.infer import GenerationSettings, generate_batch
from llm.model import ModelConfig, Part, build_gpt
from llm.train import train
from tests.conftest import tiny_corpus_text, tiny_overrides

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def config(attention: str, position: str = "rope") -> ModelConfig:
    return ModelConfig(
        vocab_size=50,
        block_size=32,
        n_layer=2,
        n_head=4,
        n_kv_head=2,
        n_embd=64,
        position=Part(position),
        attention=Part(attention),
    )


@pytest.mark.parametrize("position", ["learned", "rope", "alibi"])
def test_manual_and_fused_attention_agree_on_the_gpu_in_bf16(position: str) -> None:
    torch.manual_seed(0)
    manual = build_gpt(config("manual", position)).cuda().eval()
    fused = build_gpt(config("fused", position)).cuda().eval()
    fused.load_state_dict(manual.state_dict())
    idx = torch.randint(0, 50, (4, 32), device="cuda")
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        torch.testing.assert_close(manual(idx).float(), fused(idx).float(), atol=3e-2, rtol=3e-2)


def test_cached_generation_equals_uncached_on_the_gpu() -> None:
    torch.manual_seed(0)
    model = build_gpt(config("fused")).cuda().eval()
    prompts = [[1, 2, 3], [4], [5, 6, 7, 8, 9]]
    greedy = GenerationSettings(max_new_tokens=20, temperature=0.0)
    cached = generate_batch(model, prompts, greedy)
    uncached = generate_batch(model, prompts, GenerationSettings(max_new_tokens=20, temperature=0.0, use_cache=False))
    assert cached == uncached


def test_trainer_gpu_trains_in_bf16_on_the_gpu(tmp_path: Path) -> None:
    corpus, record = tmp_path / "corpus.txt", tmp_path / "dtypes.json"
    corpus.write_text(tiny_corpus_text())
    overrides = [o for o in tiny_overrides(tmp_path, corpus, steps=20) if not o.startswith("trainer.accelerator")]
    spy = ["+callbacks.dtypes._target_=tests.helpers.RecordTrainingDtypes", f"+callbacks.dtypes.path={record}"]
    train(compose_config("train", [*overrides, "trainer=gpu", "compile=false", *spy]))  # the spy hooks the eager head
    seen = json.loads(record.read_text())
    assert seen["precision"] == "bf16-mixed" and set(seen["head_dtypes"]) == {"torch.bfloat16"}
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["steps"] == 20 and math.isfinite(summary["train_loss"])
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()


def test_compiled_training_on_the_gpu_follows_the_eager_run(tmp_path: Path) -> None:
    """trainer=gpu compiles the network and the cross-entropy (compile=null, the default): the losses of the eager
    run (compile=false), to bf16's rounding."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(tiny_corpus_text())

    def summary(run: str, *extra: str) -> dict:
        overrides = [o for o in tiny_overrides(tmp_path, corpus, run, steps=20) if not o.startswith("trainer.acc")]
        train(compose_config("train", [*overrides, "trainer=gpu", *extra]))
        return json.loads((tmp_path / run / "summary.json").read_text())

    eager, compiled = summary("eager", "compile=false"), summary("compiled")  # compile=null compiles on a GPU
    assert compiled["train_loss"] == pytest.approx(eager["train_loss"], rel=0.02)
    assert compiled["val_loss"] == pytest.approx(eager["val_loss"], rel=0.02)


def test_batches_are_pinned_for_a_gpu_trainer() -> None:
    import lightning as L

    from llm.data.loading import pin_memory

    trainer = L.Trainer(accelerator="gpu", devices=1, logger=False, enable_checkpointing=False)
    assert pin_memory(trainer) is True


def test_muon_orthogonalises_in_bf16_and_trains_through_trainer_gpu(tmp_path: Path) -> None:
    from llm.lit.muon import Muon

    matrix = torch.nn.Parameter(torch.randn(64, 32, device="cuda"))
    assert Muon([matrix]).param_groups[0]["ns_dtype"] == "bfloat16"  # auto: bf16 for CUDA weights
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(tiny_corpus_text())
    overrides = [o for o in tiny_overrides(tmp_path, corpus, steps=30) if not o.startswith(("trainer.acc", "optim."))]
    train(compose_config("train", [*overrides, "trainer=gpu", "optim=muon", "optim.adamw_lr=3e-3"]))
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["steps"] == 30 and math.isfinite(summary["train_loss"])
    assert summary["train_loss"] < math.log(len(set(tiny_corpus_text())))  # below a uniform guess over the characters
