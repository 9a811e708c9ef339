"""The types every loss shares: per-sequence statistics in, per-example loss out.

A loss is a pure function ``fn(stats, **hparams) -> (loss [B], metrics)`` registered once with
:func:`register`. The registry feeds the CLI choices, config validation, docs and the
parametrized tests, so a name is spelled in exactly one place.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

Metrics = dict[str, torch.Tensor]
LossFn = Callable[..., tuple[torch.Tensor, Metrics]]


@dataclass
class SequenceStats:
    """Per-sequence statistics of a batch of B preference pairs (all tensors of shape [B]).

    Attributes:
        chosen_logps: sum over the chosen response tokens of log p(y_t | x, y_<t).
        rejected_logps: the same sum for the rejected response.
        chosen_tokens: number of chosen response tokens (>= 1 for a scorable pair).
        rejected_tokens: number of rejected response tokens.
        ref_chosen_logps: the reference model's summed chosen log-prob, or None.
        ref_rejected_logps: the reference model's summed rejected log-prob, or None.
    """

    chosen_logps: torch.Tensor
    rejected_logps: torch.Tensor
    chosen_tokens: torch.Tensor
    rejected_tokens: torch.Tensor
    ref_chosen_logps: torch.Tensor | None = None
    ref_rejected_logps: torch.Tensor | None = None

    def mean_chosen(self) -> torch.Tensor:
        """s(y_w): mean token log-prob of the chosen response, shape [B]."""
        return self.chosen_logps / self.chosen_tokens.to(self.chosen_logps.dtype).clamp_min(1)

    def mean_rejected(self) -> torch.Tensor:
        """s(y_l): mean token log-prob of the rejected response, shape [B]."""
        return self.rejected_logps / self.rejected_tokens.to(self.rejected_logps.dtype).clamp_min(1)


@dataclass(frozen=True)
class LossSpec:
    """A registered loss.

    Attributes:
        name: registry key, as written in configs and on the command line.
        fn: the pure loss function.
        defaults: every hyperparameter the loss accepts, with its default value.
        needs_reference: True when the loss reads ``ref_*_logps`` (a reference model is loaded).
        paper: arXiv id of the method, for docs and reports.
        summary: one line for ``asft train --help`` and the README table.
    """

    name: str
    fn: LossFn
    defaults: dict[str, float] = field(default_factory=dict)
    needs_reference: bool = False
    paper: str = ""
    summary: str = ""


LOSSES: dict[str, LossSpec] = {}


def register(
    name: str, *, needs_reference: bool = False, paper: str = "", summary: str = "", **defaults: float
) -> Callable[[LossFn], LossFn]:
    """Decorator that adds ``fn`` to :data:`LOSSES` under ``name`` with its hyperparameter defaults."""

    def wrap(fn: LossFn) -> LossFn:
        if name in LOSSES:
            raise ValueError(f"loss {name!r} registered twice")
        LOSSES[name] = LossSpec(name, fn, dict(defaults), needs_reference, paper, summary)
        return fn

    return wrap


_LN2 = math.log(2.0)
# The largest float32 below 0 is about -1.4e-45 (denormal) and collapses under many CPU
# kernels; -1e-7 keeps 1 - exp(s) representable in float32 while changing s negligibly.
_S_MAX = -1e-7


def log1mexp(s: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(s)) for s <= 0, stable everywhere (Maechler 2012), computed in >= float32.

    s is clamped to at most -1e-7, so s = 0 gives a large finite value (about -16.1) rather
    than -inf, and its gradient stays finite. Shape is preserved.
    """
    if s.dtype in (torch.float16, torch.bfloat16):
        s = s.float()
    s = s.clamp(max=_S_MAX)
    # Branch on the clamped value; torch.where evaluates both sides, so feed each side an
    # argument inside its own safe range to keep NaN out of the unused branch's gradient.
    near = s > -_LN2
    s_near = torch.where(near, s, torch.full_like(s, -_LN2))
    s_far = torch.where(near, torch.full_like(s, -_LN2), s)
    return torch.where(near, torch.log(-torch.expm1(s_near)), torch.log1p(-torch.exp(s_far)))


def require_reference(name: str, stats: SequenceStats) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the reference log-probs or raise a ValueError naming the loss that needs them."""
    if stats.ref_chosen_logps is None or stats.ref_rejected_logps is None:
        raise ValueError(
            f"loss {name!r} needs reference log-probs (ref_chosen_logps, ref_rejected_logps)"
        )
    return stats.ref_chosen_logps, stats.ref_rejected_logps
