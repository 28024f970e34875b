"""Data: corpora (sources of text), cached token files, and Lightning data modules."""
