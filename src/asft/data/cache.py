"""On-disk cache of tokenized pairs, keyed by everything that determines the tokens.

The key is a SHA-256 over: the pairs' messages (not their origins), the tokenizer's full
serialized definition (vocabulary, merges, normalizer, special tokens; or the vocabulary of a
slow tokenizer), the chat template, the EOS token, the length limits and policies, and
:data:`CACHE_VERSION`. An entry is one ``.npz`` file (flat int32 token ids, per-pair lengths,
and a JSON header) written to a temporary file and renamed into place, so a reader never
sees half an entry; an unreadable entry is treated as absent and rewritten.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path

from asft import atomic

# 2: an entry's report also keeps the lengths of the pairs dropped as too long
CACHE_VERSION = 2


def tokenizer_fingerprint(tokenizer) -> str:
    """SHA-256 of the tokenizer's complete definition."""
    h = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        h.update(backend.to_str().encode("utf-8", "surrogatepass"))
    else:
        vocab = sorted(tokenizer.get_vocab().items())
        h.update(json.dumps(vocab, ensure_ascii=False).encode("utf-8", "surrogatepass"))
    h.update(json.dumps(tokenizer.special_tokens_map, sort_keys=True, default=str).encode())
    return h.hexdigest()


def data_fingerprint(pairs) -> str:
    """SHA-256 of the pairs' messages, in order."""
    payload = json.dumps([(p.prompt, p.chosen, p.rejected) for p in pairs], ensure_ascii=False,
                         separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()


def cache_key(**parts: object) -> str:
    """Hex key of the cache entry for these parts (all JSON-serializable)."""
    blob = json.dumps({"version": CACHE_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def entry_path(cache_dir: str | os.PathLike, key: str) -> Path:
    return Path(cache_dir) / f"tokenized-{key[:32]}.npz"


def save(path: Path, ids: list[int], lengths: list[tuple[int, int, int]], header: dict) -> None:
    """Write an entry atomically: a temporary file in the same folder, then a rename."""
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic.file(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, ids=np.asarray(ids, dtype=np.int32),
                 lengths=np.asarray(lengths, dtype=np.int32).reshape(-1, 3),
                 header=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8))


def load(path: Path) -> tuple[list[int], list[list[int]], dict] | None:
    """(flat ids, per-pair [prompt, chosen, rejected] lengths, header), or None when the entry
    is missing or unreadable."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as npz:
            ids = npz["ids"].tolist()
            lengths = npz["lengths"].tolist()
            header = json.loads(npz["header"].tobytes().decode())
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
        return None
    if sum(map(sum, lengths)) != len(ids) or header.get("version") != CACHE_VERSION:
        return None
    return ids, lengths, header
