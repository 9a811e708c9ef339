"""RPO: DPO plus an SFT term on the chosen response (Liu et al., arXiv 2405.16436).

Symbols: as in DPO (Delta = summed policy log-prob minus the frozen reference's), and
s_w the chosen response's mean token log-prob.

    L = -log sigma(beta * (Delta_w - Delta_l)) + alpha * (-s_w)

The SFT term keeps the chosen likelihood from falling, which plain DPO allows.
"""

from __future__ import annotations

import torch

from asft.losses.base import Metrics, SequenceStats, register
from asft.losses.dpo import dpo_loss


@register(
    "rpo",
    needs_reference=True,
    paper="2405.16436",
    summary="DPO + alpha * mean-token NLL of the chosen response",
    formula="-log σ(beta · (Delta_w - Delta_l)) + alpha · (-s_w)",
    positive=("beta",),
    beta=0.1,
    alpha=1.0,
)
def rpo_loss(stats: SequenceStats, beta: float, alpha: float) -> tuple[torch.Tensor, Metrics]:
    """Per-example RPO loss [B].

    Metrics ([B], detached): ``terms/pref`` (the DPO term), ``terms/sft`` (-s_w, unweighted),
    ``rewards/*`` with reward beta * Delta.
    """
    pref, metrics = dpo_loss(stats, beta)
    sft = -stats.mean_chosen()
    return pref + alpha * sft, {**metrics, "terms/sft": sft.detach()}
