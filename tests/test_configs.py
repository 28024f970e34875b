"""Every option of every config group composes with the train config and instantiates."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch.accelerators import CPUAccelerator, CUDAAccelerator
from lightning.pytorch.plugins.precision import MixedPrecision, Precision

from llm.configs import compose_config, config_dir
from llm.model import MODEL_PARTS, build_gpt
from llm.objectives import causal_lm_loss, sequence_logprobs
from llm.run.recipes import build_objective, compiles, model_config
from llm.run.runner import instantiate_all
from llm.tokenizer import TOKENIZERS, train_tokenizer
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


# distinctive settings for each optimizer, so that a setting that is not passed on shows
OPTIM_SETTINGS = {
    "adamw": ["optim.lr=0.01", "optim.betas=[0.8,0.95]", "optim.weight_decay=0.05"],
    "muon": [
        "optim.lr=0.03",
        "optim.momentum=0.9",
        "optim.nesterov=false",
        "optim.ns_steps=4",
        "optim.adamw_lr=0.004",
        "optim.adamw_betas=[0.8,0.95]",
        "optim.weight_decay=0.05",
    ],
    "sgd": ["optim.lr=0.05", "optim.momentum=0.5", "optim.weight_decay=0.02"],
}
MATRIX, VECTOR, EMBEDDING = "blocks.0.attn.qkv.weight", "blocks.0.attn.qkv.bias", "token_embedding.weight"


def adam_first_step(p: torch.Tensor, g: torch.Tensor, lr: float, weight_decay: float) -> torch.Tensor:
    """AdamW's first step: the bias-corrected moments are g and g², so p·(1 - lr·wd) - lr·g / (|g| + eps)."""
    return p * (1 - lr * weight_decay) - lr * g / (g.abs() + 1e-8)


def sgd_first_step(p: torch.Tensor, g: torch.Tensor, lr: float, momentum: float, weight_decay: float) -> torch.Tensor:
    """Nesterov SGD's first step: d = g + wd·p, the buffer is d, so p - lr·(d + momentum·d)."""
    d = g + weight_decay * p
    return p - lr * (1 + momentum) * d


@pytest.mark.parametrize("option", options("optim"))
def test_optim_options_step(tmp_path: Path, corpus_file: Path, option: str) -> None:
    """The optimizer built from each optim config carries that config's settings, and one step moves a
    weight matrix, a bias and the embedding by the optimizer's first-step rule worked out here."""
    cfg = compose(tmp_path, corpus_file, f"optim={option}", *OPTIM_SETTINGS[option])
    torch.manual_seed(0)
    model = build_gpt(model_config(cfg, vocab_size=40))
    optimizer = instantiate(cfg.optim)(model)
    model(torch.randint(0, 40, (2, 8))).sum().backward()
    params = dict(model.named_parameters())
    before = {name: p.detach().clone() for name, p in params.items()}
    grads = {name: p.grad.clone() for name, p in params.items() if p.grad is not None}
    optimizer.step()

    def moved(name: str, expected: torch.Tensor) -> None:
        torch.testing.assert_close(params[name].detach(), expected, rtol=1e-5, atol=1e-7, msg=name)

    groups = optimizer.param_groups
    if option == "adamw":
        assert [(g["lr"], g["betas"], g["weight_decay"]) for g in groups] == [
            (0.01, (0.8, 0.95), 0.05),
            (0.01, (0.8, 0.95), 0.0),
        ]
        for name in (MATRIX, EMBEDDING):
            moved(name, adam_first_step(before[name], grads[name], lr=0.01, weight_decay=0.05))
        moved(VECTOR, adam_first_step(before[VECTOR], grads[VECTOR], lr=0.01, weight_decay=0.0))
    elif option == "sgd":
        assert [(g["lr"], g["momentum"], g["nesterov"], g["weight_decay"]) for g in groups] == [
            (0.05, 0.5, True, 0.02),
            (0.05, 0.5, True, 0.0),
        ]
        moved(MATRIX, sgd_first_step(before[MATRIX], grads[MATRIX], lr=0.05, momentum=0.5, weight_decay=0.02))
        moved(VECTOR, sgd_first_step(before[VECTOR], grads[VECTOR], lr=0.05, momentum=0.5, weight_decay=0.0))
    else:
        muon_group, decayed, plain = groups
        settings = ("lr", "momentum", "nesterov", "ns_steps", "adjust_lr_fn", "weight_decay")
        assert tuple(muon_group[k] for k in settings) == (0.03, 0.9, False, 4, None, 0.05)
        assert [(g["lr"], g["betas"], g["weight_decay"]) for g in (decayed, plain)] == [
            (0.004, (0.8, 0.95), 0.05),
            (0.004, (0.8, 0.95), 0.0),
        ]
        moved(EMBEDDING, adam_first_step(before[EMBEDDING], grads[EMBEDDING], lr=0.004, weight_decay=0.05))
        moved(VECTOR, adam_first_step(before[VECTOR], grads[VECTOR], lr=0.004, weight_decay=0.0))
        # Muon: p·(1 - lr·wd) - lr·sqrt(rows/cols)·O, O the orthogonalised momentum (top singular value about 1)
        rows, cols = before[MATRIX].shape  # (96, 32): three times as many rows as columns
        update = (before[MATRIX] * (1 - 0.03 * 0.05) - params[MATRIX].detach()) / (0.03 * math.sqrt(rows / cols))
        assert 0.5 < torch.linalg.matrix_norm(update, ord=2).item() < 1.5


@pytest.mark.parametrize("option", options("scheduler"))
def test_scheduler_options(tmp_path: Path, corpus_file: Path, option: str) -> None:
    cfg = compose(tmp_path, corpus_file, f"scheduler={option}")
    schedule = instantiate(cfg.scheduler)(total_steps=100)
    values = [schedule(step) for step in range(100)]
    assert all(0.0 <= v <= 1.0 for v in values) and max(values) == pytest.approx(1.0)


# trainer config -> (accelerator, precision); `default` says accelerator=auto
TRAINER_CHOICES = {
    "default": ("auto", "32-true"),
    "cpu": ("cpu", "32-true"),
    "gpu": ("gpu", "bf16-mixed"),
    "ddp": ("auto", "32-true"),
    "fsdp": ("gpu", "bf16-mixed"),
}


@pytest.mark.parametrize("option", options("trainer"))
def test_trainer_options(tmp_path: Path, corpus_file: Path, option: str) -> None:
    """Each trainer config reaches the Trainer: its accelerator, its precision plugin, and the step, validation,
    clipping and accumulation settings (the last two overridden here to values no config holds)."""
    general = [o for o in tiny_overrides(tmp_path, corpus_file) if not o.startswith("trainer.accelerator")]
    overrides = [f"trainer={option}", "trainer.gradient_clip_val=0.25", "trainer.accumulate_grad_batches=3"]
    cfg = compose_config("train", [*general, *overrides])
    accelerator, precision = TRAINER_CHOICES[option]
    on_gpu = accelerator == "gpu" or (accelerator == "auto" and torch.cuda.is_available())
    if on_gpu and not torch.cuda.is_available():
        cfg.trainer.accelerator = "cpu"  # no CUDA here: check everything but the accelerator on the CPU
        on_gpu = False
    trainer = instantiate(cfg.trainer)
    assert isinstance(trainer.accelerator, CUDAAccelerator if on_gpu else CPUAccelerator)
    assert trainer.precision == precision
    plugin = trainer.precision_plugin
    if precision == "bf16-mixed":
        assert isinstance(plugin, MixedPrecision) and plugin.precision == "bf16-mixed"
    else:
        assert type(plugin) is Precision
    assert (trainer.max_steps, trainer.val_check_interval) == (30, 10)  # tiny_overrides' settings
    assert (trainer.gradient_clip_val, trainer.accumulate_grad_batches) == (0.25, 3)
    assert trainer.num_sanity_val_steps == 0 and trainer.check_val_every_n_epoch is None


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


def test_the_defaults_stand_on_their_own_and_experiment_null_works() -> None:
    """No experiment is applied unless named: `llm train data=text data.path=x` carries no quickstart values."""
    plain = compose_config("train", ["paths.run_dir=/x"])
    quick = compose_config("train", ["experiment=quickstart", "paths.run_dir=/x"])
    assert (plain.trainer.max_steps, plain.samples.prompt) == (2000, "")
    assert (quick.trainer.max_steps, quick.samples.prompt) == (600, "def ")


def test_the_speedrun_validates_once_at_the_end_and_keeps_no_checkpoints_on_the_way() -> None:
    cfg = compose_config("train", ["experiment=shakespeare_speedrun", "paths.run_dir=/x", "data.path=x.txt"])
    assert cfg.trainer.val_check_interval == cfg.trainer.max_steps
    assert cfg.checkpoint.every_n_steps is None and cfg.samples.num == 0
    assert (cfg.optim._target_, cfg.model.attention.qk_norm, cfg.model.position.name) == (
        "llm.lit.optim.muon",
        True,
        "rope",
    )


@pytest.mark.parametrize("command", ["train", "sft", "dpo"])
def test_compile_true_compiles_a_language_modelling_loss(command: str) -> None:
    """compile=true compiles the objective's pass over the logits with the network: the cross-entropy, or the
    log-probs of the preference objectives."""
    compiled = build_objective(compose_config(command, ["compile=true"]))
    eager = build_objective(compose_config(command, ["compile=false"]))
    if command == "dpo":
        assert eager.logprobs is sequence_logprobs and compiled.logprobs is not sequence_logprobs
    else:
        assert eager.loss is causal_lm_loss and compiled.loss is not causal_lm_loss


@pytest.mark.parametrize(
    ("overrides", "cuda", "expected"),
    [
        (["trainer=gpu"], True, True),  # compile=null, the default: on for a CUDA GPU the trainer names
        (["trainer=gpu", "compile=false"], True, False),
        (["trainer=fsdp"], True, False),  # several processes: compile=true asks for it
        (["trainer=ddp", "trainer.accelerator=gpu"], True, False),
        (["trainer=gpu", "trainer.devices=2"], True, False),
        (["trainer=fsdp", "compile=true"], True, True),
        (["trainer=gpu"], False, False),  # Lightning's "gpu" on a Mac is MPS, where compile is not taken
        ([], True, False),  # trainer.accelerator=auto on a CUDA machine: fp32, eager, unless asked
        (["compile=true"], False, True),
    ],
)
def test_compile_null_compiles_on_a_named_cuda_gpu_only(
    monkeypatch: pytest.MonkeyPatch, overrides: list[str], cuda: bool, expected: bool
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    cfg = compose_config("train", overrides)
    assert cfg.compile is None or "compile=" in " ".join(overrides)
    assert compiles(cfg) is expected
    assert (build_objective(cfg).loss is not causal_lm_loss) is expected
