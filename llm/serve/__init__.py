"""`llm serve`: an OpenAI-compatible HTTP API over a model directory (FastAPI and uvicorn, the `serve` extra)."""
