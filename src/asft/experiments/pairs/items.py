"""The data types of ``asft pairs``: one prompt to sample for, and one sample's score."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import NamedTuple

Message = dict[str, str]


def digest(value: object) -> str:
    """A short, stable hash of a JSON value (what a side-file record was made from)."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


@dataclass(frozen=True)
class PromptItem:
    """One prompt of SOURCE.

    Attributes:
        index: 0-based position in SOURCE: the key of its records in the side files, and part
            of its sampling seed.
        messages: the conversation the model answers (ends with a user message).
        reference: the expected answer (a built-in task's, or a file's ``answer`` field), or
            None; the ``builtin`` scorer needs it, the judge shows it when there is one.
        origin: where it was read, ``<source>:<n>`` (n 1-based), for messages.
    """

    index: int
    messages: list[Message]
    reference: str | None
    origin: str

    @property
    def sha(self) -> str:
        """Hash of the prompt and its reference: a side-file record made for another prompt
        at the same index (the source changed) is refused, never reused."""
        return digest([self.messages, self.reference])


class Score(NamedTuple):
    """One sample's score: ``value`` (None: a scoring failure, skipped and counted) and a
    ``note`` kept in the scores file (the judge's reply, or why scoring failed)."""

    value: float | None
    note: str | None = None
