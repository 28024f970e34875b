"""Generation: sampling next tokens from a trained GPT, with the model's key/value cache."""

from llm.infer.generate import (
    Completion,
    GenerationSettings,
    complete,
    complete_batch,
    generate,
    generate_batch,
    sample_text,
    stream,
    stream_text,
)

__all__ = [
    "Completion",
    "GenerationSettings",
    "complete",
    "complete_batch",
    "generate",
    "generate_batch",
    "sample_text",
    "stream",
    "stream_text",
]
