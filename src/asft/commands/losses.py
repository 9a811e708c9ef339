"""``asft losses``: list the registered losses, their hyperparameters and papers."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("losses", help="list registered losses and their hyperparameters")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from asft.losses import LOSSES

    table = Table(title="registered losses")
    for col in ("name", "hyperparameters (defaults)", "reference model", "arXiv", "summary"):
        table.add_column(col)
    for spec in LOSSES.values():
        hp = ", ".join(f"{k}={v:g}" for k, v in spec.defaults.items()) or "-"
        table.add_row(spec.name, hp, "yes" if spec.needs_reference else "no", spec.paper, spec.summary)
    Console().print(table)
    return 0
