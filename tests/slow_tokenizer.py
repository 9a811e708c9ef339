"""A tokenizer wrapped so that it looks like a slow one (no Rust backend, so no offsets): the
tokenizer's other path, checked against the fast one by the data tests."""

from __future__ import annotations


class Slow:
    """A tokenizer without a Rust backend (no offsets)."""

    backend_tokenizer = None

    def __init__(self, inner):
        self._inner = inner

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def __call__(self, *a, **kw):
        return self._inner(*a, **kw)
