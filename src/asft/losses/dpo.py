"""DPO: Direct Preference Optimization (Rafailov et al., arXiv 2305.18290).

Symbols: logpi = summed response log-prob under the policy, logpi_ref under the frozen
reference; Delta = logpi - logpi_ref per response; beta > 0 the KL temperature.

    L = -log sigma(beta * (Delta_w - Delta_l))

Implicit rewards beta * Delta. When the policy equals the reference, L = log 2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from asft.losses.base import Metrics, SequenceStats, register, reward_metrics


@register(
    "dpo",
    needs_reference=True,
    paper="2305.18290",
    summary="logistic loss on the policy/reference log-ratio margin",
    formula="-log σ(beta · (Delta_w - Delta_l))",
    positive=("beta",),
    beta=0.1,
)
def dpo_loss(stats: SequenceStats, beta: float) -> tuple[torch.Tensor, Metrics]:
    """Per-example DPO loss [B].

    Metrics ([B], detached): ``terms/pref`` (the loss), ``rewards/*`` with reward beta * Delta.
    """
    delta_w, delta_l = stats.log_ratios()
    pref = -F.logsigmoid(beta * (delta_w - delta_l))
    return pref, {"terms/pref": pref.detach(), **reward_metrics(beta * delta_w, beta * delta_l)}
