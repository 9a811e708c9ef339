"""AdamW and the learning-rate schedule (linear warm-up, then linear, cosine or constant)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from asft.config import Config


def lr_lambda(schedule: str, warmup: int, total: int) -> Callable[[int], float]:
    """Multiplier of the peak learning rate at 0-based step ``s``: linear warm-up over
    ``warmup`` steps, then linear or cosine decay to 0 at ``total``, or constant."""

    def f(s: int) -> float:
        if s < warmup:
            return (s + 1) / (warmup + 1)
        if schedule == "constant":
            return 1.0
        progress = (s - warmup) / max(1, total - warmup)
        if schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
        return max(0.0, 1.0 - progress)

    return f


def build_optimizer(model: torch.nn.Module, cfg: Config) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; no weight decay on biases and norm weights (1-D).

    The fused kernel is used where torch has one for the parameters' device: on a CPU it
    steps SmolLM2-135M about 6x faster than the default (0.06 s against 0.34 s per 80M
    parameters, one thread), with the same update rule.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [g for g in (
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.optim.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ) if g["params"]]
    kwargs = {"lr": cfg.optim.lr, "betas": tuple(cfg.optim.betas), "eps": cfg.optim.eps}
    try:
        return torch.optim.AdamW(groups, fused=True, **kwargs)
    except (RuntimeError, ValueError):
        return torch.optim.AdamW(groups, **kwargs)
