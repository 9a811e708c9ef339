"""``load_pairs``: any supported source and format in, validated preference pairs out."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping

from asft.data.errors import DataError
from asft.data.formats import (
    ADAPTERS,
    FORMATS,
    apply_columns,
    check_columns,
    check_response,
    detect_format,
)
from asft.data.records import LoadReport, LoadResult, Message, PreferencePair
from asft.data.sources import open_source

BAD_RECORD_POLICIES = ("error", "skip")
EMPTY_RESPONSE_POLICIES = ("keep", "bad")
_MAX_EXAMPLES = 5
_SURROGATE = re.compile("[\ud800-\udfff]")


def _key(messages: list[Message]) -> list[tuple[str, str]]:
    return [(m["role"], m["content"].strip()) for m in messages]


def _is_empty(messages: list[Message]) -> bool:
    return all(not m["content"].strip() for m in messages)


def validate_pair(prompt: list[Message], chosen: list[Message], rejected: list[Message],
                  empty_response: str = "keep") -> bool:
    """Raise DataError for an unusable pair; return True when a response is empty (kept).

    Checks, in order: both responses present and starting with the assistant; no text that
    cannot be encoded as UTF-8 (lone surrogates from JSON escapes); chosen differs from rejected
    (ignoring surrounding whitespace); empty responses per ``empty_response``.
    """
    check_response(chosen, "chosen")
    check_response(rejected, "rejected")
    for name, messages in (("prompt", prompt), ("chosen", chosen), ("rejected", rejected)):
        for i, m in enumerate(messages):
            if not m["content"].isascii() and _SURROGATE.search(m["content"]):
                raise DataError("text holds a lone surrogate (e.g. a '\\ud800' escape), which is "
                                "not valid Unicode", field=f"{name}[{i}].content",
                                reason="not_utf8")
    if _key(chosen) == _key(rejected):
        raise DataError("chosen and rejected are identical", field="chosen",
                        reason="identical_responses")
    empty = [name for name, msgs in (("chosen", chosen), ("rejected", rejected)) if _is_empty(msgs)]
    if empty and empty_response == "bad":
        raise DataError("empty response", field=empty[0], reason="empty_response")
    return bool(empty)


def load_pairs(source, fmt: str = "auto", columns: Mapping[str, str] | None = None,
               on_bad_record: str = "error", split: str | None = None, *,
               empty_response: str = "keep", limit: int | None = None,
               hub_kwargs: Mapping | None = None) -> LoadResult:
    """Read preference pairs from ``source``.

    Args:
        source: a file, a ``datasets`` folder, ``builtin:<task>[:<split>]``, a hub id, or a
            list of dicts (see :mod:`asft.data.sources`).
        fmt: ``"auto"`` (detected from the first readable record) or one of
            :data:`asft.data.formats.FORMATS`.
        columns: maps standard names (``prompt``, ``chosen``, ``rejected``, ``conversations``,
            ``system``) to the source's column names.
        on_bad_record: ``"error"`` raises :class:`DataError` at the first bad record, naming
            file, line (or row) and field; ``"skip"`` skips bad records and counts them by
            reason in the report. Problems with the whole source always raise.
        split: split of a ``datasets`` folder, hub data set or built-in task.
        empty_response: ``"keep"`` keeps responses whose text is empty (HH-RLHF has a few:
            the preferred answer to a harmful request was silence) and counts them in
            ``report.empty_responses``; ``"bad"`` treats them as bad records.
        limit: stop after this many pairs.
        hub_kwargs: extra arguments to ``datasets.load_dataset`` (e.g. ``{"name": config}``).

    Returns:
        LoadResult with pairs in source order; each ``origin`` is ``"<source>:<n>"``.

    Raises:
        DataError: the source cannot be read, holds no records, a record is bad under
            ``on_bad_record="error"``, or no record is usable.
    """
    if fmt != "auto" and fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; valid: auto, {', '.join(FORMATS)}")
    if on_bad_record not in BAD_RECORD_POLICIES:
        raise ValueError(f"on_bad_record must be one of {BAD_RECORD_POLICIES}, got {on_bad_record!r}")
    if empty_response not in EMPTY_RESPONSE_POLICIES:
        raise ValueError(f"empty_response must be one of {EMPTY_RESPONSE_POLICIES}, "
                         f"got {empty_response!r}")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
    cols = check_columns(columns)
    opened = open_source(source, split, hub_kwargs)
    report = LoadReport(source=opened.name, format=fmt)
    adapter = ADAPTERS.get(fmt)
    skipped: Counter[str] = Counter()
    pairs: list[PreferencePair] = []
    for raw in opened.records:
        if limit is not None and len(pairs) >= limit:
            break
        report.read += 1
        try:
            if raw.error is not None:
                raise raw.error
            record = apply_columns(raw.data, cols) if cols else raw.data
            if adapter is None:
                report.format = detect_format(record)
                adapter = ADAPTERS[report.format]
            prompt, chosen, rejected = adapter(record)
            report.empty_responses += validate_pair(prompt, chosen, rejected, empty_response)
        except DataError as err:
            located = err.located(opened.name, raw.index, raw.unit or opened.unit)
            if on_bad_record == "error":
                raise located from None
            skipped[located.reason] += 1
            if len(report.examples) < _MAX_EXAMPLES:
                report.examples.append(str(located))
            continue
        pairs.append(PreferencePair(prompt, chosen, rejected, f"{opened.name}:{raw.index}"))
    report.kept = len(pairs)
    report.skipped = dict(skipped)
    if report.read == 0:
        raise DataError("no records: the source is empty", file=opened.name)
    if not pairs:
        counts = ", ".join(f"{n} {reason}" for reason, n in skipped.most_common())
        raise DataError(f"no usable pairs: all {report.read} records were skipped ({counts}); "
                        f"first: {report.examples[0]}", file=opened.name)
    return LoadResult(pairs, report)
