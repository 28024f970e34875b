"""Hugging Face `datasets` as a corpus: a dataset on the hub by name, or local json/jsonl/parquet/text files."""

from __future__ import annotations

import glob
import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from llm.data.corpora import DEFAULT_CHUNK_MB, Corpus, CorpusError, chunk_chars
from llm.tokenizer.cuts import text_pieces

BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".txt": "text", ".text": "text"}


def infer_builder(data_files: list[str]) -> str:
    """The `datasets` builder for local files, from their extension (all files must agree)."""
    builders = {BUILDERS.get(Path(f).suffix.lower()) for f in data_files}
    if len(builders) != 1 or None in builders:
        raise CorpusError(
            f"cannot tell the format of data.corpus.data_files={data_files}; use one of the extensions "
            f"{', '.join(sorted(BUILDERS))} or set data.corpus.builder=json|parquet|text"
        )
    return str(builders.pop())


class HFCorpus(Corpus):
    """A Hugging Face dataset's `text_field`, one document per non-empty row; `streaming` reads row by row.

    Each document ends in a newline (one is added where the row has none) so that rows do not run together
    in the token stream; text files keep their line breaks. `cache_dir` is where `datasets` caches (None: its
    default). `max_documents` caps the documents taken, counted after empty rows are dropped. A row longer than
    `chunk_mb` Mi characters is yielded in pieces of at most that size.
    """

    def __init__(
        self,
        *,
        name: str | None = None,
        data_files: str | list[str] | None = None,
        builder: str | None = None,
        config_name: str | None = None,
        split: str = "train",
        text_field: str = "text",
        streaming: bool = False,
        max_documents: int | None = None,
        cache_dir: str | None = None,
        chunk_mb: float = DEFAULT_CHUNK_MB,
    ) -> None:
        if (name is None) == (data_files is None):
            raise CorpusError(
                "give either data.corpus.name (a dataset on the Hugging Face hub) or "
                "data.corpus.data_files (local json/jsonl/parquet/txt files), not both or neither"
            )
        if max_documents is not None and max_documents < 1:
            raise CorpusError(f"data.corpus.max_documents must be positive or null, got {max_documents}")
        self.name = name
        self.data_files = [data_files] if isinstance(data_files, str) else (list(data_files) if data_files else None)
        self.builder, self.config_name, self.split = builder, config_name, split
        self.text_field, self.streaming = text_field, streaming
        self.max_documents, self.cache_dir = max_documents, cache_dir
        self.chunk_chars = chunk_chars(chunk_mb)

    def load(self) -> Any:
        """The `datasets` Dataset (or IterableDataset when streaming) of the configured split."""
        try:
            import datasets
        except ImportError as e:
            raise CorpusError("the hf corpus needs the `datasets` package: pip install 'llm[hf]'") from e
        options: dict[str, Any] = {}
        if self.data_files is not None:
            files = [os.path.expanduser(f) for f in self.data_files]
            missing = [f for f in files if not glob.glob(f, recursive=True)]
            if missing:
                raise CorpusError(
                    f"data.corpus.data_files {missing} match no file (looked from {Path.cwd()}); "
                    "check the paths, or give absolute ones"
                )
            path = self.builder or infer_builder(files)
            options["data_files"] = files
            if path == "text":
                options["keep_linebreaks"] = True
        else:
            path = str(self.name)
        try:
            return datasets.load_dataset(
                path, self.config_name, split=self.split, streaming=self.streaming, cache_dir=self.cache_dir, **options
            )
        except (ConnectionError, OSError, datasets.exceptions.DatasetsError) as e:
            if self.name is None:
                raise CorpusError(f"could not read data.corpus.data_files={self.data_files} as {path}: {e}") from e
            raise CorpusError(
                f"could not load {self.name!r} from the Hugging Face hub ({type(e).__name__}: {e}); check the "
                "name, or, if the hub could not be reached (no network), use local files instead: "
                "data.corpus.name=null data.corpus.data_files=path/to/*.jsonl"
            ) from e

    def documents(self) -> Iterator[str]:
        dataset = self.load()
        rows: Iterator[dict[str, Any]] = iter(dataset)
        fields = dataset.column_names
        if fields is None:  # a streamed dataset whose features are unknown until a row is read
            first = next(rows, None)
            fields = list(first) if first is not None else []
            rows = itertools.chain([first] if first is not None else [], rows)
        if self.text_field not in fields:
            raise CorpusError(
                f"{self.describe()} has no field {self.text_field!r}; set data.corpus.text_field to one of: "
                f"{', '.join(fields) or '(no fields)'}"
            )
        texts = (str(row[self.text_field]) for row in rows if row[self.text_field])
        for text in itertools.islice(texts, self.max_documents):
            document = text if text.endswith("\n") else text + "\n"
            if len(document) <= self.chunk_chars:
                yield document
            else:
                yield from text_pieces([document], self.chunk_chars)

    def describe(self) -> str:
        source = self.name if self.name is not None else ", ".join(self.data_files or [])
        return f"hf corpus {source} [{self.split}].{self.text_field}"
