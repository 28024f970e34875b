"""The settings of `llm sample`, checked before any model is loaded, and the prompt checked against the model.

Each mistake is a ConfigError whose one-line message names the setting, the value given and the way out.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from llm.errors import ConfigError
from llm.infer.generate import start_tokens
from llm.tokenizer import Tokenizer, TokenizerError

MODEL_HINT = "give model=<the model/ folder of a finished run> (model.safetensors, config.json, tokenizer.json)"
FILE_HINT = "give prompt_file=<a UTF-8 text file holding the prompt>"
MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class SampleSettings:
    """What `llm sample` was asked to do, every value checked; `prompt` is the text itself."""

    model: Path
    prompt: str
    max_new_tokens: int
    temperature: float
    top_k: int | None
    seed: int | None
    top_p: float | None
    repetition_penalty: float
    stop: tuple[str, ...]
    num_samples: int
    device: str

    def sample_seed(self, i: int) -> int | None:
        """The seed of sample i (seed + i), or None for fresh randomness."""
        return None if self.seed is None else self.seed + i


def show(value: Any) -> str:
    """A value as it would be typed after `key=` (YAML spelling), kept to one line."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    text = str(value)
    return text if text.isprintable() else repr(text)


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_sample_settings(cfg: DictConfig) -> SampleSettings:
    """The checked settings of a composed sample config; ConfigError names the first wrong one."""
    return SampleSettings(  # the prompt last: reading standard input may wait for the user
        model=check_model(cfg),
        max_new_tokens=check_count("max_new_tokens", cfg.max_new_tokens, "the number of tokens generated", 200),
        temperature=check_temperature(cfg.temperature),
        top_k=check_top_k(cfg.top_k),
        top_p=check_top_p(cfg.get("top_p")),
        repetition_penalty=check_repetition_penalty(cfg.get("repetition_penalty", 1.0)),
        stop=check_stop(cfg.get("stop")),
        seed=check_seed(cfg.seed),
        num_samples=check_count("num_samples", cfg.num_samples, "the number of texts generated", 1),
        device=check_device(cfg.device),
        prompt=read_prompt(cfg.prompt, cfg.prompt_file),
    )


def check_model(
    cfg: DictConfig, verb: str = "llm sample", example: str = "llm sample model=runs/shakespeare/model prompt=ROMEO:"
) -> Path:
    """The `model=` of a verb that loads a model directory (sample, serve, eval), present and a folder."""
    if OmegaConf.is_missing(cfg, "model"):
        raise ConfigError(
            f"{verb} needs model=<a model directory>: the model/ folder of a finished run, e.g. {example}"
        )
    return model_folder(cfg.model)


def model_folder(value: Any) -> Path:
    """`value` as the path of an existing folder (what it holds is checked when the model directory loads)."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"model={show(value)} is not a model directory; {MODEL_HINT}")
    path = Path(value)
    if not path.exists():
        raise ConfigError(f"model={show(value)}: no such directory; {MODEL_HINT}")
    if not path.is_dir():
        raise ConfigError(f"model={show(value)} is a file, not a directory; {MODEL_HINT}")
    return path


def check_count(key: str, value: Any, meaning: str, example: int) -> int:
    if not is_int(value) or value < 1:
        raise ConfigError(f"{key}={show(value)} must be an integer >= 1 ({meaning}), e.g. {key}={example}")
    return int(value)


def check_temperature(value: Any) -> float:
    if not (is_int(value) or isinstance(value, float)) or not math.isfinite(value) or value < 0:
        raise ConfigError(
            f"temperature={show(value)} must be a number >= 0 (0 is greedy: always the most likely token), "
            "e.g. temperature=0.8"
        )
    return float(value)


def check_top_k(value: Any) -> int | None:
    if value is not None and (not is_int(value) or value < 1):
        raise ConfigError(
            f"top_k={show(value)} must be an integer >= 1 (sample among the k most likely tokens), "
            "or null to sample from the whole vocabulary"
        )
    return value


def check_top_p(value: Any) -> float | None:
    if value is not None and (
        not (is_int(value) or isinstance(value, float)) or not math.isfinite(value) or not 0 < value <= 1
    ):
        raise ConfigError(
            f"top_p={show(value)} must be a number in (0, 1] (sample among the most likely tokens holding that much "
            "probability), or null for no cut, e.g. top_p=0.9"
        )
    return None if value is None else float(value)


def check_repetition_penalty(value: Any) -> float:
    if not (is_int(value) or isinstance(value, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigError(
            f"repetition_penalty={show(value)} must be a number > 0 (above 1 makes tokens already seen less "
            "likely; 1 is none), e.g. repetition_penalty=1.2"
        )
    return float(value)


def check_stop(value: Any) -> tuple[str, ...]:
    """null, a text or a list of texts, none empty."""
    if value is None:
        return ()
    texts = list(value) if OmegaConf.is_list(value) or isinstance(value, list | tuple) else [value]
    if not texts or any(not isinstance(t, str) or not t for t in texts):
        raise ConfigError(
            f"stop={show(value) or repr(value)} must be a non-empty text or a list of them (each ends a sample "
            "where it first appears), e.g. stop=END or stop=[END,STOP], or null for none"
        )
    return tuple(texts)


def check_seed(value: Any) -> int | None:
    if value is not None and (not is_int(value) or not 0 <= value <= MAX_SEED):
        raise ConfigError(
            f"seed={show(value)} must be an integer from 0 to {MAX_SEED} (sample i uses seed + i), "
            "or null for a different text each run"
        )
    return value


def check_device(value: Any, verb: str = "llm sample") -> str:
    """`value` if PyTorch knows it and this machine has it: cpu, cuda, cuda:<index> or mps."""
    import torch

    choices = "use device=cpu, cuda, cuda:<index> or mps"
    try:
        device = torch.device(value) if isinstance(value, str) else None
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps") or (device.type != "cuda" and device.index):
        raise ConfigError(f"device={show(value)} is not a device {verb} can use; {choices}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "no CUDA"
            raise ConfigError(
                f"device={value}: PyTorch finds no CUDA GPU on this machine (torch {torch.__version__}, "
                f"built with {build}); use device=cpu"
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            names = ", ".join(f"cuda:{i}" for i in range(count))
            raise ConfigError(
                f"device={value}: this machine has {count} CUDA device{'s' if count != 1 else ''} ({names}); "
                "use one of them or device=cpu"
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device={value}: PyTorch finds no MPS (Apple GPU) device on this machine; use device=cpu")
    return value


def read_prompt(prompt: Any, prompt_file: Any) -> str:
    """The prompt text: prompt=TEXT, prompt=- (standard input) or prompt_file=PATH, read exactly as UTF-8."""
    if prompt is not None and prompt_file is not None:
        raise ConfigError(
            f"give the prompt either as prompt=... or as prompt_file=..., not both (prompt_file={show(prompt_file)})"
        )
    if prompt_file is not None:
        text = read_prompt_file(prompt_file)
    elif prompt is None:
        text = ""
    elif not isinstance(prompt, str):
        raise ConfigError(f"prompt={show(prompt)} must be text; run llm sample through the `llm` command")
    elif prompt == "-":
        text = decode_prompt(read_stdin(), "prompt=- (standard input)", "pipe UTF-8 text into llm sample")
    else:
        text = prompt
    check_text(text)
    return text


def read_stdin() -> bytes:
    stream = sys.stdin
    if stream is None:
        raise ConfigError("prompt=- reads the prompt from standard input, but there is none; use prompt_file=PATH")
    buffer = getattr(stream, "buffer", None)
    return buffer.read() if buffer is not None else stream.read().encode("utf-8", "surrogateescape")


def read_prompt_file(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"prompt_file={show(value)} is not a file name; {FILE_HINT}")
    path = Path(value)
    if path.is_dir():
        raise ConfigError(f"prompt_file={show(value)} is a directory, not a file; {FILE_HINT}")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"prompt_file={show(value)}: no such file; {FILE_HINT}") from None
    except OSError as e:
        raise ConfigError(f"prompt_file={show(value)} cannot be read ({e.strerror or e}); {FILE_HINT}") from None
    return decode_prompt(data, f"prompt_file={show(value)}", "save it as UTF-8")


def decode_prompt(data: bytes, source: str, fix: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        byte = f"byte 0x{data[e.start]:02x} at offset {e.start}"
        raise ConfigError(f"{source} is not UTF-8 text ({byte}); {fix}") from None


def check_text(text: str) -> None:
    """Refuses lone surrogates: bytes of the command line that were not UTF-8 (Python keeps them that way)."""
    for index, char in enumerate(text):
        if "\ud800" <= char <= "\udfff":
            raise ConfigError(
                f"the prompt is not UTF-8 text: character {index} is {char!r}, an undecodable byte of the "
                "command line; give the prompt in a UTF-8 file with prompt_file=PATH"
            )


def check_prompt(prompt: str, tokenizer: Tokenizer, block_size: int) -> None:
    """Refuses a prompt the tokenizer cannot encode or that is longer than the model's context."""
    try:
        ids = tokenizer.encode(prompt) if prompt else start_tokens(tokenizer)
    except TokenizerError as e:
        if not prompt:
            raise ConfigError(
                "an empty prompt starts from end-of-text or a newline, and this model's tokenizer has neither; "
                "give a prompt=..."
            ) from None
        raise ConfigError(f"the prompt cannot be encoded: {e}") from None
    if len(ids) > block_size:
        raise ConfigError(
            f"the prompt is {len(ids)} tokens but the model's context (block_size) is {block_size} tokens; "
            f"shorten the prompt to at most {block_size} tokens"
        )
