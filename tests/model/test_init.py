"""Starting weights from a seed alone: a network created on the meta device and given memory later, whole or
sharded over processes, starts from exactly the weights of one built whole."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from llm.export import save_model_dir
from llm.model import ModelConfig, Part, build_gpt
from llm.model.gpt import is_empty, materialize
from llm.model.positions import POSITIONS
from llm.tokenizer import train_tokenizer
from tests.helpers import on_gloo_processes


def config(position: str = "rope", **changes: object) -> ModelConfig:
    settings: dict = dict(vocab_size=65, block_size=16, n_layer=2, n_head=2, n_embd=32, position=Part(position))
    return ModelConfig(**{**settings, **changes})


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("position", ["none", "learned", "sinusoidal", "rope", "alibi"])
def test_an_empty_network_given_memory_later_equals_one_built_whole(position: str) -> None:
    empty = build_gpt(config(position), empty=True)
    assert is_empty(empty) and all(p.is_meta for p in empty.parameters())
    materialize(empty, torch.device("cpu"), seed=7)
    assert not is_empty(empty)
    assert same_weights(empty, build_gpt(config(position), seed=7))
    assert empty.head.weight is empty.token_embedding.weight  # tied again after to_empty
    fixed = POSITIONS.build(position, config(position))  # its tables computed in its constructor, on the CPU
    for (name, table), (_, recomputed) in zip(fixed.named_buffers(), empty.position.named_buffers(), strict=True):
        assert torch.equal(table, recomputed), name


def test_weights_follow_the_seed_alone() -> None:
    a, b, c = build_gpt(config(), seed=1), build_gpt(config(), seed=1), build_gpt(config(), seed=2)
    assert same_weights(a, b) and not same_weights(a, c)
    torch.manual_seed(0)
    d = build_gpt(config())
    torch.manual_seed(0)
    assert same_weights(d, build_gpt(config()))  # no seed: one drawn from torch's generator
    assert not same_weights(d, build_gpt(config()))


def test_untied_head_gets_its_own_draw() -> None:
    network = build_gpt(config(tie_weights=False), seed=3)
    assert network.head.weight is not network.token_embedding.weight
    assert not torch.equal(network.head.weight, network.token_embedding.weight)


def test_under_a_device_context_the_network_is_made_there() -> None:
    with torch.device("meta"):
        assert is_empty(build_gpt(config()))


class Scale(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.ones(4))


class Table(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("angles", torch.zeros(4), persistent=False)


@pytest.mark.parametrize(("part", "method"), [(Scale, "reset_parameters"), (Table, "reset_buffers")])
def test_a_part_that_no_rule_covers_is_named_with_the_method_it_needs(part: type, method: str) -> None:
    network = build_gpt(config(), seed=0)
    network.blocks[0].extra = part()
    with pytest.raises(TypeError, match=rf"{part.__name__} has .* no {method}\(\)"):
        network.initialize(0)


def shard_and_materialize(rank: int, world: int, model_dir: str | None) -> tuple[dict, int, bool]:
    """An empty network sharded over the group, then given memory and weights (drawn from seed 11, or read from
    `model_dir`): the weights gathered whole, this process's rows of the embedding, and whether the head is tied."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    from llm.export.model_dir import SavedWeights

    network = build_gpt(config(), empty=True)
    mesh = init_device_mesh("cpu", (world,))
    for block in network.blocks:
        fully_shard(block, mesh=mesh)
    fully_shard(network, mesh=mesh)
    weights = None if model_dir is None else SavedWeights(model_dir)
    materialize(network, torch.device("cpu"), seed=11, weights=weights)
    whole = {k: v.full_tensor() for k, v in network.state_dict().items()}
    local = network.token_embedding.weight.to_local().shape[0]
    return whole, local, network.head.weight is network.token_embedding.weight


@pytest.mark.parametrize("source", ["seed", "model directory"])
def test_sharded_network_starts_from_the_weights_of_a_whole_one(tmp_path: Path, source: str) -> None:
    world, expected = 2, build_gpt(config(), seed=11 if source == "seed" else 12)
    model_dir = None
    if source == "model directory":
        model_dir = str(save_model_dir(tmp_path / "model", expected, train_tokenizer("byte", [])))
    results = on_gloo_processes(shard_and_materialize, world, model_dir)
    for rank in range(world):
        whole, local_rows, tied = results[rank]
        assert local_rows == 65 // world + (1 - rank)  # each process allocated only its shard: 33 and 32 rows
        assert tied
        assert whole.keys() == expected.state_dict().keys()
        for name, tensor in expected.state_dict().items():
            assert torch.equal(whole[name], tensor), name
