"""``load_pairs``: any supported source and format in, validated preference pairs out."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from asft.data.errors import DataError, OptionError, Skipped
from asft.data.formats import (
    ADAPTERS,
    FORMATS,
    Adapter,
    apply_columns,
    check_columns,
    check_response,
    detect_format,
    gold_reader,
    suggest,
)
from asft.data.ranked import BINARIZE, ranked_adapter, rated_adapter
from asft.data.records import LoadReport, LoadResult, Message, PreferencePair
from asft.data.sources import OpenedSource, open_source

BAD_RECORD_POLICIES = ("error", "skip")
EMPTY_RESPONSE_POLICIES = ("keep", "bad")
_MAX_EXAMPLES = 5
_SURROGATE = re.compile("[\ud800-\udfff]")
# Reads more of a record than the pair (e.g. its reward scores, asft.data.relabel); a DataError
# it raises is a bad record like any other: located, then stopped at or skipped and counted.
Extra = Callable[[Mapping], Any]
# record -> (prompt, chosen, rejected, gold or None): an adapter with the gold response read too.
Reader = Callable[[Mapping], tuple[list[Message], list[Message], list[Message],
                                   list[Message] | None]]


def _key(messages: list[Message]) -> list[tuple[str, str]]:
    return [(m["role"], m["content"].strip()) for m in messages]


def _is_empty(messages: list[Message]) -> bool:
    return all(not m["content"].strip() for m in messages)


def validate_pair(prompt: list[Message], chosen: list[Message], rejected: list[Message],
                  empty_response: str = "keep", gold: list[Message] | None = None,
                  unpaired: bool = False) -> bool:
    """Raise DataError for an unusable pair; return True when a response is empty (kept).

    Checks, in order: the responses (``gold`` too, when there is one) present and starting
    with the assistant; no text that cannot be encoded as UTF-8 (lone surrogates from JSON
    escapes); chosen differs from rejected (ignoring surrounding whitespace); empty responses
    per ``empty_response``. With ``unpaired`` (format ``unpaired``) the side left ``[]`` is
    not a response and is not checked: only that format may have one.
    """
    responses = [("chosen", chosen), ("rejected", rejected)]
    if gold is not None:
        responses.append(("gold", gold))
    if unpaired:
        responses = [(name, msgs) for name, msgs in responses if msgs]
    for name, messages in responses:
        check_response(messages, name)
    for name, messages in (("prompt", prompt), *responses):
        for i, m in enumerate(messages):
            if not m["content"].isascii() and _SURROGATE.search(m["content"]):
                raise DataError("text holds a lone surrogate (e.g. a '\\ud800' escape), which is "
                                "not valid Unicode", field=f"{name}[{i}].content",
                                reason="not_utf8")
    if not unpaired and _key(chosen) == _key(rejected):
        raise DataError("chosen and rejected are identical", field="chosen",
                        reason="identical_responses")
    empty = [name for name, msgs in responses if _is_empty(msgs)]
    if empty and empty_response == "bad":
        raise DataError("empty response", field=empty[0], reason="empty_response")
    return bool(empty)


def make_adapter(fmt: str, columns: Mapping, labels: Mapping | None = None,
                 binarize: str = "random", seed: int = 0) -> Adapter:
    """The adapter that reads one record of format ``fmt`` with ``columns`` (checked)."""
    if fmt == "ranked":
        return ranked_adapter(columns, labels)
    if fmt == "rated":
        return rated_adapter(columns, binarize, seed)
    adapter = ADAPTERS[fmt]
    if not columns:
        return adapter
    return lambda record: adapter(apply_columns(record, columns))


def make_reader(fmt: str, columns: Mapping, labels: Mapping | None = None,
                binarize: str = "random", seed: int = 0) -> Reader:
    """:func:`make_adapter`'s adapter, which also reads the record's gold response (None for
    formats without one, :func:`asft.data.formats.gold_reader`)."""
    adapter = make_adapter(fmt, columns, labels, binarize, seed)
    gold_of = gold_reader(fmt, columns)

    def read(record: Mapping):
        prompt, chosen, rejected = adapter(record)
        return prompt, chosen, rejected, gold_of(record, prompt) if gold_of else None

    return read


def with_system(prompt: list[Message], system: str | None) -> list[Message]:
    """``prompt`` with the default ``system`` message first, unless it has one already."""
    if not system or any(m["role"] == "system" for m in prompt):
        return prompt
    return [{"role": "system", "content": system}, *prompt]


def check_choice(key: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise OptionError(key, f"{value!r} is not one of {', '.join(map(repr, choices))}"
                               f"{suggest(value, choices)}")


def check_options(fmt: str, on_bad_record: str, empty_response: str, limit: int | None,
                  system: str | None, labels: Mapping | None, binarize: str, seed: int) -> None:
    """Raise :class:`OptionError` (naming the option) for a value :func:`load_pairs` refuses;
    the config's data section is judged by this same function before anything is read."""
    check_choice("format", fmt, ("auto", *FORMATS))
    check_choice("on_bad_record", on_bad_record, BAD_RECORD_POLICIES)
    check_choice("empty_response", empty_response, EMPTY_RESPONSE_POLICIES)
    check_choice("binarize", binarize, BINARIZE)
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise OptionError("limit", f"must be a positive integer or None, got {limit!r}")
    if system is not None and not isinstance(system, str):
        raise OptionError("system", f"must be a string or None, got {type(system).__name__}")
    if labels and fmt != "ranked":
        raise OptionError("labels", f"map the label values of format 'ranked', not {fmt!r}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise OptionError("seed", f"must be an integer, got {seed!r}")


def _count(report: LoadReport, pair: PreferencePair, empty: bool) -> None:
    """What the report says of a kept pair besides its number."""
    report.empty_responses += empty
    report.with_gold += pair.gold is not None
    if report.format == "unpaired":
        report.desirable += bool(pair.chosen)
        report.undesirable += bool(pair.rejected)


def _read(opened: OpenedSource, report: LoadReport, reader: Reader | None, options: dict,
          on_bad_record: str, empty_response: str, limit: int | None, system: str | None,
          skipped: Counter[str], extra: Extra | None) -> Iterator[tuple[PreferencePair, Any]]:
    """The pairs of ``opened``, one by one, each with ``extra(record)`` (None without
    ``extra``); counts what it skips in ``skipped`` and fills ``report`` as it goes."""
    kept = 0
    for raw in opened.records:
        if limit is not None and kept >= limit:
            break
        report.read += 1
        try:
            if raw.error is not None:
                raise raw.error
            if reader is None:
                report.format = detect_format(apply_columns(raw.data, options["columns"]))
                reader = make_reader(report.format, **options)
            prompt, chosen, rejected, gold = reader(raw.data)
            prompt = with_system(prompt, system)
            empty = validate_pair(prompt, chosen, rejected, empty_response, gold,
                                  unpaired=report.format == "unpaired")
            value = None if extra is None else extra(raw.data)
            pair = PreferencePair(prompt, chosen, rejected, f"{opened.name}:{raw.index}", gold)
            _count(report, pair, empty)
        except DataError as err:
            located = err.located(opened.name, raw.index, raw.unit or opened.unit)
            if on_bad_record == "error" and not isinstance(err, Skipped):
                raise located from None
            skipped[located.reason] += 1
            if len(report.examples) < _MAX_EXAMPLES:
                report.examples.append(str(located))
            continue
        kept += 1
        yield pair, value


class PairStream:
    """The pairs of a source read one at a time (a single pass): what :func:`load_pairs`
    returns as a list, without holding the records. ``report`` fills as the pairs are read;
    the checks on the whole source (no records, no usable pair) run when the stream ends."""

    def __init__(self, source, fmt: str = "auto", columns: Mapping | None = None,
                 on_bad_record: str = "error", split: str | None = None, *,
                 empty_response: str = "keep", limit: int | None = None,
                 hub_kwargs: Mapping | None = None, system: str | None = None,
                 labels: Mapping[str, str] | None = None, binarize: str = "random",
                 seed: int = 0, streaming: bool = False):
        check_options(fmt, on_bad_record, empty_response, limit, system, labels, binarize, seed)
        cols = check_columns(columns, fmt)
        self._options = {"columns": cols, "labels": labels, "binarize": binarize, "seed": seed}
        self._reader = None if fmt == "auto" else make_reader(fmt, **self._options)
        self._opened = open_source(source, split, hub_kwargs, streaming=streaming)
        self.report = LoadReport(source=self._opened.name, format=fmt)
        self._args = (on_bad_record, empty_response, limit, system)
        self._skipped: Counter[str] = Counter()

    def __iter__(self) -> Iterator[PreferencePair]:
        for pair, _ in self.with_extra(None):
            yield pair

    def with_extra(self, extra: Extra | None) -> Iterator[tuple[PreferencePair, Any]]:
        """The pairs, each with ``extra(record)`` of the record it was read from (the raw
        record, before ``columns`` renames anything). A :class:`DataError` from ``extra`` is a
        bad record under the stream's ``on_bad_record``, like a bad pair."""
        report = self.report
        yield from _read(self._opened, report, self._reader, self._options, *self._args,
                         self._skipped, extra)
        report.skipped = dict(self._skipped)
        report.kept = report.read - sum(self._skipped.values())
        if report.read == 0:
            raise DataError("no records: the source is empty", file=self._opened.name)
        if not report.kept:
            counts = ", ".join(f"{n} {reason}" for reason, n in self._skipped.most_common())
            raise DataError(f"no usable pairs: all {report.read} records were skipped ({counts}); "
                            f"first: {report.examples[0]}", file=self._opened.name)


def load_pairs(source, fmt: str = "auto", columns: Mapping[str, str | list[str]] | None = None,
               on_bad_record: str = "error", split: str | None = None, *,
               empty_response: str = "keep", limit: int | None = None,
               hub_kwargs: Mapping | None = None, system: str | None = None,
               labels: Mapping[str, str] | None = None, binarize: str = "random",
               seed: int = 0) -> LoadResult:
    """Read preference pairs from ``source``.

    Args:
        source: a file, a ``datasets`` folder, ``builtin:<task>[:<split>]``, a hub id, or a
            list of dicts (see :mod:`asft.data.sources`).
        fmt: ``"auto"`` (detected from the first readable record; never ``ranked``) or one of
            :data:`asft.data.formats.FORMATS`.
        columns: maps standard names (:data:`asft.data.formats.COLUMN_KEYS`) to the source's
            column names; ``responses`` and ``scores`` take a list of columns and ``label``
            one or a list (votes) (see :mod:`asft.data.ranked`).
        on_bad_record: ``"error"`` raises :class:`DataError` at the first bad record, naming
            file, line (or row) and field; ``"skip"`` skips bad records and counts them by
            reason in the report. Problems with the whole source always raise. Records with
            no preference (``tie``, ``too_few_rated``) are always skipped and counted.
        split: split of a ``datasets`` folder, hub data set or built-in task.
        empty_response: ``"keep"`` keeps responses whose text is empty (HH-RLHF has a few:
            the preferred answer to a harmful request was silence) and counts them in
            ``report.empty_responses``; ``"bad"`` treats them as bad records.
        limit: stop after this many pairs.
        hub_kwargs: extra arguments to ``datasets.load_dataset`` (e.g. ``{"name": config}``).
        system: a default system prompt, put first in the prompt of every pair whose prompt
            has no system message; None (or ``""``) adds nothing.
        labels: ``ranked`` only: label value (as text) -> response column, 0-based index (as
            text) or ``"tie"``, instead of the default (an index or a response column name).
        binarize: ``rated`` only: the rejected completion is a random one rated lower than
            the best (``"random"``) or the lowest-rated (``"worst"``).
        seed: ``rated`` with ``binarize="random"``: seeds each record's draw, together with
            the SHA-256 of its prompt text.

    Returns:
        LoadResult with pairs in source order; each ``origin`` is ``"<source>:<n>"``.

    Raises:
        DataError: the source cannot be read, holds no records, a record is bad under
            ``on_bad_record="error"``, or no record is usable.
        ValueError: a bad option (unknown format or column key, a ``ranked`` column mapping
            without responses or a verdict, a ``labels`` target that is no response, ...).
    """
    stream = PairStream(source, fmt, columns, on_bad_record, split,
                        empty_response=empty_response, limit=limit, hub_kwargs=hub_kwargs,
                        system=system, labels=labels, binarize=binarize, seed=seed)
    pairs = list(stream)
    return LoadResult(pairs, stream.report)
