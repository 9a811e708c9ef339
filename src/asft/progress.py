"""The one progress-bar factory, for training, tokenizing and evaluation: description, bar,
count, elapsed time and ETA. It imports nothing of asft."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any


def progress_bar(
    *,
    show: bool = True,
    unit: str = "",
    count_first: bool = False,
    bar_width: int | None = 40,
    fields: tuple[str, ...] = (),
    console: Any = None,
    transient: bool = False,
) -> Any:
    """A ``rich.progress.Progress``: the task's description, a bar, done/total (then ``unit``),
    elapsed time and time remaining; or ``nullcontext(None)`` when not ``show``.

    Args:
        show: False gives a context that yields None, so callers write ``if bar:``.
        unit: shown after the count ("pairs").
        count_first: the count before the bar rather than after it (the training bar).
        bar_width: the bar's width in characters (None: as wide as the terminal allows).
        fields: task fields shown last, each as ``{task.fields[NAME]}`` (``add_task`` must
            set them); the training bar shows its ``info`` text (loss, status) this way.
        console: the rich Console to draw on (default: rich's global console).
        transient: remove the bar when it stops.
    """
    if not show:
        return nullcontext(None)
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    count = [MofNCompleteColumn()] + ([TextColumn(unit)] if unit else [])
    bar = [BarColumn(bar_width=bar_width)]
    columns = [
        TextColumn("{task.description}"), *(count + bar if count_first else bar + count),
        TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
        *(TextColumn(f"{{task.fields[{name}]}}") for name in fields),
    ]
    return Progress(*columns, console=console, transient=transient)
