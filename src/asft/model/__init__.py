"""The model stage: loading (hub, folder, packaged GGUF, tiny random), LoRA, and the log-prob
scorer (prompt-sharing and packed layouts, the chunked response-only LM head).

Submodules are imported where used, so importing ``asft.model`` itself is cheap.
"""
