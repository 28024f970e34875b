"""Model directories (safetensors + config.json + tokenizer.json) and, later, other export formats."""

from llm.export.model_dir import ModelDirError, load_model_dir, save_model_dir

__all__ = ["ModelDirError", "load_model_dir", "save_model_dir"]
