import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import Tensor, nn
from torch.optim.lr_scheduler import LambdaLR

from llm.lit.muon import Muon, orthogonalize, scaled_lr
from llm.lit.optim import CombinedOptimizer, adamw, decay_groups, muon, sgd, use_fused
from llm.lit.schedules import Constant
from llm.model import GPT, ModelConfig, build_gpt
from tests.helpers import on_gloo_processes

CONF = Path(__file__).resolve().parents[2] / "conf" / "optim"

# 2-D parameters of the tiny GPT below; the head is tied to token_embedding.weight
MATRICES = {"token_embedding.weight", "position.table.weight"} | {
    f"blocks.{i}.{name}.weight" for i in (0, 1) for name in ("attn.qkv", "attn.proj", "mlp.fc", "mlp.proj")
}
HIDDEN = {name for name in MATRICES if name.startswith("blocks.")}


def tiny_gpt(**options: Any) -> GPT:
    torch.manual_seed(0)
    return build_gpt(ModelConfig(vocab_size=32, block_size=16, n_layer=2, n_head=2, n_embd=16, **options))


def batch() -> Tensor:
    return torch.randint(0, 32, (4, 17), generator=torch.Generator().manual_seed(1))


def loss_of(model: nn.Module, tokens: Tensor) -> Tensor:
    logits = model(tokens[:, :-1])
    return F.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())


def train(model: nn.Module, optimizer: torch.optim.Optimizer, steps: int) -> list[float]:
    """`steps` optimizer steps on one fixed batch; the loss before each step."""
    tokens, losses = batch(), []

    def closure() -> float:
        optimizer.zero_grad()
        loss = loss_of(model, tokens)
        loss.backward()
        losses.append(loss.item())
        return loss.item()

    for _ in range(steps):
        optimizer.step(closure)
    return losses


def names_in(model: nn.Module, params: list[Tensor]) -> set[str]:
    ids = {id(p) for p in params}
    return {name for name, p in model.named_parameters() if id(p) in ids}


def test_decay_goes_to_matrices_only_and_a_tied_weight_counts_once() -> None:
    model = tiny_gpt()
    assert model.head.weight is model.token_embedding.weight
    optimizer = adamw(model, lr=1e-3, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1, fused=None)
    decayed, plain = optimizer.param_groups
    assert (decayed["weight_decay"], plain["weight_decay"]) == (0.1, 0.0)
    assert names_in(model, decayed["params"]) == MATRICES
    assert all(p.ndim == 1 for p in plain["params"])
    # embedding + table + 2 layers · (2 norms · 2 + qkv 2 + proj 2 + fc 2 + proj 2) + final norm 2
    everything = decayed["params"] + plain["params"]
    assert len(everything) == len({id(p) for p in everything}) == 2 + 2 * 12 + 2


def test_an_untied_head_is_decayed_too() -> None:
    model = tiny_gpt(tie_weights=False)
    groups = decay_groups(model.parameters(), 0.1)
    assert names_in(model, groups[0]["params"]) == MATRICES | {"head.weight"}


def test_frozen_parameters_are_left_out() -> None:
    model = tiny_gpt()
    model.token_embedding.weight.requires_grad_(False)
    optimizer = adamw(model, weight_decay=0.1)
    assert "token_embedding.weight" not in names_in(model, optimizer.param_groups[0]["params"])


def test_adamw_on_cpu_is_fused_and_trains() -> None:
    model = tiny_gpt()
    optimizer = adamw(model, lr=1e-2, betas=OmegaConf.create([0.9, 0.95]), eps=1e-8, weight_decay=0.1, fused=None)
    assert optimizer.param_groups[0]["fused"] is True
    assert optimizer.param_groups[0]["betas"] == (0.9, 0.95)
    assert all(type(b) is float for b in optimizer.param_groups[0]["betas"])
    losses = train(model, optimizer, 5)
    assert losses[-1] < losses[0]


def test_use_fused() -> None:
    cpu = [torch.zeros(2)]
    assert use_fused(cpu, None) is True
    assert use_fused(cpu, True) is True and use_fused(cpu, False) is False


def test_betas_must_be_a_pair() -> None:
    with pytest.raises(ValueError, match=r"optim\.betas must be two numbers"):
        adamw(tiny_gpt(), betas=[0.9])


def test_sgd_groups_and_trains() -> None:
    model = tiny_gpt()
    optimizer = sgd(model, lr=0.5, momentum=0.9, nesterov=True, weight_decay=1e-4)
    assert names_in(model, optimizer.param_groups[0]["params"]) == MATRICES
    assert [g["weight_decay"] for g in optimizer.param_groups] == [1e-4, 0.0]
    losses = train(model, optimizer, 5)
    assert losses[-1] < losses[0]
    with pytest.raises(ValueError, match=r"optim\.momentum > 0"):
        sgd(model, momentum=0.0, nesterov=True)


def make_muon(model: nn.Module) -> CombinedOptimizer:
    return muon(
        model,
        lr=0.02,
        momentum=0.95,
        nesterov=True,
        adamw_lr=1e-3,
        adamw_betas=OmegaConf.create([0.9, 0.99]),
        adamw_eps=1e-8,
        weight_decay=0.01,
    )


def test_muon_takes_the_hidden_matrices_and_adamw_the_rest() -> None:
    model = tiny_gpt()
    optimizer = make_muon(model)
    inner_muon, inner_adamw = optimizer.optimizers
    assert isinstance(inner_muon, Muon) and isinstance(inner_adamw, torch.optim.AdamW)
    assert names_in(model, [p for g in inner_muon.param_groups for p in g["params"]]) == HIDDEN
    decayed, plain = inner_adamw.param_groups
    assert names_in(model, decayed["params"]) == {"token_embedding.weight", "position.table.weight"}
    assert all(p.ndim == 1 for p in plain["params"]) and plain["weight_decay"] == 0.0
    # the union, once each, as the inner optimizers' own group dicts
    assert [id(g) for g in optimizer.param_groups] == [id(g) for o in optimizer.optimizers for g in o.param_groups]
    assert [g["lr"] for g in optimizer.param_groups] == [0.02, 1e-3, 1e-3]
    assert inner_muon.param_groups[0]["ns_dtype"] == "float32"  # auto, on the CPU
    assert sum(len(g["params"]) for g in optimizer.param_groups) == 2 + 2 * 12 + 2


def test_embedding_lr_puts_the_embedding_tables_in_a_group_of_their_own_that_the_schedule_scales() -> None:
    model = tiny_gpt(tie_weights=False)
    optimizer = muon(model, embedding_lr=0.05, adamw_lr=1e-3, weight_decay=0.1)
    _, inner_adamw = optimizer.optimizers
    head, gains, tables = inner_adamw.param_groups
    assert names_in(model, head["params"]) == {"head.weight"} and head["lr"] == 1e-3
    assert all(p.ndim == 1 for p in gains["params"]) and gains["lr"] == 1e-3
    assert names_in(model, tables["params"]) == {"token_embedding.weight", "position.table.weight"}
    assert (tables["lr"], tables["weight_decay"]) == (0.05, 0.1)
    LambdaLR(optimizer, Constant(warmup_steps=1, total_steps=10))  # 1/2 of each group's own lr at the first step
    assert [g["lr"] for g in inner_adamw.param_groups] == pytest.approx([5e-4, 5e-4, 0.025])
    assert [len(g["params"]) for g in muon(model).optimizers[1].param_groups] == [3, 2 * 8 + 2]  # by default none


def test_muon_reduces_the_loss_and_evaluates_the_closure_once() -> None:
    model = tiny_gpt()
    optimizer = make_muon(model)
    losses = train(model, optimizer, 9)
    assert len(losses) == 9  # the closure (forward and backward) ran once a step
    assert losses[-1] < losses[0] - 0.05
    assert len(optimizer.state) == 2 + 2 * 12 + 2  # a state per parameter, read through both optimizers
    optimizer.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_lambdalr_scales_both_inner_optimizers() -> None:
    optimizer = make_muon(tiny_gpt())
    scheduler = LambdaLR(optimizer, Constant(warmup_steps=3, total_steps=10))  # 1/4, 2/4, 3/4, 1, ...
    inner_muon, inner_adamw = optimizer.optimizers
    assert inner_muon.param_groups[0]["lr"] == pytest.approx(0.02 / 4)
    assert inner_adamw.param_groups[1]["lr"] == pytest.approx(1e-3 / 4)
    optimizer.step()
    scheduler.step()
    assert inner_muon.param_groups[0]["lr"] == pytest.approx(0.02 * 2 / 4)
    assert inner_adamw.param_groups[0]["lr"] == pytest.approx(1e-3 * 2 / 4)


def test_muon_state_dict_round_trip(tmp_path: Path) -> None:
    model = tiny_gpt()
    optimizer = make_muon(model)
    scheduler = LambdaLR(optimizer, Constant(warmup_steps=4, total_steps=10))
    for _ in range(3):
        train(model, optimizer, 1)
        scheduler.step()
    torch.save(optimizer.state_dict(), tmp_path / "optim.pt")

    copy_model = copy.deepcopy(model)
    resumed = make_muon(copy_model)
    resumed_scheduler = LambdaLR(resumed, Constant(warmup_steps=4, total_steps=10))
    resumed.load_state_dict(torch.load(tmp_path / "optim.pt", weights_only=True))
    resumed_scheduler.load_state_dict(scheduler.state_dict())
    # the groups stay the inner optimizers' own dicts after loading (load_state_dict replaces them)
    assert [id(g) for g in resumed.param_groups] == [id(g) for o in resumed.optimizers for g in o.param_groups]
    assert [g["lr"] for g in resumed.param_groups] == pytest.approx([g["lr"] for g in optimizer.param_groups])

    for _ in range(2):
        train(model, optimizer, 1)
        scheduler.step()
        train(copy_model, resumed, 1)
        resumed_scheduler.step()
    assert resumed.param_groups[0]["lr"] == pytest.approx(0.02)  # the scheduler reached the resumed groups
    for p, q in zip(model.parameters(), copy_model.parameters(), strict=True):
        torch.testing.assert_close(p, q)


def test_muon_state_is_in_torch_layout_and_one_of_another_shape_is_refused() -> None:
    model = tiny_gpt()
    optimizer = make_muon(model)
    train(model, optimizer, 1)
    saved = optimizer.state_dict()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    assert [n for group in saved["param_groups"] for n in group["params"]] == list(range(len(params)))
    assert set(saved["state"]) == set(range(len(params)))  # every parameter has its state, numbered in group order
    for number, p in enumerate(params):
        key = "momentum_buffer" if "momentum_buffer" in saved["state"][number] else "exp_avg"
        assert saved["state"][number][key].shape == p.shape
    with pytest.raises(ValueError, match="holds 1 parameter groups, this optimizer has"):
        make_muon(tiny_gpt()).load_state_dict({"state": {}, "param_groups": saved["param_groups"][:1]})


def test_muon_state_in_the_earlier_layout_still_loads() -> None:
    model = tiny_gpt()
    optimizer = make_muon(model)
    train(model, optimizer, 2)
    earlier = {"optimizers": [opt.state_dict() for opt in optimizer.optimizers]}  # what checkpoints held before
    resumed = make_muon(copy.deepcopy(model))
    resumed.load_state_dict(earlier)
    assert [id(g) for g in resumed.param_groups] == [id(g) for o in resumed.optimizers for g in o.param_groups]
    for name, value in optimizer.state_dict()["state"].items():
        for key, tensor in value.items():
            torch.testing.assert_close(resumed.state_dict()["state"][name][key], tensor)


def test_muon_needs_blocks() -> None:
    with pytest.raises(ValueError, match="optim=adamw"):
        muon(nn.Linear(4, 4))


@pytest.mark.parametrize("path", sorted(CONF.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_optim_yaml_instantiates_and_trains(path: Path) -> None:
    make_optimizer: Callable[[nn.Module], torch.optim.Optimizer] = hydra.utils.instantiate(OmegaConf.load(path))
    model = tiny_gpt()
    optimizer = make_optimizer(model)
    assert all("lr" in group for group in optimizer.param_groups)
    LambdaLR(optimizer, Constant(warmup_steps=0, total_steps=10))
    losses = train(model, optimizer, 4)
    assert losses[-1] < losses[0]


def test_optim_yamls_are_all_there() -> None:
    assert sorted(p.stem for p in CONF.glob("*.yaml")) == ["adamw", "muon", "sgd"]


def test_orthogonalize_sends_every_singular_value_near_one() -> None:
    torch.manual_seed(0)
    for shape in ((24, 64), (64, 24), (32, 32)):
        update = torch.randn(shape) @ torch.diag(torch.logspace(-1, 0, shape[1]))  # condition ~10
        singular = torch.linalg.svdvals(orthogonalize(update, 5, torch.float32))
        # the quintic trades exactness for speed: singular values land in about [0.7, 1.2], not at 1
        assert singular.min() > 0.55 and singular.max() < 1.25, (shape, singular)
        # and the directions are update's: U·Vᵀ of the SVD, up to that spread
        u, _, vh = torch.linalg.svd(update, full_matrices=False)
        cosine = F.cosine_similarity(orthogonalize(update, 5, torch.float32).flatten(), (u @ vh).flatten(), dim=0)
        assert cosine > 0.95


def test_muon_in_bfloat16_steps_as_torch_muon() -> None:
    """Parity: with bfloat16 Newton-Schulz, ours takes torch.optim.Muon's steps, momentum and decay included, to
    bfloat16's precision (ours orthogonalises the matrices of one shape as a stack, so sums round differently)."""
    ours, theirs, start = tiny_gpt(), tiny_gpt(), tiny_gpt()
    settings = {"lr": 0.05, "momentum": 0.9, "nesterov": True, "ns_steps": 5, "weight_decay": 0.1}
    train_hidden(ours, Muon(hidden_matrices_of(ours), ns_dtype="bfloat16", **settings), 2)
    train_hidden(theirs, torch.optim.Muon(hidden_matrices_of(theirs), **settings), 2)
    assert relative_gap(ours, theirs, start) < 0.02


def test_muon_in_float32_is_close_to_bfloat16() -> None:
    ours, theirs, start = tiny_gpt(), tiny_gpt(), tiny_gpt()
    train_hidden(ours, Muon(hidden_matrices_of(ours), ns_dtype="float32"), 2)
    train_hidden(theirs, Muon(hidden_matrices_of(theirs), ns_dtype="bfloat16"), 2)
    assert relative_gap(ours, theirs, start) < 0.1  # the same steps, up to bfloat16's rounding (measured: 0.045)


COUNTS = (1, 3, 4)  # fewer matrices than processes, an odd number, an even one


def marked_matrices(count: int) -> Tensor:
    """`count` random matrices, the same in every process; matrix i's first row is offset by 100·i, a mark that
    tells them apart."""
    matrices = torch.randn(count, 12, 7, generator=torch.Generator().manual_seed(0))
    matrices[:, 0] += torch.arange(count)[:, None] * 100.0
    return matrices


def orthogonalize_in_group(rank: int, world: int) -> dict[int, tuple[Tensor, list[int]]]:
    """For each count: the shared result, and which matrices this process orthogonalised itself."""
    import llm.lit.muon as muon_module

    alone, done = muon_module.orthogonalize, []

    def counting(stack: Tensor, steps: int, dtype: torch.dtype) -> Tensor:
        done.extend(int(m[0].mean().div(100).round()) for m in stack)
        return alone(stack, steps, dtype)

    muon_module.orthogonalize = counting  # type: ignore[assignment]
    results = {}
    for count in COUNTS:
        done = []
        results[count] = (muon_module.orthogonalize_shared(marked_matrices(count), 5, torch.float32), done)
    return results


def test_muon_shares_the_orthogonalisation_between_processes() -> None:
    """Under DDP or FSDP every process holds the same directions: each orthogonalises every second matrix (from
    its rank) and the results are gathered, equal to one process doing all of them."""
    results = on_gloo_processes(orthogonalize_in_group, 2)
    for count in COUNTS:
        expected = orthogonalize(marked_matrices(count), 5, torch.float32)
        for rank in (0, 1):
            shared, done = results[rank][count]
            torch.testing.assert_close(shared, expected, rtol=0, atol=1e-6)
            assert done == list(range(rank, count, 2)), (count, rank)


def relative_gap(one: nn.Module, other: nn.Module, start: nn.Module) -> float:
    """How far apart two trained copies are, against how far they moved from `start`."""
    gap = sum((p - q).norm() ** 2 for p, q in zip(one.parameters(), other.parameters(), strict=True)) ** 0.5
    moved = sum((p - q).norm() ** 2 for p, q in zip(other.parameters(), start.parameters(), strict=True)) ** 0.5
    assert moved > 0.1  # they did train
    return float(gap / moved)


def test_muon_learning_rate_scaling_and_bad_settings() -> None:
    assert scaled_lr(0.02, None, torch.Size([64, 16])) == pytest.approx(0.04)  # tall: sqrt(4)
    assert scaled_lr(0.02, "original", torch.Size([16, 64])) == pytest.approx(0.02)
    assert scaled_lr(1e-3, "match_rms_adamw", torch.Size([16, 64])) == pytest.approx(0.2 * 8 * 1e-3)
    matrix = [nn.Parameter(torch.zeros(4, 4))]
    with pytest.raises(ValueError, match="optim.ns_dtype must be auto, float32 or bfloat16"):
        Muon(matrix, ns_dtype="float16")
    with pytest.raises(ValueError, match="optim.adjust_lr_fn"):
        Muon(matrix, adjust_lr_fn="sqrt")
    with pytest.raises(ValueError, match="2-D parameters"):
        Muon([nn.Parameter(torch.zeros(4))])


def hidden_matrices_of(model: nn.Module) -> list[Tensor]:
    return [p for name, p in model.named_parameters() if name in HIDDEN]


def train_hidden(model: nn.Module, optimizer: torch.optim.Optimizer, steps: int) -> None:
    tokens = batch()
    for _ in range(steps):
        optimizer.zero_grad()
        loss_of(model, tokens).backward()
        optimizer.step()
