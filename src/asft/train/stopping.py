"""How a run stops early, and what it tells the user then: a signal turned into a clean stop
with a checkpoint, a non-finite loss caught before it changes any weight, and the hint of
where to resume after a failed write.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

from asft.errors import AsftError


class NonFiniteLossError(AsftError):
    """The loss or the gradient norm became NaN or infinite; the run stopped before stepping."""


class StoppedBySignal(AsftError):
    """SIGTERM or SIGINT stopped the run after a step; a checkpoint of that step was saved."""


class StopSignal:
    """Turns the first SIGTERM (a cluster's preemption notice) or SIGINT (Ctrl-C) into a
    request to stop after the current step with a checkpoint; a second SIGINT interrupts at
    once. Installed only in the main thread (Python allows signal handlers nowhere else)."""

    def __init__(self) -> None:
        self.requested = False
        self.name, self.number = "", 0
        self._previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, number: int, frame: Any) -> None:
        if self.requested and number == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        self.name, self.number = signal.Signals(number).name, number

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


def resume_hint(last_ckpt: Path | None) -> str:
    """What survives a failed write, and how to go on."""
    if last_ckpt:
        return f"the last checkpoint, {last_ckpt}, is intact: free space and pass --resume"
    return "no checkpoint was kept (checkpoint.every: 0)"


def nonfinite_message(what: str, step: int, last: Path | None, out: Path) -> str:
    keep = (f"the last good checkpoint, {last}, is intact: fix the cause and pass --resume"
            if last else "no checkpoint was written yet")
    return (f"non-finite {what} at step {step}: training stopped before that step's update, "
            f"so no weights were changed by it; {keep}. Common causes: a learning rate too high "
            f"for the loss (try a lower optim.lr or optim.max_grad_norm), or bf16 overflow "
            f"(try model.dtype: fp32). Metrics up to step {step - 1} are in {out / 'metrics.jsonl'}.")
