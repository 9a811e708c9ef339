"""ASFT: Aligned Supervised Fine-Tuning through Absolute Likelihood (arXiv 2409.10571).

Symbols (per pair): s_w, s_l are the mean token log-probs of the chosen and rejected
responses; P = exp(s) in (0, 1]; the log-odds r(y) = s - log(1 - exp(s)).

    L = sft_weight * (-s_w) + lam * L_align
    L_align = -log sigma(beta * r_w) - log sigma(-beta * r_l)

With beta = 1 and sigma(r) = P, L_align = -log P_w - log(1 - P_l): one binary cross-entropy
per response on its *absolute* likelihood, no reference model. Closed form (beta = 1,
sft_weight = 1): L = -(1 + lam) * s_w - lam * log(1 - exp(s_l)), with gradients
dL/ds_w = -(1 + lam) and dL/ds_l = lam * P_l / (1 - P_l). beta != 1 is the temperature
variant of arXiv 2502.01237; sft_weight = 0 gives its alignment-only second stage.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from asft.losses.base import Metrics, SequenceStats, log_odds, register

__all__ = ["asft_loss", "log_odds"]


@register(
    "asft",
    paper="2409.10571",
    summary="NLL of chosen + one absolute-likelihood BCE per response",
    formula="sft_weight · (-s_w) + lam · [-log σ(beta · r_w) - log σ(-beta · r_l)]",
    related=("2502.01237",),  # beta (temperature) and sft_weight = 0 (two-stage)
    positive=("beta",),
    lam=1.0,
    beta=1.0,
    sft_weight=1.0,
)
def asft_loss(
    stats: SequenceStats, lam: float, beta: float, sft_weight: float
) -> tuple[torch.Tensor, Metrics]:
    """Per-example ASFT loss [B].

    Metrics ([B], detached): ``terms/sft`` (-s_w), ``terms/align`` (L_align, unweighted),
    ``log_odds/chosen`` (r_w), ``log_odds/rejected`` (r_l).
    """
    s_w = stats.mean_chosen()
    s_l = stats.mean_rejected()
    r_w, r_l = log_odds(s_w), log_odds(s_l)
    sft = -s_w
    align = -F.logsigmoid(beta * r_w) - F.logsigmoid(-beta * r_l)
    loss = sft_weight * sft + lam * align
    metrics = {
        "terms/sft": sft.detach(),
        "terms/align": align.detach(),
        "log_odds/chosen": r_w.detach(),
        "log_odds/rejected": r_l.detach(),
    }
    return loss, metrics
