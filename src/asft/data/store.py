"""The token store: a data set's tokenized pairs as flat arrays on disk, memory-mapped.

A store is one folder, built aside and renamed into place (:func:`asft.atomic.folder`), so a
reader sees a whole store or none:

- ``ids.bin``: every kept pair's prompt, chosen, rejected and gold ids back to back,
  ``uint16`` when the vocabulary fits (SmolLM2, GPT-2), else ``int32`` ([T]);
- ``lengths.bin``: ``int32`` [N, 4], the prompt / chosen / rejected / gold token counts of each
  pair (0 for no gold, and for the empty side of an unpaired example);
- ``starts.bin``: ``int64`` [N], where each pair's ids begin in ``ids.bin``;
- ``indices.bin``: ``int64`` [N], each pair's position among the pairs the source gave;
- ``header.json``: the format version, dtype, N and T, the byte size of every file, a digest
  of the ids and lengths, and whatever the writer adds (the load and tokenize reports).

Opened with :meth:`TokenStore.open`, the arrays are ``numpy.memmap`` views of the files: a
process holds only the pages it touches, and N processes of one machine (the ranks of a run)
share one copy through the page cache. A store whose header is unreadable, of another version,
or whose files have other sizes, inconsistent offsets or other bytes than its digest says is
reported as absent (None), so the caller rebuilds it; it is never half used.

:class:`TokenStore` is a ``Sequence`` of :class:`TokenizedPair`: ``store[i]`` materialises one
pair as lists (what the collator takes), ``store.take(rows)`` is a view on some rows (the probe
split) without copying ids.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from asft import atomic

# 2: lengths are [N, 4], a gold response's count added (a version-1 store is rebuilt)
STORE_VERSION = 2
COLUMNS = 4  # prompt, chosen, rejected, gold
_FILES = ("ids", "lengths", "starts", "indices")
_ID_DTYPES = (np.dtype(np.uint16).str, np.dtype(np.int32).str)  # what ids_dtype can give


@dataclass(frozen=True, slots=True)
class TokenizedPair:
    """Token ids of one pair: ``prompt_ids + chosen_ids`` and ``prompt_ids + rejected_ids`` are
    the two full sequences; both responses end with EOS (unless cut by ``overflow="truncate"``).

    ``gold_ids``: the gold response (TPO's third one), ``prompt_ids + gold_ids`` its full
    sequence; ``[]`` when the pair has none. An unpaired example (KTO's) has ``chosen_ids ==
    []`` (undesirable) or ``rejected_ids == []`` (desirable).
    """

    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]
    gold_ids: list[int] = field(default_factory=list)


def ids_dtype(vocab_size: int | None) -> np.dtype:
    """The narrowest dtype that holds every id of a vocabulary of ``vocab_size`` (int32 when
    the size is not known)."""
    return np.dtype(np.uint16 if vocab_size is not None and vocab_size <= 2**16 else np.int32)


class TokenStore(Sequence):
    """Tokenized pairs over flat arrays (memory-mapped files or in-memory arrays).

    Attributes:
        ids: [T] token ids; lengths: [N, 4] int32 (prompt, chosen, rejected, gold); starts:
            [N] int64; indices: [N] int64 (positions in the source's pairs).
        header: the store's header (``digest``, ``tokens``, reports...).
        path: the folder, or None for an in-memory store.
    """

    def __init__(self, ids: np.ndarray, lengths: np.ndarray, starts: np.ndarray,
                 indices: np.ndarray, header: dict, path: Path | None = None,
                 rows: np.ndarray | None = None):
        self.ids, self._lengths, self._starts, self._indices = ids, lengths, starts, indices
        self.header, self.path, self.rows = header, path, rows

    # -- Sequence ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._starts) if self.rows is None else len(self.rows)

    def _row(self, i: int) -> int:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"pair {i} of a store of {n}")
        i %= n
        return i if self.rows is None else int(self.rows[i])

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return self.take(np.arange(len(self))[i])
        r = self._row(int(i))
        p, c, q, g = (int(x) for x in self._lengths[r])
        s = int(self._starts[r])
        seq = self.ids[s:s + p + c + q + g].tolist()
        return TokenizedPair(seq[:p], seq[p:p + c], seq[p + c:p + c + q], seq[p + c + q:])

    def __iter__(self) -> Iterator[TokenizedPair]:
        for i in range(len(self)):
            yield self[i]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str | bytes):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        where = str(self.path) if self.path else "in memory"
        return f"TokenStore({len(self)} pairs, {where})"

    # -- whole-store views ---------------------------------------------------------------------
    def _sel(self, arr: np.ndarray) -> np.ndarray:
        return np.asarray(arr) if self.rows is None else np.asarray(arr)[self.rows]

    @property
    def lengths(self) -> np.ndarray:
        """[len(self), 4] int32: prompt, chosen, rejected and gold token counts (a row's sum is
        the pair's tokens)."""
        return self._sel(self._lengths)

    @property
    def indices(self) -> np.ndarray:
        """[len(self)] int64: each pair's position among the source's pairs."""
        return self._sel(self._indices)

    def take(self, rows: Sequence[int] | np.ndarray) -> TokenStore:
        """A view on the pairs at ``rows`` (of this store or view), sharing the arrays."""
        rows = np.asarray(rows, dtype=np.int64)
        base = rows if self.rows is None else self.rows[rows]
        return TokenStore(self.ids, self._lengths, self._starts, self._indices, self.header,
                          self.path, base)

    def digest(self) -> str:
        """SHA-256 of the pairs' token ids in order (the store's digest and the view's rows)."""
        h = hashlib.sha256(self.header["digest"].encode())
        if self.rows is not None:
            h.update(np.ascontiguousarray(self.rows, dtype="<i8").tobytes())
        return h.hexdigest()

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays (the store's files)."""
        return sum(int(a.nbytes) for a in (self.ids, self._lengths, self._starts, self._indices))

    # -- opening -------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path) -> TokenStore | None:
        """The store in folder ``path``, memory-mapped; None when it is missing or damaged."""
        path = Path(path)
        try:
            header = json.loads((path / "header.json").read_text())
            if not isinstance(header, dict) or header.get("version") != STORE_VERSION \
                    or header.get("dtype") not in _ID_DTYPES:
                return None
            n, t = int(header["pairs"]), int(header["tokens"])
            shapes = {"ids": (t,), "lengths": (n, COLUMNS), "starts": (n,), "indices": (n,)}
            dtypes = {"ids": np.dtype(header["dtype"]), "lengths": np.dtype(np.int32),
                      "starts": np.dtype(np.int64), "indices": np.dtype(np.int64)}
            arrays = {}
            for name in _FILES:
                file = path / f"{name}.bin"
                size = int(np.prod(shapes[name])) * dtypes[name].itemsize
                if file.stat().st_size != size or header["sizes"][name] != size:
                    return None
                arrays[name] = (np.memmap(file, dtype=dtypes[name], mode="r", shape=shapes[name])
                                if size else np.zeros(shapes[name], dtype=dtypes[name]))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        store = cls(arrays["ids"], arrays["lengths"], arrays["starts"], arrays["indices"],
                    header, path)
        return store if store._consistent() and store._content_digest() == header["digest"] \
            else None

    def _content_digest(self) -> str:
        """The digest :class:`StoreBuilder` wrote, recomputed from the files (one sequential
        read: ~1 s per 1.5 GB of ids), so that bytes damaged in place are caught too."""
        h_ids, h_len, h_idx = hashlib.sha256(), hashlib.sha256(), hashlib.sha256()
        for h, arr in ((h_ids, self.ids), (h_len, self._lengths), (h_idx, self._indices)):
            flat = np.asarray(arr).reshape(-1)
            step = (64 << 20) // max(flat.itemsize, 1)
            for lo in range(0, len(flat), step):
                h.update(memoryview(np.ascontiguousarray(flat[lo:lo + step])).cast("B"))
        return _digest(self.ids.dtype, h_ids, h_len, h_idx)

    def _consistent(self) -> bool:
        """Offsets agree with the lengths and the ids (cheap: O(N), never O(T))."""
        lengths = np.asarray(self._lengths, dtype=np.int64)
        if len(lengths) and lengths.min() < 0:
            return False
        ends = np.cumsum(lengths.sum(axis=1))
        expected = np.concatenate([[0], ends[:-1]]) if len(ends) else ends
        return bool(np.array_equal(np.asarray(self._starts), expected)
                    and (ends[-1] if len(ends) else 0) == len(self.ids))


def _digest(dtype: np.dtype, *hashes: Any) -> str:
    """The store digest from the running hashes of its ids, lengths and indices (the bytes as
    written: this machine's byte order, which a store's dtype string records)."""
    return hashlib.sha256(":".join([dtype.str, *(h.hexdigest() for h in hashes)]).encode()).hexdigest()


class StoreBuilder:
    """Appends tokenized pairs chunk by chunk, to files in ``folder`` (then :meth:`seal`) or
    in memory (``folder=None``, then :meth:`finish`); hashes as it goes.

    Args:
        dtype: of the ids (:func:`ids_dtype`).
        folder: an empty temporary folder to write the files into, or None.
    """

    def __init__(self, dtype: np.dtype, folder: Path | None = None):
        self.dtype, self.folder = np.dtype(dtype), folder
        self.pairs = self.tokens = 0
        self._hashes = [hashlib.sha256() for _ in range(3)]  # ids, lengths, indices
        self._parts: dict[str, list[np.ndarray]] = {name: [] for name in _FILES}
        # open across appends, closed by seal() or close() (build_in guarantees one of them)
        self._files = ({name: open(folder / f"{name}.bin", "wb")  # noqa: SIM115
                        for name in _FILES} if folder is not None else None)

    def append(self, pairs: Sequence[TokenizedPair], indices: Sequence[int]) -> None:
        """Add ``pairs`` (kept in this order), which came from source positions ``indices``."""
        if not pairs:
            return
        lengths = np.array([(len(p.prompt_ids), len(p.chosen_ids), len(p.rejected_ids),
                             len(p.gold_ids)) for p in pairs], dtype=np.int32).reshape(-1, COLUMNS)
        flat = [t for p in pairs
                for seq in (p.prompt_ids, p.chosen_ids, p.rejected_ids, p.gold_ids) for t in seq]
        ids = np.asarray(flat, dtype=np.int64)
        if len(ids) and (ids.min() < 0 or ids.max() > np.iinfo(self.dtype).max):
            raise ValueError(f"token id {int(ids.max())} does not fit the store's {self.dtype}")
        ids = ids.astype(self.dtype)
        totals = lengths.astype(np.int64).sum(axis=1)
        starts = self.tokens + np.concatenate([[0], np.cumsum(totals)[:-1]])
        chunk = {"ids": ids, "lengths": lengths, "starts": starts.astype(np.int64),
                 "indices": np.asarray(indices, dtype=np.int64)}
        for h, arr in zip(self._hashes, (ids, lengths, chunk["indices"])):
            h.update(np.ascontiguousarray(arr).tobytes())
        for name, arr in chunk.items():
            if self._files is not None:
                self._files[name].write(np.ascontiguousarray(arr).tobytes())
            else:
                self._parts[name].append(arr)
        self.pairs += len(pairs)
        self.tokens += int(totals.sum())

    def _header(self, extra: dict) -> dict:
        item = {"ids": self.dtype.itemsize, "lengths": 4 * COLUMNS, "starts": 8, "indices": 8}
        sizes = {name: item[name] * (self.tokens if name == "ids" else self.pairs)
                 for name in _FILES}
        digest = _digest(self.dtype, *self._hashes)
        return {**extra, "version": STORE_VERSION, "dtype": self.dtype.str, "pairs": self.pairs,
                "tokens": self.tokens, "sizes": sizes, "digest": digest}

    def seal(self, extra: dict) -> None:
        """Close the files (flushed to disk) and write the header, the last file of a store."""
        assert self._files is not None
        for fh in self._files.values():
            fh.flush()
            os.fsync(fh.fileno())
            fh.close()
        atomic.write_json(self.folder / "header.json", self._header(extra), fsync=True)

    def close(self) -> None:
        """Close the files without sealing (the build failed)."""
        for fh in (self._files or {}).values():
            fh.close()

    def finish(self, extra: dict) -> TokenStore:
        """The in-memory store built so far."""
        def cat(name: str, dtype) -> np.ndarray:
            parts = self._parts[name]
            return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)

        lengths = cat("lengths", np.int32).reshape(-1, COLUMNS)
        return TokenStore(cat("ids", self.dtype), lengths, cat("starts", np.int64),
                          cat("indices", np.int64), self._header(extra))


@contextlib.contextmanager
def build_in(dest: Path, dtype: np.dtype) -> Iterator[StoreBuilder]:
    """A :class:`StoreBuilder` writing into a temporary folder beside ``dest``, which becomes
    ``dest`` when the block ends after :meth:`StoreBuilder.seal`; a failed or unsealed build
    leaves nothing under ``dest``."""
    with atomic.folder(dest) as tmp:
        builder = StoreBuilder(dtype, tmp)
        try:
            yield builder
        finally:
            builder.close()
        if not (tmp / "header.json").exists():
            raise RuntimeError("token store built but not sealed")
