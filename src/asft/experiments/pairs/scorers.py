"""Which scorer ``--scorer`` names, what its scores depend on, and opening it.

A scorer has one method, ``score(item, responses) -> list[Score]``: one
:class:`~asft.experiments.pairs.items.Score` per response of one prompt, in order, a ``None``
value for a sample it could not score (counted, skipped). An error that stops the run (the
judge is down) is raised as :class:`~asft.errors.AsftError` or
:class:`~asft.evaluate.judge.JudgeError`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Protocol

from asft.errors import AsftError
from asft.experiments.pairs.builtin_score import FORMULA
from asft.experiments.pairs.config import PairsConfig, parse_scorer
from asft.experiments.pairs.items import PromptItem, Score


class Scorer(Protocol):
    def score(self, item: PromptItem, responses: Sequence[str]) -> list[Score]: ...


def scoring_settings(config: PairsConfig) -> dict:
    """What the scores depend on (recorded in, and checked against, the scores file): the
    scorer, and its formula, judge model or reward model."""
    kind, name = parse_scorer(config.scorer)
    if kind == "builtin":
        return {"scorer": kind, "formula": FORMULA}
    if kind == "judge":
        return {"scorer": kind, "judge_model": config.judge.model}
    return {"scorer": kind, "reward_model": name, "dtype": config.dtype}


def check(config: PairsConfig, items: Sequence[PromptItem]) -> None:
    """Refuse, before any sampling, what the scorer cannot work with: ``builtin`` needs every
    prompt's expected answer, with an integer in it; ``reward-model:PATH`` a folder there."""
    from asft.data.builtin import extract_answer

    kind, name = parse_scorer(config.scorer)
    if kind == "reward-model":
        from asft.experiments.pairs.reward_model import check_name

        check_name(name)
    if kind != "builtin":
        return
    for item in items:
        if item.reference is None:
            raise AsftError(f"{item.origin}: --scorer builtin needs each prompt's expected answer "
                            "(builtin:<task> prompts have one; a file needs an 'answer' field)")
        if extract_answer(item.reference) is None:
            raise AsftError(f"{item.origin}, field 'answer': {item.reference!r} holds no integer "
                            "for --scorer builtin to check")


def _judge(config: PairsConfig) -> Scorer:
    from asft.evaluate.judge import JudgeClient
    from asft.experiments.pairs.judge_score import JudgeScorer

    options = config.judge
    client = JudgeClient(options.base_url, options.model, options.api_key_env,
                         timeout=options.timeout, max_retries=options.retries,
                         backoff=options.backoff)
    if not client.has_key:
        print(f"asft pairs: ${options.api_key_env} is not set; calling the judge without an "
              "API key", file=sys.stderr)
    return JudgeScorer(client.complete, options.parallel)


def open_scorer(config: PairsConfig) -> Scorer:
    """The scorer ``config.scorer`` names, ready to score (a reward model loaded)."""
    kind, name = parse_scorer(config.scorer)
    if kind == "builtin":
        from asft.experiments.pairs.builtin_score import BuiltinScorer

        return BuiltinScorer()
    if kind == "judge":
        return _judge(config)
    from asft.experiments.pairs.reward_model import RewardModelScorer

    return RewardModelScorer(name, config.dtype, config.batch_size)
