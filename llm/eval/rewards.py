"""User reward functions: `fn(prompt, completion) -> number`, named "module:function" or "path/to/file.py:function".

A function that cannot be imported, is not callable, raises, or returns something that is not a finite number
is a RewardError naming the function and, for a call, the prompt and completion it was given (shortened).

`copies_word` is the DPO demonstration's checker (experiments/dpo/demo.py): the prompt "word=" asks for the word
and a newline.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llm.errors import UserError

RewardFn = Callable[[str, str], Any]
FORM = 'give it as "module:function" (importable from the working folder) or "path/to/file.py:function"'


class RewardError(UserError, ValueError):
    """A reward function that cannot be loaded or that fails on an input; the message names it and the input."""


def shorten(text: str, limit: int = 60) -> str:
    """`text` as a repr of at most about `limit` characters, cut in the middle."""
    if len(text) <= limit:
        return repr(text)
    half = limit // 2
    return repr(text[:half]) + " … " + repr(text[-half:])


def load_reward_fn(spec: str | RewardFn) -> tuple[RewardFn, str]:
    """The function and its name, from a callable or a "module:function" / "file.py:function" string."""
    if callable(spec):
        return spec, f"{getattr(spec, '__module__', '?')}:{getattr(spec, '__qualname__', repr(spec))}"
    if not isinstance(spec, str) or ":" not in spec:
        raise RewardError(f"reward function {spec!r} names no function; {FORM}")
    where, _, name = spec.rpartition(":")
    if not where or not name.isidentifier():
        raise RewardError(f"reward function {spec!r} names no function; {FORM}")
    module = import_file(where, spec) if where.endswith(".py") or "/" in where else import_module(where, spec)
    if not hasattr(module, name):
        raise RewardError(f"reward function {spec}: {where} has no attribute {name!r}; {FORM}")
    fn = getattr(module, name)
    if not callable(fn):
        raise RewardError(f"reward function {spec} is a {type(fn).__name__}, not a function; {FORM}")
    return fn, spec


def import_module(name: str, spec: str) -> Any:
    """The module `name`, looked for on sys.path and in the working folder (added only for this import)."""
    here = str(Path.cwd())
    added = here not in sys.path
    if added:
        sys.path.insert(0, here)
    try:
        return importlib.import_module(name)
    except Exception as err:  # any failure of the user's module is reported with its name
        raise RewardError(
            f"reward function {spec}: cannot import module {name} ({type(err).__name__}: {err}); {FORM}"
        ) from err
    finally:
        if added:
            sys.path.remove(here)


def import_file(path: str, spec: str) -> Any:
    file = Path(path).expanduser()
    if not file.is_file():
        raise RewardError(f"reward function {spec}: {file} is not a file (looked from {Path.cwd()}); {FORM}")
    module_name = "llm_reward_" + re.sub(r"\W", "_", str(file.resolve()))
    loader_spec = importlib.util.spec_from_file_location(module_name, file)
    if loader_spec is None or loader_spec.loader is None:
        raise RewardError(f"reward function {spec}: {file} cannot be loaded as Python; {FORM}")
    module = importlib.util.module_from_spec(loader_spec)
    try:
        loader_spec.loader.exec_module(module)
    except Exception as err:  # any failure of the user's file is reported with its name
        raise RewardError(f"reward function {spec}: importing {file} failed ({type(err).__name__}: {err})") from err
    return module


def call_reward(fn: RewardFn, name: str, prompt: str, completion: str) -> float:
    """fn(prompt, completion) as a float; True and False count as 1 and 0. A raise or a value that is not a
    finite number is a RewardError naming the function, the prompt and the completion."""
    inputs = f"prompt {shorten(prompt)} and completion {shorten(completion)}"
    try:
        value = fn(prompt, completion)
    except Exception as err:  # the user's function may raise anything; say which input made it fail
        raise RewardError(f"reward function {name} raised {type(err).__name__}: {err} on {inputs}") from err
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise RewardError(
            f"reward function {name} returned {value!r} on {inputs}; it must return a finite number (higher is better)"
        )
    return float(value)


def copies_word(prompt: str, completion: str) -> float:
    """The DPO demonstration's checker: 1 if the completion of "word=" is the word and a newline, else 0."""
    word = prompt.rsplit("=", 1)[0].rsplit("\n", 1)[-1]
    answer = completion.split("\n", 1)[0] + "\n" if "\n" in completion else completion
    return 1.0 if answer == f"{word}\n" else 0.0
