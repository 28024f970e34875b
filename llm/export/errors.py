"""The errors of exporting a model, and the lazy import of the optional packages export needs."""

from __future__ import annotations

import importlib
from types import ModuleType

from llm.errors import UserError


class ExportError(UserError, ValueError):
    """A model that cannot take the format asked for, or an export that cannot be written; says why and the fix."""


def optional_module(name: str, purpose: str) -> ModuleType:
    """`import name`, or an ExportError telling to install the `export` extra when it is missing."""
    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise ExportError(
            f"{purpose} needs the Python package {name.split('.')[0]!r}, which is not installed ({e}); "
            "install it with pip install 'llm[export]'"
        ) from None
