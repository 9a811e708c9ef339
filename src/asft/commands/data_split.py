"""``asft data split SRC --parts train=0.8,validation=0.1,test=0.1 --seed 0 -o DIR``: one
record file into disjoint parts by a fixed seed (:mod:`asft.data.split`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from asft.errors import AsftError


def _parts(text: str) -> dict[str, float]:
    from asft.data.split import parse_parts

    try:
        return parse_parts(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def register(data_sub: argparse._SubParsersAction) -> None:
    p = data_sub.add_parser(
        "split", help="split one .jsonl/.json file into train/validation/test parts by a seed",
        description="Shuffle the records of SRC with --seed and write DIR/<part>.jsonl for each "
                    "part (records unchanged, in file order inside a part; every record in "
                    "exactly one part) and DIR/split.json (source, its SHA-256, seed, counts).")
    p.add_argument("source", type=Path, metavar="SRC", help="a .jsonl or .json file (optionally .gz)")
    p.add_argument("--parts", type=_parts, default="train=0.8,validation=0.1,test=0.1",
                   metavar="NAME=F,...", help="parts and their fractions, summing to 1 (default: "
                                              "train=0.8,validation=0.1,test=0.1)")
    p.add_argument("--seed", type=int, default=0, help="shuffling seed (default 0)")
    p.add_argument("-o", "--output", required=True, type=Path, metavar="DIR", help="folder for the parts")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from asft.data import DataError
    from asft.data.split import split_file

    try:
        counts = split_file(args.source, args.output, args.parts, args.seed)
    except DataError as err:
        raise AsftError(str(err)) from None
    except OSError as err:
        raise AsftError(f"cannot write {args.output}: {err.strerror or err}") from None
    total = sum(counts.values())
    print(f"{args.source}: {total} records, seed {args.seed} -> "
          + ", ".join(f"{args.output / (name + '.jsonl')} {n}" for name, n in counts.items()))
    return 0
