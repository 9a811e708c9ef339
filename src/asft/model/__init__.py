"""The model stage: loading (hub, folder, packaged GGUF, tiny random), LoRA, the log-prob
scorer (prompt-sharing and packed layouts, the chunked response-only LM head), and the way out:
the model card and the push to the Hugging Face Hub.

Submodules are imported where used, so importing ``asft.model`` itself is cheap.
"""
