"""A GPT's starting weights, drawn from a seed alone, so that a network created whole and one created on the meta
device and sharded over processes (FSDP) start from the same numbers; or read from saved whole tensors, each process
keeping its shard.

GPT-2's scheme: every linear and embedding weight N(0, 0.02), the residual projections (those marked
`is_residual_projection`) N(0, 0.02 / sqrt(2·n_layer)), biases 0; any other module with weights of its own (the
norms) is reset by its `reset_parameters()`, and one with fixed tables (positions' sines, rotary angles, ALiBi
slopes) recomputes them by its `reset_buffers()`. Each weight is drawn whole, on the CPU, in the network's module
order (a tied weight once); a sharded weight keeps this process's slice of it. So the cost on every process is one
whole weight at a time, never the whole network.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor, nn
from torch.distributed.tensor import DTensor, distribute_tensor


def shaped_like(whole: Tensor, param: Tensor) -> Tensor:
    """`whole` (a full tensor, the same on every process) as `param` holds it: this process's shard of it when
    `param` is sharded (a DTensor), with no communication; `whole` itself otherwise."""
    if not isinstance(param, DTensor):
        return whole
    return distribute_tensor(whole, param.device_mesh, param.placements, src_data_rank=None)


def fill(param: Tensor, whole: Tensor) -> None:
    """Copies `whole` (or this process's shard of it) into `param`."""
    part = shaped_like(whole.to(param.device), param)
    local = param.to_local() if isinstance(param, DTensor) else param
    local.copy_(part.to_local() if isinstance(part, DTensor) else part)


@torch.no_grad()
def initialize_gpt(network: nn.Module, n_layer: int, seed: int) -> None:
    """Sets every weight and fixed table of `network` (see the module's docstring); raises for a weight or table
    that no rule covers, naming the method its module needs."""
    generator = torch.Generator().manual_seed(seed)
    done: set[int] = set()

    def draw(param: Tensor, std: float) -> None:
        if id(param) not in done:
            fill(param, torch.randn(param.shape, generator=generator, device="cpu", dtype=torch.float32).mul_(std))
            done.add(id(param))

    for module in network.modules():
        own = list(module.parameters(recurse=False))
        reset_parameters = getattr(module, "reset_parameters", None)
        if isinstance(module, (nn.Linear, nn.Embedding)):
            residual = getattr(module, "is_residual_projection", False)
            draw(module.weight, 0.02 / math.sqrt(2 * n_layer) if residual else 0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                module.bias.zero_()
        elif own and callable(reset_parameters):
            reset_parameters()
        elif own:
            raise TypeError(f"{type(module).__name__} has weights but no reset_parameters() to give them a start")
        done.update(id(p) for p in own)
    reset_tables(network)


@torch.no_grad()
def load_weights(network: nn.Module, weights: Mapping[str, Tensor]) -> None:
    """Sets every weight of `network` to the whole tensor `weights` holds under one of its names (a tied weight has
    two), or to this process's shard of it, and computes the fixed tables."""
    for names, param in weight_names(network):
        fill(param, weights[next((name for name in names if name in weights), names[0])])
    reset_tables(network)


def weight_names(network: nn.Module) -> list[tuple[list[str], Tensor]]:
    """Each weight once, with all its names (a tied weight has two), in the network's order."""
    named: dict[int, tuple[list[str], Tensor]] = {}
    for name, param in network.named_parameters(remove_duplicate=False):
        named.setdefault(id(param), ([], param))[0].append(name)
    return list(named.values())


def reset_tables(network: nn.Module) -> None:
    """Computes the fixed tables (buffers) of every module again, where they lie."""
    for module in network.modules():
        if list(module.buffers(recurse=False)):
            reset_buffers = getattr(module, "reset_buffers", None)
            if not callable(reset_buffers):
                raise TypeError(f"{type(module).__name__} has fixed tables but no reset_buffers() to compute them")
            reset_buffers()
