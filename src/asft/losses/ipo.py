"""IPO: Identity Preference Optimization (Azar et al., arXiv 2310.12036).

Symbols: s, s_ref = mean token log-probs of a response under the policy and the frozen
reference (summed log-prob / token count, the same count for both); Delta' = s - s_ref;
tau > 0 the regularisation strength.

    L = (Delta'_w - Delta'_l - 1 / (2 * tau))^2

A squared loss that regresses the log-ratio margin onto 1 / (2 tau) rather than pushing it
to infinity. Length-normalized as in TRL's ``ipo`` loss.
"""

from __future__ import annotations

import torch

from asft.losses.base import Metrics, SequenceStats, register, reward_metrics


@register(
    "ipo",
    needs_reference=True,
    paper="2310.12036",
    summary="squared loss pulling the mean-log-prob ratio margin to 1/(2 tau)",
    formula="(Delta'_w - Delta'_l - 1/(2 tau))²",
    positive=("tau",),
    tau=0.1,
)
def ipo_loss(stats: SequenceStats, tau: float) -> tuple[torch.Tensor, Metrics]:
    """Per-example IPO loss [B].

    Metrics ([B], detached): ``terms/pref`` (the loss), ``rewards/*`` with reward Delta'.
    """
    delta_w = stats.mean_chosen() - stats.mean_ref_chosen()
    delta_l = stats.mean_rejected() - stats.mean_ref_rejected()
    pref = (delta_w - delta_l - 1.0 / (2.0 * tau)) ** 2
    return pref, {"terms/pref": pref.detach(), **reward_metrics(delta_w, delta_l)}
