"""``asft data relabel SRC --scores COL_CHOSEN,COL_REJECTED -o OUT.jsonl``: reward-augmented
pairs (Zhang et al., arXiv 2410.08067). Each pair of SRC, read as ``asft data check`` reads
it, is written conditioned on its chosen score, and again inverted (the rejected response as
chosen) conditioned on the rejected score; ties keep only the first. OUT is written whole or
not at all (:mod:`asft.atomic`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from asft.errors import AsftError

# data.* keys that only tokenizing or the ranked and rated formats read: not relabel's flags
_UNUSED_KEYS = ("labels", "binarize", "max_length", "max_prompt_length", "overflow", "boundary",
                "num_proc")


def _score_columns(text: str) -> tuple[str, str]:
    names = tuple(n.strip() for n in text.split(","))
    if len(names) != 2 or not all(names):
        raise argparse.ArgumentTypeError(f"expected COL_CHOSEN,COL_REJECTED, got {text!r}")
    return names  # type: ignore[return-value]


def register(data_sub: argparse._SubParsersAction) -> None:
    from asft.commands import data_flags

    p = data_sub.add_parser(
        "relabel", help="write each scored pair twice, conditioned on its scores "
                        "(reward-augmented data, arXiv 2410.08067)",
        description="Read SRC as `asft data check` reads it and write OUT (JSON Lines): each "
                    "pair with a system message asking for its chosen score, and its inverse "
                    "(rejected as chosen) asking for its rejected score; pairs with equal "
                    "scores get no inverse (counted). Train on OUT with any loss; evaluate "
                    "with `asft eval --condition-score S` (same --template and --max-score). "
                    "See docs/data.md.")
    p.add_argument("source", nargs="?", metavar="SRC", help="data source (default: the config's data.source)")
    p.add_argument("--scores", type=_score_columns, default=None, metavar="COL_CHOSEN,COL_REJECTED",
                   help="the columns holding the chosen and rejected responses' scores (default: "
                        "score_chosen,score_rejected, UltraFeedback's)")
    p.add_argument("-o", "--output", required=True, type=Path, metavar="OUT.jsonl",
                   help="where to write the pairs")
    p.add_argument("--template", default=None, metavar="TEXT",
                   help="conditioning text with {score} and optionally {max} (default: the "
                        "paper's, asft.data.condition.DEFAULT_TEMPLATE)")
    p.add_argument("--max-score", type=float, default=None, metavar="M",
                   help="top of the score scale, {max} in the template (default: 10, or the "
                        "largest score in the data when one is above 10)")
    data_flags.add(p, skip=_UNUSED_KEYS)
    p.set_defaults(func=run)


def _template(args: argparse.Namespace) -> str:
    from asft.data.condition import DEFAULT_TEMPLATE, check_score, check_template

    template = DEFAULT_TEMPLATE if args.template is None else args.template
    try:
        check_template(template)
        if args.max_score is not None and check_score(args.max_score, "max score") <= 0:
            raise ValueError(f"the max score must be > 0, got {args.max_score}")
    except ValueError as err:
        raise AsftError(str(err)) from None
    return template


def _read(args: argparse.Namespace):
    """(scored pairs, load report): each pair of the source with its (chosen, rejected) scores."""
    from asft.commands import data_flags
    from asft.data import DataError
    from asft.data.relabel import SCORE_COLUMNS, read_scores
    from asft.data.spec import stream

    cfg = data_flags.load(args, args.source)
    if cfg.data.format in ("ranked", "rated"):
        raise AsftError(f"format {cfg.data.format!r} has no chosen and rejected score columns: "
                        "relabel reads one score per response of a pair (--scores)")
    columns = args.scores or SCORE_COLUMNS
    try:
        pairs = stream(cfg.data, seed=cfg.seed)
        scored = list(pairs.with_extra(lambda record: read_scores(record, columns)))
    except DataError as err:
        raise AsftError(str(err)) from None
    return scored, pairs.report


def _write(path: Path, scored: list, template: str, max_score: float) -> int:
    """Write the relabeled pairs to ``path`` in one atomic replace; the number written."""
    from asft import atomic
    from asft.data.relabel import relabel_pair

    path.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with atomic.file(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for pair, scores in scored:
            for record in relabel_pair(pair, scores, template, max_score):
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
                written += 1
    return written


def run(args: argparse.Namespace) -> int:
    from asft.data.condition import format_score
    from asft.data.relabel import default_max_score
    from asft.data.spec import count_text

    template = _template(args)
    scored, report = _read(args)
    max_score = args.max_score
    if max_score is None:
        max_score = default_max_score(scores for _, scores in scored)
    written = _write(args.output, scored, template, max_score)
    inverse = written - len(scored)
    print(f"relabel: {len(scored)} pairs from {report.source} -> {written} pairs in "
          f"{args.output} ({len(scored)} conditioned on the chosen score, {inverse} inverse, "
          f"scale max {format_score(max_score)})")
    if len(scored) - inverse:
        print(f"ties: {len(scored) - inverse} of {len(scored)} pairs have equal scores: "
              "no inverse written for them")
    above = sum(score > max_score for _, scores in scored for score in scores)
    if above:
        print(f"note: {above} scores are above the scale max {format_score(max_score)} "
              "(--max-score)")
    if report.skipped:
        print(f"skipped: {sum(report.skipped.values())} of {report.read} records "
              f"({count_text(report.skipped)}); first: "
              f"{report.examples[0] if report.examples else '-'}")
    return 0
