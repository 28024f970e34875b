"""`export_model(model_dir, format, out)`: a model directory written in another format (what `llm export` runs).

hf    a folder for transformers' AutoModelForCausalLM and AutoTokenizer (llm/export/hf.py)
onnx  model.onnx with its key/value cache, checked with onnxruntime (llm/export/onnx.py)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from llm.export.errors import ExportError
from llm.export.hf import write_hf
from llm.export.hf_layout import architecture_for
from llm.export.model_dir import load_model_dir
from llm.export.onnx import write_onnx
from llm.export.out_dir import check_out_dir, write_out_dir
from llm.model import GPT
from llm.tokenizer import Tokenizer

Writer = Callable[[GPT, Tokenizer, Path], None]
FORMATS: dict[str, Writer] = {"hf": write_hf, "onnx": write_onnx}


def check_format(name: object) -> Writer:
    if not isinstance(name, str) or name not in FORMATS:
        raise ExportError(f"format={name} is not an export format; choose one of: {', '.join(FORMATS)}")
    return FORMATS[name]


def export_model(model_dir: str | Path, format: str, out: str | Path, overwrite: bool = False) -> Path:
    """Loads the model directory (its weights checked against its config) and writes it as `format` into `out`,
    atomically; refuses a format the model cannot take before anything is written."""
    write = check_format(format)
    model_dir, out = Path(model_dir), Path(out)
    check_out_dir(out, overwrite, model_dir)
    model, tokenizer = load_model_dir(model_dir)
    if format == "hf":
        architecture_for(model.config)  # names the component without an equivalent, before any work
    return write_out_dir(out, lambda staging: write(model, tokenizer, staging))
