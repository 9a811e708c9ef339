"""``asft gradients``: draw each loss's gradient w.r.t. the chosen and rejected sequence
scores across likelihoods (PNG) and write the values (CSV)."""

from __future__ import annotations

import argparse
from pathlib import Path

from asft.errors import AsftError

DEFAULT_METHODS = "asft,dpo,orpo,simpo"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "gradients", help="plot loss gradients w.r.t. chosen/rejected likelihood",
        description="Autograd of each registered loss w.r.t. the chosen and the rejected "
        "sequence log-likelihood, one likelihood swept over a grid while the other is fixed. "
        "Writes gradients.png and gradients.csv to --output.",
    )
    p.add_argument("--output", required=True, type=Path, help="folder for gradients.png/.csv")
    p.add_argument("--methods", action="append", metavar="SPECS",
                   help="methods as name[:k=v,...] separated by ',' or ';' "
                   f"(default: {DEFAULT_METHODS}); e.g. 'asft,asft:beta=0.1,sft_weight=0,dpo'")
    p.add_argument("--fixed-likelihood", type=float, default=0.1,
                   help="likelihood of the response not being swept (default: 0.1)")
    p.add_argument("--points", type=int, default=99, help="grid points in [0.01, 0.99]")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from asft.evaluate.gradients import gradient_table, likelihood_grid, write_csv
    from asft.evaluate.methods import parse_methods
    from asft.evaluate.plots import plot_gradients

    try:
        methods = parse_methods(args.methods or [DEFAULT_METHODS])
        rows = gradient_table(methods, likelihood_grid(args.points), args.fixed_likelihood)
    except ValueError as err:
        raise AsftError(str(err)) from None
    args.output.mkdir(parents=True, exist_ok=True)
    write_csv(rows, args.output / "gradients.csv")
    png = plot_gradients(rows, args.output / "gradients.png", args.fixed_likelihood)
    print(f"wrote {png} and {args.output / 'gradients.csv'} ({len(rows)} rows, "
          f"methods: {', '.join(m.label for m in methods)})")
    return 0
