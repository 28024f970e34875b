"""Overrides of a verb with a flat config (llm export): Hydra refuses a mistake in several lines, or accepts
`+unknown=1` to no effect; here each is one line naming the setting."""

from __future__ import annotations

import difflib
from pathlib import Path

from omegaconf import OmegaConf

from llm.errors import ConfigError


def check_verb_overrides(config: Path, verb: str, args: list[str]) -> None:
    """Refuses an override of a setting `config` lacks, one Hydra cannot parse, `+key=` and `~key`."""
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
                "values quoted as key='...'"
            ) from None
        key = str(override.key_or_group)
        if key == "hydra" or override.is_hydra_override():
            continue
        if key not in settings:
            close = difflib.get_close_matches(key, settings, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise ConfigError(f"llm {verb} has no setting {key!r}; {hint}its settings are: {', '.join(settings)}")
        if override.is_delete():
            raise ConfigError(f"~{key} would delete a setting of llm {verb}; give {key}=... or leave it out")
        if override.is_add():
            raise ConfigError(f"+{key}=... adds a setting llm {verb} already has; write {key}=... without the +")
