"""What the training processes agree on: one answer broadcast from the main process, one
reduction deciding a branch for all, and passes over data sharded so that each process runs
the same number of forwards (a forward of a DDP/FSDP-wrapped model is a collective).

With one process every function here is a plain local computation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from asft.model.scoring import score_pairs
from asft.train.sampling import balanced_shard


def has_accelerator() -> bool:
    """A GPU (CUDA/ROCm), XPU or MPS device; otherwise accelerate must be told to use the CPU,
    or it would not set up multi-process (gloo) training."""
    xpu = getattr(torch, "xpu", None)
    return (torch.cuda.is_available() or bool(xpu and xpu.is_available())
            or torch.backends.mps.is_available())


def broadcast(accelerator: Any, value: Any) -> Any:
    """``value`` of the main process, on every process (an exception there is re-raised everywhere)."""
    if accelerator.num_processes == 1:
        if isinstance(value, BaseException):
            raise value
        return value
    from accelerate.utils import broadcast_object_list

    box = [value]
    broadcast_object_list(box, from_process=0)
    if isinstance(box[0], BaseException):
        raise box[0]
    return box[0]


def any_of(accelerator: Any, flag: torch.Tensor, stop: bool) -> tuple[bool, bool]:
    """(``flag`` on any process, ``stop`` on any process), in one reduction: every process
    must take the same branch, or the next collective would hang."""
    value = torch.stack([flag.to(torch.float32).reshape(()),
                         torch.tensor(float(stop), device=flag.device)])
    if accelerator.num_processes > 1:
        value = accelerator.reduce(value, "sum")
    nonfinite, stopped = value.tolist()
    return nonfinite > 0, stopped > 0


def score_shards(accelerator: Any, scorer: Any, examples: Sequence[Any],
                 make_batch: Callable[[Sequence[Any]], dict], batch_size: int, *,
                 subset: Sequence[int] | None = None,
                 on_batch: Callable[[int], None] | None = None) -> torch.Tensor:
    """:func:`asft.model.scoring.score_pairs` over ``examples`` (or only those at ``subset``,
    in that order), each process scoring its :func:`balanced_shard`; the [4, N] float64
    table, complete on every process (zeros where not scored).

    Each pair is counted by exactly one process, so the all-reduced sum is the exact table.
    ``on_batch`` gets this process's pairs after each of its batches (a progress bar).
    """
    items = list(range(len(examples))) if subset is None else list(subset)
    mine = balanced_shard(len(items), accelerator.process_index, accelerator.num_processes)
    table = score_pairs(scorer, examples, make_batch, batch_size,
                        indices=[items[i] for i, _ in mine], counted=[c for _, c in mine],
                        on_batch=on_batch)
    if accelerator.num_processes > 1:
        table = accelerator.reduce(table.to(accelerator.device), "sum").cpu()
    return table
