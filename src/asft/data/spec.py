"""The data section applied: the one loader behind ``asft train``, ``asft data check``,
``asft data prepare``, ``asft eval`` and ``asft compare``.

A *spec* is anything with the attributes of :class:`asft.config.DataConfig` (the data layer
does not import the config; the config asks this module to judge its values, :func:`check`).
:func:`read` turns a spec into validated pairs (:func:`asft.data.load_pairs`), :func:`prepare`
also tokenizes them (:func:`asft.data.tokenize.tokenize_pairs`) and says, in
:attr:`Prepared.warnings`, when the length limits drop more than :data:`DROP_WARNING` of the
pairs and which setting keeps them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from asft.data.errors import OptionError
from asft.data.formats import FORMATS, check_columns
from asft.data.load import (
    BAD_RECORD_POLICIES,
    EMPTY_RESPONSE_POLICIES,
    check_choice,
    check_options,
    load_pairs,
    make_adapter,
)
from asft.data.ranked import BINARIZE
from asft.data.records import LoadResult
from asft.data.tokenize import BOUNDARY_POLICIES, OVERFLOW_POLICIES, TokenizeResult, tokenize_pairs

#: The values each policy key accepts (the data layer's own lists; the config shows them).
CHOICES: dict[str, tuple[str, ...]] = {
    "format": ("auto", *FORMATS),
    "on_bad_record": BAD_RECORD_POLICIES,
    "empty_response": EMPTY_RESPONSE_POLICIES,
    "binarize": BINARIZE,
    "boundary": BOUNDARY_POLICIES,
    "overflow": OVERFLOW_POLICIES,
}

#: Fraction of the pairs that tokenization may drop before :func:`prepare` warns.
DROP_WARNING = 0.10


class Spec(Protocol):
    """What the loader reads of a data section (see :class:`asft.config.DataConfig`)."""

    source: str
    format: str
    columns: Mapping[str, str | list[str]]
    split: str | None
    system: str | None
    on_bad_record: str
    empty_response: str
    labels: Mapping[str, str]
    binarize: str
    max_length: int
    max_prompt_length: int
    overflow: str
    boundary: str
    limit: int | None


def parse_columns(text: str) -> dict[str, str | list[str]]:
    """The shorthand ``chosen=good,rejected=bad`` as a mapping; an item without ``=`` adds a
    column to the previous key's list: ``responses=r1,r2,label=winner`` ->
    ``{"responses": ["r1", "r2"], "label": "winner"}``."""
    out: dict[str, str | list[str]] = {}
    last = None
    for item in (s.strip() for s in text.split(",")):
        if not item:
            continue
        key, sep, value = (p.strip() for p in item.partition("="))
        if sep and key and value:
            out[key], last = value, key
        elif not sep and last is not None:
            prev = out[last]
            out[last] = [*(prev if isinstance(prev, list) else [prev]), item]
        else:
            raise OptionError("columns", f"expected NAME=COLUMN[,NAME=COLUMN...], got {item!r}")
    return out


def check(spec: Spec) -> None:
    """Raise :class:`OptionError` for a value the loader would refuse, before anything is
    read: the loader's own checks (:func:`asft.data.load.check_options`, the column mapping
    and the adapter of a fixed format) and the tokenizer's policies."""
    check_choice("boundary", spec.boundary, BOUNDARY_POLICIES)
    check_choice("overflow", spec.overflow, OVERFLOW_POLICIES)
    labels = spec.labels or None
    check_options(spec.format, spec.on_bad_record, spec.empty_response, spec.limit, spec.system,
                  labels, spec.binarize, 0)
    fmt = None if spec.format == "auto" else spec.format
    try:
        columns = check_columns(spec.columns or None, fmt)
    except ValueError as err:
        raise OptionError("columns", str(err)) from None
    if fmt is not None:
        # with the options and columns checked above, what an adapter refuses is its labels
        try:
            make_adapter(fmt, columns, labels, spec.binarize, 0)
        except ValueError as err:
            raise OptionError("labels", str(err)) from None


def read(spec: Spec, *, seed: int = 0, limit: int | None = None) -> LoadResult:
    """The pairs of ``spec.source`` as the spec says to read them (``limit`` overrides
    ``spec.limit``; ``seed`` draws the rejected completion of rated data)."""
    return load_pairs(spec.source, fmt=spec.format, columns=spec.columns or None,
                      on_bad_record=spec.on_bad_record, split=spec.split,
                      empty_response=spec.empty_response,
                      limit=spec.limit if limit is None else limit, system=spec.system,
                      labels=spec.labels or None, binarize=spec.binarize, seed=seed)


@dataclass
class Prepared:
    """Pairs read and tokenized, and what the user should be told about them."""

    loaded: LoadResult
    tokenized: TokenizeResult
    warnings: list[str] = field(default_factory=list)

    def report(self) -> dict[str, Any]:
        """What ``data_report.json`` holds: loading and tokenizing counts, and the warnings."""
        return {"load": self.loaded.report.to_dict(), "tokenize": self.tokenized.report.to_dict(),
                "warnings": list(self.warnings)}

    def summary(self) -> str:
        """One line: pairs kept, records skipped, pairs dropped, by reason."""
        load, tok = self.loaded.report, self.tokenized.report
        skipped = sum(load.skipped.values())
        return (f"{tok.kept} pairs from {load.source}"
                + (f"; {skipped} records skipped ({count_text(load.skipped)})" if skipped else "")
                + (f"; {tok.num_dropped} pairs dropped ({count_text(tok.dropped)})"
                   if tok.num_dropped else ""))


def count_text(counts: Mapping[str, int]) -> str:
    """``too_long 3, empty_prompt 1``: counts by reason, the largest first."""
    return ", ".join(f"{reason} {n}" for reason, n in sorted(counts.items(), key=lambda kv: -kv[1]))


def prepare(spec: Spec, tokenizer: Any, *, seed: int = 0, limit: int | None = None,
            cache_dir: str | Path | None = None, progress: bool = False) -> Prepared:
    """:func:`read`, then tokenize with the spec's length and boundary policies."""
    loaded = read(spec, seed=seed, limit=limit)
    tokenized = tokenize_pairs(loaded.pairs, tokenizer, spec.max_length, spec.max_prompt_length,
                               cache_dir=cache_dir, overflow=spec.overflow,
                               boundary=spec.boundary, progress=progress)
    return Prepared(loaded, tokenized, drop_warnings(tokenized.report, spec))


def drop_warnings(report: Any, spec: Spec) -> list[str]:
    """A warning when tokenization drops more than :data:`DROP_WARNING` of the pairs, with
    the settings that keep them (``report`` is a :class:`asft.data.tokenize.TokenizeReport`)."""
    if not report.pairs or report.num_dropped <= DROP_WARNING * report.pairs:
        return []
    share = report.num_dropped / report.pairs
    fixes = []
    if report.overlong:
        fixes.append(f"data.max_length: {max(report.overlong)} keeps the {len(report.overlong)} "
                     f"longer than {spec.max_length} tokens (data.overflow: truncate cuts them "
                     "to fit instead)")
    if report.dropped.get("boundary_mismatch"):
        fixes.append("data.boundary: shift keeps the pairs with an unclean prompt boundary")
    return [f"{report.num_dropped} of {report.pairs} pairs ({share:.0%}) are dropped "
            f"({count_text(report.dropped)})" + (": " + "; ".join(fixes) if fixes else "")]
