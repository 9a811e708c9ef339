"""SimPO: Simple Preference Optimization with a reference-free reward (Meng et al.,
arXiv 2405.14734).

Symbols: s = mean token log-prob of a response (the length-normalized reward is beta * s);
beta > 0 the reward scale; gamma >= 0 the target reward margin. No reference model.

    L = -log sigma(beta * (s_w - s_l) - gamma)

gamma is subtracted as is, not as gamma / beta (some code bases use a "gamma_beta_ratio").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from asft.losses.base import Metrics, SequenceStats, register, reward_metrics


@register(
    "simpo",
    paper="2405.14734",
    summary="logistic loss on the mean-log-prob margin minus gamma",
    formula="-log σ(beta · (s_w - s_l) - gamma)",
    positive=("beta",),
    beta=2.0,
    gamma=0.5,
)
def simpo_loss(stats: SequenceStats, beta: float, gamma: float) -> tuple[torch.Tensor, Metrics]:
    """Per-example SimPO loss [B].

    Metrics ([B], detached): ``terms/pref`` (the loss), ``rewards/*`` with reward beta * s.
    """
    reward_w, reward_l = beta * stats.mean_chosen(), beta * stats.mean_rejected()
    pref = -F.logsigmoid(reward_w - reward_l - gamma)
    return pref, {"terms/pref": pref.detach(), **reward_metrics(reward_w, reward_l)}
