"""CPO: Contrastive Preference Optimization (Xu et al., arXiv 2401.08417).

Symbols: logpi = summed response log-prob under the policy (no reference model: CPO
replaces it by a uniform one); s_w the chosen response's mean token log-prob; beta > 0.

    L = -log sigma(beta * (logpi_w - logpi_l)) + alpha * NLL(y_w),   NLL(y_w) = -s_w

NLL(y_w) is the mean-token negative log-likelihood of the chosen response (as in the paper
and TRL), while the preference term uses summed log-probs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from asft.losses.base import Metrics, SequenceStats, register, reward_metrics


@register(
    "cpo",
    paper="2401.08417",
    summary="logistic loss on the summed log-prob margin + alpha * NLL of chosen",
    formula="-log σ(beta · (logpi_w - logpi_l)) + alpha · (-s_w)",
    positive=("beta",),
    beta=0.1,
    alpha=1.0,
)
def cpo_loss(stats: SequenceStats, beta: float, alpha: float) -> tuple[torch.Tensor, Metrics]:
    """Per-example CPO loss [B].

    Metrics ([B], detached): ``terms/pref`` (the logistic term), ``terms/sft`` (-s_w,
    unweighted), ``rewards/*`` with reward beta * logpi.
    """
    reward_w, reward_l = beta * stats.chosen_logps, beta * stats.rejected_logps
    pref = -F.logsigmoid(reward_w - reward_l)
    sft = -stats.mean_chosen()
    metrics = {"terms/pref": pref.detach(), "terms/sft": sft.detach()}
    return pref + alpha * sft, {**metrics, **reward_metrics(reward_w, reward_l)}
