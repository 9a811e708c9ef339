"""``asft plot RUN_DIR [RUN_DIR...] --output FILE.png``: chosen and rejected log-likelihood
during training, one line per run (labelled with its method)."""

from __future__ import annotations

import argparse
from pathlib import Path

from asft.errors import AsftError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plot", help="plot chosen/rejected log-likelihood over training for one or more runs",
        description="Reads each run's metrics.jsonl (the held-out probe's probe/logps/* when "
        "logged, else the training batches' logps/*) and draws the mean chosen and rejected "
        "log-likelihood per token and their margin against the step.",
    )
    p.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR", help="training output folders")
    p.add_argument("--output", required=True, type=Path, help="PNG file to write")
    p.add_argument("--title", default="", help="figure title")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from asft.evaluate.dynamics import distinct_labels, load_run
    from asft.evaluate.plots import plot_dynamics

    if args.output.suffix.lower() != ".png":
        raise AsftError(f"--output must be a .png file, got {args.output}")
    try:
        runs = [load_run(d) for d in args.runs]
    except ValueError as err:
        raise AsftError(str(err)) from None
    distinct_labels(runs, args.runs)
    title = args.title or "Log-likelihood dynamics (" + ", ".join(
        sorted({"held-out probe" if r.source == "probe" else "training batches" for r in runs})) + ")"
    plot_dynamics([(r.label, r.series) for r in runs], args.output, title)
    for r in runs:
        steps, chosen = r.series["chosen"]
        _, rejected = r.series["rejected"]
        print(f"{r.label}: {r.source} keys, steps {steps[0]}-{steps[-1]}, chosen "
              f"{chosen[0]:.3f} -> {chosen[-1]:.3f}, rejected {rejected[0]:.3f} -> {rejected[-1]:.3f}")
    print(f"wrote {args.output}")
    return 0
