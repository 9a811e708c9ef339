"""The one exception type of the data layer: bad input, located precisely.

Every reader and format adapter raises :class:`DataError` (a ``ValueError``) and nothing else
for problems with the user's data, so callers catch one type and users read one kind of
message: ``data.jsonl, line 12, field 'chosen': expected a string, got int``.

:class:`Skipped` is the one kind of DataError that is not a fault: a record that holds no
preference (a tie). ``load_pairs`` always skips and counts it, even with
``on_bad_record="error"``.
"""

from __future__ import annotations

# Why a record was rejected; the keys of ``LoadReport.skipped``.
REASONS = (
    "not_utf8",             # bytes that are not UTF-8
    "malformed",            # JSON or CSV syntax error, or nesting too deep to parse
    "not_a_record",         # a JSON value that is not an object (a list, a number, ...)
    "missing_field",        # a required field is absent or null
    "wrong_type",           # a field holds the wrong kind of value
    "no_shared_prompt",     # chosen and rejected do not share a prompt (HH, conversational)
    "no_response",          # nothing follows the prompt in chosen or rejected
    "empty_response",       # a response whose text is empty (only with empty_response="bad")
    "identical_responses",  # chosen equals rejected: no preference to learn
    # Not faults: records that hold no preference (raised as Skipped, always skipped and
    # counted, whatever on_bad_record says).
    "tie",                  # ranked: a tie label or no majority of votes, or equal top scores;
                            # rated: every rated completion has the best rating
    "too_few_rated",        # rated: fewer than two completions have a numeric rating
)
SKIP_REASONS = ("tie", "too_few_rated")


class DataError(ValueError):
    """Bad input data, with where it is.

    Attributes:
        message: what is wrong, without the location.
        file: the source as the user named it (path, hub id, ``builtin:...``), or None.
        line: 1-based line (JSON Lines, CSV), item (JSON array) or row (Parquet, datasets)
            number, or None for problems with the whole source.
        unit: what ``line`` counts: ``"line"``, ``"item"`` or ``"row"``.
        field: the field at fault, e.g. ``"chosen"`` or ``"chosen[1].content"``, or None.
        reason: one of :data:`REASONS` for record-level problems, ``"source"`` for problems
            with the whole source (missing file, unreadable archive, no records).
    """

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 unit: str = "line", field: str | None = None, reason: str = "source"):
        self.message = message
        self.file = file
        self.line = line
        self.unit = unit
        self.field = field
        self.reason = reason
        super().__init__(self._format())

    def _format(self) -> str:
        where = [self.file] if self.file else []
        if self.line is not None:
            where.append(f"{self.unit} {self.line}")
        if self.field:
            where.append(f"field {self.field!r}")
        return f"{', '.join(where)}: {self.message}" if where else self.message

    def located(self, file: str, line: int | None, unit: str) -> DataError:
        """This error (same class) with the source location filled in (adapters know only the
        field)."""
        return type(self)(self.message, file=file, line=line, unit=unit, field=self.field,
                          reason=self.reason)

    def __reduce__(self):
        return (_rebuild, (self.message, self.file, self.line, self.unit, self.field, self.reason,
                           type(self)))


class Skipped(DataError):
    """A record with no preference in it (``reason`` one of :data:`SKIP_REASONS`): not bad
    data, so it is skipped and counted under any ``on_bad_record`` policy."""


def _rebuild(message, file, line, unit, field, reason, cls=DataError) -> DataError:
    return cls(message, file=file, line=line, unit=unit, field=field, reason=reason)


class OptionError(ValueError):
    """A bad option of the loader (a value of the ``data`` config section, not of the data):
    ``key`` names the option, e.g. ``"on_bad_record"``; the config reports it as that field."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key, self.message = key, message
