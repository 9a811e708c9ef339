"""The flags that set keys of the ``data`` section, shared by ``asft data check``, ``asft data
prepare`` and ``asft eval``: each flag is a shortcut for one ``data.*`` key, so that
``asft data check --config RECIPE`` reads exactly what ``asft train --config RECIPE`` reads.
The values are judged where the config judges them (:class:`asft.config.DataConfig`)."""

from __future__ import annotations

import argparse
from typing import Any

# (flag, data key, metavar, help); the defaults are DataConfig's, shown by `asft train --help-config`
FLAGS: tuple[tuple[str, str, str, str], ...] = (
    ("--format", "format", "NAME", "record format (default: detected from the first record)"),
    ("--columns", "columns", "NAME=COL,...", "the source's column for each field, e.g. "
                                             "chosen=good,rejected=bad (data.columns)"),
    ("--split", "split", "NAME", "split of a datasets folder, hub set or builtin task"),
    ("--system", "system", "TEXT", "system prompt for pairs whose prompt has none"),
    ("--on-bad-record", "on_bad_record", "error|skip",
     "stop at the first bad record (default) or skip and count bad records"),
    ("--empty-response", "empty_response", "keep|bad", "responses with empty text"),
    ("--labels", "labels", "VALUE=COL,...", "ranked data: label value -> response column or tie"),
    ("--binarize", "binarize", "random|worst", "rated data: the rejected completion"),
    ("--max-length", "max_length", "N", "prompt + longer response tokens (default 1024)"),
    ("--max-prompt-length", "max_prompt_length", "N", "prompt tokens kept, from the end (default 512)"),
    ("--overflow", "overflow", "drop|truncate", "pairs over --max-length"),
    ("--boundary", "boundary", "shift|drop", "pairs whose prompt/response boundary is not clean"),
    ("--num-proc", "num_proc", "N", "processes that tokenize (default: the machine's cores)"),
)


def _columns(text: str) -> dict:
    from asft.data.spec import OptionError, parse_columns

    try:
        return parse_columns(text)
    except OptionError as err:
        raise argparse.ArgumentTypeError(err.message) from None


def _mapping(text: str) -> dict[str, str]:
    out = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        key, sep, value = (p.strip() for p in item.partition("="))
        if not sep or not key or not value:
            raise argparse.ArgumentTypeError(f"expected VALUE=COLUMN, got {item!r}")
        out[key] = value
    return out


_TYPES = {"columns": _columns, "labels": _mapping, "max_length": int, "max_prompt_length": int,
          "num_proc": int}


def add(parser: argparse.ArgumentParser, *, skip: tuple[str, ...] = ()) -> None:
    """Add ``--config``, ``--set`` and the data flags (except the keys in ``skip``)."""
    parser.add_argument("--config", "-c", metavar="FILE",
                        help="read the data section (and model.name, seed) of this training YAML")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set data.columns=chosen=A,rejected=B")
    for flag, key, metavar, text in FLAGS:
        if key not in skip:
            parser.add_argument(flag, dest=f"data_{key}", type=_TYPES.get(key, str),
                                metavar=metavar, default=None, help=text)


def load(args: argparse.Namespace, source: str | None = None) -> Any:
    """The training config these flags describe: ``--config``, then ``--set``, then each flag
    given (and ``source``, when given) as the ``data.*`` key it stands for."""
    from asft.config import load_config

    overrides: list[Any] = list(args.overrides)
    if source is not None:
        overrides.append(("data.source", source))
    for _, key, _, _ in FLAGS:
        value = getattr(args, f"data_{key}", None)
        if value is not None:
            overrides.append((f"data.{key}", value))
    return load_config(args.config, overrides)
