"""The data layer: records -> preference pairs -> token ids.

- :func:`load_pairs` reads any supported source and format into :class:`PreferencePair`
  objects (messages), reporting bad records (:mod:`~asft.data.sources`,
  :mod:`~asft.data.formats`).
- :func:`tokenize_pairs` turns pairs into :class:`TokenizedPair` token ids with an exact
  prompt/response boundary (:mod:`~asft.data.tokenize`), held in a :class:`TokenStore`:
  flat arrays, memory-mapped from the cache on disk (:mod:`~asft.data.store`).
- :mod:`~asft.data.builtin` generates the built-in task and checks its answers.
- :mod:`~asft.data.collate` lays tokenized pairs out in batches.
"""

from asft.data.errors import REASONS, DataError
from asft.data.load import load_pairs
from asft.data.records import LoadReport, LoadResult, Message, PreferencePair
from asft.data.store import TokenStore
from asft.data.tokenize import TokenizedPair, TokenizeReport, TokenizeResult, tokenize_pairs

__all__ = [
    "REASONS",
    "DataError",
    "LoadReport",
    "LoadResult",
    "Message",
    "PreferencePair",
    "TokenStore",
    "TokenizeReport",
    "TokenizeResult",
    "TokenizedPair",
    "load_pairs",
    "tokenize_pairs",
]
