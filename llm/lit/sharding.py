"""Fully sharded training (trainer=fsdp): how blocks are wrapped, and the whole network when each process
holds only a shard of its weights.

The network is built once, on the CPU, by the recipe and passed in (as for every other strategy); FSDP wraps
and shards it when fit starts, each transformer block a unit of its own. So every process holds the whole
model in host memory once, at the start: enough for models that fit one machine's RAM. (Building it in
`configure_model`, on the meta device, would lift that limit; it would need the recipes to hand over a way
to build the network instead of the network, and resumes, the FLOP budget and the run's checks read the
network before fit.)
"""

from __future__ import annotations

import lightning as L
from lightning.pytorch.strategies import FSDPStrategy
from torch.distributed.fsdp.wrap import ModuleWrapPolicy

from llm.model import GPT, build_gpt
from llm.model.block import Block


def block_wrap_policy() -> ModuleWrapPolicy:
    """FSDP's unit is one transformer block: its weights are gathered just before it runs, freed after."""
    return ModuleWrapPolicy({Block})


def is_sharded(trainer: L.Trainer) -> bool:
    return isinstance(trainer.strategy, FSDPStrategy)


def whole_network(trainer: L.Trainer, network: GPT) -> GPT | None:
    """`network` where every process holds all of it (one process, DDP). Under FSDP, a copy with the weights
    gathered from every process, on rank 0 (None on the others); every process must call this then."""
    if not is_sharded(trainer):
        return network
    state = trainer.strategy.lightning_module_state_dict()  # gathered to rank 0, on the CPU
    if not trainer.is_global_zero:
        return None
    whole = build_gpt(network.config)
    weights = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
    missing, unexpected = whole.load_state_dict(weights, strict=False)
    tied = {"head.weight"} if network.config.tie_weights else set()  # the embedding's tensor, maybe listed once
    if set(missing) - tied or unexpected:
        raise RuntimeError(f"the gathered weights do not fit the network: missing {missing}, unexpected {unexpected}")
    return whole.train(network.training)
