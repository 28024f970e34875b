"""Reading preference pairs: JSONL, Anthropic HH (on the real shared file), gzip, `datasets` files, bad inputs."""

from __future__ import annotations

import gzip
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llm.data.preference_io import PairStats, PreferenceDataError, PreferencePair, read_pairs
from llm.errors import ConfigError, UserError
from tests.conftest import SHARED_DATA

HH_FILE = SHARED_DATA / "hh-rlhf-harmless-base-test.jsonl.gz"
PAIRS = [
    {"prompt": "Q: 2+2?\nA:", "chosen": " 4", "rejected": " 5"},
    {"prompt": "Say hi", "chosen": "hi", "rejected": "no", "source": "extra keys are ignored"},
]
HH = {
    "chosen": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: say more\n\nAssistant: sure, here it is",
    "rejected": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: say more\n\nAssistant: no",
}


def write_jsonl(path: Path, records: list[Any], compress: bool = False) -> Path:
    text = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)
    path.write_bytes(gzip.compress(text.encode()) if compress else text.encode())
    return path


def test_jsonl_pairs(tmp_path: Path) -> None:
    """Blank lines are skipped; extra keys are ignored; format pairs is picked by the "prompt" key."""
    path = write_jsonl(tmp_path / "p.jsonl", [PAIRS[0], "", "  ", PAIRS[1]])
    pairs, stats = read_pairs(path)
    assert pairs == [PreferencePair("Q: 2+2?\nA:", " 4", " 5"), PreferencePair("Say hi", "hi", "no")]
    assert stats == PairStats(records=2) and stats.kept == 2
    assert read_pairs(str(path), format="pairs")[0] == pairs


def test_hh_split_at_the_last_shared_assistant_turn(tmp_path: Path) -> None:
    """The prompt runs through the last "\\n\\nAssistant:" of the common prefix, even where the responses share
    their first characters (" s" here) or a response holds an "\\n\\nAssistant:" of its own."""
    prompt = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: say more\n\nAssistant:"
    records = [
        HH,
        {"chosen": prompt + " sure", "rejected": prompt + " sorry"},
        {"chosen": prompt + " ok\n\nAssistant: and more", "rejected": prompt + " no"},
    ]
    pairs, stats = read_pairs(write_jsonl(tmp_path / "hh.jsonl", records))
    assert pairs == [
        PreferencePair(prompt, " sure, here it is", " no"),
        PreferencePair(prompt, " sure", " sorry"),
        PreferencePair(prompt, " ok\n\nAssistant: and more", " no"),
    ]
    assert stats.records == 3
    # format=hh on records that also carry a prompt key still splits the dialogues
    assert read_pairs(write_jsonl(tmp_path / "x.jsonl", [{**HH, "prompt": "ignored"}]), format="hh")[0] == pairs[:1]


def test_the_real_hh_file_splits_into_prompt_and_responses() -> None:
    """All 2,312 pairs of the shared HH test file load; prompt + response gives back each original dialogue."""
    if not HH_FILE.is_file():
        pytest.skip(f"the HH test file is not at {HH_FILE} (it lives in ../shared/data beside the repository)")
    with gzip.open(HH_FILE, "rt", encoding="utf-8") as f:
        originals = [json.loads(line) for line in f]
    pairs, stats = read_pairs(HH_FILE)
    assert len(pairs) == len(originals) == 2312
    assert stats == PairStats(records=2312)
    for pair, original in zip(pairs, originals, strict=True):
        assert pair.prompt.endswith("\n\nAssistant:")
        assert pair.prompt.startswith("\n\nHuman:")
        assert pair.chosen != pair.rejected and pair.chosen and pair.rejected
        assert pair.prompt + pair.chosen == original["chosen"]
        assert pair.prompt + pair.rejected == original["rejected"]


def test_gzip_is_recognised_by_its_magic_bytes(tmp_path: Path) -> None:
    expected = read_pairs(write_jsonl(tmp_path / "plain.jsonl", PAIRS))[0]
    assert read_pairs(write_jsonl(tmp_path / "p.jsonl.gz", PAIRS, compress=True))[0] == expected
    assert read_pairs(write_jsonl(tmp_path / "no-suffix", PAIRS, compress=True))[0] == expected


def test_a_gz_file_that_is_not_gzip_or_is_damaged(tmp_path: Path) -> None:
    fake = write_jsonl(tmp_path / "fake.jsonl.gz", PAIRS)
    with pytest.raises(PreferenceDataError, match=r"fake\.jsonl\.gz ends in \.gz but is not gzip-compressed"):
        read_pairs(fake)
    whole = gzip.compress(("".join(json.dumps(r) + "\n" for r in PAIRS * 200)).encode())
    (tmp_path / "cut.jsonl.gz").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(PreferenceDataError, match=r"cut\.jsonl\.gz is a damaged gzip file .* after line \d+"):
        read_pairs(tmp_path / "cut.jsonl.gz")


BAD = [
    ([PAIRS[0], "{not json"], r"bad\.jsonl line 2 is not JSON \(Expecting property name.*one JSON object"),
    ([PAIRS[0], "[1, 2]"], r"bad\.jsonl line 2 is a JSON list, not an object"),
    (["", {"prompt": "p", "chosen": "c"}], r"bad\.jsonl line 2 has no 'rejected'; format pairs needs"),
    ([PAIRS[0], {"prompt": "p"}], r"line 2 has no 'chosen', 'rejected'; format pairs needs"),
    ([{"chosen": "\n\nHuman: x\n\nAssistant: y"}], r"line 1 has no 'rejected'; format hh needs"),
    ([{"prompt": "p", "chosen": "", "rejected": "r"}], r"line 1: 'chosen' is empty; give it text"),
    ([{"prompt": "", "chosen": "c", "rejected": "r"}], r"line 1: 'prompt' is empty"),
    ([{"prompt": "p", "chosen": "c", "rejected": 3}], r"line 1: 'rejected' is a int, not text"),
    ([{"text": "x"}], r"cannot tell the format of .*bad\.jsonl line 1: its keys are 'text'; format pairs is"),
    ([{"chosen": "Human: a", "rejected": "Human: b"}], r"line 1: the chosen and rejected dialogues share no"),
    ([{"chosen": "\n\nHuman: a\n\nAssistant: x", "rejected": "\n\nHuman: b\n\nAssistant: x"}], r"share no"),
    (
        [{"chosen": "\n\nHuman: a\n\nAssistant:", "rejected": "\n\nHuman: a\n\nAssistant: y"}],
        r"the chosen dialogue ends",
    ),
    ([], r"bad\.jsonl has no usable preference pair \(it holds no record\)"),
    ([{"prompt": "p", "chosen": "same", "rejected": "same"}], r"no usable preference pair \(all 1 records have chosen"),
]


@pytest.mark.parametrize(("records", "message"), BAD)
def test_bad_records_name_the_file_and_line(tmp_path: Path, records: list[Any], message: str) -> None:
    with pytest.raises(PreferenceDataError, match=message):
        read_pairs(write_jsonl(tmp_path / "bad.jsonl", records))


def test_other_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(PreferenceDataError, match=r"missing\.jsonl is not a file \(looked from"):
        read_pairs(tmp_path / "missing.jsonl")
    (tmp_path / "latin1.jsonl").write_bytes(json.dumps(PAIRS[0]).encode() + b"\n" + b'{"prompt": "caf\xe9"}\n')
    with pytest.raises(PreferenceDataError, match=r"latin1\.jsonl line 2 is not valid UTF-8 \(byte 15"):
        read_pairs(tmp_path / "latin1.jsonl")
    with pytest.raises(ConfigError, match="data.format='csv' is not a preference data format; choose one of: auto"):
        read_pairs(write_jsonl(tmp_path / "p.jsonl", PAIRS), format="csv")
    with pytest.raises(PreferenceDataError, match=r"line 1 has no 'prompt'; format pairs needs"):
        read_pairs(write_jsonl(tmp_path / "hh.jsonl", [HH]), format="pairs")
    assert issubclass(PreferenceDataError, UserError)


def test_identical_pairs_are_dropped_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    same = {"prompt": "p", "chosen": "same", "rejected": "same"}
    hh_same = {"chosen": HH["chosen"], "rejected": HH["chosen"]}
    with caplog.at_level(logging.WARNING):
        pairs, stats = read_pairs(write_jsonl(tmp_path / "p.jsonl", [same, PAIRS[0], same]))
    assert pairs == [PreferencePair(**PAIRS[0])]
    assert stats == PairStats(records=3, identical=2) and stats.kept == 1
    assert "dropped 2 preference pairs whose chosen and rejected are the same (" in caplog.text
    assert "p.jsonl line 1, " in caplog.text and "p.jsonl line 3)" in caplog.text
    pairs, stats = read_pairs(write_jsonl(tmp_path / "hh.jsonl", [hh_same, HH]))
    assert len(pairs) == 1 and stats == PairStats(records=2, identical=1)


def test_datasets_files_parquet_and_hf_globs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A .parquet path and hf:GLOB of jsonl (gzip too) or parquet files are read with `datasets`, which caches
    into a temporary folder that is removed afterwards."""
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    pq.write_table(pa.Table.from_pylist([PAIRS[0], {**PAIRS[1], "source": "x"}]), tmp_path / "p.parquet")
    expected = [PreferencePair(**PAIRS[0]), PreferencePair("Say hi", "hi", "no")]
    assert read_pairs(tmp_path / "p.parquet") == (expected, PairStats(records=2))
    assert read_pairs(f"hf:{tmp_path}/*.parquet")[0] == expected
    folder = tmp_path / "shards"
    folder.mkdir()
    write_jsonl(folder / "a.jsonl", [HH])
    write_jsonl(folder / "b.jsonl.gz", [HH], compress=True)
    pairs, stats = read_pairs(f"hf:{folder}/*")
    assert stats.records == 2 and pairs[0].rejected == " no" and pairs[0] == pairs[1]
    assert not list(temp.iterdir())


def test_datasets_errors(tmp_path: Path) -> None:
    rows = [PAIRS[0], {"prompt": "p", "chosen": "c", "rejected": None}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "n.parquet")
    with pytest.raises(PreferenceDataError, match=r"n\.parquet row 2: 'rejected' is a NoneType, not text"):
        read_pairs(tmp_path / "n.parquet")
    pq.write_table(pa.Table.from_pylist([{"text": "x"}]), tmp_path / "t.parquet")
    with pytest.raises(PreferenceDataError, match=r"cannot tell the format of .*t\.parquet row 1: its keys are 'text'"):
        read_pairs(f"hf:{tmp_path}/t.parquet")
    with pytest.raises(PreferenceDataError, match=r"hf:nothing/\*\.parquet matches no local file .* e\.g\. hf:data/"):
        read_pairs("hf:nothing/*.parquet")
    (tmp_path / "a.csv").write_text("prompt,chosen,rejected\n")
    with pytest.raises(PreferenceDataError, match=r"cannot tell the format of hf:.*a\.csv \(a\.csv\); hf: reads"):
        read_pairs(f"hf:{tmp_path}/a.csv")
    (tmp_path / "broken.json").write_text('{"prompt": "p", "chosen"')
    with pytest.raises(PreferenceDataError, match=r"could not read hf:.*broken\.json as json"):
        read_pairs(f"hf:{tmp_path}/broken.json")
