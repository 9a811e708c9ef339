"""Hinge loss on the log-ratio margin: SLiC-HF (Zhao et al., arXiv 2305.10425) and RSO
(Liu et al., arXiv 2309.06657).

Symbols: Delta = summed policy log-prob minus the frozen reference's, per response;
beta > 0 scales the margin (1/beta is the margin in log-ratio units).

    L = max(0, 1 - beta * (Delta_w - Delta_l))
"""

from __future__ import annotations

import torch

from asft.losses.base import Metrics, SequenceStats, register, reward_metrics


@register(
    "hinge",
    needs_reference=True,
    paper="2305.10425",
    summary="hinge on the policy/reference log-ratio margin (SLiC-HF, RSO)",
    formula="max(0, 1 - beta · (Delta_w - Delta_l))",
    related=("2309.06657",),  # RSO, the same loss on sampled pairs
    positive=("beta",),
    beta=0.1,
)
def hinge_loss(stats: SequenceStats, beta: float) -> tuple[torch.Tensor, Metrics]:
    """Per-example hinge loss [B].

    Metrics ([B], detached): ``terms/pref`` (the loss), ``rewards/*`` with reward beta * Delta.
    """
    delta_w, delta_l = stats.log_ratios()
    pref = torch.relu(1.0 - beta * (delta_w - delta_l))
    return pref, {"terms/pref": pref.detach(), **reward_metrics(beta * delta_w, beta * delta_l)}
