"""On-disk cache of tokenized pairs, keyed by everything that determines the tokens.

The key is a SHA-256 over: what the pairs are (the digest of the source file's bytes and the
options that read it, see :func:`asft.data.spec.prepare`; or, for pairs given in memory, their
messages, hashed pair by pair), the tokenizer's full serialized definition (vocabulary, merges,
normalizer, special tokens; or the vocabulary of a slow tokenizer), the chat template, the EOS
token, the length limits and policies, and :data:`CACHE_VERSION`. An entry is a token store
folder (:mod:`asft.data.store`), built aside and renamed into place, so a reader never sees
half an entry; a damaged entry is treated as absent and rebuilt.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

from asft import atomic

# 2: an entry's report also keeps the lengths of the pairs dropped as too long
# 3: entries are token stores (asft.data.store), keyed on the source or the pairs
CACHE_VERSION = 3
_MEMO_SIZE = 1000


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
    """SHA-256 of the pairs' messages (gold responses included), in order (hashed pair by
    pair: nothing the size of the data set is built)."""
    h = hashlib.sha256()
    for p in pairs:
        # the gold response only where there is one: pairs without keep the keys they had
        parts = (p.prompt, p.chosen, p.rejected) if p.gold is None else (
            p.prompt, p.chosen, p.rejected, p.gold)
        h.update(json.dumps(parts, ensure_ascii=False,
                            separators=(",", ":")).encode("utf-8", "surrogatepass"))
        h.update(b"\n")
    return h.hexdigest()


def cache_key(**parts: object) -> str:
    """Hex key of the cache entry for these parts (all JSON-serializable)."""
    blob = json.dumps({"version": CACHE_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def store_path(cache_dir: str | os.PathLike, key: str) -> Path:
    """The folder of the token store (:mod:`asft.data.store`) with cache key ``key``."""
    return Path(cache_dir) / f"store-{key[:32]}"


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 4 MiB blocks (nothing the size of the file is
    held): the one file hash of asft (data digests, split manifests, checkpoint manifests)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def file_digest(path: str | os.PathLike, memo_dir: str | os.PathLike | None = None) -> str:
    """SHA-256 of a file's bytes, or of a folder's files (names and bytes, sorted by name).

    With ``memo_dir``, a digest is remembered there by (real path, size, modification time,
    inode) of each file, so that a warm start does not read gigabytes to find its cache
    entry; a file changed in place gets a new modification time and is hashed again.
    """
    path = Path(path).resolve()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    h = hashlib.sha256()
    memo = _Memo(memo_dir)
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode("utf-8", "surrogatepass") + b"\0")
        h.update(memo.digest(f).encode())
    memo.save()
    return h.hexdigest()


class _Memo:
    """Digests of files by their identity (see :func:`file_digest`), in one JSON file."""

    def __init__(self, folder: str | os.PathLike | None):
        self.path = Path(folder) / "file-digests.json" if folder is not None else None
        self.entries: dict[str, str] = {}
        self.changed = False
        if self.path is not None:
            try:
                self.entries = dict(json.loads(self.path.read_text()))
            except (OSError, ValueError, TypeError):
                self.entries = {}

    def digest(self, file: Path) -> str:
        st = file.stat()
        ident = f"{file}|{st.st_size}|{st.st_mtime_ns}|{st.st_ino}"
        if ident not in self.entries:
            self.entries[ident] = sha256_file(file)
            self.changed = True
        return self.entries[ident]

    def save(self) -> None:
        if self.path is None or not self.changed:
            return
        if len(self.entries) > _MEMO_SIZE:  # the oldest first: dicts keep insertion order
            self.entries = dict(list(self.entries.items())[-_MEMO_SIZE:])
        with contextlib.suppress(OSError):  # a lost memo costs one more hash, nothing else
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic.write_json(self.path, self.entries)
