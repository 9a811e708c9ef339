"""``asft data check [SOURCE]``: load and tokenize a data set, print what was kept and dropped;
``asft data prepare``: the same loader, into the token cache ahead of training;
``asft data relabel``: reward-augmented pairs (:mod:`asft.commands.data_relabel`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

DEFAULT_TOKENIZER = "smollm2-135m"


def register(sub: argparse._SubParsersAction) -> None:
    from asft.commands import data_flags, data_relabel, data_split

    p = sub.add_parser("data", help="inspect and prepare preference data sets")
    data_sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    c = data_sub.add_parser(
        "check", help="load and tokenize a data set; print pairs kept and dropped, and lengths",
        description="Load SOURCE (a .jsonl/.json/.csv/.parquet file, optionally .gz; a datasets "
                    "folder; builtin:<task>[:<split>]; or a hub id) as the data section of a "
                    "training config says (--config RECIPE checks exactly what `asft train "
                    "--config RECIPE` will read; each flag below is a shortcut for a data.* key), "
                    "tokenize it, and print pairs read, kept, dropped by reason, boundary "
                    "mismatches and length percentiles. Exits 1 on a data error.")
    c.add_argument("source", nargs="?", help="data source (default: the config's data.source)")
    data_flags.add(c)
    c.add_argument("--tokenizer", default=None,
                   help="model name or folder (default: the config's model.name, "
                        f"{DEFAULT_TOKENIZER}); 'none' skips tokenizing")
    c.add_argument("--no-cache", action="store_true", help="do not read or write the token cache")
    c.add_argument("--json", dest="json_out", default=None, metavar="PATH",
                   help="also write the summary as JSON to PATH ('-': print it after the tables)")
    c.set_defaults(func=run)
    pr = data_sub.add_parser(
        "prepare", help="read and tokenize a data set into the token cache, ahead of training",
        description="Read and tokenize the data of a training config (the same loader as "
                    "`asft train`) and store the token ids in asft's cache, so that training, "
                    "on every process, starts from the cache. Writes data_report.json.")
    pr.add_argument("source", nargs="?", help="data source (default: the config's data.source)")
    data_flags.add(pr)
    pr.add_argument("--tokenizer", default=None,
                    help="model name or folder (default: the config's model.name)")
    pr.add_argument("--report", type=Path, default=Path("data_report.json"), metavar="PATH",
                    help="where to write the report (default: ./data_report.json)")
    pr.set_defaults(func=run_prepare)
    data_relabel.register(data_sub)
    data_split.register(data_sub)


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
    if report.with_gold:  # TPO's third response: say how many pairs the loss gets it for
        t.add_row("pairs with a gold response", str(report.with_gold))
    if report.format == "unpaired":  # KTO's data: one response each, and its label
        t.add_row("desirable (label true)", str(report.desirable))
        t.add_row("undesirable (label false)", str(report.undesirable))
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
    t.add_row("tokens", f"{report.tokens:,} ({_size(report.store_bytes)} token store)")
    t.add_row("time", f"{report.seconds:.2f} s (cache {report.cache})")
    lengths = Table(title="tokens per pair (kept pairs)")
    for col in ("", "mean", "p50", "p90", "p99", "max"):
        lengths.add_column(col, justify="right")
    for part, st in report.length_stats().items():
        lengths.add_row(part, f"{st['mean']:.1f}", *(f"{st[k]:g}" for k in ("p50", "p90", "p99", "max")))
    return t, lengths


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _config(args: argparse.Namespace):
    from asft.commands import data_flags

    cfg = data_flags.load(args, args.source)
    tokenizer = args.tokenizer or cfg.model.name
    return cfg, tokenizer


def _tokenizer(name: str):
    from asft.errors import AsftError
    from asft.model.load import load_tokenizer

    try:
        return load_tokenizer(name)
    except (OSError, ValueError) as err:
        raise AsftError(f"cannot load tokenizer {name!r}: {err}") from None


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markup import escape

    from asft.data import DataError
    from asft.data.spec import prepare, read
    from asft.errors import AsftError
    from asft.model.load import cache_root

    cfg, tokenizer_name = _config(args)
    console = Console()
    tokenize = tokenizer_name.lower() != "none"
    try:
        if tokenize:
            prepared = prepare(cfg.data, _tokenizer(tokenizer_name), seed=cfg.seed,
                               cache_dir=None if args.no_cache else cache_root() / "tokens",
                               progress=True)
            load = prepared.load
        else:
            load = read(cfg.data, seed=cfg.seed).report
    except DataError as err:
        raise AsftError(str(err)) from None
    summary: dict = {"load": load.to_dict()}
    console.print(_load_table(load))
    for line in load.examples:
        console.print(f"  [yellow]skipped[/] {escape(line)}", markup=True, highlight=False)
    if tokenize:
        report = prepared.tokenized.report
        summary.update(tokens={**report.to_dict(), "tokenizer": tokenizer_name},
                       warnings=prepared.warnings)
        table, lengths = _token_table(report, tokenizer_name)
        console.print(table)
        console.print(lengths)
        for line in report.examples:
            console.print(f"  [yellow]note[/] {escape(line)}", markup=True, highlight=False)
        for warning in prepared.warnings:
            console.print(f"[bold yellow]warning:[/] {escape(warning)}", highlight=False)
    if args.json_out == "-":
        print(json.dumps(summary, indent=2))
    elif args.json_out:
        # a path the user names, possibly /dev/stdout: written in place, not renamed into place
        with open(args.json_out, "w") as fh:
            json.dump(summary, fh, indent=2)
    return 0


def run_prepare(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markup import escape

    from asft import atomic
    from asft.data import DataError
    from asft.data.spec import prepare
    from asft.errors import AsftError
    from asft.model.load import cache_root

    cfg, tokenizer_name = _config(args)
    console = Console(stderr=True)
    try:
        prepared = prepare(cfg.data, _tokenizer(tokenizer_name), seed=cfg.seed,
                           cache_dir=cache_root() / "tokens", progress=True)
    except DataError as err:
        raise AsftError(str(err)) from None
    report = prepared.report()
    report["tokenize"]["tokenizer"] = tokenizer_name
    atomic.write_json(args.report, report)
    console.print(f"data: {escape(prepared.summary())}", highlight=False)
    for warning in prepared.warnings:
        console.print(f"[bold yellow]warning:[/] {escape(warning)}", highlight=False)
    tok = prepared.tokenized.report
    console.print(f"tokens: {tok.kept} pairs, {tok.tokens:,} tokens, {_size(tok.store_bytes)} "
                  f"token store, {tok.seconds:.1f} s (cache {tok.cache})\n"
                  f"token store: {tok.cache_path or tok.cache}\nreport: {args.report}",
                  highlight=False)
    return 0
