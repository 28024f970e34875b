"""Evaluation of trained models: loss, perplexity and bits per byte on a text (perplexity.py), the text to score
(texts.py), the sections of `llm eval` (sections.py, lm_eval_section.py, preference_section.py; run.py:
SECTIONS) and its settings (settings.py); the lm-evaluation-harness adapter (harness.py, scoring.py) and
preference evaluation (preference.py, rewards.py)."""

from llm.eval.perplexity import TextScore, score_text, score_tokens

__all__ = ["TextScore", "score_text", "score_tokens"]
