"""``--condition-score S`` and its template and scale, shared by ``asft eval`` and ``asft
mt-bench``: every prompt is conditioned on score S as ``asft data relabel`` conditioned the
training pairs (:mod:`asft.data.condition`; reward-augmented data, arXiv 2410.08067), so that a
model trained on relabeled data is evaluated as the paper does, at the highest score."""

from __future__ import annotations

import argparse
from typing import Any

from asft.errors import AsftError


def add(parser: argparse.ArgumentParser) -> None:
    """Add ``--condition-score``, ``--condition-template`` and ``--condition-max-score``."""
    group = parser.add_argument_group(
        "score conditioning", "for models trained on `asft data relabel` output (arXiv 2410.08067)")
    group.add_argument("--condition-score", type=float, default=None, metavar="S",
                       help="put the relabel template's system message, asking for score S, "
                            "first in every prompt (the paper uses the top score, e.g. 10)")
    group.add_argument("--condition-template", default=None, metavar="TEXT",
                       help="the --template given to `asft data relabel` (default: its default)")
    group.add_argument("--condition-max-score", type=float, default=None, metavar="M",
                       help="the --max-score of `asft data relabel`, {max} in the template "
                            "(default: 10)")


def condition(args: argparse.Namespace) -> Any:
    """The :class:`asft.data.condition.Condition` the flags ask for, or None without
    ``--condition-score``; AsftError for a bad value or a template flag without a score."""
    if args.condition_score is None:
        if args.condition_template is not None or args.condition_max_score is not None:
            raise AsftError("--condition-template and --condition-max-score need "
                            "--condition-score")
        return None
    from asft.data.condition import DEFAULT_MAX_SCORE, DEFAULT_TEMPLATE, Condition

    try:
        return Condition(args.condition_score,
                         DEFAULT_TEMPLATE if args.condition_template is None
                         else args.condition_template,
                         DEFAULT_MAX_SCORE if args.condition_max_score is None
                         else args.condition_max_score)
    except ValueError as err:
        raise AsftError(str(err)) from None
