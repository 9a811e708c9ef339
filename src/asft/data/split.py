"""Splitting one record file into parts (train / validation / test) by a fixed seed.

A user with one file of pairs, and the comparison on HH-RLHF, need disjoint training,
validation and test sets. :func:`split_file` reads a JSON Lines file (``.jsonl``, optionally
``.gz``) or a JSON array, shuffles the record positions with ``random.Random(seed)``, cuts
them by fractions and writes each part with the records' own text, unchanged, so that every
format the loader reads from the source reads the same from the parts. Every record lands
in exactly one part (the last part takes what rounding leaves), and ``split.json`` beside
the parts records the source, its SHA-256, the seed and the counts. Parts are written aside
and renamed (:mod:`asft.atomic`): a failure leaves no half-written file.
"""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

from asft import atomic
from asft.data.cache import sha256_file
from asft.data.errors import DataError

MANIFEST = "split.json"


def parse_parts(text: str) -> dict[str, float]:
    """``train=0.8,validation=0.1,test=0.1`` -> {name: fraction}; fractions in (0, 1) that sum
    to 1; ValueError saying what is wrong."""
    parts: dict[str, float] = {}
    for item in (s.strip() for s in text.split(",") if s.strip()):
        name, eq, value = item.partition("=")
        name = name.strip()
        if not eq or not name or not name.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"{item!r}: expected NAME=FRACTION (letters, digits, '_', '-')")
        try:
            fraction = float(value)
        except ValueError:
            raise ValueError(f"{item!r}: {value.strip()!r} is not a number") from None
        if not 0 < fraction < 1 or name in parts:
            raise ValueError(f"{item!r}: " + ("named twice" if name in parts
                                               else "a fraction must be in (0, 1)"))
        parts[name] = fraction
    if len(parts) < 2 or abs(sum(parts.values()) - 1) > 1e-9:
        raise ValueError(f"{text!r}: give two or more parts whose fractions sum to 1")
    return parts


def _records(path: Path) -> list[str]:
    """Each record's JSON text, in file order; DataError naming the line of a bad one."""
    opener = gzip.open if path.name.endswith(".gz") else open
    stem = path.name.removesuffix(".gz")
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            if stem.endswith(".json"):
                data = json.load(fh)
                if not isinstance(data, list):
                    raise DataError(f"{path}: a JSON file to split must hold a list of records")
                return [json.dumps(r, ensure_ascii=False) for r in data]
            lines = []
            for number, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        json.loads(line)
                    except ValueError as err:
                        raise DataError(f"{path}, line {number}: not JSON ({err})") from None
                    lines.append(line.rstrip("\n"))
            return lines
    except (OSError, UnicodeDecodeError, EOFError) as err:
        raise DataError(f"cannot read {path}: {err}") from None
    except ValueError as err:  # a JSON array that does not parse
        raise DataError(f"{path}: not JSON ({err})") from None


def split_file(source: Path, out: Path, parts: dict[str, float], seed: int) -> dict[str, int]:
    """Write ``out/<name>.jsonl`` for each part and ``out/split.json``; {name: records}."""
    stem = source.name.removesuffix(".gz")
    if not stem.endswith((".jsonl", ".json")):
        raise DataError(f"{source}: asft data split reads .jsonl and .json files (optionally "
                        ".gz); convert other formats first, or use their own splits (--split)")
    records = _records(source)
    if len(records) < len(parts):
        raise DataError(f"{source}: {len(records)} record(s) cannot fill {len(parts)} parts")
    out.mkdir(parents=True, exist_ok=True)
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    counts, start = {}, 0
    names = list(parts)
    for i, name in enumerate(names):
        n = len(records) - start if i == len(names) - 1 else int(parts[name] * len(records))
        chosen = sorted(order[start:start + n])  # file order inside a part
        atomic.write_text(out / f"{name}.jsonl", "".join(records[j] + "\n" for j in chosen))
        counts[name], start = n, start + n
    atomic.write_json(out / MANIFEST, {"source": str(source), "sha256": sha256_file(source),
                                       "seed": seed, "fractions": parts, "records": counts})
    return counts
