"""The overrides of a verb whose config is one flat list of settings (`llm sample`, `llm serve`, `llm export`),
checked as one line each: a setting the verb lacks, a value Hydra cannot parse, `+key=` for a setting it has,
`~key`."""

from __future__ import annotations

import difflib
from pathlib import Path

from omegaconf import OmegaConf

from llm.errors import ConfigError


def check_flat_overrides(args: list[str], config: Path, verb: str, text_hint: str) -> None:
    """Refuses, as one line, an override that Hydra would refuse in several or accept to no effect (`+unknown=1`),
    or that deletes a setting. `text_hint` says which settings take any text."""
    try:
        from hydra._internal.utils import get_args_parser  # Hydra's own command line, flags and overrides
        from hydra.core.override_parser.overrides_parser import OverridesParser
        from hydra.errors import OverrideParseException
    except ImportError:  # another Hydra: leave its checks to it
        return
    settings = [str(key) for key in OmegaConf.load(config) if key not in ("defaults", "hydra")]
    parser = OverridesParser.create()
    for text in get_args_parser().parse_args(args).overrides:
        try:
            (override,) = parser.parse_overrides([text])
        except OverrideParseException:
            raise ConfigError(
                f"cannot read the override {text!r}: numbers, true, false and null are written plainly, and other "
                f"values quoted as key='...' ({text_hint})"
            ) from None
        key = str(override.key_or_group)
        if key == "hydra" or override.is_hydra_override():
            continue
        if key not in settings:
            close = difflib.get_close_matches(key, settings, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise ConfigError(f"{verb} has no setting {key!r}; {hint}its settings are: {', '.join(settings)}")
        if override.is_delete():
            raise ConfigError(f"~{key} would delete a setting of {verb}; give {key}=... or leave it out")
        if override.is_add():
            raise ConfigError(f"+{key}=... adds a setting {verb} already has; write {key}=... without the +")
