"""``asft losses``: list the registered losses, their hyperparameters and papers.

``--markdown`` prints the same as the Markdown table of docs/losses.md and README.md;
``--write FILE ...`` regenerates that table in place (see :mod:`asft.losses.docs`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from asft.errors import AsftError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("losses", help="list registered losses and their hyperparameters")
    p.add_argument("--markdown", action="store_true",
                   help="print the Markdown table of docs/losses.md and README.md")
    p.add_argument("--write", nargs="+", type=Path, metavar="FILE",
                   help="replace the generated table between the losses:begin/losses:end "
                        "markers of each FILE instead of printing")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.write:
        _write(args.write)
    elif args.markdown:
        from asft.losses.docs import markdown_table

        print(markdown_table(), end="")
    else:
        _print_rich()
    return 0


def _write(paths: list[Path]) -> None:
    from asft.losses.docs import splice

    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
            new = splice(text, str(path))
            if new != text:
                path.write_text(new, encoding="utf-8")
        except (OSError, ValueError) as err:
            raise AsftError(str(err)) from None
        print(f"{path}: {'updated' if new != text else 'up to date'}")


def _print_rich() -> None:
    from rich.console import Console
    from rich.table import Table

    from asft.losses import LOSSES

    table = Table(title="registered losses")
    for col in ("name", "hyperparameters (defaults)", "reference model", "arXiv", "summary"):
        table.add_column(col)
    for spec in LOSSES.values():
        hp = ", ".join(f"{k}={v:g}" for k, v in spec.defaults.items()) or "-"
        papers = ", ".join(p for p in (spec.paper, *spec.related) if p)
        table.add_row(spec.name, hp, "yes" if spec.needs_reference else "no", papers, spec.summary)
    Console().print(table)
