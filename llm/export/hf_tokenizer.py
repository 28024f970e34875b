"""Our tokenizers in the Hugging Face `tokenizers` format (tokenizer.json + tokenizer_config.json), so that
`AutoTokenizer.from_pretrained(folder).encode(text, add_special_tokens=False)` gives our ids.

    char  a BPE model over the single characters with no merges, no normaliser and no pre-tokenizer: each
          character is its own token, whitespace included. A character outside the vocabulary, which ours
          refuses, is dropped by theirs (that model has no way to refuse).
    byte  a BPE model over the 256 byte-level characters with no merges (a byte's id is the byte), the ByteLevel
          pre-tokenizer without its regex or prefix space and the ByteLevel decoder; end-of-text is id 256. Ours
          reads a literal "<|endoftext|>" in a text as its bytes, so theirs is told to split special tokens.
    bpe   ours already is a `tokenizers` tokenizer: its own JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers

from llm.export.errors import ExportError, optional_module
from llm.tokenizer import BPETokenizer, ByteTokenizer, CharTokenizer, Tokenizer
from llm.tokenizer.base import EOT


def byte_level_characters() -> list[str]:
    """The printable character that stands for each byte value in byte-level BPE (GPT-2's alphabet): bytes that
    are printable Latin-1 characters stand for themselves, the others for 256, 257, ... in byte order."""
    printable = {*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)}
    characters, spare = [], 256
    for byte in range(256):
        if byte in printable:
            characters.append(chr(byte))
        else:
            characters.append(chr(spare))
            spare += 1
    return characters


def char_backend(tokenizer: CharTokenizer) -> HFTokenizer:
    backend = HFTokenizer(models.BPE(vocab={s: i for i, s in enumerate(tokenizer.symbols)}, merges=[]))
    backend.decoder = decoders.Fuse()
    return backend


def byte_backend(tokenizer: ByteTokenizer) -> HFTokenizer:
    vocab = {character: byte for byte, character in enumerate(byte_level_characters())}
    backend = HFTokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens([EOT])
    if backend.token_to_id(EOT) != tokenizer.eot_id:
        raise ExportError(f"byte tokenizer: {EOT} is not id {tokenizer.eot_id} in the exported tokenizer")
    return backend


def hf_backend(tokenizer: Tokenizer) -> HFTokenizer:
    """The `tokenizers` tokenizer that encodes as ours does."""
    if isinstance(tokenizer, BPETokenizer):
        return HFTokenizer.from_str(tokenizer.hf.to_str())
    if isinstance(tokenizer, ByteTokenizer):
        return byte_backend(tokenizer)
    if isinstance(tokenizer, CharTokenizer):
        return char_backend(tokenizer)
    raise ExportError(f"a {tokenizer.kind!r} tokenizer has no Hugging Face export; known kinds: bpe, byte, char")


def tokenizer_settings(tokenizer: Tokenizer, block_size: int) -> dict[str, Any]:
    """tokenizer_config.json: the class AutoTokenizer builds, the context length and the special tokens."""
    settings: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": block_size,
        "clean_up_tokenization_spaces": False,  # decode gives the text back exactly
        "add_prefix_space": False,
    }
    if tokenizer.eot_id is not None:
        settings.update(bos_token=EOT, eos_token=EOT)
    if isinstance(tokenizer, ByteTokenizer):
        settings["split_special_tokens"] = True  # ours encodes a literal "<|endoftext|>" as its bytes
    return settings


def write_hf_tokenizer(tokenizer: Tokenizer, block_size: int, directory: Path) -> None:
    """tokenizer.json and tokenizer_config.json into `directory` (a staging folder: plain writes)."""
    (directory / "tokenizer.json").write_text(hf_backend(tokenizer).to_str(pretty=True), encoding="utf-8")
    settings = tokenizer_settings(tokenizer, block_size)
    (directory / "tokenizer_config.json").write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")


def to_transformers_tokenizer(tokenizer: Tokenizer, block_size: int) -> Any:
    """A `transformers` fast tokenizer, in memory, that encodes as ours does."""
    transformers = optional_module("transformers", "exporting to transformers")
    settings = tokenizer_settings(tokenizer, block_size)
    del settings["tokenizer_class"]
    return transformers.PreTrainedTokenizerFast(tokenizer_object=hf_backend(tokenizer), **settings)
