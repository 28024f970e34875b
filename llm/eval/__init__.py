"""Evaluation: perplexity and bits per byte, the lm-evaluation-harness adapter, preference evaluation."""
