"""``asft eval``: generation metrics (BLEU-4, ROUGE-L, exact match) and pairwise metrics of a
model on held-out preference pairs. Writes ``eval.json`` and ``generations.jsonl``."""

from __future__ import annotations

import argparse
from pathlib import Path

from asft import atomic
from asft.commands import condition_flags, data_flags
from asft.errors import AsftError
from asft.model.load import ATTN_IMPLEMENTATIONS

DEFAULT_DATA = "builtin:mixed"

# (key, column title, format) of the console table, in order.
TABLE_ROWS = (
    ("bleu4", "BLEU-4 vs chosen (0-100)", "{:.2f}"),
    ("rougeL", "ROUGE-L F1 vs chosen (0-100)", "{:.2f}"),
    ("exact_match", "exact match (%)", "{:.1f}"),
    ("pref_acc_mean", "preference accuracy, mean log-prob (%)", "{:.1f}"),
    ("pref_acc_sum", "preference accuracy, summed log-prob (%)", "{:.1f}"),
    ("logps_chosen", "chosen log-prob per token (nats)", "{:.4f}"),
    ("logps_rejected", "rejected log-prob per token (nats)", "{:.4f}"),
    ("margin", "margin per token (nats)", "{:.4f}"),
    ("margin_sum", "margin, summed (nats)", "{:.3f}"),
    ("num_samples", "prompts", "{}"),
    ("pairs", "pairs scored", "{}"),
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval", help="BLEU-4, ROUGE-L, exact match and pairwise metrics on held-out pairs",
        description="Generate answers to held-out prompts with the model's chat template and "
        "score them against the chosen responses (BLEU-4, ROUGE-L, and exact match when the "
        "data has a checker, as the built-in tasks do); score both responses of every pair "
        "with the model (preference accuracy, log-likelihoods, margins).",
    )
    p.add_argument("--model", required=True, help="model folder, hub id or short name")
    p.add_argument("--data", default=DEFAULT_DATA, help=f"data source (default: {DEFAULT_DATA})")
    p.add_argument("--output", required=True, type=Path, help="folder for eval.json, generations.jsonl")
    p.add_argument("--num-samples", type=int, help="evaluate the first N pairs only")
    p.add_argument("--max-new-tokens", type=int, default=256, help="per answer (default: 256)")
    sampling = p.add_mutually_exclusive_group()
    sampling.add_argument("--greedy", action="store_true", help="greedy decoding (the default)")
    sampling.add_argument("--temperature", type=float, default=0.0, help="sample at this temperature")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus mass when sampling")
    p.add_argument("--batch-size", type=int, default=8, help="prompts per generate call / pairs per forward")
    p.add_argument("--no-generate", action="store_true", help="skip generation metrics")
    p.add_argument("--no-pairwise", action="store_true", help="skip pairwise metrics")
    p.add_argument("--dtype", default="fp32", help="fp32, bf16 or fp16")
    p.add_argument("--attn-implementation", default="auto",
                   choices=ATTN_IMPLEMENTATIONS,
                   help="attention kernel (default auto: sdpa); flash_attention_2 scores pairs on "
                        "the plain layout")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    # the data section's keys (format, columns, on_bad_record, ...), as asft train reads them;
    # --split defaults to test for built-in and hub data, the whole file otherwise
    data_flags.add(p)
    # a model trained on `asft data relabel` output answers prompts conditioned on a score
    condition_flags.add(p)
    p.set_defaults(func=run)


def default_split(source: str) -> str | None:
    """``test`` for built-in and hub sources (which have splits), None for files."""
    if source.startswith(("builtin:", "hub:")):
        return "test"
    return "test" if "/" in source and not Path(source).exists() else None


def print_table(results: dict, title: str) -> None:
    """The metrics as a two-column rich table (missing ones are skipped)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, name, fmt in TABLE_ROWS:
        if results.get(key) is not None:
            table.add_row(name, fmt.format(results[key]))
    Console().print(table)


def run(args: argparse.Namespace) -> int:
    import torch

    from asft.data import DataError
    from asft.data.spec import read
    from asft.evaluate.generation import GenerationConfig
    from asft.evaluate.heldout import EvalConfig, checker_for, evaluate_pairs
    from asft.model.load import load_model, load_tokenizer

    if args.data_split is None:
        args.data_split = default_split(args.data)
    spec = data_flags.load(args, args.data).data
    condition = condition_flags.condition(args)
    try:
        config = EvalConfig(
            generation=GenerationConfig(max_new_tokens=args.max_new_tokens,
                                        temperature=0.0 if args.greedy else args.temperature,
                                        top_p=args.top_p, batch_size=args.batch_size, seed=args.seed),
            num_samples=args.num_samples, max_length=spec.max_length,
            max_prompt_length=spec.max_prompt_length, score_batch_size=args.batch_size,
            generate=not args.no_generate, pairwise=not args.no_pairwise,
            overflow=spec.overflow, boundary=spec.boundary,
        )
        loaded = read(spec, limit=args.num_samples)
    except (ValueError, DataError) as err:
        raise AsftError(str(err)) from None
    _report_skips(loaded.report)
    # the conditioned prompt is both generated from and scored under, as in training
    pairs = [condition.pair(p) for p in loaded.pairs] if condition else loaded.pairs
    tokenizer = load_tokenizer(args.model)
    model = load_model(args.model, dtype=args.dtype, attn_implementation=args.attn_implementation)
    if torch.cuda.is_available():
        model = model.cuda()
    results, generations = evaluate_pairs(model, tokenizer, pairs, config,
                                          checker_for(args.data))
    results["data"] = loaded.report.to_dict()
    results["config"] = {
        "model": args.model, "data": args.data, "split": spec.split, "num_samples": args.num_samples,
        "max_new_tokens": args.max_new_tokens, "temperature": config.generation.temperature,
        "top_p": args.top_p, "max_length": spec.max_length,
        "max_prompt_length": spec.max_prompt_length, "dtype": args.dtype, "seed": args.seed,
        "format": loaded.report.format, "on_bad_record": spec.on_bad_record,
        "condition": condition.to_dict() if condition else None,
    }
    args.output.mkdir(parents=True, exist_ok=True)
    atomic.write_json(args.output / "eval.json", results)
    if generations:
        atomic.write_jsonl(args.output / "generations.jsonl", generations, ensure_ascii=False)
    print_table(results, f"{args.model} on {args.data}" + (f" ({spec.split})" if spec.split else ""))
    print(f"wrote {args.output / 'eval.json'}")
    return 0


def _report_skips(report) -> None:
    """Records skipped under ``--on-bad-record skip`` (and ties): counted, never silent."""
    import sys

    from asft.data.spec import count_text

    if report.skipped:
        print(f"asft eval: {sum(report.skipped.values())} of {report.read} records skipped "
              f"({count_text(report.skipped)}); first: {report.examples[0] if report.examples else '-'}",
              file=sys.stderr)
