"""Fully sharded training (trainer=fsdp): FSDP2 (torch's `fully_shard`) on Lightning's ModelParallelStrategy.

Every process holds a shard of each weight, gradient and optimizer state (the parameters become DTensors
split along their first dimension); a transformer block's weights are gathered just before it runs and freed
after. The sharding is applied in the LightningModule's `configure_model` (llm.lit.base), where Lightning's
model-parallel strategies expect it, on the network the recipe built: so each process creates the whole network
once, in host memory, before its weights are sharded, which is enough for models that fit one machine's RAM.

Why not create it on the meta device and initialise each shard in place (which would lift that limit): a sharded
run then starts from the same weights as a one-process run with the same seed, which tests/run/test_ddp.py checks
step by step; and torch's random initialisation of a sharded tensor on CPUs draws the same numbers for every
shard (measured with torch 2.13 on 2 gloo processes: the two halves of a normal_ weight came out identical).

Checkpoints are one file (the full state gathered to rank 0), which a run of any strategy and any number of
processes loads (`ckpt_path=FILE`; a resume keeps the run's own trainer.devices, hence its global batch), and the
model directory it writes is the usual one. Runs on GPUs (NCCL) and, for checking, on CPU processes (gloo).
"""

from __future__ import annotations

import warnings
from typing import Any

import lightning as L
from lightning.pytorch.strategies import ModelParallelStrategy
from torch import Tensor, nn
from torch.distributed.fsdp import CPUOffloadPolicy, FSDPModule, fully_shard
from torch.distributed.tensor import DTensor

from llm.model import GPT, build_gpt


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
    whole = build_gpt(network.config)
    weights = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
    missing, unexpected = whole.load_state_dict(weights, strict=False)
    tied = {"head.weight"} if network.config.tie_weights else set()  # the embedding's tensor, maybe listed once
    if set(missing) - tied or unexpected:
        raise RuntimeError(f"the gathered weights do not fit the network: missing {missing}, unexpected {unexpected}")
    return whole.train(network.training)
