"""KTO: Kahneman-Tversky Optimization (Ethayarajh et al., arXiv 2402.01306).

Symbols: Delta = logpi - logpi_ref per response (summed log-probs, as DPO); beta > 0;
w_d, w_u the desirable / undesirable weights. The reference point z0 is the batch's estimate
of KL(pi || pi_ref), from mismatched completions (each example's prompt with another
example's response, ``SequenceStats.extra_*``), averaged over the processes, clamped at 0
and treated as a constant, as the paper and TRL do:

    z0 = max(0, mean_batch(logpi(y'|x) - logpi_ref(y'|x)))
    L_d = 1 - sigma(beta * (Delta_w - z0))      for a desirable response (chosen)
    L_u = 1 - sigma(beta * (z0 - Delta_l))      for an undesirable response (rejected)

An example is a pair (chosen desirable, rejected undesirable) or, from unpaired data, one
response with one side empty. Its loss is the weighted terms it has divided by how many it
has, L = (w_d * L_d + w_u * L_u) / n_present, so that the mean over the pairs of a batch is
TRL's mean over its unpaired examples (a pair counts as two of them).
"""

from __future__ import annotations

import torch

from asft.losses.base import Metrics, SequenceStats, register, require, reward_metrics


@register(
    "kto",
    needs_reference=True,
    paper="2402.01306",
    summary="prospect-theory value of each response's log-ratio against a KL reference point",
    formula="[w_d · (1 - σ(beta · (Delta_w - z0))) + w_u · (1 - σ(beta · (z0 - Delta_l)))] / n",
    positive=("beta",),
    extra="mismatched",
    unpaired=True,
    beta=0.1,
    desirable_weight=1.0,
    undesirable_weight=1.0,
)
def kto_loss(
    stats: SequenceStats, beta: float, desirable_weight: float, undesirable_weight: float
) -> tuple[torch.Tensor, Metrics]:
    """Per-example KTO loss [B].

    Metrics ([B], detached): ``terms/desirable`` and ``terms/undesirable`` (each term over
    n_present, unweighted; 0 where the example lacks that side), ``kl/z0`` (the reference
    point, the same for every example of the batch), ``rewards/*`` with reward beta * Delta.
    """
    delta_w, delta_l = stats.log_ratios()
    delta_kl = require(stats.extra_logps, "extra_logps") - require(stats.ref_extra_logps, "ref_extra_logps")
    has_kl = (require(stats.extra_tokens, "extra_tokens") >= 1).to(delta_kl.dtype)
    local = (delta_kl * has_kl).sum() / has_kl.sum().clamp_min(1)
    z0 = stats.global_mean(local.detach()).clamp_min(0)
    has_w = (stats.chosen_tokens >= 1).to(delta_w.dtype)
    has_l = (stats.rejected_tokens >= 1).to(delta_l.dtype)
    n = (has_w + has_l).clamp_min(1)
    desirable = has_w * (1 - torch.sigmoid(beta * (delta_w - z0))) / n
    undesirable = has_l * (1 - torch.sigmoid(beta * (z0 - delta_l))) / n
    loss = desirable_weight * desirable + undesirable_weight * undesirable
    metrics = {
        "terms/desirable": desirable.detach(),
        "terms/undesirable": undesirable.detach(),
        "kl/z0": z0.expand_as(loss).detach(),
    }
    return loss, {**metrics, **reward_metrics(beta * delta_w, beta * delta_l)}
