"""Model directories (safetensors + config.json + tokenizer.json), and export to other formats
(`llm.export.formats.export_model`: transformers, ONNX; `llm.export.hf.to_transformers` in memory)."""

from llm.export.model_dir import ModelDirError, load_model_dir, save_model_dir

__all__ = ["ModelDirError", "load_model_dir", "save_model_dir"]
