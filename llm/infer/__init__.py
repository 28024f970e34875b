"""Generation: sampling next tokens from a trained GPT."""

from llm.infer.generate import generate, sample_text

__all__ = ["generate", "sample_text"]
