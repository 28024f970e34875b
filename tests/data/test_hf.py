"""The hf corpus on local jsonl and parquet files (streaming and not), and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llm.data.corpora import CorpusError
from llm.data.hf import HFCorpus

ROWS = [{"text": "", "id": 0}, {"text": "first document", "id": 1}, {"text": "second one\nwith a newline\n", "id": 2}]


def jsonl(tmp_path: Path) -> Path:
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    return path


def parquet(tmp_path: Path) -> Path:
    path = tmp_path / "docs.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), path)
    return path


@pytest.mark.parametrize("make", [jsonl, parquet])
@pytest.mark.parametrize("streaming", [False, True])
def test_local_files(tmp_path: Path, make, streaming: bool) -> None:
    corpus = HFCorpus(data_files=str(make(tmp_path)), streaming=streaming, cache_dir=str(tmp_path / "hf"))
    # the empty row is dropped; a row without a final newline gets one, so rows do not run together
    assert list(corpus.documents()) == ["first document\n", "second one\nwith a newline\n"]
    if not streaming:
        assert any((tmp_path / "hf").iterdir())  # datasets cached where it was told to, not in ~/.cache


@pytest.mark.parametrize("streaming", [False, True])
def test_text_files_keep_their_line_breaks(tmp_path: Path, streaming: bool) -> None:
    (tmp_path / "a.txt").write_text("line one\nline two\n\nlast")
    corpus = HFCorpus(data_files=str(tmp_path / "*.txt"), streaming=streaming, cache_dir=str(tmp_path / "hf"))
    assert "".join(corpus.documents()) == "line one\nline two\n\nlast\n"


def test_max_documents_counts_documents_not_rows(tmp_path: Path) -> None:
    corpus = HFCorpus(data_files=str(jsonl(tmp_path)), max_documents=1, cache_dir=str(tmp_path / "hf"))
    assert list(corpus.documents()) == ["first document\n"]
    with pytest.raises(CorpusError, match="max_documents must be positive"):
        HFCorpus(data_files="x.jsonl", max_documents=0)


def test_missing_text_field_lists_the_fields(tmp_path: Path) -> None:
    corpus = HFCorpus(data_files=str(jsonl(tmp_path)), text_field="body", cache_dir=str(tmp_path / "hf"))
    with pytest.raises(CorpusError, match="no field 'body'; set data.corpus.text_field to one of: text, id"):
        list(corpus.documents())


def test_hub_name_without_network_names_the_local_alternative(tmp_path: Path, monkeypatch) -> None:
    import datasets.config
    import huggingface_hub.constants

    # HF_HUB_OFFLINE=1 fails as no network does, without waiting on it; the libraries read it at import, so the
    # constants they derived from it are patched too
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    corpus = HFCorpus(name="someone/some-dataset-that-is-not-cached", cache_dir=str(tmp_path / "hf"))
    with pytest.raises(CorpusError, match="hub could not be reached.*data.corpus.data_files=path/to/\\*.jsonl"):
        list(corpus.documents())


def test_unknown_extension_and_neither_source(tmp_path: Path) -> None:
    weird = tmp_path / "docs.xyz"
    weird.write_text("x")
    with pytest.raises(CorpusError, match="builder=json"):
        list(HFCorpus(data_files=str(weird)).documents())
    with pytest.raises(CorpusError, match="either data.corpus.name"):
        HFCorpus()
    with pytest.raises(CorpusError, match="data_files .*absent.jsonl.* match no file"):
        list(HFCorpus(data_files=str(tmp_path / "absent.jsonl")).documents())
