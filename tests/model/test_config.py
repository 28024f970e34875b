"""Model descriptions that cannot be built fail early, and the message says what to change."""

from __future__ import annotations

import pytest

from llm.model import ModelConfig, ModelConfigError, Part, build_gpt
from llm.registry import RegistryError


def build(**settings) -> None:
    build_gpt(ModelConfig(vocab_size=7, **settings))


def test_n_embd_not_divisible_by_n_head() -> None:
    with pytest.raises(ModelConfigError, match=r"n_embd=30 is not divisible by model.n_head=4.*e\.g\. n_embd=28"):
        build(n_embd=30, n_head=4)


def test_n_head_not_divisible_by_n_kv_head() -> None:
    with pytest.raises(ModelConfigError, match=r"n_head=4 is not divisible by model.n_kv_head=3.*must divide"):
        build(n_head=4, n_kv_head=3)
    with pytest.raises(ModelConfigError, match="n_kv_head must divide n_head"):
        build(n_head=4, n_kv_head=0)


def test_sinusoidal_needs_even_width() -> None:
    with pytest.raises(ModelConfigError, match=r"sinusoidal positions need an even model.n_embd, got 15.*even width"):
        build(n_embd=15, n_head=3, position=Part("sinusoidal"))


def test_rope_needs_even_head_size() -> None:
    with pytest.raises(ModelConfigError, match=r"rope needs an even head size.*12/4 = 3.*quotient is even"):
        build(n_embd=12, n_head=4, position=Part("rope"))


@pytest.mark.parametrize("window", [65, 0])
def test_window_must_fit_the_context(window: int) -> None:
    with pytest.raises(ModelConfigError, match=rf"window={window} must be between 1 and .*block_size=64.*lower"):
        build(block_size=64, attention=Part("manual", {"window": window}))


def test_unknown_component_lists_the_valid_ones() -> None:
    with pytest.raises(RegistryError, match="unknown position 'sinus'; choose one of: alibi, learned, none, rope"):
        build(position=Part("sinus"))
    with pytest.raises(RegistryError, match="unknown mlp 'geglu'; choose one of: gelu, relu, relu2, swiglu"):
        build(mlp=Part("geglu"))


def test_unknown_option_lists_the_valid_ones() -> None:
    with pytest.raises(RegistryError, match="position 'rope' has no option 'thetta'; its options are: theta"):
        build(position=Part("rope", {"thetta": 500.0}))
    with pytest.raises(
        RegistryError, match="attention 'fused' has no option 'windw'; its options are: qk_norm, window"
    ):
        build(attention=Part("fused", {"windw": 4}))


def test_from_dict_refuses_unknown_keys() -> None:
    with pytest.raises(
        ModelConfigError, match=r"unknown model setting\(s\) \['n_layers'\]; valid settings are:.*n_layer"
    ):
        ModelConfig.from_dict({"vocab_size": 7, "n_layers": 2})


def test_from_dict_round_trip_and_part_forms() -> None:
    config = ModelConfig.from_dict(
        {"vocab_size": 7, "n_kv_head": 2, "position": "rope", "attention": {"name": "manual", "window": 8}}
    )
    assert config.position == Part("rope") and config.attention == Part("manual", {"window": 8})
    assert ModelConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ModelConfigError, match="model.norm must be a name or a mapping with a 'name' key"):
        ModelConfig.from_dict({"vocab_size": 7, "norm": {"eps": 1e-5}})


@pytest.mark.parametrize("setting", ["vocab_size", "block_size", "n_layer", "n_head", "n_embd"])
def test_shapes_must_be_positive(setting: str) -> None:
    with pytest.raises(ModelConfigError, match=f"model.{setting} must be a positive integer, got 0"):
        ModelConfig(**{"vocab_size": 7, setting: 0})


def test_dropout_range() -> None:
    with pytest.raises(ModelConfigError, match=r"model.dropout must be in \[0, 1\), got 1.0"):
        ModelConfig(vocab_size=7, dropout=1.0)


@pytest.mark.parametrize("value", ["abc", None, True, [0.1]])
def test_dropout_must_be_a_number(value: object) -> None:
    with pytest.raises(ModelConfigError, match=r"model.dropout must be a number in \[0, 1\), got .*model.dropout=0.1"):
        ModelConfig(vocab_size=7, dropout=value)  # type: ignore[arg-type]


@pytest.mark.parametrize("setting", ["bias", "tie_weights"])
@pytest.mark.parametrize("value", ["maybe", "false", 1, 0, None])
def test_switches_must_be_booleans(setting: str, value: object) -> None:
    with pytest.raises(ModelConfigError, match=rf"model.{setting} must be true or false, got {value!r}; write"):
        ModelConfig(**{"vocab_size": 7, setting: value})  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["two", 2.0, True])
def test_n_kv_head_must_be_an_integer_or_null(value: object) -> None:
    with pytest.raises(ModelConfigError, match=rf"model.n_kv_head must be a positive integer .*got {value!r}"):
        ModelConfig(vocab_size=7, n_head=4, n_kv_head=value)  # type: ignore[arg-type]


def test_shapes_are_not_booleans() -> None:
    with pytest.raises(ModelConfigError, match="model.n_layer must be a positive integer, got True"):
        ModelConfig(vocab_size=7, n_layer=True)


def test_well_typed_settings_pass() -> None:
    config = ModelConfig(vocab_size=7, n_head=4, n_kv_head=2, dropout=0, bias=False, tie_weights=False)
    assert (config.dropout, config.bias, config.tie_weights, config.kv_heads) == (0, False, False, 2)
