"""ASFT: Aligned Supervised Fine-Tuning through Absolute Likelihood (arXiv 2409.10571).

Symbols (per pair): s_w, s_l are the mean token log-probs of the chosen and rejected
responses; P = exp(s) in (0, 1]; the log-odds r(y) = s - log(1 - exp(s)).

    L = sft_weight * (-s_w) + lam * L_align
    L_align = -log sigma(beta * r_w) - log sigma(-beta * r_l)

With beta = 1 and sigma(r) = P, L_align = -log P_w - log(1 - P_l): one binary cross-entropy
per response on its *absolute* likelihood, no reference model. beta != 1 is the temperature
variant of arXiv 2502.01237; sft_weight = 0 gives its alignment-only second stage.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from asft.losses.base import Metrics, SequenceStats, log1mexp, register


def log_odds(s: torch.Tensor) -> torch.Tensor:
    """r = s - log(1 - exp(s)) for mean log-probs s <= 0, in float32 or wider. Shape kept."""
    s = s.float() if s.dtype in (torch.float16, torch.bfloat16) else s
    return s - log1mexp(s)


@register(
    "asft",
    paper="2409.10571",
    summary="SFT on chosen + absolute-likelihood BCE on each response; no reference model",
    lam=1.0,
    beta=1.0,
    sft_weight=1.0,
)
def asft_loss(
    stats: SequenceStats, lam: float, beta: float, sft_weight: float
) -> tuple[torch.Tensor, Metrics]:
    s_w = stats.mean_chosen()
    s_l = stats.mean_rejected()
    r_w, r_l = log_odds(s_w), log_odds(s_l)
    sft = -s_w.to(r_w.dtype)
    align = -F.logsigmoid(beta * r_w) - F.logsigmoid(-beta * r_l)
    loss = sft_weight * sft + lam * align
    metrics = {
        "terms/sft": sft.detach(),
        "terms/align": align.detach(),
        "log_odds/chosen": r_w.detach(),
        "log_odds/rejected": r_l.detach(),
    }
    return loss, metrics
