"""An OpenAI-compatible HTTP server over a local checkpoint (`python -m sftdiff.serve`)."""
