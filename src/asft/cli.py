"""The ``asft`` command: a thin dispatcher from subcommand to function.

Each subcommand lives in ``asft.commands.<name>`` and exposes ``register(subparsers)``, which
adds its parser and sets ``func`` to a callable taking the parsed args and returning an exit
code. Heavy imports (torch, transformers) happen inside those functions, so ``asft --help``
stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from asft import __version__
from asft.errors import AsftError

# Order is the order shown in --help.
COMMAND_MODULES: tuple[str, ...] = (
    "asft.commands.train",
    "asft.commands.push",
    "asft.commands.losses",
    "asft.commands.data",
    "asft.commands.mt_bench",
    "asft.commands.pairs",
    "asft.commands.gradients",
    "asft.commands.plot",
    "asft.commands.eval",
    "asft.commands.compare",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asft",
        description="Align causal LMs with pairwise preferences: ASFT (arXiv 2409.10571) and baselines.",
    )
    parser.add_argument("--version", action="version", version=f"asft {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod_name in COMMAND_MODULES:
        importlib.import_module(mod_name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    # `asft` alone runs the default job: training on the built-in task.
    if not argv and "asft.commands.train" in COMMAND_MODULES:
        argv = ["train"]
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except AsftError as err:
        print(f"asft {args.command}: error: {err}", file=sys.stderr)
        return err.code
    except KeyboardInterrupt:
        print(f"asft {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
