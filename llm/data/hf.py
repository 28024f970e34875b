"""Hugging Face `datasets` as a corpus: a dataset on the hub by name, or local json/jsonl/parquet/text files."""

from __future__ import annotations

import glob
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from llm.data.corpora import Corpus, CorpusError

BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".txt": "text", ".text": "text"}


def infer_builder(data_files: list[str]) -> str:
    """The `datasets` builder for local files, from their extension (all files must agree)."""
    builders = {BUILDERS.get(Path(f).suffix.lower()) for f in data_files}
    if len(builders) != 1 or None in builders:
        raise CorpusError(
            f"cannot tell the format of data.corpus.data_files={data_files}; use one of the extensions "
            f"{', '.join(sorted(BUILDERS))} or set data.corpus.builder=json|parquet|text"
        )
    return builders.pop()  # type: ignore[return-value]


class HFCorpus(Corpus):
    """A Hugging Face dataset's `text_field`, one document per row; `streaming` reads without loading it all."""

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
    ) -> None:
        if (name is None) == (data_files is None):
            raise CorpusError(
                "give either data.corpus.name (a dataset on the Hugging Face hub) or "
                "data.corpus.data_files (local json/jsonl/parquet/txt files), not both or neither"
            )
        self.name = name
        self.data_files = [data_files] if isinstance(data_files, str) else (list(data_files) if data_files else None)
        self.builder, self.config_name, self.split = builder, config_name, split
        self.text_field, self.streaming, self.max_documents, self.cache_dir = (
            text_field,
            streaming,
            max_documents,
            cache_dir,
        )

    def load(self) -> Any:
        try:
            import datasets
        except ImportError as e:
            raise CorpusError("the hf corpus needs the `datasets` package: pip install 'llm[hf]'") from e
        if self.data_files is not None:
            path, files = self.builder or infer_builder(self.data_files), self.data_files
            missing = [f for f in files if not glob.glob(f, recursive=True)]
            if missing:
                raise CorpusError(f"data.corpus.data_files {missing} match no file (looked from {Path.cwd()})")
        else:
            path, files = str(self.name), None
        try:
            return datasets.load_dataset(
                path,
                self.config_name,
                data_files=files,
                split=self.split,
                streaming=self.streaming,
                cache_dir=self.cache_dir,
            )
        except (ConnectionError, OSError) as e:
            if self.name is None:
                raise CorpusError(f"could not read {self.data_files}: {e}") from e
            raise CorpusError(
                f"could not load {self.name!r} from the Hugging Face hub ({type(e).__name__}: {e}); with no network, "
                "use local files instead: data.corpus.name=null data.corpus.data_files=path/to/*.jsonl"
            ) from e

    def documents(self) -> Iterator[str]:
        dataset = self.load()
        fields = list(dataset.column_names or [])
        if self.text_field not in fields:
            raise CorpusError(
                f"{self.describe()} has no field {self.text_field!r}; set data.corpus.text_field to one of: "
                f"{', '.join(fields)}"
            )
        for i, row in enumerate(dataset):
            if self.max_documents is not None and i >= self.max_documents:
                return
            text = row[self.text_field]
            if text:
                yield str(text)

    def describe(self) -> str:
        source = self.name if self.name is not None else ", ".join(self.data_files or [])
        return f"hf corpus {source} [{self.split}].{self.text_field}"
