"""The ``judge`` scorer: an LLM judge rates each sample 1-10 (single-answer grading).

The grading prompt is FastChat's single-answer prompt of MT-Bench (Zheng et al., arXiv
2306.05685; :data:`asft.evaluate.judge_prompts.SINGLE_PROMPTS`): ``single-v1``, or
``single-math-v1`` with the expected answer shown as the reference when the prompt has one.
The rating is the number in ``[[n]]`` (``[n]`` as a fallback), as ``asft mt-bench`` reads it
(:func:`asft.evaluate.mt_bench.parse_rating`). A reply without one is a scoring failure for
that sample (no score; the reply is kept as the note), not an error. The client
(:class:`asft.evaluate.judge.JudgeClient`) retries network errors, 429/5xx and malformed
replies with back-off and keeps the API key out of every message; when it gives up it raises
:class:`~asft.evaluate.judge.JudgeError`, which stops the run (what was scored stays saved).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from asft.evaluate.judge_prompts import SINGLE_PROMPTS
from asft.evaluate.mt_bench import parse_rating
from asft.experiments.pairs.items import Message, PromptItem, Score

_ROLE_NAMES = {"system": "System", "user": "User", "assistant": "Assistant", "tool": "Tool"}


def question_text(messages: Sequence[Message]) -> str:
    """The judge's ``{question}``: a lone user message as it is, a longer conversation as
    ``Role: content`` paragraphs (the judge grades the answer to its last turn)."""
    if len(messages) == 1:
        return messages[0]["content"]
    return "\n\n".join(f"{_ROLE_NAMES.get(m['role'], m['role'])}: {m['content']}" for m in messages)


def grading_messages(item: PromptItem, response: str) -> tuple[str, str]:
    """``(system, user)`` messages that ask the judge to rate ``response`` to ``item``."""
    question = question_text(item.messages)
    if item.reference is not None:
        prompt = SINGLE_PROMPTS["single-math-v1"]
        user = prompt.prompt_template.format(question=question, answer=response,
                                             ref_answer_1=item.reference)
    else:
        prompt = SINGLE_PROMPTS["single-v1"]
        user = prompt.prompt_template.format(question=question, answer=response)
    return prompt.system_prompt, user


class JudgeScorer:
    """Rates samples with ``complete(system, user) -> reply`` (a JudgeClient's ``complete``),
    ``parallel`` requests at a time."""

    def __init__(self, complete: Callable[[str, str], str], parallel: int = 4):
        self.complete, self.parallel = complete, parallel

    def _grade(self, job: tuple[PromptItem, str]) -> Score:
        reply = self.complete(*grading_messages(*job))
        rating = parse_rating(reply)
        # parse_rating's -1 means no rating was found: a failure for this sample only
        return Score(None if rating < 0 else rating, reply)

    def score(self, item: PromptItem, responses: Sequence[str]) -> list[Score]:
        """One :class:`Score` per response, in order; JudgeError when the judge fails."""
        jobs = [(item, r) for r in responses]
        if self.parallel <= 1 or len(jobs) <= 1:
            return [self._grade(job) for job in jobs]
        with ThreadPoolExecutor(min(self.parallel, len(jobs))) as pool:
            return list(pool.map(self._grade, jobs))
