"""Optimizer factories, used by Hydra as `_partial_` targets: `make_optimizer(model) -> Optimizer`.

Weight decay goes to matrices only (linear weights, embeddings); biases and norm weights get none.
`muon` pairs Muon (llm.lit.muon; hidden-layer matrices) with AdamW (the rest) behind one `CombinedOptimizer`,
because Lightning's automatic optimisation steps a single optimizer.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from itertools import islice
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from llm.errors import ConfigError
from llm.lit.muon import Muon, evaluate


def trainable(model: nn.Module) -> list[Tensor]:
    """The parameters that need gradients; a tied parameter appears once (nn.Module removes duplicates)."""
    params: list[Tensor] = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ConfigError(f"{type(model).__name__} has no trainable parameters (all have requires_grad=False)")
    return params


def decay_groups(params: Iterable[Tensor], weight_decay: float) -> list[dict[str, Any]]:
    """Matrices (ndim >= 2) with `weight_decay`, everything else with 0; an empty group is left out."""
    params = list(params)
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    return [group for group in groups if group["params"]]


def pair(values: Sequence[float], name: str) -> tuple[float, float]:
    """Two floats from a list or a ListConfig (what Hydra passes for a yaml list)."""
    if len(values) != 2:
        raise ConfigError(f"optim.{name} must be two numbers like [0.9, 0.99], got {list(values)}")
    return float(values[0]), float(values[1])


def use_fused(params: Iterable[Tensor], fused: bool | None) -> bool:
    """`fused`, or with None: True when every parameter is on the CPU or a CUDA device (torch has a fused AdamW for
    both; on this project's 2-core CPU it takes 1.2 ms a step for nanogpt_cpu against 4.9 for the loop over tensors)."""
    return all(p.device.type in ("cpu", "cuda") for p in params) if fused is None else fused


def adamw(
    model: nn.Module,
    *,
    lr: float = 1e-3,
    betas: Sequence[float] = (0.9, 0.99),
    eps: float = 1e-8,
    weight_decay: float = 0.1,
    fused: bool | None = None,
) -> torch.optim.AdamW:
    """AdamW with decoupled weight decay on matrices only."""
    params = trainable(model)
    return torch.optim.AdamW(
        decay_groups(params, weight_decay),
        lr=lr,
        betas=pair(betas, "betas"),
        eps=eps,
        fused=use_fused(params, fused),
    )


def sgd(
    model: nn.Module,
    *,
    lr: float = 0.1,
    momentum: float = 0.9,
    nesterov: bool = True,
    weight_decay: float = 0.0,
) -> torch.optim.SGD:
    """SGD with (L2) weight decay on matrices only; a baseline for the adaptive optimizers."""
    if nesterov and momentum <= 0:
        raise ConfigError(f"optim.nesterov=true needs optim.momentum > 0, got {momentum}; set one or the other")
    return torch.optim.SGD(decay_groups(trainable(model), weight_decay), lr=lr, momentum=momentum, nesterov=nesterov)


def hidden_matrices(model: nn.Module) -> list[Tensor]:
    """The 2-D weights inside `model.blocks` (attention and MLP linears): the parameters Muon is meant for."""
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, nn.Module):
        raise ConfigError(
            f"optim=muon needs a model with a `blocks` module of hidden layers; {type(model).__name__} has "
            "none, so use optim=adamw for it"
        )
    return [p for p in blocks.parameters() if p.requires_grad and p.ndim == 2]


def adamw_groups(
    model: nn.Module, params: list[Tensor], weight_decay: float, embedding_lr: float | None
) -> list[dict[str, Any]]:
    """`decay_groups(params)`, with the embedding tables among them (tokens; learned positions) in a group of their
    own at `embedding_lr`; a head tied to the token embedding is that table, so it goes there too."""
    if embedding_lr is None:
        return decay_groups(params, weight_decay)
    tables = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    embeddings = [p for p in params if id(p) in tables]
    groups = decay_groups([p for p in params if id(p) not in tables], weight_decay)
    return [*groups, {"params": embeddings, "weight_decay": weight_decay, "lr": embedding_lr}] if embeddings else groups


def muon(
    model: nn.Module,
    *,
    lr: float = 0.02,
    momentum: float = 0.95,
    nesterov: bool = True,
    ns_steps: int = 5,
    adjust_lr_fn: str | None = None,
    adamw_lr: float = 1e-3,
    adamw_betas: Sequence[float] = (0.9, 0.99),
    adamw_eps: float = 1e-8,
    weight_decay: float = 0.0,
    fused: bool | None = None,
    ns_dtype: str = "auto",
    embedding_lr: float | None = None,
) -> CombinedOptimizer:
    """Muon for the hidden layers' weight matrices, AdamW for embeddings, the LM head and 1-D params; the
    embeddings' AdamW lr is `embedding_lr` (None: `adamw_lr`)."""
    matrices = hidden_matrices(model)
    in_muon = {id(p) for p in matrices}
    rest = [p for p in trainable(model) if id(p) not in in_muon]
    optimizers: list[Optimizer] = []
    if matrices:
        optimizers.append(
            Muon(
                matrices,
                lr=lr,
                momentum=momentum,
                nesterov=nesterov,
                ns_steps=ns_steps,
                adjust_lr_fn=adjust_lr_fn,
                weight_decay=weight_decay,
                ns_dtype=ns_dtype,
            )
        )
    if rest:
        optimizers.append(
            torch.optim.AdamW(
                adamw_groups(model, rest, weight_decay, embedding_lr),
                lr=adamw_lr,
                betas=pair(adamw_betas, "adamw_betas"),
                eps=adamw_eps,
                fused=use_fused(rest, fused),
            )
        )
    return CombinedOptimizer(optimizers)


class CombinedOptimizer(Optimizer):
    """Several optimizers over disjoint parameters, stepped as one.

    `param_groups` holds the inner optimizers' own group dicts, so an LR scheduler that scales
    `group["lr"]` reaches every inner optimizer; `state` is their merged state, so torch's own `state_dict`
    writes the usual layout, which torch's distributed checkpointing can gather and shard.
    """

    def __init__(self, optimizers: Sequence[Optimizer]) -> None:
        if not optimizers:
            raise ConfigError("CombinedOptimizer needs at least one optimizer")
        self.optimizers = list(optimizers)
        super().__init__([p for opt in self.optimizers for g in opt.param_groups for p in g["params"]], {})
        self._link_groups()

    def _link_groups(self) -> None:
        # In place: LambdaLR and Lightning's optimizer wrapper keep a reference to this very list.
        self.param_groups[:] = [group for opt in self.optimizers for group in opt.param_groups]

    @property
    def state(self) -> defaultdict[Tensor, Any]:
        """A merged read view of the inner optimizers' per-parameter state."""
        return defaultdict(dict, ((p, s) for opt in self.optimizers for p, s in opt.state.items()))

    @state.setter
    def state(self, value: Any) -> None:
        pass  # Optimizer.__init__ assigns an empty state; the real state lives in the inner optimizers

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Evaluates `closure` (forward and backward) once, then steps every inner optimizer."""
        loss = evaluate(closure)
        for opt in self.optimizers:
            opt.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=set_to_none)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Loads torch's layout (what `state_dict` writes: every inner group in order, parameters numbered across
        them), which is also what torch's distributed checkpointing hands back under FSDP; and the layout of
        checkpoints written before that ({"optimizers": [each inner optimizer's state]})."""
        if isinstance(state_dict.get("optimizers"), list) and len(state_dict["optimizers"]) == len(self.optimizers):
            for opt, inner in zip(self.optimizers, state_dict["optimizers"], strict=True):
                opt.load_state_dict(inner)
            self._link_groups()
            return
        groups, state = state_dict.get("param_groups"), state_dict.get("state", {})
        sizes = [len(opt.param_groups) for opt in self.optimizers]
        if not isinstance(groups, list) or len(groups) != sum(sizes):
            raise ConfigError(
                f"the optimizer state holds {len(groups) if isinstance(groups, list) else 'no'} parameter groups, "
                f"this optimizer has {sum(sizes)}; resume with the optim settings saved with it"
            )
        for opt, inner_groups in zip(self.optimizers, split(groups, sizes), strict=True):
            opt.load_state_dict(renumbered(inner_groups, state))
        self._link_groups()  # Optimizer.load_state_dict replaces the group dicts with new ones


def split(items: list[Any], sizes: list[int]) -> list[list[Any]]:
    """`items` cut into consecutive runs of `sizes`."""
    remaining = iter(items)
    return [list(islice(remaining, size)) for size in sizes]


def renumbered(groups: list[dict[str, Any]], state: dict[Any, Any]) -> dict[str, Any]:
    """One inner optimizer's share of a state dict: its groups, their parameters numbered from 0, and their state."""
    numbers = [number for group in groups for number in group["params"]]
    new_number = {old: new for new, old in enumerate(numbers)}
    return {
        "state": {new_number[old]: value for old, value in state.items() if old in new_number},
        "param_groups": [{**group, "params": [new_number[n] for n in group["params"]]} for group in groups],
    }
