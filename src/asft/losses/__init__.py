"""Preference losses: pure functions of per-sequence statistics, one file each, one registry.

The single public entry point is :func:`compute`; :data:`LOSSES` lists what is registered.
"""

from __future__ import annotations

import torch

from asft.losses import asft as _asft  # noqa: F401  (registers by import)
from asft.losses.base import LOSSES, LossSpec, Metrics, SequenceStats, log1mexp

__all__ = ["LOSSES", "LossSpec", "SequenceStats", "compute", "get_spec", "log1mexp", "resolve_hparams"]


def get_spec(name: str) -> LossSpec:
    """The registered :class:`LossSpec` for ``name``; ValueError listing valid names otherwise."""
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(
            f"unknown loss {name!r}; valid losses: {', '.join(sorted(LOSSES))}"
        ) from None


def resolve_hparams(name: str, **hparams: float) -> dict[str, float]:
    """Defaults of loss ``name`` overridden by ``hparams``; unknown keys raise a ValueError."""
    spec = get_spec(name)
    unknown = sorted(set(hparams) - set(spec.defaults))
    if unknown:
        valid = ", ".join(f"{k}={v}" for k, v in spec.defaults.items()) or "none"
        raise ValueError(
            f"unknown hyperparameter(s) {', '.join(unknown)} for loss {name!r}; valid: {valid}"
        )
    return {**spec.defaults, **{k: float(v) for k, v in hparams.items()}}


def compute(name: str, stats: SequenceStats, **hparams: float) -> tuple[torch.Tensor, Metrics]:
    """Per-example loss [B] and a dict of detached per-example metrics ([B] tensors).

    Args:
        name: a key of :data:`LOSSES` (``asft``, ``sft``, ``dpo``, ...).
        stats: the batch's :class:`SequenceStats`.
        **hparams: overrides of the loss's defaults; unknown names raise a ValueError.
    """
    spec = get_spec(name)
    loss, metrics = spec.fn(stats, **resolve_hparams(name, **hparams))
    return loss, metrics
