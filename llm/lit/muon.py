"""Muon: SGD momentum whose update for each weight matrix is replaced by the nearest semi-orthogonal matrix,
found by a few Newton-Schulz iterations (Keller Jordan, 2024).

Written here rather than taken from torch.optim.Muon, which always orthogonalises in bfloat16: right on GPUs,
but on a CPU without bf16 matrix instructions every such product is emulated, and one step of llama_tiny took 5 s
against 0.01 s for AdamW. `ns_dtype` picks the dtype: "auto" is bfloat16 for CUDA parameters and float32 elsewhere.
The update rule and the state ("momentum_buffer" per parameter) are the same as torch's. In a run of several
processes (DDP, FSDP), each orthogonalises only its share of the matrices and all gather the results.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor
from torch.distributed.tensor import DTensor
from torch.optim import Optimizer

from llm.errors import ConfigError
from llm.model.init import shaped_like

# the quintic's coefficients: they push every singular value of the normalised update towards [0.7, 1.2] fast
QUINTIC = (3.4445, -4.7750, 2.0315)
NS_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
ADJUST_LR = (None, "original", "match_rms_adamw")


def orthogonalize(update: Tensor, steps: int, dtype: torch.dtype, eps: float = 1e-7) -> Tensor:
    """The semi-orthogonal matrix nearest `update` (its U·Vᵀ), approximately, computed in `dtype`; `update` may be
    a stack of matrices (..., rows, cols), each orthogonalised on its own."""
    a, b, c = QUINTIC
    x = update.to(dtype)
    tall = x.size(-2) > x.size(-1)
    if tall:
        x = x.mT  # iterate on the wide side: the Gram matrix is then the smaller one
    x = x / (torch.linalg.matrix_norm(x, keepdim=True) + eps)  # every singular value now <= 1: it converges
    for _ in range(steps):
        gram = x @ x.mT
        polynomial = multiply_add(gram, gram, gram, beta=b, alpha=c)  # b·G + c·G²
        x = multiply_add(x, polynomial, x, beta=a)  # a·X + (b·G + c·G²)·X
    return (x.mT if tall else x).to(update.dtype)


def multiply_add(add: Tensor, left: Tensor, right: Tensor, beta: float, alpha: float = 1.0) -> Tensor:
    """beta·add + alpha·(left @ right), for one matrix or a stack."""
    fused = torch.baddbmm if add.ndim == 3 else torch.addmm
    return fused(add, left, right, beta=beta, alpha=alpha)


def scaled_lr(lr: float, adjust_lr_fn: str | None, shape: torch.Size) -> float:
    """The step size for a (rows, cols) matrix. original: lr·sqrt(max(1, rows/cols)); match_rms_adamw (Moonshot):
    0.2·sqrt(max(rows, cols))·lr, so the update's RMS matches AdamW's and AdamW's lr can be reused."""
    rows, cols = shape[0], shape[1]
    if adjust_lr_fn == "match_rms_adamw":
        return 0.2 * math.sqrt(max(rows, cols)) * lr
    return lr * math.sqrt(max(1.0, rows / cols))


def evaluate(closure: Callable[[], Any] | None) -> Any:
    """The loss `closure` (forward and backward) returns, computed with gradients on; None without a closure."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


def ns_dtype_for(name: str, params: list[Tensor]) -> str:
    """`name`, or for "auto": bfloat16 when every parameter is on CUDA, float32 otherwise."""
    if name == "auto":
        return "bfloat16" if params and all(p.device.type == "cuda" for p in params) else "float32"
    if name not in NS_DTYPES:
        raise ConfigError(f"optim.ns_dtype must be auto, float32 or bfloat16, got {name!r}")
    return name


class Muon(Optimizer):
    """Muon for 2-D parameters. Weight decay is decoupled and multiplied by lr, as in AdamW."""

    def __init__(
        self,
        params: Iterable[Tensor],
        *,
        lr: float = 0.02,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_steps: int = 5,
        weight_decay: float = 0.0,
        adjust_lr_fn: str | None = None,
        ns_dtype: str = "auto",
    ) -> None:
        params = list(params)
        if any(p.ndim != 2 for p in params):
            raise ConfigError("Muon takes weight matrices only (2-D parameters); give the others to AdamW")
        if adjust_lr_fn not in ADJUST_LR:
            raise ConfigError(f"optim.adjust_lr_fn must be null, original or match_rms_adamw, got {adjust_lr_fn!r}")
        if not 0.0 <= momentum < 1.0:
            raise ConfigError(f"optim.momentum must be in [0, 1), got {momentum}")
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "nesterov": nesterov,
            "ns_steps": ns_steps,
            "weight_decay": weight_decay,
            "adjust_lr_fn": adjust_lr_fn,
            "ns_dtype": ns_dtype_for(ns_dtype, params),
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = evaluate(closure)
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            by_shape: dict[tuple[torch.Size, torch.dtype, torch.device], list[Tensor]] = {}
            for p in params:
                by_shape.setdefault((p.shape, p.dtype, p.device), []).append(p)
            for same in by_shape.values():  # one stacked orthogonalisation per shape: fewer, larger products
                self._update(same, group)
        return loss

    def _update(self, params: list[Tensor], group: dict[str, Any]) -> None:
        """Steps `params`, all of one shape."""
        directions = []
        for p in params:
            grad = p.grad
            assert grad is not None  # step() passes only parameters with a gradient
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(grad)
            buffer = state["momentum_buffer"]
            buffer.lerp_(grad, 1 - group["momentum"])
            directions.append(grad.lerp(buffer, group["momentum"]) if group["nesterov"] else buffer)
        dtype = NS_DTYPES[group.get("ns_dtype", "float32")]
        updates = orthogonalize_shared(torch.stack([whole(d) for d in directions]), group["ns_steps"], dtype)
        lr = scaled_lr(group["lr"], group["adjust_lr_fn"], params[0].shape)
        for p, update in zip(params, updates, strict=True):
            p.mul_(1 - group["lr"] * group["weight_decay"])
            p.add_(shaped_like(update, p), alpha=-lr)


def orthogonalize_shared(directions: Tensor, steps: int, dtype: torch.dtype) -> Tensor:
    """`orthogonalize` of a stack of matrices that every process of the run holds alike (data parallel: DDP, or
    FSDP once gathered whole): each process orthogonalises every world-th matrix from its rank, and all gather
    the results, so the run does the work once instead of once per process. One process: `orthogonalize`."""
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    if world == 1:
        return orthogonalize(directions, steps, dtype)
    share = -(-len(directions) // world)  # matrices a process orthogonalises, at most
    mine = torch.zeros(share, *directions.shape[1:], dtype=directions.dtype, device=directions.device)
    owned = directions[rank::world]  # matrices rank, rank + world, ...
    if len(owned):
        mine[: len(owned)] = orthogonalize(owned, steps, dtype)
    gathered = [torch.empty_like(mine) for _ in range(world)]
    dist.all_gather(gathered, mine)
    # process r's j-th result is matrix j·world + r
    return torch.stack(gathered, dim=1).flatten(0, 1)[: len(directions)]


def whole(direction: Tensor) -> Tensor:
    """The whole matrix: under FSDP each process holds a shard of it (a DTensor), gathered here from all of them,
    since the nearest orthogonal matrix depends on every row (each process then orthogonalises every matrix)."""
    return direction.full_tensor() if isinstance(direction, DTensor) else direction
