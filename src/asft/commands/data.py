"""``asft data check SOURCE``: load and tokenize a data set, print what was kept and dropped."""

from __future__ import annotations

import argparse
import json

DEFAULT_TOKENIZER = "smollm2-135m"


def _columns(text: str) -> dict[str, str]:
    """``prompt=question,chosen=good`` -> {"prompt": "question", "chosen": "good"}."""
    out = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise argparse.ArgumentTypeError(f"expected NAME=COLUMN, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def _optional_int(text: str) -> int | None:
    if text.lower() in ("none", "0"):
        return None
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be a positive integer or 'none'")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    from asft.data.formats import FORMATS

    p = sub.add_parser("data", help="inspect preference data sets")
    data_sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    c = data_sub.add_parser(
        "check", help="load and tokenize a data set; print pairs kept and dropped, and lengths",
        description="Load SOURCE (a .jsonl/.json/.csv/.parquet file, optionally .gz; a datasets "
                    "folder; builtin:<task>[:<split>]; or a hub id), tokenize it, and print "
                    "pairs read, kept, dropped by reason, boundary mismatches and length "
                    "percentiles. Exits 1 on a data error.")
    c.add_argument("source")
    c.add_argument("--format", default="auto", choices=("auto", *FORMATS),
                   help="record format (default: detected from the first record)")
    c.add_argument("--columns", type=_columns, default=None, metavar="NAME=COL,...",
                   help="map prompt/chosen/rejected/conversations/system to other column names")
    c.add_argument("--split", default=None, help="split of a datasets folder, hub set or builtin task")
    c.add_argument("--tokenizer", default=DEFAULT_TOKENIZER,
                   help=f"model name or folder (default {DEFAULT_TOKENIZER}); 'none' skips tokenizing")
    c.add_argument("--max-length", type=_optional_int, default=1024,
                   help="limit on prompt + longer response tokens (default 1024; 'none')")
    c.add_argument("--max-prompt-length", type=_optional_int, default=512,
                   help="prompt tokens kept, from the end (default 512; 'none')")
    c.add_argument("--overflow", default="drop", choices=("drop", "truncate"),
                   help="pairs over --max-length: drop (default) or cut the responses")
    c.add_argument("--boundary", default="shift", choices=("shift", "drop"),
                   help="pairs whose prompt/response token boundary is not clean: shift it "
                        "(default) or drop them")
    c.add_argument("--on-bad-record", default="error", choices=("error", "skip"),
                   help="stop at the first bad record (default) or skip and count bad records")
    c.add_argument("--empty-response", default="keep", choices=("keep", "bad"),
                   help="responses with empty text: keep and count (default) or treat as bad")
    c.add_argument("--no-cache", action="store_true", help="do not read or write the token cache")
    c.add_argument("--json", dest="json_out", default=None, metavar="PATH",
                   help="also write the summary as JSON to PATH ('-': print it after the tables)")
    c.set_defaults(func=run)


def _load_table(report):
    from rich.table import Table

    t = Table(title="records", show_header=False)
    t.add_row("source", report.source)
    t.add_row("format", report.format)
    t.add_row("records read", str(report.read))
    t.add_row("pairs kept", str(report.kept))
    for reason, n in sorted(report.skipped.items()):
        t.add_row(f"skipped: {reason}", str(n))
    t.add_row("empty responses (kept)", str(report.empty_responses))
    return t


def _token_table(report, tokenizer_name: str):
    from rich.table import Table

    t = Table(title="tokens", show_header=False)
    s = report.settings
    t.add_row("tokenizer", f"{tokenizer_name} ({'chat template' if report.chat_template else 'plain transcript'})")
    t.add_row("limits", f"max_length={s['max_length']} max_prompt_length={s['max_prompt_length']} "
                        f"overflow={s['overflow']} boundary={s['boundary']}")
    t.add_row("pairs kept", f"{report.kept} of {report.pairs}")
    for reason, n in sorted(report.dropped.items()):
        t.add_row(f"dropped: {reason}", str(n))
    t.add_row("boundary mismatches", str(report.boundary_mismatches))
    t.add_row("template fallbacks", str(report.template_fallbacks))
    t.add_row("prompts truncated", str(report.prompts_truncated))
    t.add_row("responses truncated", str(report.responses_truncated))
    t.add_row("time", f"{report.seconds:.2f} s (cache {report.cache})")
    lengths = Table(title="tokens per pair (kept pairs)")
    for col in ("", "mean", "p50", "p90", "p99", "max"):
        lengths.add_column(col, justify="right")
    for part, st in report.length_stats().items():
        lengths.add_row(part, f"{st['mean']:.1f}", *(f"{st[k]:g}" for k in ("p50", "p90", "p99", "max")))
    return t, lengths


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from asft.data import DataError, load_pairs
    from asft.errors import AsftError

    console = Console()
    try:
        loaded = load_pairs(args.source, fmt=args.format, columns=args.columns,
                            on_bad_record=args.on_bad_record, split=args.split,
                            empty_response=args.empty_response)
    except DataError as err:
        raise AsftError(str(err)) from None
    except ValueError as err:
        raise AsftError(f"invalid option: {err}") from None
    summary: dict = {"load": loaded.report.to_dict()}
    console.print(_load_table(loaded.report))
    for line in loaded.report.examples:
        console.print(f"  [yellow]skipped[/] {line}", markup=True, highlight=False)
    if args.tokenizer.lower() != "none":
        from asft.data.tokenize import tokenize_pairs
        from asft.model.load import cache_root, load_tokenizer

        try:
            tokenizer = load_tokenizer(args.tokenizer)
        except OSError as err:
            raise AsftError(f"cannot load tokenizer {args.tokenizer!r}: {err}") from None
        try:
            result = tokenize_pairs(
                loaded.pairs, tokenizer, args.max_length, args.max_prompt_length,
                cache_dir=None if args.no_cache else cache_root() / "tokens",
                overflow=args.overflow, boundary=args.boundary, progress=True)
        except ValueError as err:
            raise AsftError(str(err)) from None
        summary["tokens"] = result.report.to_dict()
        summary["tokens"]["tokenizer"] = args.tokenizer
        table, lengths = _token_table(result.report, args.tokenizer)
        console.print(table)
        console.print(lengths)
        for line in result.report.examples:
            console.print(f"  [yellow]note[/] {line}", markup=True, highlight=False)
    if args.json_out == "-":
        print(json.dumps(summary, indent=2))
    elif args.json_out:
        with open(args.json_out, "w") as fh:
            json.dump(summary, fh, indent=2)
    return 0
