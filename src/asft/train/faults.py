"""Fault injection at named points, driven by the ``ASFT_FAULTS`` environment variable.

The reliability tests kill, starve or poison a real training process at precise moments (in
the middle of a checkpoint write, at a given step) and then check what survives. Production
code marks those moments with :func:`hit` and :func:`poison`; with ``ASFT_FAULTS`` unset they
cost one dictionary lookup.

``ASFT_FAULTS`` is a comma-separated list of ``POINT[@HIT][=ACTION][:RANK]``:

- POINT: one of :data:`POINTS`.
- HIT: fire on the HIT-th time this process reaches the point (1-based, default 1).
- ACTION: ``kill`` (SIGKILL this process, default), ``term`` (send this process SIGTERM, as
  a cluster's preemption does, and carry on), ``enospc`` (raise OSError "No space left on
  device"), ``error`` (raise RuntimeError), ``nan`` (:func:`poison` returns NaN).
- RANK: fire only in the process of that rank (``RANK`` environment variable, default 0).

Example: ``ASFT_FAULTS=checkpoint.after_model@2=kill`` kills the process while it writes its
second checkpoint, after the weights and before the optimizer state.

With ``ASFT_FAULTS_LOG`` set to a file, each fault appends ``POINT@HIT=ACTION`` to it (flushed
to disk) just before it fires, so that a test suite can count the faults it injected, those
in processes it killed included (scripts/reliability_counts.py).
"""

from __future__ import annotations

import errno
import os
import signal
from dataclasses import dataclass

import torch

ENV = "ASFT_FAULTS"
LOG_ENV = "ASFT_FAULTS_LOG"
ACTIONS = ("kill", "term", "enospc", "error", "nan")

POINTS: dict[str, str] = {
    "train.loss": "the micro-batch loss, before backward (use with nan)",
    "train.step": "right after an optimizer step, before its metrics and checkpoint",
    "checkpoint.begin": "checkpoint write: temporary folder created, nothing written",
    "checkpoint.after_model": "checkpoint write: weights written",
    "checkpoint.shard": "sharded checkpoint write (fsdp): this process's shard file written, "
                        "the processes not yet agreed that the write finished",
    "checkpoint.after_optimizer": "checkpoint write: optimizer state written",
    "checkpoint.after_rank_state": "checkpoint write: RNG and data-position state written",
    "checkpoint.before_manifest": "checkpoint write: all files written, completion marker not yet",
    "checkpoint.before_rename": "checkpoint write: marker written, folder not yet renamed into place",
    "checkpoint.after_rename": "checkpoint write: renamed into place, older ones not yet pruned",
    "checkpoint.prune": "deleting an old checkpoint: renamed to trash, not yet deleted",
    "metrics.write": "appending a record to metrics.jsonl (use with enospc)",
    "final.before_rename": "final model written to a temporary folder, not yet renamed into place",
    "pairs.sampled": "asft pairs / online rounds: one prompt's samples saved to the side file",
    "online.sampled": "online round: its samples scored and paired, round.json written, "
                      "training not begun",
}

# points only a sharded (fsdp) checkpoint write reaches
SHARDED_ONLY = frozenset({"checkpoint.shard"})


@dataclass(frozen=True)
class Fault:
    """One parsed entry of ``ASFT_FAULTS``."""

    point: str
    hit: int = 1
    action: str = "kill"
    rank: int | None = None


def parse(spec: str) -> list[Fault]:
    """The faults in an ``ASFT_FAULTS`` value; ValueError naming the bad entry."""
    faults = []
    for raw in filter(None, (s.strip() for s in spec.split(","))):
        item, rank = raw, None
        if ":" in item:
            item, _, r = item.rpartition(":")
            rank = int(r)
        item, _, action = item.partition("=")
        point, _, hit = item.partition("@")
        action = action or "kill"
        if point not in POINTS:
            raise ValueError(f"{ENV}: unknown fault point {point!r} in {raw!r}; valid: {', '.join(POINTS)}")
        if action not in ACTIONS:
            raise ValueError(f"{ENV}: unknown action {action!r} in {raw!r}; valid: {', '.join(ACTIONS)}")
        faults.append(Fault(point, int(hit) if hit else 1, action, rank))
    return faults


_counts: dict[str, int] = {}
_cache: tuple[str, list[Fault]] | None = None


def _active() -> list[Fault]:
    global _cache
    spec = os.environ.get(ENV, "")
    if _cache is None or _cache[0] != spec:
        _cache = (spec, parse(spec))
    return _cache[1]


def _due(point: str) -> Fault | None:
    if point not in POINTS:
        raise KeyError(f"undeclared fault point {point!r}")
    faults = _active()
    if not faults:
        return None
    _counts[point] = n = _counts.get(point, 0) + 1
    rank = int(os.environ.get("RANK", "0"))
    for f in faults:
        if f.point == point and f.hit == n and (f.rank is None or f.rank == rank):
            return f
    return None


def _record(f: Fault, point: str) -> None:
    log = os.environ.get(LOG_ENV)
    if log:
        with open(log, "a") as fh:
            fh.write(f"{point}@{f.hit}={f.action}\n")
            fh.flush()
            os.fsync(fh.fileno())


def _fire(f: Fault, point: str) -> None:
    _record(f, point)
    if f.action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if f.action == "term":
        os.kill(os.getpid(), signal.SIGTERM)
        return
    if f.action == "enospc":
        raise OSError(errno.ENOSPC, f"No space left on device (injected at {point})")
    raise RuntimeError(f"injected fault at {point}")


def hit(point: str) -> None:
    """Mark ``point``; performs a due ``kill``, ``enospc`` or ``error`` fault."""
    f = _due(point)
    if f is not None and f.action != "nan":
        _fire(f, point)


def poison(point: str, value: torch.Tensor) -> torch.Tensor:
    """``value``, or ``value + nan`` (same graph, same shape) when a ``nan`` fault is due."""
    f = _due(point)
    if f is None:
        return value
    if f.action == "nan":
        _record(f, point)
        return value + float("nan")
    _fire(f, point)
    return value


def reset() -> None:
    """Forget the hit counts (for tests that run several trainings in one process)."""
    _counts.clear()
