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

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from asft.data import cache
from asft.data.errors import OptionError
from asft.data.formats import FORMATS, check_columns
from asft.data.load import (
    BAD_RECORD_POLICIES,
    EMPTY_RESPONSE_POLICIES,
    PairStream,
    check_choice,
    check_options,
    make_adapter,
)
from asft.data.parallel import default_num_proc
from asft.data.ranked import BINARIZE
from asft.data.records import LoadReport, LoadResult
from asft.data.sources import count_records
from asft.data.tokenize import (
    BOUNDARY_POLICIES,
    OVERFLOW_POLICIES,
    Tokenization,
    TokenizeResult,
    chunked,
)

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
    streaming: bool
    num_proc: int | None


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
    pairs = stream(spec, seed, spec.limit if limit is None else limit)
    return LoadResult(list(pairs), pairs.report)


@dataclass
class Prepared:
    """Pairs read and tokenized, and what the user should be told about them.

    Attributes:
        load: what reading the source saw (from the token store's header on a cache hit:
            the source is not read again).
        tokenized: the pairs' token store (``tokenized.examples``) and the tokenize report.
        warnings: for the user (see :func:`drop_warnings`).
    """

    load: LoadReport
    tokenized: TokenizeResult
    warnings: list[str] = field(default_factory=list)

    def report(self) -> dict[str, Any]:
        """What ``data_report.json`` holds: loading and tokenizing counts, and the warnings."""
        return {"load": self.load.to_dict(), "tokenize": self.tokenized.report.to_dict(),
                "warnings": list(self.warnings)}

    def summary(self) -> str:
        """One line: pairs kept, records skipped, pairs dropped, by reason."""
        load, tok = self.load, self.tokenized.report
        skipped = sum(load.skipped.values())
        return (f"{tok.kept} pairs from {load.source}"
                + (f"; {skipped} records skipped ({count_text(load.skipped)})" if skipped else "")
                + (f"; {tok.num_dropped} pairs dropped ({count_text(tok.dropped)})"
                   if tok.num_dropped else ""))


def count_text(counts: Mapping[str, int]) -> str:
    """``too_long 3, empty_prompt 1``: counts by reason, the largest first."""
    return ", ".join(f"{reason} {n}" for reason, n in sorted(counts.items(), key=lambda kv: -kv[1]))


def source_identity(spec: Spec, seed: int, limit: int | None,
                    memo_dir: str | Path | None) -> dict | None:
    """What identifies the pairs ``spec`` reads, found without reading them: the digest of
    the source file's (or ``datasets`` folder's) bytes, or the id and split of a streamed hub
    data set, with every option that changes the pairs. None for sources that are cheap to
    read and hash instead (built-in tasks, a hub set downloaded by ``datasets``)."""
    text = str(spec.source)
    path = Path(text).expanduser()
    if text.startswith("builtin:"):
        return None
    if path.exists():
        try:
            where: dict[str, Any] = {"digest": cache.file_digest(path, memo_dir)}
        except OSError:  # unreadable: reading it again says so, naming the file
            return None
    elif spec.streaming:
        # a remote set has no cheap digest: its id and split stand for it (docs/data.md)
        where = {"hub": text.removeprefix("hub:")}
    else:
        return None
    options = {k: getattr(spec, k) for k in ("format", "columns", "split", "system",
                                             "on_bad_record", "empty_response", "labels",
                                             "binarize")}
    return {**where, **options, "limit": limit,
            # the draw of rated data's rejected completion; other formats ignore the seed
            "seed": seed if spec.format == "rated" else None}


def prepare(spec: Spec, tokenizer: Any, *, seed: int = 0, limit: int | None = None,
            cache_dir: str | Path | None = None, progress: bool = False,
            num_proc: int | None = None) -> Prepared:
    """:func:`read`, then tokenize with the spec's length and boundary policies into a token
    store (:mod:`asft.data.store`).

    With ``cache_dir``, a source identified without reading it (:func:`source_identity`) is
    looked up first: a hit reads nothing but the store; a miss reads the source record by
    record straight into the store (the records are never all in memory), tokenized by
    ``num_proc`` processes (default ``spec.num_proc``, else this machine's cores).
    """
    start = time.perf_counter()
    limit = spec.limit if limit is None else limit
    num_proc = num_proc or getattr(spec, "num_proc", None) or default_num_proc()
    job = Tokenization(tokenizer, spec.max_length, spec.max_prompt_length,
                       overflow=spec.overflow, boundary=spec.boundary)
    ident = source_identity(spec, seed, limit, cache_dir) if cache_dir is not None else None
    if ident is None:
        loaded = read(spec, seed=seed, limit=limit)
        tokenized = job.pairs(loaded.pairs, cache_dir, num_proc=num_proc, progress=progress,
                              start=start)
        return Prepared(loaded.report, tokenized, drop_warnings(tokenized.report, spec))
    path = cache.store_path(cache_dir, job.key(source=ident))
    hit = job.cached(path, start)
    if hit is not None and _same_draw(hit, seed):
        load = LoadReport(**{**hit.examples.header["load"], "source": str(spec.source)})
        return Prepared(load, hit, drop_warnings(hit.report, spec))
    streams: list[PairStream] = []

    def chunks():
        streams.append(stream(spec, seed, limit))
        return chunked(streams[-1])

    total = count_records(spec.source) if progress else None
    if total is not None and limit is not None:
        total = min(total, limit)
    tokenized = job.run(chunks, path, num_proc=num_proc, progress=progress, start=start,
                        total=total,
                        header=lambda: {"load": streams[-1].report.to_dict(), "seed": seed})
    return Prepared(streams[-1].report, tokenized, drop_warnings(tokenized.report, spec))


def _same_draw(hit: TokenizeResult, seed: int) -> bool:
    """A cached store of auto-detected rated data holds one seed's draw of the rejected
    completions; another seed must draw (and store) its own."""
    header = hit.examples.header
    return header["load"]["format"] != "rated" or header.get("seed") == seed


def stream(spec: Spec, seed: int = 0, limit: int | None = None) -> PairStream:
    """The one place the spec's keys become the loader's arguments (:func:`read` lists the
    stream's pairs; :func:`prepare` tokenizes them as they come; ``asft data relabel`` reads
    each pair's scores with them, :meth:`PairStream.with_extra`)."""
    return PairStream(spec.source, fmt=spec.format, columns=spec.columns or None,
                      on_bad_record=spec.on_bad_record, split=spec.split,
                      empty_response=spec.empty_response, limit=limit, system=spec.system,
                      labels=spec.labels or None, binarize=spec.binarize, seed=seed,
                      streaming=getattr(spec, "streaming", False))


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
