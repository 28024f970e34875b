"""Free-text settings on the command line: `prompt=ROMEO, come here` means exactly that text.

Hydra reads every `key=value` with its override grammar, where `,` makes a sweep, `()[]{}` build calls,
lists and dicts, `123` is an int, `null` is None and `${...}` is an interpolation. None of that makes
sense in a prompt, so `quote_free_text` rewrites the overrides of the keys in FREE_TEXT_KEYS into a
quoted Hydra string whose value after composition is the user's text, character for character.

Two layers of escaping are undone on the way in, and `hydra_quoted` applies both in reverse:

- Hydra's quoted strings (`'...'`): a run of backslashes is an escape only when a quote or the end of
  the string follows it; there, each backslash is doubled, and an inner quote gets one more backslash.
- OmegaConf reads `${` as an interpolation even inside a quoted value; `\\${` is a literal `${`, and a
  run of n backslashes before `${` is written as 2n + 1 backslashes.
"""

from __future__ import annotations

import re

#: Settings whose values are free text, whatever characters they hold (`samples.prompt` is train's).
FREE_TEXT_KEYS = ("prompt", "prompt_file", "samples.prompt")

#: Hydra's command-line flags that take the next argument as their value (not an override).
FLAGS_WITH_VALUE = frozenset(
    {"-cp", "--config-path", "-cn", "--config-name", "-cd", "--config-dir", "-p", "--package", "--experimental-rerun"}
)

KEYS = "|".join(re.escape(key) for key in FREE_TEXT_KEYS)
OVERRIDE = re.compile(rf"(?P<key>\+{{0,2}}(?:{KEYS})=)(?P<text>.*)", re.S)
INTERPOLATION = re.compile(r"(\\*)\$\{")
QUOTE_OR_END = re.compile(r"(\\*)('|\Z)")


def hydra_quoted(text: str) -> str:
    """A Hydra override value (a single-quoted string) that composes to exactly `text`."""
    text = INTERPOLATION.sub(lambda m: "\\" * (2 * len(m[1]) + 1) + "${", text)
    text = QUOTE_OR_END.sub(lambda m: m[1] * 2 + ("\\'" if m[2] else ""), text)
    return f"'{text}'"


def quote_free_text(args: list[str]) -> list[str]:
    """`args` with each free-text override (`prompt=...`, `+prompt=...`, `++prompt=...`, ...) quoted.

    Every other argument, and the value of a flag such as `--config-name`, is returned unchanged.
    """
    out: list[str] = []
    for i, arg in enumerate(args):
        match = OVERRIDE.fullmatch(arg)
        if match is not None and not (i and args[i - 1] in FLAGS_WITH_VALUE):
            arg = match["key"] + hydra_quoted(match["text"])
        out.append(arg)
    return out
