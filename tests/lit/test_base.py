"""TrainModule's gradient check and clipping: one norm a step, taken for the check and used to clip."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch import nn

from llm.configs import compose_config
from llm.lit.base import NonFiniteError, TrainModule
from llm.model import build_gpt
from llm.run.recipes import model_config


def module_with_gradients() -> TrainModule:
    """A small GPT with the gradients of one batch, in a TrainModule attached to a CPU trainer."""
    torch.manual_seed(0)
    model = build_gpt(model_config(compose_config("train", ["model=nanogpt_cpu", "model.n_layer=1"]), 65))
    model(torch.randint(0, 65, (2, 16))).logsumexp(-1).mean().backward()
    module = TrainModule(model, lambda m: torch.optim.SGD(m.parameters(), lr=0.0), lambda **_: lambda step: 1.0)
    module.trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False)
    return module


def test_clipping_uses_the_norm_the_finiteness_check_took(monkeypatch: pytest.MonkeyPatch) -> None:
    module = module_with_gradients()
    copies = [nn.Parameter(p.detach().clone()) for p in module.parameters()]
    for copy, p in zip(copies, module.parameters(), strict=True):
        copy.grad = p.grad.clone()
    norm = torch.nn.utils.clip_grad_norm_(copies, 0.01)  # the reference: torch's own clipping
    assert norm > 0.01  # so the gradients are scaled down

    def second_norm(*args: object, **kwargs: object) -> None:
        raise AssertionError("the gradients' norm was taken twice")

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", second_norm)
    module.on_before_optimizer_step(torch.optim.SGD(module.parameters(), lr=0.0))
    torch.testing.assert_close(module._grad_norm, norm)
    module.configure_gradient_clipping(torch.optim.SGD(module.parameters(), lr=0.0), 0.01, "norm")
    for copy, p in zip(copies, module.parameters(), strict=True):
        torch.testing.assert_close(p.grad, copy.grad)


def test_a_non_finite_gradient_stops_before_any_clipping() -> None:
    module = module_with_gradients()
    next(module.parameters()).grad[0, 0] = float("inf")
    with pytest.raises(NonFiniteError, match="non-finite gradient norm"):
        module.on_before_optimizer_step(torch.optim.SGD(module.parameters(), lr=0.0))
