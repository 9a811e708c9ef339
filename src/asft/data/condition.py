"""Score conditioning (Zhang et al., "Reward-Augmented Data Enhances Direct Preference
Alignment of LLMs", arXiv 2410.08067): a system message that asks for a response of a given
quality score, put first in a prompt.

This is the one place the conditioning is written. ``asft data relabel``
(:mod:`asft.data.relabel`) conditions each training pair on a response's score; ``asft eval``
and ``asft mt-bench`` (``--condition-score S``) condition every prompt on S at inference, as
the paper evaluates (on the highest score), with the same template.

The text is ``template.format(score=..., max=...)``, the scores written as the data holds
them (``8`` for 8.0, ``7.5`` for 7.5). A prompt without a system message gets one holding the
text; a prompt whose first message is a system message gets the text appended to it, after a
blank line, so that the data's own system prompt stays first.
"""

from __future__ import annotations

import math
import string
from dataclasses import dataclass, replace

from asft.data.records import Message, PreferencePair

# The paper's public code (shenao-zhang/reward-augmented-preference,
# scripts/reward_augmentation.py) asks for an "overall score" on UltraFeedback's 1-10 scale
# in a system message; the scale's top is {max} here so that other scales read right.
DEFAULT_TEMPLATE = (
    "You are an assistant that generates responses for the instruction while implicitly "
    "achieving the following target scores (on a scale of 1-{max}, where 1 is lowest and "
    "{max} is highest):\nOverall score: {score}."
)
# UltraFeedback's scores (score_chosen / score_rejected of ultrafeedback_binarized) are 1-10.
DEFAULT_MAX_SCORE = 10.0
FIELDS = ("score", "max")


def format_score(value: float) -> str:
    """A score as the template shows it: ``8`` for 8.0, ``7.25`` for 7.25."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def check_template(template: str) -> None:
    """Raise ValueError unless ``template`` names ``{score}``, and no field but ``{score}``
    and ``{max}`` (``{{`` and ``}}`` write a literal brace)."""
    if not isinstance(template, str):
        raise ValueError(f"the template must be text, got {type(template).__name__}")
    fields = ", ".join("{" + f + "}" for f in FIELDS)
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
        bad = [name for name in names if name not in FIELDS]
        if bad:
            raise KeyError(bad[0])
        template.format(score="8", max="10")
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"the template {template!r} cannot be filled ({type(err).__name__}: "
                         f"{err}); it may name only {fields}") from None
    if "score" not in names:
        raise ValueError(f"the template {template!r} does not name {{score}}, the score the "
                         "response is conditioned on")


def check_score(value: float, what: str = "score") -> float:
    """``value`` as a float; ValueError when it is not a finite number."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"the {what} must be a finite number, got {value!r}")
    return float(value)


def condition_text(score: float, template: str = DEFAULT_TEMPLATE,
                   max_score: float = DEFAULT_MAX_SCORE) -> str:
    """The conditioning text for ``score`` (the template filled in)."""
    return template.format(score=format_score(score), max=format_score(max_score))


def condition_prompt(prompt: list[Message], score: float, template: str = DEFAULT_TEMPLATE,
                     max_score: float = DEFAULT_MAX_SCORE) -> list[Message]:
    """``prompt`` (messages) conditioned on ``score``: a new list, ``prompt`` is not changed.

    The text goes into the system message: a new one first, or appended (after a blank line)
    to the prompt's own first system message.
    """
    text = condition_text(score, template, max_score)
    if prompt and prompt[0]["role"] == "system":
        head = prompt[0]["content"]
        return [{"role": "system", "content": f"{head}\n\n{text}" if head else text},
                *prompt[1:]]
    return [{"role": "system", "content": text}, *prompt]


@dataclass(frozen=True)
class Condition:
    """A score to condition every prompt on at inference (``--condition-score``), with the
    template and scale the training data was relabeled with (checked here)."""

    score: float
    template: str = DEFAULT_TEMPLATE
    max_score: float = DEFAULT_MAX_SCORE

    def __post_init__(self) -> None:
        check_score(self.score, "condition score")
        if check_score(self.max_score, "max score") <= 0:
            raise ValueError(f"the max score must be > 0, got {self.max_score!r}")
        check_template(self.template)

    def prompt(self, messages: list[Message]) -> list[Message]:
        """``messages`` conditioned on the score (:func:`condition_prompt`)."""
        return condition_prompt(list(messages), self.score, self.template, self.max_score)

    def pair(self, pair: PreferencePair) -> PreferencePair:
        """``pair`` with its prompt conditioned, for generation and log-prob scoring alike."""
        return replace(pair, prompt=self.prompt(pair.prompt))

    def to_dict(self) -> dict:
        return {"score": self.score, "template": self.template, "max_score": self.max_score}
