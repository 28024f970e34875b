"""Recipes: how each training verb builds its parts from config. The only verb-specific training code."""

from __future__ import annotations

from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from llm.data.chat import load_chat_template
from llm.data.corpora import file_sha256
from llm.data.preference import PreferenceDataModule
from llm.data.pretrain import PretrainDataModule
from llm.data.sft import SFTDataModule
from llm.errors import ConfigError
from llm.export import load_model_dir
from llm.export.model_dir import SavedWeights, read_model_config
from llm.lit.lm import LMModule
from llm.lit.preference import PreferenceModule
from llm.model import GPT, ModelConfig, build_gpt
from llm.objectives import OBJECTIVES, LanguageModeling, PreferenceObjective
from llm.run.reference import reference_logps
from llm.run.runner import Parts
from llm.tokenizer import Tokenizer


def model_config(cfg: DictConfig, vocab_size: int) -> ModelConfig:
    """The ModelConfig for the composed `model` node and a tokenizer's vocabulary size."""
    node = OmegaConf.to_container(cfg.model, resolve=True)
    assert isinstance(node, dict)
    return ModelConfig.from_dict({**{str(k): v for k, v in node.items()}, "vocab_size": vocab_size})


def compiles(cfg: DictConfig) -> bool:
    """Whether the network and its loss are compiled: `compile` as given, or with compile=null (the default) when
    the run trains on one CUDA GPU named by the trainer (trainer=gpu). Not on CPUs, where compiling a small model
    costs more time than it gives back in a short run; and not under trainer=ddp or fsdp unless asked for, as
    compiling with those strategies has not been checked on GPUs yet."""
    if cfg.compile is not None:
        return bool(cfg.compile)
    trainer = cfg.trainer
    one_process = trainer.get("strategy") is None and trainer.get("devices") == 1 and trainer.get("num_nodes", 1) == 1
    return str(trainer.accelerator) in ("gpu", "cuda") and one_process and torch.cuda.is_available()


def build_objective(cfg: DictConfig) -> object:
    """The `objective` node as a registry entry: `name` picks it, the other keys are its options. When
    `compiles(cfg)`, its pass over the logits (the cross-entropy, or DPO's log-probs) is compiled too."""
    options = OmegaConf.to_container(cfg.objective, resolve=True)
    assert isinstance(options, dict)
    name = str(options.pop("name"))
    objective = OBJECTIVES.build(name, **{str(k): v for k, v in options.items()})
    if compiles(cfg) and isinstance(objective, LanguageModeling | PreferenceObjective):
        objective.compile()  # its pass over the logits; for gpt2_small's cross-entropy 1.3x the tokens/s on an H100
    return objective


def pretrain(cfg: DictConfig) -> Parts:
    """`llm train`: a tokenizer trained on the corpus, a new GPT, next-token cross-entropy."""
    datamodule = PretrainDataModule(
        corpus=instantiate(cfg.data.corpus),
        tokenizer=OmegaConf.to_container(cfg.tokenizer, resolve=True),  # type: ignore[arg-type]
        block_size=cfg.model.block_size,
        batch_size=cfg.data.batch_size,
        val_fraction=cfg.data.val_fraction,
        val_batches=cfg.data.val_batches,
        cache_dir=cfg.paths.cache_dir,
        seed=cfg.seed,
        num_workers=cfg.data.num_workers,
    )
    splits = datamodule.splits
    # created on the meta device: its memory and weights come in configure_model (llm/lit/base.py), sharded there
    # under trainer=fsdp, from cfg.seed alone
    network = build_gpt(model_config(cfg, splits.tokenizer.vocab_size), empty=True)
    if compiles(cfg):
        network.compile()
    module = LMModule(
        network,
        build_objective(cfg),
        instantiate(cfg.optim),
        instantiate(cfg.scheduler),
        bytes_per_token=splits.bytes_per_token,
        nonfinite=cfg.nonfinite,
        seed=cfg.seed,
    )
    return Parts(datamodule, module, splits.tokenizer, splits.fingerprint)


def load_trainable(cfg: DictConfig) -> tuple[GPT, Tokenizer]:
    """The model directory `model=` in training mode, compiled as for pretraining (`compiles`); checked
    here and left on the meta device: its weights are read in configure_model, each process only its shards under
    trainer=fsdp (pass `SavedWeights(cfg.model_dir)` to the module)."""
    network, tokenizer = load_model_dir(cfg.model_dir, empty=True)
    network.train()
    if compiles(cfg):
        network.compile()
    return network, tokenizer


def sft(cfg: DictConfig) -> Parts:
    """`llm sft`: fine-tune a model directory on prompt/response or chat examples; loss on responses only."""
    network, tokenizer = load_trainable(cfg)
    template = load_chat_template(cfg.model_dir)
    d = cfg.data
    datamodule = SFTDataModule(
        d.path,
        tokenizer,
        network.config.block_size,
        template,
        batch_size=d.batch_size,
        val_fraction=d.val_fraction,
        packing=d.packing,
        seed=cfg.seed,
        num_workers=d.num_workers,
    )
    module = LMModule(
        network,
        build_objective(cfg),
        instantiate(cfg.optim),
        instantiate(cfg.scheduler),
        nonfinite=cfg.nonfinite,
        seed=cfg.seed,
        weights=SavedWeights(cfg.model_dir),
    )
    data_key = f"{file_sha256(Path(d.path)) if Path(d.path).is_file() else d.path}:{d.packing}:{d.val_fraction}"
    info = {"base_model": str(Path(cfg.model_dir).resolve())}
    return Parts(datamodule, module, tokenizer, data_key, info, template)


def dpo(cfg: DictConfig) -> Parts:
    """`llm dpo`: a policy from a model directory, trained on preference pairs against a frozen reference."""
    objective = build_objective(cfg)
    if not isinstance(objective, PreferenceObjective):
        raise ConfigError(
            f"objective={cfg.objective.name} is not a preference objective; use dpo, ipo, cdpo, hinge or simpo"
        )
    policy, tokenizer = load_trainable(cfg)
    reference_dir = Path(cfg.reference_dir or cfg.model_dir)
    check_same_model_kind(Path(cfg.model_dir), reference_dir)
    d = cfg.data
    datamodule = PreferenceDataModule(
        d.path,
        tokenizer,
        policy.config.block_size,
        batch_size=d.batch_size,
        val_fraction=d.val_fraction,
        prompt_budget=d.prompt_budget,
        format=d.format,
        seed=cfg.seed,
        num_workers=d.num_workers,
    )
    reference = None if objective.reference_free else reference_logps(datamodule, reference_dir, cfg.paths.cache_dir)
    module = PreferenceModule(
        policy,
        objective,
        instantiate(cfg.optim),
        instantiate(cfg.scheduler),
        reference=reference,
        nonfinite=cfg.nonfinite,
        seed=cfg.seed,
        weights=SavedWeights(cfg.model_dir),
    )
    info = {"base_model": str(Path(cfg.model_dir).resolve()), "reference_model": str(reference_dir.resolve())}
    return Parts(datamodule, module, tokenizer, datamodule.fingerprint, info, load_chat_template(cfg.model_dir))


def check_same_model_kind(policy_dir: Path, reference_dir: Path) -> None:
    """Policy and reference must share a tokenizer and a vocabulary, or their log-probs do not compare."""
    if policy_dir.resolve() == reference_dir.resolve():
        return
    policy, reference = read_model_config(policy_dir), read_model_config(reference_dir)
    same_tokens = (policy_dir / "tokenizer.json").read_bytes() == (reference_dir / "tokenizer.json").read_bytes()
    if not same_tokens or policy.vocab_size != reference.vocab_size:
        raise ConfigError(
            f"the policy {policy_dir} and the reference {reference_dir} have different tokenizers or vocabularies; "
            "give reference= a model with the policy's tokenizer (by default the reference is the policy's start)"
        )
