"""Sources: where records come from, read into dicts one at a time, each with its location.

``open_source`` accepts
    - a path to ``.jsonl`` / ``.ndjson`` / ``.json`` / ``.csv`` / ``.tsv`` (each optionally
      ``.gz``) or ``.parquet`` file (unknown suffixes are sniffed);
    - a folder written by ``datasets``' ``save_to_disk`` (a ``DatasetDict`` needs ``split``);
    - ``builtin:<task>[:<split>][?n=..&seed=..]``, the generated task of :mod:`asft.data.builtin`;
    - ``hub:<id>`` or a bare ``owner/name`` that is not a local path: a hub data set, read with
      ``datasets.load_dataset(id, split=split or "train")``;
    - a list of dicts or a ``datasets.Dataset`` already in memory.

Problems with one record (bad UTF-8, malformed JSON, a JSON value that is not an object, a
CSV row of the wrong width) come back as ``RawRecord.error`` so that ``on_bad_record="skip"``
can skip them. Problems with the whole source (missing file, unreadable archive or Parquet
file, empty file, malformed JSON array) raise :class:`DataError` at once.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import json
import re
import sys
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from asft.data.errors import DataError

_BOM = b"\xef\xbb\xbf"
_SUFFIXES = {
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "tsv",
    ".parquet": "parquet", ".pq": "parquet",
}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass
class RawRecord:
    """One record as read: ``data`` (a dict) or ``error`` (a record-level DataError).

    ``unit`` overrides the source's unit (a ``.json`` file that turns out to be JSON Lines).
    """

    index: int
    data: Mapping | None = None
    error: DataError | None = None
    unit: str | None = None


@dataclass
class OpenedSource:
    """An opened source: display ``name``, what ``index`` counts (``unit``), the records."""

    name: str
    unit: str
    records: Iterator[RawRecord]


def _kind(value: object) -> str:
    return {dict: "object", list: "list", str: "string"}.get(type(value), type(value).__name__)


def file_kind(path: Path) -> tuple[str, bool]:
    """(reader kind, gzip-compressed) from the file name, e.g. ``("jsonl", True)``."""
    suffixes = [s.lower() for s in path.suffixes]
    gz = bool(suffixes) and suffixes[-1] == ".gz"
    if gz:
        suffixes = suffixes[:-1]
    return (_SUFFIXES.get(suffixes[-1], "") if suffixes else ""), gz


def _sniff(path: Path) -> str:
    with open(path, "rb") as fh:
        head = fh.read(512)
    if head.startswith(b"PAR1"):
        return "parquet"
    text = head.removeprefix(_BOM).lstrip()
    if text.startswith(b"["):
        return "json"
    if text.startswith(b"{"):
        return "jsonl"
    raise DataError("unknown file type: use a .jsonl, .json, .csv, .tsv or .parquet file "
                    "(optionally .gz) or a datasets folder", file=str(path))


def _read_bytes(path: Path, gz: bool, name: str) -> bytes:
    try:
        if gz:
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"cannot read {'gzip ' if gz else ''}file: {err}", file=name) from None


def parse_json_record(raw: bytes, index: int) -> RawRecord:
    """One JSON Lines line (bytes, no BOM) as a record or a located record-level error."""
    def bad(message: str, reason: str) -> RawRecord:
        return RawRecord(index, error=DataError(message, reason=reason))

    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        return bad(f"not valid UTF-8: byte 0x{raw[err.start]:02x} at byte {err.start + 1} of "
                   "the line", "not_utf8")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        return bad(f"malformed JSON: {err.msg} (column {err.colno})", "malformed")
    except RecursionError:
        return bad("malformed JSON: nested too deeply to parse", "malformed")
    except ValueError as err:  # e.g. an integer literal longer than Python's digit limit
        return bad(f"malformed JSON: {err}", "malformed")
    if not isinstance(value, dict):
        return bad(f"expected a JSON object, got {_kind(value)}", "not_a_record")
    return RawRecord(index, data=value)


def _jsonl_lines(lines: Iterable[bytes], name: str) -> Iterator[RawRecord]:
    n = 0
    try:
        for n, raw in enumerate(lines, 1):
            if n == 1:
                raw = raw.removeprefix(_BOM)
            if raw.strip():
                yield parse_json_record(raw.strip(), n)
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"cannot read the rest of the file: {err}", file=name, line=n + 1) from None


def _jsonl(path: Path, gz: bool, name: str) -> Iterator[RawRecord]:
    opener = gzip.open if gz else open
    try:
        fh = opener(path, "rb")
    except OSError as err:
        raise DataError(f"cannot open file: {err}", file=name) from None
    with fh:
        yield from _jsonl_lines(fh, name)


def _json(path: Path, gz: bool, name: str) -> Iterator[RawRecord]:
    data = _read_bytes(path, gz, name).removeprefix(_BOM)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"not valid UTF-8: byte 0x{data[err.start]:02x}", file=name,
                        line=data.count(b"\n", 0, err.start) + 1, reason="not_utf8") from None
    if not text.strip():
        return
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        if err.msg == "Extra data":  # several JSON values: the file is JSON Lines
            for record in _jsonl_lines(data.splitlines(), name):
                record.unit = "line"
                yield record
            return
        raise DataError(f"malformed JSON: {err.msg} (column {err.colno})", file=name,
                        line=err.lineno, reason="malformed") from None
    except RecursionError:
        raise DataError("malformed JSON: nested too deeply to parse", file=name,
                        reason="malformed") from None
    except ValueError as err:
        raise DataError(f"malformed JSON: {err}", file=name, reason="malformed") from None
    if isinstance(value, dict):
        lists = [v for v in value.values() if isinstance(v, list)]
        value = lists[0] if len(value) == 1 and lists else [value]
    if not isinstance(value, list):
        raise DataError(f"a JSON file must hold a list of records, got {_kind(value)}",
                        file=name, reason="not_a_record")
    for i, item in enumerate(value, 1):
        if isinstance(item, dict):
            yield RawRecord(i, data=item)
        else:
            yield RawRecord(i, error=DataError(f"expected a JSON object, got {_kind(item)}",
                                               reason="not_a_record"))


@contextlib.contextmanager
def _csv_field_limit():
    # The default limit (128 KiB per field) rejects long but valid responses.
    old = csv.field_size_limit()
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    try:
        yield
    finally:
        csv.field_size_limit(old)


def _csv_cell(value: str) -> object:
    """A cell; JSON lists/objects (conversations stored as text) are decoded."""
    text = value.strip()
    if (text[:1], text[-1:]) in (("[", "]"), ("{", "}")):
        try:
            decoded = json.loads(text)
        except (ValueError, RecursionError):
            return value
        if isinstance(decoded, dict) or (
                isinstance(decoded, list) and decoded and all(isinstance(x, dict) for x in decoded)):
            return decoded
    return value


def _csv(path: Path, gz: bool, name: str, delimiter: str) -> Iterator[RawRecord]:
    # surrogateescape keeps going past bad bytes so that the row holding them can be named.
    text = _read_bytes(path, gz, name).removeprefix(_BOM).decode("utf-8", "surrogateescape")
    if not text.strip():
        return
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    with _csv_field_limit():
        try:
            header = [h.strip() for h in next(reader)]
        except csv.Error as err:
            raise DataError(f"malformed CSV header: {err}", file=name, line=1,
                            reason="malformed") from None
        bad = [h for h in header if _SURROGATE.search(h)]
        if bad:
            raise DataError("the header is not valid UTF-8", file=name, line=1, reason="not_utf8")
        start = reader.line_num + 1
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as err:
                raise DataError(f"malformed CSV: {err}", file=name, line=reader.line_num,
                                reason="malformed") from None
            line, start = start, reader.line_num + 1
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                yield RawRecord(line, error=DataError(
                    f"{len(row)} values for {len(header)} columns", reason="malformed"))
                continue
            for col, cell in zip(header, row):
                if _SURROGATE.search(cell):
                    yield RawRecord(line, error=DataError("not valid UTF-8", field=col,
                                                          reason="not_utf8"))
                    break
            else:
                yield RawRecord(line, data={h: _csv_cell(c) for h, c in zip(header, row)})


def _parquet(path: Path, name: str) -> Iterator[RawRecord]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    errors = (pa.ArrowException, OSError, ValueError)
    try:
        pf = pq.ParquetFile(path)
    except errors as err:
        raise DataError(f"not a readable Parquet file: {err}", file=name) from None
    n = 0
    batches = pf.iter_batches(batch_size=2048)
    while True:
        try:
            batch = next(batches, None)
            rows = None if batch is None else batch.to_pylist()
        except errors as err:
            raise DataError(f"cannot read Parquet data: {err}", file=name, line=n + 1,
                            unit="row") from None
        if rows is None:
            return
        for row in rows:
            n += 1
            yield RawRecord(n, data=row)


def _rows(rows: Iterable[object]) -> Iterator[RawRecord]:
    for i, row in enumerate(rows, 1):
        if isinstance(row, Mapping):
            yield RawRecord(i, data=row)
        else:
            yield RawRecord(i, error=DataError(f"expected a record (a mapping), got {_kind(row)}",
                                               reason="not_a_record"))


def _pick_split(ds, split: str | None, name: str):
    """One split of a ``DatasetDict`` (``train`` or the only one by default)."""
    if not hasattr(ds, "keys"):
        return ds
    splits = list(ds.keys())
    if split is None:
        split = "train" if "train" in splits else (splits[0] if len(splits) == 1 else None)
        if split is None:
            raise DataError(f"several splits ({', '.join(splits)}): choose one with split=",
                            file=name)
    if split not in splits:
        raise DataError(f"no split {split!r}; splits: {', '.join(splits) or 'none'}", file=name)
    return ds[split]


def _dataset_folder(path: Path, split: str | None, name: str) -> Iterator[RawRecord]:
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    # datasets raises many unrelated types here (FileNotFoundError, ValueError, KeyError, ...).
    except Exception as err:
        raise DataError("not a folder written by datasets' save_to_disk "
                        f"({type(err).__name__}: {err})", file=name) from None
    return _rows(_pick_split(ds, split, name))


def _hub(repo_id: str, split: str | None, name: str, hub_kwargs: Mapping | None,
         streaming: bool = False) -> Iterator[RawRecord]:
    import datasets

    try:
        # streaming: an IterableDataset, read record by record as it downloads
        extra = {"streaming": True} if streaming else {}
        ds = datasets.load_dataset(repo_id, split=split or "train", **extra, **(hub_kwargs or {}))
    # Network, authentication and script errors come as many types; all mean "cannot load".
    except Exception as err:
        raise DataError(f"not a local file or folder, and loading it from the hub failed "
                        f"({type(err).__name__}: {err})", file=name) from None
    return _rows(ds)


def count_records(source: object) -> int | None:
    """About how many records a local file holds, for a progress bar's total: its lines
    (JSON Lines, CSV, TSV; one fast pass, decompressing a .gz) or Parquet's row count; None
    when that is not cheap to know (a .json array, a folder, a hub id, a built-in task)."""
    if not isinstance(source, str | Path):
        return None
    path = Path(source).expanduser()
    if not path.is_file():
        return None
    try:
        kind, gz = file_kind(path)
        kind = kind or ("jsonl" if gz else _sniff(path))
        if kind == "parquet":
            import pyarrow.parquet as pq

            return pq.ParquetFile(path).metadata.num_rows
        if kind not in ("jsonl", "csv", "tsv"):
            return None
        lines, last = 0, b"\n"
        with (gzip.open if gz else open)(path, "rb") as fh:
            while block := fh.read(1 << 22):
                lines += block.count(b"\n")
                last = block[-1:]
        return lines + (last != b"\n") - (kind != "jsonl")  # a header line; no final newline
    except Exception:  # an estimate only: whatever is wrong, reading the file will say it
        return None


def _file_split_check(split: str | None, name: str) -> None:
    if split not in (None, "train"):
        raise DataError(f"split={split!r} given, but a file has no splits", file=name)


def open_source(source: object, split: str | None = None,
                hub_kwargs: Mapping | None = None, *, streaming: bool = False) -> OpenedSource:
    """Open ``source`` (see the module docstring) for reading records one at a time; files are
    always read so, a hub data set only with ``streaming`` (else it is downloaded first)."""
    if isinstance(source, list | tuple):
        return OpenedSource("<records>", "item", _rows(source))
    if hasattr(source, "column_names") and hasattr(source, "__iter__"):
        return OpenedSource("<dataset>", "row", _rows(_pick_split(source, split, "<dataset>")))
    if not isinstance(source, str | Path):
        raise DataError(f"cannot read data from a {type(source).__name__}: give a path, "
                        "a hub id, builtin:<task>, or a list of dicts")
    text = str(source)
    if text.startswith("builtin:"):
        from asft.data import builtin

        name, records = builtin.open_builtin(text, split)
        return OpenedSource(name, "row", _rows(records))
    if text.startswith("hub:"):
        return OpenedSource(text, "row", _hub(text[4:], split, text, hub_kwargs, streaming))
    path = Path(text).expanduser()
    if path.is_dir():
        return OpenedSource(text, "row", _dataset_folder(path, split, text))
    if not path.exists():
        kind, _ = file_kind(path)
        if not kind and _HUB_ID.match(text):
            return OpenedSource(text, "row", _hub(text, split, text, hub_kwargs, streaming))
        raise DataError("no such file or folder", file=text)
    if not path.is_file():
        raise DataError("not a regular file", file=text)
    _file_split_check(split, text)
    kind, gz = file_kind(path)
    if not kind:
        kind = "jsonl" if gz else _sniff(path)
    if kind == "jsonl":
        return OpenedSource(text, "line", _jsonl(path, gz, text))
    if kind == "json":
        return OpenedSource(text, "item", _json(path, gz, text))
    if kind in ("csv", "tsv"):
        return OpenedSource(text, "line", _csv(path, gz, text, "," if kind == "csv" else "\t"))
    return OpenedSource(text, "row", _parquet(path, text))
