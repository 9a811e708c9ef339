"""SFT on the chosen response: the mean-token negative log-likelihood -s(y_w).

Symbols: s_w = (1/|y_w|) * sum_t log pi(y_w,t | x, y_w,<t), the chosen response's mean token
log-prob. The rejected response is ignored; no reference model. This is the per-sequence
mean (each pair weighs the same), not the token-level mean over the batch.
"""

from __future__ import annotations

import torch

from asft.losses.base import Metrics, SequenceStats, register


@register("sft", summary="mean-token NLL of the chosen response", formula="-s_w")
def sft_loss(stats: SequenceStats) -> tuple[torch.Tensor, Metrics]:
    """Per-example loss -s_w [B]. Metrics: ``terms/sft`` (the same value, detached)."""
    sft = -stats.mean_chosen()
    return sft, {"terms/sft": sft.detach()}
