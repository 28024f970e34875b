"""Corpora: sources of text for pretraining, streamed as documents so nothing needs the whole corpus in RAM."""

from __future__ import annotations

import codecs
import glob
import hashlib
import math
import os
import sysconfig
import tempfile
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path

from llm.errors import UserError
from llm.tokenizer.cuts import text_pieces

CHUNK_BYTES = 1 << 20  # bytes read from a file at a time
DEFAULT_CHUNK_MB = 1.0  # data.corpus.chunk_mb: the largest document a corpus yields, in Mi characters
ENCODING_POLICIES = ("strict", "replace")
SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"


class CorpusError(UserError, ValueError):
    """A corpus that cannot be read; the message names the source and the fix."""


class Corpus(ABC):
    """A source of text, yielded as documents small enough to hold: no corpus, however large, is read whole.

    Text files (and Hugging Face rows) come in pieces of at most data.corpus.chunk_mb Mi characters, cut after a
    newline where one is near (llm/tokenizer/cuts.py: where cuts leave every tokenizer's ids unchanged); the
    standard-library corpus yields whole source files, each small.
    """

    @abstractmethod
    def documents(self) -> Iterator[str]: ...

    @abstractmethod
    def describe(self) -> str: ...


def chunk_chars(chunk_mb: object) -> int:
    """The characters a piece may hold for data.corpus.chunk_mb (MiB counted in characters), checked."""
    if isinstance(chunk_mb, bool) or not isinstance(chunk_mb, int | float) or not math.isfinite(chunk_mb):
        chars = 0
    else:
        chars = int(chunk_mb * (1 << 20))
    if chars < 1:
        raise CorpusError(
            f"data.corpus.chunk_mb must be a positive number (the largest piece of text held at a time, in Mi "
            f"characters), got {chunk_mb!r}; e.g. data.corpus.chunk_mb={DEFAULT_CHUNK_MB:g}"
        )
    return chars


def read_text_blocks(path: Path, encoding_errors: str = "strict") -> Iterator[str]:
    """A file's text in blocks of CHUNK_BYTES bytes, through an incremental UTF-8 decoder."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors=encoding_errors)
    offset = 0  # bytes of the file read before `block`
    with path.open("rb") as f:
        while True:
            block = f.read(CHUNK_BYTES)
            held = len(decoder.getstate()[0])  # the start of a character cut by the previous block
            try:
                text = decoder.decode(block, final=not block)
            except UnicodeDecodeError as e:
                raise CorpusError(
                    f"{path} is not valid UTF-8 at byte {offset - held + e.start}; convert it to UTF-8, or set "
                    "data.corpus.encoding_errors=replace to replace them with U+FFFD"
                ) from e
            if text:
                yield text
            if not block:
                return
            offset += len(block)


def read_text_pieces(path: Path, encoding_errors: str = "strict", chunk_mb: float = DEFAULT_CHUNK_MB) -> Iterator[str]:
    """A file's text in pieces of at most chunk_mb Mi characters, cut after a newline where one is near."""
    return text_pieces(read_text_blocks(path, encoding_errors), chunk_chars(chunk_mb))


def file_sha256(path: Path) -> str:
    """The hex sha256 of a file, read in pieces."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


class PyStdlibCorpus(Corpus):
    """The running interpreter's standard-library sources: a corpus that ships with Python itself.

    Files are taken in sorted order of their relative paths; test suites (folders test, tests, idle_test and
    files test_*.py), site-packages and __pycache__ are left out, files that are not UTF-8 are skipped, and a
    file is taken only while it still fits in `max_bytes` UTF-8 bytes. Each document is a file's text + "\n".
    """

    EXCLUDED_DIRS = frozenset({"test", "tests", "idle_test", "site-packages", "__pycache__"})

    def __init__(self, *, max_bytes: int = 2_000_000, root: str | None = None) -> None:
        if max_bytes < 1:
            raise CorpusError(f"data.corpus.max_bytes must be positive, got {max_bytes}")
        self.max_bytes = max_bytes
        self.root = Path(root or sysconfig.get_paths()["stdlib"])
        if not self.root.is_dir():
            raise CorpusError(f"data.corpus.root={self.root} is not a folder; point it at a Python source tree")

    def files(self) -> list[Path]:
        """The .py files to read, in order; excluded folders are pruned, not walked."""
        found: list[Path] = []
        for folder, dirs, names in os.walk(self.root):
            dirs[:] = [d for d in dirs if d not in self.EXCLUDED_DIRS]
            relative = Path(folder).relative_to(self.root)
            found.extend(relative / n for n in names if n.endswith(".py") and not n.startswith("test_"))
        return [self.root / p for p in sorted(found, key=lambda p: p.as_posix())]

    def documents(self) -> Iterator[str]:
        used = 0
        for path in self.files():
            try:
                if used + path.stat().st_size + 1 > self.max_bytes:
                    continue  # too big for what is left; a smaller file further on may fit
                text = path.read_text(encoding="utf-8") + "\n"
            except (UnicodeDecodeError, OSError):
                continue
            used += len(text.encode("utf-8"))
            yield text

    def describe(self) -> str:
        return f"pystdlib corpus ({self.root}, at most {self.max_bytes:,} bytes)"


class TextCorpus(Corpus):
    """Local text files, given as paths or globs (`**` allowed), read in sorted order as UTF-8.

    Policy for bytes that are not UTF-8: encoding_errors="strict" (default) stops with an error naming the file
    and the byte offset; "replace" turns them into U+FFFD. Each file is read in pieces of at most chunk_mb Mi
    characters (a document never spans two files).
    """

    def __init__(
        self, *, path: str | list[str], encoding_errors: str = "strict", chunk_mb: float = DEFAULT_CHUNK_MB
    ) -> None:
        if encoding_errors not in ENCODING_POLICIES:
            raise CorpusError(
                f"data.corpus.encoding_errors={encoding_errors!r} is not a policy; choose one of: strict, replace"
            )
        self.patterns = [path] if isinstance(path, str) else [str(p) for p in path]
        if not self.patterns:
            raise CorpusError("data.path names no file; give a file, a glob like 'books/*.txt', or a list of them")
        self.encoding_errors = encoding_errors
        self.chunk_mb = chunk_mb
        chunk_chars(chunk_mb)

    def files(self) -> list[Path]:
        """The files to read: each pattern's matches in sorted order, a file named twice read once."""
        found: dict[Path, Path] = {}  # resolved path -> path as matched
        for pattern in self.patterns:
            expanded = os.path.expanduser(pattern)
            if os.path.isdir(expanded):
                raise CorpusError(
                    f"data.path {pattern!r} is a folder; give a file, or a glob of its files such as "
                    f"data.path='{pattern.rstrip('/')}/*.txt' (or '{pattern.rstrip('/')}/**/*.txt' for subfolders)"
                )
            matches = [Path(m) for m in sorted(glob.glob(expanded, recursive=True))]
            matches = [m for m in matches if m.is_file()]
            if not matches:
                raise CorpusError(
                    f"data.path {pattern!r} matches no file (looked from {Path.cwd()}); "
                    "check the path, or give an absolute one"
                )
            for m in matches:
                found.setdefault(m.resolve(), m)
        return list(found.values())

    def documents(self) -> Iterator[str]:
        for path in self.files():
            yield from read_text_pieces(path, self.encoding_errors, self.chunk_mb)

    def describe(self) -> str:
        return f"text corpus {', '.join(self.patterns)}"


class TinyShakespeareCorpus(Corpus):
    """Tiny Shakespeare: a local copy (path, or $LLM_DATA_DIR/tinyshakespeare.txt) or a sha256-checked download."""

    FILE_NAME = "tinyshakespeare.txt"

    def __init__(
        self,
        *,
        path: str | None = None,
        cache_dir: str,
        url: str = SHAKESPEARE_URL,
        sha256: str = SHAKESPEARE_SHA256,
        chunk_mb: float = DEFAULT_CHUNK_MB,
    ) -> None:
        self.path, self.cache_dir, self.url, self.sha256 = path, Path(cache_dir), url, sha256
        self.chunk_mb = chunk_mb
        chunk_chars(chunk_mb)

    def local_file(self) -> Path:
        """The file to read, downloading it into the cache directory if no local copy is given."""
        if self.path is not None:
            path = Path(self.path).expanduser()
            if not path.is_file():
                raise CorpusError(f"data.path={self.path} is not a file (looked from {Path.cwd()}); check the path")
            return path
        data_dir = os.environ.get("LLM_DATA_DIR")
        if data_dir and (Path(data_dir) / self.FILE_NAME).is_file():
            return Path(data_dir) / self.FILE_NAME
        cached = self.cache_dir / self.FILE_NAME
        if cached.is_file() and file_sha256(cached) == self.sha256:
            return cached
        return self.download(cached)

    def download(self, target: Path) -> Path:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}-", dir=target.parent)
        tmp = Path(tmp_name)
        try:
            try:
                with os.fdopen(fd, "wb") as out, urllib.request.urlopen(self.url, timeout=30) as response:
                    for block in iter(lambda: response.read(CHUNK_BYTES), b""):
                        out.write(block)
            except OSError as e:  # URLError, HTTPError and timeouts are all OSErrors
                raise CorpusError(
                    f"could not download tiny Shakespeare from {self.url} ({e}); pass a local copy with "
                    "data.path=/path/to/tinyshakespeare.txt or put tinyshakespeare.txt in $LLM_DATA_DIR"
                ) from e
            actual = file_sha256(tmp)
            if actual != self.sha256:
                raise CorpusError(
                    f"the file downloaded from {self.url} has sha256 {actual}, expected {self.sha256}; "
                    "the download is corrupt or the source changed: pass a verified copy with data.path="
                )
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)  # a failed or interrupted download leaves nothing behind
        return target

    def documents(self) -> Iterator[str]:
        yield from read_text_pieces(self.local_file(), chunk_mb=self.chunk_mb)

    def describe(self) -> str:
        return f"tiny Shakespeare ({self.path or self.url})"
