"""User errors end a command with one clear line (`error: ...`, exit status 2), not a traceback."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from llm.errors import UserError

F = TypeVar("F", bound=Callable[..., Any])


def user_error(exc: BaseException) -> BaseException | None:
    """The user error behind `exc` (Hydra wraps errors raised while instantiating), if there is one."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, UserError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def one_line(message: str) -> str:
    """`message` on one line: each line break, with the whitespace around it, becomes one space (spaces within a
    line, e.g. in a quoted prompt, are kept)."""
    return " ".join(line.strip() for line in message.splitlines() if line.strip())


def report_user_errors(fn: F) -> F:
    """Prints `error: <message>` (on one line) and exits with status 2 on a user error; other errors keep their
    traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            found = user_error(exc)
            if found is None:
                raise
            print(f"error: {one_line(str(found))}", file=sys.stderr)
            raise SystemExit(2) from exc

    return wrapper  # type: ignore[return-value]
