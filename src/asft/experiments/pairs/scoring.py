"""The scoring phase: every prompt's samples scored, saved one prompt at a time.

A prompt's record holds its K scores (``null`` for a sample that could not be scored) and the
scorer's notes (the judge's replies), and the hash of the prompt and the samples it scored,
so that scores are never reused for other samples. An error that stops the run (the judge
gave up) loses at most the prompt in progress; a rerun scores only what is missing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

from asft.errors import AsftError
from asft.experiments.pairs.items import PromptItem, Score, digest
from asft.experiments.pairs.scorers import Scorer
from asft.experiments.pairs.store import SideFile

SCORE_FIELDS = ("scores", "notes")


def _read(record: dict, k: int, store: SideFile, item: PromptItem) -> list[Score]:
    scores, notes = record["scores"], record["notes"]
    ok = (isinstance(scores, list) and isinstance(notes, list) and len(scores) == len(notes) == k
          and all(s is None or (isinstance(s, int | float) and not isinstance(s, bool))
                  for s in scores))
    if not ok:
        raise AsftError(f"{store.path}: the record of prompt {item.index + 1} does not hold {k} "
                        "scores and notes; delete that file to score again")
    return [Score(None if s is None else float(s), n) for s, n in zip(scores, notes)]


def _checked(scores: Sequence[Score], k: int) -> list[Score]:
    """The scorer's answer as saved: K scores, a non-finite value turned into a failure
    (JSON has no NaN)."""
    if len(scores) != k:
        raise RuntimeError(f"the scorer gave {len(scores)} scores for {k} samples")
    return [s if s.value is None or math.isfinite(s.value)
            else Score(None, f"non-finite score {s.value}") for s in scores]


def score_all(open_scorer: Callable[[], Scorer], items: Sequence[PromptItem],
              samples: Mapping[int, list[str]], store: SideFile,
              on_done: Callable[[int], None] | None = None) -> dict[int, list[Score]]:
    """Every item's scores by index: read from ``store``, or scored (the scorer is opened only
    when something is missing) and appended to ``store`` one prompt at a time."""
    out: dict[int, list[Score]] = {}
    scorer: Scorer | None = None
    for item in items:
        texts = samples[item.index]
        sha = digest([item.sha, texts])
        record = store.get(item.index, sha, item.origin)
        if record is not None:
            out[item.index] = _read(record, len(texts), store, item)
            continue
        scorer = scorer or open_scorer()
        scores = _checked(scorer.score(item, texts), len(texts))
        store.add({"index": item.index, "sha": sha, "scores": [s.value for s in scores],
                   "notes": [s.note for s in scores]})
        out[item.index] = scores
        if on_done is not None:
            on_done(1)
    return out
