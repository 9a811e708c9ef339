"""Reward-augmented pairs (Zhang et al., "Reward-Augmented Data Enhances Direct Preference
Alignment of LLMs", arXiv 2410.08067): each scored pair written twice, conditioned on a goal
score, so that any preference loss learns the whole range of quality in the data.

For a pair (x, y_w, y_l) with scores r_w (chosen) and r_l (rejected), and c(x, r) the prompt x
conditioned on score r (:func:`asft.data.condition.condition_prompt`):

    (c(x, r_w), y_w > y_l)    the pair, conditioned on the chosen score
    (c(x, r_l), y_l > y_w)    the inverse: for the goal r_l, y_l is the response that meets it

The paper's argument holds for either order of r_w and r_l: under goal r, the response whose
score is r is preferred. Only equal scores leave the inverse ill-defined (the same goal with
the preference reversed), so a tie keeps the pair and skips its inverse, counted.

Each written record holds message lists (``prompt``, ``chosen``, ``rejected``; read back as
the ``conversational`` format, so ``asft data check`` and ``asft train`` take the file as it
is) and says what it is: ``score_chosen`` / ``score_rejected`` (the scores of its own chosen
and rejected responses; the prompt is conditioned on ``score_chosen``), ``inverse`` and
``origin`` (the source record, ``<source>:<line>``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from asft.data.condition import DEFAULT_MAX_SCORE, condition_prompt
from asft.data.errors import DataError
from asft.data.formats import require
from asft.data.ranked import to_number
from asft.data.records import Message, PreferencePair

# UltraFeedback-binarized's columns: the default of ``asft data relabel --scores``.
SCORE_COLUMNS = ("score_chosen", "score_rejected")


def read_scores(record: Mapping, columns: tuple[str, str] = SCORE_COLUMNS) -> tuple[float, float]:
    """(chosen score, rejected score) of a raw record; a DataError naming the column when one
    is missing or not a finite number (numbers and numeric text are read, as CSV holds them)."""
    scores = []
    for column in columns:
        value = require(record, column)
        number = to_number(value, column)
        if number is None or not math.isfinite(number):
            raise DataError(f"score {value!r} is not a number", field=column, reason="wrong_type")
        scores.append(number)
    return scores[0], scores[1]


def default_max_score(scores: Iterable[tuple[float, float]]) -> float:
    """The top of the scale when none is given: 10 (UltraFeedback's) when every score is at
    most 10, else the largest score in the data."""
    top = max((max(pair) for pair in scores), default=DEFAULT_MAX_SCORE)
    return DEFAULT_MAX_SCORE if top <= DEFAULT_MAX_SCORE else top


def _plain(value: float) -> int | float:
    """8.0 written as 8, so that an integer score reads back as the source wrote it."""
    return int(value) if value.is_integer() else value


def output_record(prompt: list[Message], chosen: list[Message], rejected: list[Message],
                  scores: tuple[float, float], inverse: bool, origin: str) -> dict:
    """One written pair (see the module docstring for its keys)."""
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected,
            "score_chosen": _plain(scores[0]), "score_rejected": _plain(scores[1]),
            "inverse": inverse, "origin": origin}


def relabel_pair(pair: PreferencePair, scores: tuple[float, float], template: str,
                 max_score: float) -> list[dict]:
    """The pair conditioned on its chosen score and, unless the scores are equal, its inverse
    conditioned on the rejected score: two records, or one for a tie."""
    r_w, r_l = scores
    out = [output_record(condition_prompt(pair.prompt, r_w, template, max_score), pair.chosen,
                         pair.rejected, (r_w, r_l), False, pair.origin)]
    if r_w != r_l:
        out.append(output_record(condition_prompt(pair.prompt, r_l, template, max_score),
                                 pair.rejected, pair.chosen, (r_l, r_w), True, pair.origin))
    return out
