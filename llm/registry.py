"""A small typed registry: components are registered under short names and built by name.

A duplicate name raises at import time; an unknown name raises and lists the valid ones.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from llm.errors import UserError

T = TypeVar("T", bound=Callable[..., Any])


class RegistryError(UserError, KeyError):
    """An unknown or duplicate component name, or options a component does not take."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Registry(Generic[T]):
    """Maps names to constructors of one kind of component (a position, a norm, a tokenizer, ...)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that registers a class or function under `name`."""

        def add(entry: T) -> T:
            if name in self._entries:
                raise RegistryError(f"{self.kind} '{name}' is registered twice ({self._entries[name]!r} and {entry!r})")
            self._entries[name] = entry
            return entry

        return add

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise RegistryError(f"unknown {self.kind} '{name}'; choose one of: {', '.join(self.names())}")
        return self._entries[name]

    def build(self, name: str, *args: Any, **options: Any) -> Any:
        """Calls the entry `name`; options it does not take raise an error that lists the ones it does."""
        entry = self.get(name)
        accepted = self.options(name)
        unknown = sorted(set(options) - set(accepted))
        if unknown:
            raise RegistryError(
                f"{self.kind} '{name}' has no option {', '.join(map(repr, unknown))}; "
                f"its options are: {', '.join(accepted) or '(none)'}"
            )
        return entry(*args, **options)

    def options(self, name: str) -> dict[str, Any]:
        """The keyword-only options of an entry and their defaults (inspect.Parameter.empty if required)."""
        signature = inspect.signature(self.get(name))
        return {p.name: p.default for p in signature.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY}

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries
