"""Export to `transformers`: a folder that AutoModelForCausalLM and AutoTokenizer load, or the same pair in memory.

The architecture, its config and the weight table are in llm/export/hf_layout.py; the tokenizer in
llm/export/hf_tokenizer.py. `transformers` is imported only when called (`pip install 'llm[export]'`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llm.export.errors import optional_module
from llm.export.hf_layout import architecture_for, convert_weights
from llm.export.hf_tokenizer import to_transformers_tokenizer, write_hf_tokenizer
from llm.model import GPT
from llm.tokenizer import Tokenizer

PURPOSE = "exporting to transformers"


def hf_config(model: GPT, tokenizer: Tokenizer) -> Any:
    """The `transformers` config of the model's architecture; an ExportError names what has no equivalent."""
    transformers = optional_module("transformers", PURPOSE)
    settings = architecture_for(model.config).hf_config(model.config)
    eot = tokenizer.eot_id
    settings.update(bos_token_id=eot, eos_token_id=eot, pad_token_id=None)
    return transformers.AutoConfig.for_model(settings.pop("model_type"), **settings)


def to_transformers_model(model: GPT, tokenizer: Tokenizer) -> Any:
    """A `transformers` causal LM holding the model's weights (copies), on its device and in its dtype, in
    evaluation mode."""
    transformers = optional_module("transformers", PURPOSE)
    config = hf_config(model, tokenizer)
    weights = convert_weights(model.state_dict(), model.config, architecture_for(model.config))
    hf_model = transformers.AutoModelForCausalLM.from_config(config)
    hf_model.to(device=model.token_embedding.weight.device, dtype=model.token_embedding.weight.dtype)
    hf_model.load_state_dict(weights, strict=True)
    return hf_model.eval()


def to_transformers(model: GPT, tokenizer: Tokenizer) -> tuple[Any, Any]:
    """(hf_model, hf_tokenizer) in memory: the model as its `transformers` architecture and a fast tokenizer
    that encodes as ours does. Nothing is written to disk."""
    return to_transformers_model(model, tokenizer), to_transformers_tokenizer(tokenizer, model.config.block_size)


def write_hf(model: GPT, tokenizer: Tokenizer, directory: Path) -> None:
    """config.json, generation_config.json, model.safetensors, tokenizer.json and tokenizer_config.json into
    `directory` (a staging folder); safetensors and JSON only."""
    hf_model = to_transformers_model(model, tokenizer)
    hf_model.save_pretrained(directory, safe_serialization=True)
    write_hf_tokenizer(tokenizer, model.config.block_size, directory)
