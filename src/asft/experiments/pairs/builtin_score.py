"""The ``builtin`` scorer: the built-in tasks' verifier, graded so that wrong answers rarely tie.

With ``e = (e_1 .. e_m)`` the integers of the expected answer and ``x = (x_1 .. x_n)`` those
:func:`asft.data.builtin.extract_answer` finds in the sample (after its last ``Answer:``, else
on its first non-empty line)::

    score = 1                                              if x == e  (check_answer: exact)
    score = 0                                              if no integer is found
    score = 0.5 / max(m, n) * sum_{i <= min(m, n)} 1 / (1 + |x_i - e_i| / max(1, |e_i|))
                                                           otherwise

Each position that both have earns up to 1 for being close (relative error; 1 only when
equal), positions that one of them lacks earn 0, and the mean is halved: a wrong answer scores
in [0, 0.5], so every exact answer beats every wrong one, a near miss (``Answer: 41`` for 42:
0.488) beats a far one (``Answer: 4``: 0.263), and an answer with a number beats one without.
Sorting answers (``7, 19, 42``) are graded position by position the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

from asft.data.builtin import check_answer, extract_answer
from asft.experiments.pairs.items import PromptItem, Score

#: Recorded in the scores file's settings: a changed formula is refused, not mixed in.
FORMULA = "exact-1-else-half-mean-closeness"


def _closeness(x: int, e: int) -> float:
    try:
        return 1.0 / (1.0 + abs(x - e) / max(1, abs(e)))
    except OverflowError:  # a 300-digit answer: as far off as can be
        return 0.0


def builtin_score(response: str, reference: str) -> float:
    """The score of ``response`` against the expected answer ``reference`` (formula in the
    module docstring); ValueError when ``reference`` holds no integer."""
    expected = extract_answer(reference)
    if expected is None:
        raise ValueError(f"the expected answer {reference!r} holds no integer")
    if check_answer(response, reference):
        return 1.0
    found = extract_answer(response)
    if found is None:
        return 0.0
    close = sum(_closeness(x, e) for x, e in zip(found, expected))
    return 0.5 * close / max(len(found), len(expected))


class BuiltinScorer:
    """Scores a prompt's samples with :func:`builtin_score` against the prompt's reference."""

    def score(self, item: PromptItem, responses: Sequence[str]) -> list[Score]:
        """One :class:`Score` per response (never a failure: every text gets a number)."""
        if item.reference is None:
            raise ValueError(f"{item.origin}: no expected answer to score against")
        return [Score(builtin_score(r, item.reference)) for r in responses]
