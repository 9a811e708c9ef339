"""The data types of the records stage: a preference pair as messages, and what loading saw."""

from __future__ import annotations

from dataclasses import dataclass, field

Message = dict[str, str]  # {"role": "system" | "user" | "assistant" | "tool", "content": str}


@dataclass(frozen=True, slots=True)
class PreferencePair:
    """One preference: a prompt and two alternative responses to it (or, unpaired, one).

    Attributes:
        prompt: the conversation so far (possibly empty), as ``{"role", "content"}`` messages.
        chosen: the preferred continuation; at least one message, the first by the assistant.
        rejected: the dispreferred continuation, same shape as ``chosen``.
        origin: where it came from, ``"<source>:<n>"`` with n the line (JSON Lines, CSV), item
            (JSON array) or row (Parquet, datasets, built-in task) number, 1-based.
        gold: an optional third response, the reference ("gold") answer that TPO (arXiv
            2405.16681) trains towards, same shape as ``chosen``; None when the record has
            none (a loss that wants one then uses ``chosen``).

    Unpaired examples (format ``unpaired``, KTO's data, arXiv 2402.01306) hold one response
    and a label: a desirable one is ``chosen`` with ``rejected == []``, an undesirable one is
    ``rejected`` with ``chosen == []``. Only that format gives an empty side; a pair from any
    other format has both responses.
    """

    prompt: list[Message]
    chosen: list[Message]
    rejected: list[Message]
    origin: str
    gold: list[Message] | None = None


@dataclass
class LoadReport:
    """What :func:`asft.data.load_pairs` read, kept and skipped.

    Attributes:
        source: the source as given.
        format: the record format used (detected or forced), e.g. ``"hh"`` or ``"ranked"``.
        read: records seen, bad ones included (blank lines are not records).
        kept: pairs returned.
        skipped: number of records skipped per reason (:data:`asft.data.errors.REASONS`):
            records with no preference (``tie``, ``too_few_rated``) always, bad records only
            with ``on_bad_record="skip"``.
        examples: the first few skip messages, each naming file, line and field.
        empty_responses: kept pairs with a response whose text is empty or only whitespace
            (e.g. 4 in HH-RLHF harmless-base test); a warning, not an error, by default.
        with_gold: kept pairs that carry a gold response (:attr:`PreferencePair.gold`).
        desirable, undesirable: kept unpaired examples labelled true (desirable: ``chosen``)
            and false (undesirable: ``rejected``); 0 for paired formats.
    """

    source: str
    format: str = "auto"
    read: int = 0
    kept: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)
    empty_responses: int = 0
    with_gold: int = 0
    desirable: int = 0
    undesirable: int = 0

    @property
    def num_skipped(self) -> int:
        return sum(self.skipped.values())

    def to_dict(self) -> dict:
        return {"source": self.source, "format": self.format, "read": self.read,
                "kept": self.kept, "skipped": dict(self.skipped), "examples": list(self.examples),
                "empty_responses": self.empty_responses, "with_gold": self.with_gold,
                "desirable": self.desirable, "undesirable": self.undesirable}


@dataclass
class LoadResult:
    """Pairs in source order and the report of how they were read."""

    pairs: list[PreferencePair]
    report: LoadReport
