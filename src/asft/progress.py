"""The progress bar used by evaluation commands: description, bar, count, elapsed and ETA."""

from __future__ import annotations


def progress_bar(transient: bool = False):
    """A ``rich.progress.Progress`` showing done/total, elapsed time and time remaining."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), transient=transient,
    )
