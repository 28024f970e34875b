"""Reading preference pairs: JSONL of {prompt, chosen, rejected}, Anthropic HH dialogues, gzip, and local files
through Hugging Face `datasets` (parquet, or any json/jsonl given as `hf:PATH`).

Every record is checked: a line that is not JSON, a missing key, a value that is not text or is empty stop the
read with an error naming the file, the line (or row) and the fix. Pairs whose chosen and rejected are the
same teach nothing and are dropped with a warning, and counted.
"""

from __future__ import annotations

import glob
import gzip
import json
import logging
import os
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llm.data.corpora import CorpusError
from llm.errors import ConfigError

log = logging.getLogger(__name__)

FORMATS = ("auto", "pairs", "hh")
ASSISTANT = "\n\nAssistant:"
HF_PREFIX = "hf:"
HF_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet"}
PAIR_KEYS = ("prompt", "chosen", "rejected")
HH_KEYS = ("chosen", "rejected")
SHAPES = (
    'format pairs is one JSON object a line, {"prompt": ..., "chosen": ..., "rejected": ...}; format hh is '
    '{"chosen": "\\n\\nHuman: ...\\n\\nAssistant: ...", "rejected": ...}, two full dialogues'
)


class PreferenceDataError(CorpusError):
    """Preference data that cannot be read; the message names the file, the line and the fix."""


@dataclass(frozen=True)
class PreferencePair:
    """One comparison: the prompt, and the response preferred to the other."""

    prompt: str
    chosen: str
    rejected: str


@dataclass(frozen=True)
class PairStats:
    """What reading and encoding kept and dropped (the data module fills in the encoding counts)."""

    records: int = 0  # records read
    identical: int = 0  # dropped: chosen == rejected
    empty_response: int = 0  # dropped: no response token left after truncation
    prompt_truncated: int = 0  # kept, with the start of the prompt cut off
    response_truncated: int = 0  # kept, with the end of a response cut off

    @property
    def kept(self) -> int:
        return self.records - self.identical - self.empty_response


def check_format(format: str) -> str:
    """`format` if it is one of FORMATS; otherwise a ConfigError naming data.format and the choices."""
    if format not in FORMATS:
        choices = ", ".join(FORMATS)
        raise ConfigError(f"data.format={format!r} is not a preference data format; choose one of: {choices}")
    return format


def source_files(path: str | Path) -> list[Path]:
    """The files behind `path`: the file itself, or the sorted matches of an `hf:` glob."""
    text = str(path)
    if text.startswith(HF_PREFIX):
        pattern = os.path.expanduser(text[len(HF_PREFIX) :])
        files = sorted(Path(m) for m in glob.glob(pattern, recursive=True) if os.path.isfile(m))
        if not files:
            raise PreferenceDataError(
                f"{text} matches no local file (looked from {Path.cwd()}); hf: reads local json, jsonl or parquet "
                "files: download the dataset's files and give their path or a glob, e.g. hf:data/*.parquet"
            )
        return files
    file = Path(text).expanduser()
    if not file.is_file():
        raise PreferenceDataError(f"preference data {text} is not a file (looked from {Path.cwd()}); check the path")
    return [file]


def read_pairs(path: str | Path, format: str = "auto") -> tuple[list[PreferencePair], PairStats]:
    """The pairs of a JSONL file (gzip or not), a parquet file, or `hf:FILES` read with `datasets`.

    format "pairs" reads {prompt, chosen, rejected}; "hh" splits Anthropic HH dialogues into a prompt (up to
    and including the last "\\n\\nAssistant:" the two share) and the two responses; "auto" picks by the keys of
    the first record.
    """
    check_format(format)
    files = source_files(path)
    if str(path).startswith(HF_PREFIX) or files[0].suffix.lower() == ".parquet":
        records = hf_records(files, str(path))
    else:
        records = jsonl_records(files[0])
    pairs: list[PreferencePair] = []
    identical: list[str] = []
    count = 0
    for where, record in records:
        if count == 0 and format == "auto":
            format = detect_format(record, where)
        count += 1
        pair = hh_pair(record, where) if format == "hh" else pairs_pair(record, where)
        if pair is None:
            identical.append(where)
        else:
            pairs.append(pair)
    if identical:
        shown = ", ".join(identical[:5]) + (", ..." if len(identical) > 5 else "")
        log.warning("dropped %d preference pairs whose chosen and rejected are the same (%s)", len(identical), shown)
    if not pairs:
        reason = f"all {count} records have chosen == rejected" if count else "it holds no record"
        raise PreferenceDataError(f"{path} has no usable preference pair ({reason}); {SHAPES}")
    return pairs, PairStats(records=count, identical=len(identical))


def detect_format(record: dict[str, Any], where: str) -> str:
    """ "pairs" if the first record has a prompt, "hh" if it has chosen or rejected but no prompt."""
    if "prompt" in record:
        return "pairs"
    if "chosen" in record or "rejected" in record:
        return "hh"
    keys = ", ".join(map(repr, record)) or "none"
    raise PreferenceDataError(f"cannot tell the format of {where}: its keys are {keys}; {SHAPES}")


def text_fields(record: dict[str, Any], keys: tuple[str, ...], where: str, format: str) -> list[str]:
    """record[key] for each key, each checked to be a non-empty str."""
    missing = [k for k in keys if k not in record]
    if missing:
        needed = ", ".join(f'"{k}"' for k in keys)
        raise PreferenceDataError(
            f"{where} has no {', '.join(map(repr, missing))}; format {format} needs {needed} in every record; {SHAPES}"
        )
    values = []
    for key in keys:
        value = record[key]
        if not isinstance(value, str):
            raise PreferenceDataError(f"{where}: {key!r} is a {type(value).__name__}, not text; give it as a string")
        if not value:
            raise PreferenceDataError(f"{where}: {key!r} is empty; give it text, or remove the record")
        values.append(value)
    return values


def pairs_pair(record: dict[str, Any], where: str) -> PreferencePair | None:
    """A {prompt, chosen, rejected} record as a pair; None where chosen == rejected."""
    prompt, chosen, rejected = text_fields(record, PAIR_KEYS, where, "pairs")
    return None if chosen == rejected else PreferencePair(prompt, chosen, rejected)


def hh_pair(record: dict[str, Any], where: str) -> PreferencePair | None:
    """An HH record split at the last "\\n\\nAssistant:" inside the dialogues' common prefix; None if identical."""
    chosen, rejected = text_fields(record, HH_KEYS, where, "hh")
    if chosen == rejected:
        return None
    shared = len(os.path.commonprefix([chosen, rejected]))
    end = chosen.rfind(ASSISTANT, 0, shared)
    if end < 0:
        raise PreferenceDataError(
            f'{where}: the chosen and rejected dialogues share no "\\n\\nAssistant:" turn, so there is no prompt '
            f"to split off; {SHAPES}"
        )
    prompt = chosen[: end + len(ASSISTANT)]
    for key, response in (("chosen", chosen), ("rejected", rejected)):
        if len(response) == len(prompt):
            raise PreferenceDataError(
                f'{where}: the {key} dialogue ends at "\\n\\nAssistant:" with no response; remove the record'
            )
    return PreferencePair(prompt, chosen[len(prompt) :], rejected[len(prompt) :])


def jsonl_records(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """("PATH line N", object) for each non-blank line of a JSONL file, gzip-compressed or not."""
    for number, line in numbered_lines(path):
        if number == 1:
            line = line.removeprefix("\ufeff")
        if not line.strip():
            continue
        where = f"{path} line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise PreferenceDataError(
                f"{where} is not JSON ({err.msg}, column {err.colno}); each line must be one JSON object. "
                f"A file that is one JSON array is read with hf:{path}"
            ) from None
        if not isinstance(record, dict):
            raise PreferenceDataError(f"{where} is a JSON {type(record).__name__}, not an object; {SHAPES}")
        yield where, record


def numbered_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of a UTF-8 file; gzip is recognised by its magic bytes, not by the name."""
    with path.open("rb") as f:
        compressed = f.read(2) == b"\x1f\x8b"
    if path.suffix.lower() == ".gz" and not compressed:
        raise PreferenceDataError(
            f"{path} ends in .gz but is not gzip-compressed; compress it with gzip, or rename it without .gz"
        )
    with gzip.open(path, "rb") if compressed else path.open("rb") as f:
        number = 0
        while True:
            try:
                raw = f.readline()
            except (OSError, EOFError, zlib.error) as err:
                what = "is a damaged gzip file" if compressed else "cannot be read"
                raise PreferenceDataError(
                    f"{path} {what} ({err}) after line {number}; download or compress it again"
                ) from None
            if not raw:
                return
            number += 1
            try:
                yield number, raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise PreferenceDataError(
                    f"{path} line {number} is not valid UTF-8 (byte {err.start} of the line); convert the file to UTF-8"
                ) from None


def hf_records(files: list[Path], source: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """("SOURCE row N", row) for each row of local json/jsonl/parquet files loaded with `datasets`.

    The dataset is held in memory and `datasets` caches into a temporary folder that is removed afterwards, so
    nothing is left in ~/.cache.
    """
    try:
        import datasets
    except ImportError as err:
        raise PreferenceDataError(f"reading {source} needs the `datasets` package: pip install 'llm[hf]'") from err
    builders = {HF_BUILDERS.get(Path(f.name.removesuffix(".gz")).suffix.lower()) for f in files}
    if len(builders) != 1 or None in builders:
        raise PreferenceDataError(
            f"cannot tell the format of {source} ({', '.join(f.name for f in files[:5])}); hf: reads files ending "
            "in .json, .jsonl or .parquet (all of one kind)"
        )
    builder = str(builders.pop())
    with tempfile.TemporaryDirectory(prefix="llm-pairs-") as cache:
        try:
            dataset = datasets.load_dataset(
                builder, data_files=[str(f) for f in files], split="train", cache_dir=cache, keep_in_memory=True
            )
        except (OSError, ValueError, datasets.exceptions.DatasetsError) as err:
            raise PreferenceDataError(f"could not read {source} as {builder}: {err}") from err
        rows = dataset.to_list()
    for number, row in enumerate(rows, 1):
        yield f"{source} row {number}", row
