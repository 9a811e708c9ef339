"""Training pairs with a third response per pair, as some losses read one (``LossSpec.extra``).

- ``gold`` (TPO, arXiv 2405.16681): the pair's own gold response (``gold_ids``, from the data's
  ``gold`` column), or none (the loss then uses the chosen response).
- ``mismatched`` (KTO, arXiv 2402.01306): another example's response under this prompt, for the
  estimate of KL(pi || pi_ref): pair i gets the response of pair (i + 1) mod N (its chosen one,
  or its rejected one when an unpaired example has no chosen). Fixed per dataset rather than per
  batch (TRL rotates within a batch), so that the reference log-probs of the mismatched
  completions can be precomputed with the ``cache`` strategy like those of the pairs.

The view is a Sequence over the same indices as the pairs it wraps; the collator lays the
third response out as one more segment that shares the pair's prompt (asft.data.collate).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

KINDS = ("gold", "mismatched")


@dataclass(frozen=True, slots=True)
class PairWithExtra:
    """A tokenized pair and its third response (``extra_ids``; empty when it has none)."""

    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]
    extra_ids: list[int]


def _response(ex) -> list[int]:
    return list(ex.chosen_ids) if len(ex.chosen_ids) else list(ex.rejected_ids)


class WithExtra(Sequence):
    """``pairs`` (a token store or a list of tokenized pairs) with a third response of ``kind``."""

    def __init__(self, pairs: Sequence, kind: str):
        if kind not in KINDS:
            raise ValueError(f"unknown third response {kind!r}; valid: {', '.join(KINDS)}")
        self.pairs, self.kind = pairs, kind

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        ex = self.pairs[i]
        if self.kind == "gold":
            extra = list(getattr(ex, "gold_ids", None) or [])
        else:
            extra = _response(self.pairs[(i + 1) % len(self.pairs)])
        return PairWithExtra(list(ex.prompt_ids), list(ex.chosen_ids), list(ex.rejected_ids), extra)

    @property
    def lengths(self) -> np.ndarray:
        """[N, 4] int: prompt, chosen, rejected and third-response token counts."""
        if hasattr(self.pairs, "lengths"):
            base = np.asarray(self.pairs.lengths)
        else:
            base = np.array([(len(p.prompt_ids), len(p.chosen_ids), len(p.rejected_ids),
                              len(getattr(p, "gold_ids", None) or [])) for p in self.pairs])
        if self.kind == "gold":
            gold = base[:, 3] if base.shape[1] > 3 else np.zeros(len(base), dtype=base.dtype)
            return np.column_stack([base[:, :3], gold])
        response = np.where(base[:, 1] > 0, base[:, 1], base[:, 2])
        return np.column_stack([base[:, :3], np.roll(response, -1)])

    @property
    def digest(self):
        """The wrapped pairs' digest with the kind (a reference cache must not mix kinds); only
        where the wrapped pairs have one (a token store), else AttributeError."""
        if not hasattr(self.pairs, "digest"):
            raise AttributeError("digest")
        return lambda: f"{self.pairs.digest()}+{self.kind}"
