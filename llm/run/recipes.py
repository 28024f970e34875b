"""Recipes: how each training verb builds its parts from config. The only verb-specific training code."""

from __future__ import annotations

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from llm.data.pretrain import PretrainDataModule
from llm.lit.lm import LMModule
from llm.model import ModelConfig, build_gpt
from llm.objectives import OBJECTIVES
from llm.run.runner import Parts


def model_config(cfg: DictConfig, vocab_size: int) -> ModelConfig:
    """The ModelConfig for the composed `model` node and a tokenizer's vocabulary size."""
    node = OmegaConf.to_container(cfg.model, resolve=True)
    assert isinstance(node, dict)
    return ModelConfig.from_dict({**{str(k): v for k, v in node.items()}, "vocab_size": vocab_size})


def build_objective(cfg: DictConfig) -> object:
    """The `objective` node as a registry entry: `name` picks it, the other keys are its options."""
    options = OmegaConf.to_container(cfg.objective, resolve=True)
    assert isinstance(options, dict)
    name = str(options.pop("name"))
    return OBJECTIVES.build(name, **{str(k): v for k, v in options.items()})


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
    network = build_gpt(model_config(cfg, splits.tokenizer.vocab_size))
    if cfg.compile:
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
