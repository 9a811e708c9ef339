"""TPO: Triple Preference Optimization (Saeidi et al., arXiv 2405.16681).

Symbols: logpi = summed response log-prob under the policy (no reference model); y_g the
gold response (the data's ``gold`` column, or the chosen response where a pair has none);
beta > 0; alpha >= 0 the weight of the gold response's likelihood.

    L = -log sigma(beta * (logpi_w - logpi_l)) + alpha * NLL(y_g)

NLL(y_g) is the token-mean negative log-likelihood of the batch's gold responses, as the
authors' trainer computes it (one cross-entropy over all gold tokens of the micro-batch):
pair i carries -logpi(y_g,i) * B / sum_j |y_g,j|, so the mean over the B pairs is
-sum_i logpi(y_g,i) / sum_j |y_g,j|. The three responses share one prompt computation
(``asft.data.collate``: the gold response is a third segment after the rejected one).
Defaults beta = 0.1, alpha = 0.5 are the authors' first published training script's (their
later one uses beta = 0.01, alpha = 1 at 8B scale).

TPO-L, the paper's length-controlled variant (``tpo_l``), puts mean token log-probs s and a
target margin gamma in the pairwise term, as the authors' trainer (sahsaeedi/TPO, loss_type
"tpo-l", gamma 0.5 by default) does:

    L = -log sigma(beta * (s_w - s_l) - gamma) + alpha * NLL(y_g)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from asft.losses.base import Metrics, SequenceStats, register, require, reward_metrics


@register(
    "tpo",
    paper="2405.16681",
    summary="logistic loss on the summed log-prob margin + alpha * NLL of the gold response",
    formula="-log σ(beta · (logpi_w - logpi_l)) + alpha · NLL(y_gold)",
    positive=("beta",),
    extra="gold",
    beta=0.1,
    alpha=0.5,
)
def tpo_loss(stats: SequenceStats, beta: float, alpha: float) -> tuple[torch.Tensor, Metrics]:
    """Per-example TPO loss [B].

    Metrics ([B], detached): ``terms/pref`` (the logistic term), ``terms/gold`` (the pair's
    share of the batch's gold NLL, unweighted), ``logps/gold`` (mean token log-prob of the gold
    response), ``rewards/*`` with reward beta * logpi.
    """
    reward_w, reward_l = beta * stats.chosen_logps, beta * stats.rejected_logps
    return _with_gold(stats, -F.logsigmoid(reward_w - reward_l), alpha, reward_w, reward_l)


@register(
    "tpo_l",
    paper="2405.16681",
    summary="TPO's length-controlled variant: mean-log-prob margin minus gamma + alpha * gold NLL",
    formula="-log σ(beta · (s_w - s_l) - gamma) + alpha · NLL(y_gold)",
    positive=("beta",),
    extra="gold",
    beta=0.1,
    gamma=0.5,
    alpha=0.5,
)
def tpo_l_loss(stats: SequenceStats, beta: float, gamma: float, alpha: float) -> tuple[torch.Tensor, Metrics]:
    """Per-example TPO-L loss [B]; metrics as :func:`tpo_loss`, with reward beta * s."""
    reward_w, reward_l = beta * stats.mean_chosen(), beta * stats.mean_rejected()
    return _with_gold(stats, -F.logsigmoid(reward_w - reward_l - gamma), alpha, reward_w, reward_l)


def _with_gold(stats: SequenceStats, pref: torch.Tensor, alpha: float, reward_w: torch.Tensor,
               reward_l: torch.Tensor) -> tuple[torch.Tensor, Metrics]:
    """``pref`` [B] plus alpha times each pair's share of the batch's gold-token NLL."""
    extra_tokens = require(stats.extra_tokens, "extra_tokens")
    has_gold = extra_tokens >= 1
    gold = torch.where(has_gold, require(stats.extra_logps, "extra_logps"), stats.chosen_logps)
    gold_tokens = torch.where(has_gold, extra_tokens, stats.chosen_tokens).to(gold.dtype)
    nll = -gold * gold.numel() / gold_tokens.sum().clamp_min(1)
    metrics = {
        "terms/pref": pref.detach(),
        "terms/gold": nll.detach(),
        "logps/gold": (gold / gold_tokens.clamp_min(1)).detach(),
    }
    return pref + alpha * nll, {**metrics, **reward_metrics(reward_w, reward_l)}
