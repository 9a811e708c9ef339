"""Pairs from scored samples: a pure function, no model, no I/O.

For one prompt with samples ``texts`` and scores ``scores``:

1. samples without a finite score (scoring failures) take no part;
2. a candidate pair (i, j) has ``scores[i] > scores[j]`` strictly (equal scores, ties, never
   make a pair) and ``texts[i] != texts[j]`` (the same answer twice is no preference);
3. candidates are ordered by score gap, largest first, then by i, then by j (the sample
   order), and a (chosen text, rejected text) already taken is skipped, so that an answer
   sampled twice does not give the same pair twice;
4. ``best-worst`` keeps the first (the highest score against the lowest), ``all`` keeps them
   all or the first ``max_pairs``.

A prompt that gives no pair says why (:data:`SKIP_REASONS`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

#: Why a prompt gave no pair: fewer than two samples scored; every scored sample has the same
#: score; the scores differ only between identical texts.
SKIP_REASONS = ("too_few_scored", "tie", "identical")


@dataclass(frozen=True)
class Pairing:
    """The pairs of one prompt: ``(chosen, rejected)`` sample indices in order, and, when
    there are none, ``skipped``, one of :data:`SKIP_REASONS`."""

    pairs: tuple[tuple[int, int], ...]
    skipped: str | None = None


def make_pairs(scores: Sequence[float | None], texts: Sequence[str], mode: str = "best-worst",
               max_pairs: int | None = None) -> Pairing:
    """The pairs of one prompt's samples (rules in the module docstring).

    Args:
        scores: K scores, None (or NaN) for a sample that could not be scored.
        texts: the K sample texts, in the same order.
        mode: ``best-worst`` (at most one pair) or ``all``.
        max_pairs: cap on the pairs of ``all`` (None: no cap); ignored by ``best-worst``.
    """
    if len(scores) != len(texts):
        raise ValueError(f"{len(scores)} scores for {len(texts)} samples")
    if mode not in ("best-worst", "all"):
        raise ValueError(f"unknown pairing mode {mode!r}")
    scored = [i for i, s in enumerate(scores) if s is not None and math.isfinite(s)]
    if len(scored) < 2:
        return Pairing((), "too_few_scored")
    if len({scores[i] for i in scored}) == 1:
        return Pairing((), "tie")
    candidates = sorted(
        ((i, j) for i in scored for j in scored
         if scores[i] > scores[j] and texts[i] != texts[j]),
        key=lambda ij: (-(scores[ij[0]] - scores[ij[1]]), ij[0], ij[1]),
    )
    cap = 1 if mode == "best-worst" else max_pairs
    pairs: list[tuple[int, int]] = []
    taken: set[tuple[str, str]] = set()
    for i, j in candidates:
        if cap is not None and len(pairs) >= cap:
            break
        if (texts[i], texts[j]) not in taken:
            taken.add((texts[i], texts[j]))
            pairs.append((i, j))
    return Pairing(tuple(pairs), None if pairs else "identical")
