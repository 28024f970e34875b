"""Corpora: the embedded stdlib corpus, local text files and globs, tiny Shakespeare's download, and bad input."""

from __future__ import annotations

import hashlib
import http.server
import threading
from functools import partial
from pathlib import Path

import pytest

import llm.data.corpora as corpora
from llm.data.corpora import SHAKESPEARE_SHA256, CorpusError, PyStdlibCorpus, TextCorpus, TinyShakespeareCorpus
from tests.conftest import SHARED_DATA


def test_pystdlib_is_deterministic_capped_and_has_no_tests() -> None:
    corpus = PyStdlibCorpus(max_bytes=200_000)
    docs = list(corpus.documents())
    assert docs == list(PyStdlibCorpus(max_bytes=200_000).documents())
    assert 190_000 < sum(len(d.encode()) for d in docs) <= 200_000
    files = corpus.files()
    assert files == sorted(files, key=lambda p: p.relative_to(corpus.root).as_posix())
    assert not [p for p in files if "test" in p.relative_to(corpus.root).parts[:-1] or p.name.startswith("test_")]


def test_pystdlib_rules_on_a_tree_of_our_own(tmp_path: Path) -> None:
    files = {
        "b.py": "b = 2\n",  # 6 bytes
        "a.py": "a = 1\n",
        "pkg/c.py": "c = 'é'\n",  # 9 bytes
        "pkg/big.py": "x" * 40,  # too big for the budget once a, b, c are in
        "pkg/d.py": "d\n",  # 2 bytes: still fits after big.py is passed over
        "pkg/test_e.py": "no\n",
        "test/f.py": "no\n",
        "pkg/tests/g.py": "no\n",
        "idlelib/idle_test/h.py": "no\n",
        "site-packages/i.py": "no\n",
        "__pycache__/j.py": "no\n",
        "latin.py": None,  # not UTF-8: skipped
        "notes.txt": "not python\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        if text is None:
            (tmp_path / name).write_bytes("s = 'é'\n".encode("latin-1"))
        else:
            (tmp_path / name).write_text(text)
    # each document is the file's text plus "\n": 7 + 7 + 10 + 3 = 27 bytes fit in 30; big.py (41) does not
    docs = list(PyStdlibCorpus(max_bytes=30, root=str(tmp_path)).documents())
    assert docs == ["a = 1\n\n", "b = 2\n\n", "c = 'é'\n\n", "d\n\n"]
    assert list(PyStdlibCorpus(max_bytes=14, root=str(tmp_path)).documents()) == ["a = 1\n\n", "b = 2\n\n"]
    with pytest.raises(CorpusError, match="is not a folder"):
        PyStdlibCorpus(root=str(tmp_path / "absent"))


def test_text_files_and_globs_in_sorted_order(tmp_path: Path) -> None:
    (tmp_path / "b.txt").write_text("bee\n")
    (tmp_path / "a.txt").write_text("ay\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.txt").write_text("sea\n")
    again = str(tmp_path / "sub" / ".." / "a.txt")  # the same file spelled another way is read once
    corpus = TextCorpus(path=[str(tmp_path / "*.txt"), str(tmp_path / "**" / "c.txt"), again])
    assert "".join(corpus.documents()) == "ay\nbee\nsea\n"


def test_large_file_is_streamed_in_pieces_that_join_back(tmp_path: Path) -> None:
    text = "é" * 700_000  # 1.4 MB: a 1 MiB block read from the file ends inside a two-byte character
    (tmp_path / "big.txt").write_text(text)
    pieces = list(TextCorpus(path=str(tmp_path / "big.txt"), chunk_mb=0.25).documents())
    assert len(pieces) == 3 and "".join(pieces) == text and max(map(len, pieces)) == 1 << 18


def test_a_glob_that_matches_nothing(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match=r"data.path '.*nothing-\*.txt' matches no file"):
        list(TextCorpus(path=str(tmp_path / "nothing-*.txt")).documents())


def test_bytes_that_are_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "latin1.txt").write_bytes("café au lait".encode("latin-1"))
    with pytest.raises(CorpusError, match=r"latin1.txt is not valid UTF-8 at byte 3.*encoding_errors=replace"):
        list(TextCorpus(path=str(tmp_path / "latin1.txt")).documents())
    replaced = "".join(TextCorpus(path=str(tmp_path / "latin1.txt"), encoding_errors="replace").documents())
    assert replaced == "caf\ufffd au lait"
    with pytest.raises(CorpusError, match="choose one of: strict, replace"):
        TextCorpus(path="x", encoding_errors="ignore")


def test_the_offset_of_a_bad_byte_is_exact_across_pieces(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(corpora, "CHUNK_BYTES", 4)
    # pieces "abcd" "e\xc3" "A...": the lead byte at offset 5 is held back, then found to have no continuation
    (tmp_path / "cut.txt").write_bytes(b"abcde\xc3Axyz")
    with pytest.raises(CorpusError, match="cut.txt is not valid UTF-8 at byte 5;"):
        list(TextCorpus(path=str(tmp_path / "cut.txt")).documents())
    (tmp_path / "ok.txt").write_text("abcdeéfgh")  # é's two bytes straddle the first piece boundary
    assert "".join(TextCorpus(path=str(tmp_path / "ok.txt")).documents()) == "abcdeéfgh"


def serve(directory: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def test_download_over_http_is_checked_and_cached(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("LLM_DATA_DIR", raising=False)
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "input.txt").write_text("First Citizen:\nSpeak.\n")
    digest = hashlib.sha256((tmp_path / "site" / "input.txt").read_bytes()).hexdigest()
    server, url = serve(tmp_path / "site")
    try:
        corpus = TinyShakespeareCorpus(cache_dir=str(tmp_path / "cache"), url=f"{url}/input.txt", sha256=digest)
        assert "".join(corpus.documents()) == "First Citizen:\nSpeak.\n"
    finally:
        server.shutdown()
        server.server_close()
    # cached now: a second corpus reads it without the server
    again = TinyShakespeareCorpus(cache_dir=str(tmp_path / "cache"), url=f"{url}/input.txt", sha256=digest)
    assert "".join(again.documents()) == "First Citizen:\nSpeak.\n"


def test_download_from_a_file_url(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("LLM_DATA_DIR", raising=False)
    (tmp_path / "input.txt").write_text("Before we proceed any further, hear me speak.\n")
    digest = hashlib.sha256((tmp_path / "input.txt").read_bytes()).hexdigest()
    corpus = TinyShakespeareCorpus(
        cache_dir=str(tmp_path / "cache"), url=(tmp_path / "input.txt").as_uri(), sha256=digest
    )
    assert "".join(corpus.documents()) == "Before we proceed any further, hear me speak.\n"
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["tinyshakespeare.txt"]  # no temp file is left


def test_download_with_the_wrong_checksum_is_refused(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("LLM_DATA_DIR", raising=False)
    (tmp_path / "input.txt").write_text("not shakespeare")
    corpus = TinyShakespeareCorpus(cache_dir=str(tmp_path / "cache"), url=(tmp_path / "input.txt").as_uri())
    with pytest.raises(CorpusError, match=f"expected {SHAKESPEARE_SHA256}"):
        list(corpus.documents())
    assert not list((tmp_path / "cache").iterdir())  # nothing half-written is left to be read later


def test_no_network_says_how_to_use_a_local_copy(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("LLM_DATA_DIR", raising=False)
    corpus = TinyShakespeareCorpus(cache_dir=str(tmp_path / "cache"), url=(tmp_path / "absent.txt").as_uri())
    with pytest.raises(
        CorpusError, match=r"from file:.*absent.txt .*data.path=/path/to/tinyshakespeare.txt.*LLM_DATA_DIR"
    ):
        list(corpus.documents())


def test_local_copy_by_path_and_by_data_dir(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "tinyshakespeare.txt").write_text("To be.\n")
    assert "".join(TinyShakespeareCorpus(path=str(tmp_path / "tinyshakespeare.txt"), cache_dir="x").documents())
    monkeypatch.setenv("LLM_DATA_DIR", str(tmp_path))
    assert "".join(TinyShakespeareCorpus(cache_dir=str(tmp_path / "c")).documents()) == "To be.\n"
    with pytest.raises(CorpusError, match="is not a file"):
        list(TinyShakespeareCorpus(path=str(tmp_path / "missing.txt"), cache_dir="x").documents())


def test_the_shared_copy_has_the_published_checksum() -> None:
    path = SHARED_DATA / "tinyshakespeare.txt"
    if not path.is_file():
        pytest.skip(f"tiny Shakespeare not found at {path}")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == SHAKESPEARE_SHA256
