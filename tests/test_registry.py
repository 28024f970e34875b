"""The Registry: registering, building by name, and the errors that list the valid choices."""

from __future__ import annotations

import inspect

import pytest

from llm.registry import Registry, RegistryError


def make_registry() -> Registry:
    shapes: Registry = Registry("shape")

    @shapes.register("square")
    def square(side: float, *, scale: float = 1.0) -> float:
        return (side * scale) ** 2

    @shapes.register("rectangle")
    class Rectangle:
        def __init__(self, width: float, height: float, *, label: str) -> None:
            self.area, self.label = width * height, label

    return shapes


def test_build_passes_shape_args_and_options() -> None:
    shapes = make_registry()
    assert shapes.build("square", 3.0) == 9.0
    assert shapes.build("square", 3.0, scale=2.0) == 36.0
    rectangle = shapes.build("rectangle", 2.0, 5.0, label="r")
    assert (rectangle.area, rectangle.label) == (10.0, "r")


def test_names_sorted_and_membership() -> None:
    shapes = make_registry()
    assert shapes.names() == ["rectangle", "square"]
    assert "square" in shapes and "circle" not in shapes


def test_options_are_keyword_only_parameters_with_defaults() -> None:
    shapes = make_registry()
    assert shapes.options("square") == {"scale": 1.0}
    assert shapes.options("rectangle") == {"label": inspect.Parameter.empty}


def test_register_returns_the_entry_unchanged() -> None:
    shapes: Registry = Registry("shape")

    def circle(r: float) -> float:
        return 3.0 * r * r

    assert shapes.register("circle")(circle) is circle


def test_duplicate_name_raises() -> None:
    shapes = make_registry()
    with pytest.raises(RegistryError, match="shape 'square' is registered twice"):
        shapes.register("square")(lambda side: side)


def test_unknown_name_lists_valid_names() -> None:
    shapes = make_registry()
    with pytest.raises(RegistryError, match="unknown shape 'circle'; choose one of: rectangle, square"):
        shapes.build("circle", 1.0)
    with pytest.raises(RegistryError, match="unknown shape 'circle'"):
        shapes.options("circle")


def test_unknown_option_lists_valid_options() -> None:
    shapes = make_registry()
    with pytest.raises(RegistryError, match=r"shape 'square' has no option 'colour', 'size'; its options are: scale"):
        shapes.build("square", 1.0, size=2, colour="red")


def test_entry_without_options_says_none() -> None:
    shapes: Registry = Registry("shape")
    shapes.register("dot")(lambda: 0)
    with pytest.raises(RegistryError, match=r"its options are: \(none\)"):
        shapes.build("dot", radius=1)
