"""Fully sharded training (trainer=fsdp): FSDP2 (torch's `fully_shard`) on Lightning's ModelParallelStrategy.

Every process holds a shard of each weight, gradient and optimizer state (the parameters become DTensors
split along their first dimension); a transformer block's weights are gathered just before it runs and freed
after. The sharding is applied in the LightningModule's `configure_model` (llm.lit.base), where Lightning's
model-parallel strategies expect it. A new network (llm train) reaches it on the meta device, shapes without
memory: it is sharded there, then each process allocates its shards and fills them with its slice of each weight,
drawn whole from the run's seed one weight at a time (llm/model/init.py). So no process ever holds the whole
network, and a sharded run starts from exactly the weights of a one-process run with the same seed, which
tests/run/test_ddp.py checks step by step. (torch's own random initialisation of a sharded tensor would not: on
CPUs it draws the same numbers for every shard.) A network from a model directory (llm sft, llm dpo) comes the
same way, each process keeping its slice of each saved weight (llm.export.model_dir.SavedWeights).

Checkpoints are one file (the full state gathered to rank 0), which a run of any strategy and any number of
processes loads (`ckpt_path=FILE`; a resume keeps the run's own trainer.devices, hence its global batch), and the
model directory it writes is the usual one. Runs on GPUs (NCCL) and, for checking, on CPU processes (gloo).
"""

from __future__ import annotations

import warnings
from typing import Any

import lightning as L
import torch
from lightning.pytorch.strategies import ModelParallelStrategy, Strategy
from torch import Tensor, nn
from torch.distributed.fsdp import CPUOffloadPolicy, FSDPModule, fully_shard
from torch.distributed.tensor import DTensor

from llm.model import GPT, build_gpt
from llm.model.gpt import materialize


class FSDP2Strategy(ModelParallelStrategy):
    """Data parallel over every process of every node, each holding a shard of the model (no tensor parallelism).

    reshard_after_forward: free a block's gathered weights after its forward and gather them again for its
        backward (FULL_SHARD; less memory), or keep them until the backward (SHARD_GRAD_OP; less communication).
    cpu_offload: keep the shards, their gradients and the optimizer state in host memory between uses.
    """

    def __init__(self, reshard_after_forward: bool = True, cpu_offload: bool = False, **kwargs: Any) -> None:
        super().__init__(save_distributed_checkpoint=False, **kwargs)
        self.reshard_after_forward, self.cpu_offload = reshard_after_forward, cpu_offload

    def setup_environment(self) -> None:
        # the mesh's sizes, set where the parent reads them: every process shards the one data-parallel dimension
        self._data_parallel_size = self.num_nodes * self.num_processes
        self._tensor_parallel_size = 1
        super().setup_environment()

    def shard(self, network: nn.Module) -> None:
        """Makes each transformer block a unit of its own, and the rest (embeddings, final norm, head) the root's."""
        if isinstance(network, FSDPModule):
            return  # configure_model runs again for validation after fit
        settings: dict[str, Any] = {
            "mesh": self.device_mesh["data_parallel"],
            "reshard_after_forward": self.reshard_after_forward,
        }
        if self.cpu_offload:
            settings["offload_policy"] = CPUOffloadPolicy()
        # A block returns its attention's keys and values (views of one projection) for the KV cache, which only
        # reads them; FSDP2 warns at every call that an in-place op on such a view would skip its hooks.
        warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module \(\w+\) returned a view tensor")
        for block in getattr(network, "blocks", []):
            fully_shard(block, **settings)
        fully_shard(network, **settings)


def weights_device(strategy: Strategy) -> torch.device:
    """Where a network created in configure_model keeps its weights: the host under FSDP's cpu_offload, the
    strategy's device otherwise (Lightning moves them there in any case)."""
    if isinstance(strategy, FSDP2Strategy) and strategy.cpu_offload:
        return torch.device("cpu")
    return strategy.root_device


def is_sharded(trainer: L.Trainer) -> bool:
    return isinstance(trainer.strategy, FSDP2Strategy)


def local_part(tensor: Tensor) -> Tensor:
    """This process's shard of a sharded tensor; any other tensor as it is."""
    return tensor.to_local() if isinstance(tensor, DTensor) else tensor


def whole_network(trainer: L.Trainer, network: GPT) -> GPT | None:
    """`network` where every process holds all of it (one process, DDP). Under FSDP, a copy with the weights
    gathered from every process, on rank 0 (None on the others); every process must call this then."""
    if not is_sharded(trainer):
        return network
    state = trainer.strategy.lightning_module_state_dict()  # gathered to rank 0, on the CPU
    if not trainer.is_global_zero:
        return None
    weights = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
    whole = build_gpt(network.config, empty=True)
    materialize(whole, torch.device("cpu"), weights=weights)
    return whole.train(network.training)
