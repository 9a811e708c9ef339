"""ORPO: Odds Ratio Preference Optimization (Hong et al., arXiv 2403.07691).

Symbols: s = mean token log-prob of a response, P = exp(s), the log-odds
r = log(P / (1 - P)) = s - log(1 - exp(s)) (computed with the stable log1mexp);
lam >= 0 weights the odds-ratio term. No reference model.

    L = -s_w - lam * log sigma(r_w - r_l)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from asft.losses.base import Metrics, SequenceStats, log_odds, register


@register(
    "orpo",
    paper="2403.07691",
    summary="NLL of chosen + lam * logistic loss on the log odds ratio",
    formula="-s_w - lam · log σ(r_w - r_l)",
    lam=0.1,
)
def orpo_loss(stats: SequenceStats, lam: float) -> tuple[torch.Tensor, Metrics]:
    """Per-example ORPO loss [B].

    Metrics ([B], detached): ``terms/sft`` (-s_w), ``terms/pref`` (-log sigma(r_w - r_l),
    unweighted), ``log_odds/chosen`` (r_w), ``log_odds/rejected`` (r_l), ``log_odds/margin``.
    """
    s_w = stats.mean_chosen()
    r_w, r_l = log_odds(s_w), log_odds(stats.mean_rejected())
    sft = -s_w
    pref = -F.logsigmoid(r_w - r_l)
    metrics = {
        "terms/sft": sft.detach(),
        "terms/pref": pref.detach(),
        "log_odds/chosen": r_w.detach(),
        "log_odds/rejected": r_l.detach(),
        "log_odds/margin": (r_w - r_l).detach(),
    }
    return sft + lam * pref, metrics
