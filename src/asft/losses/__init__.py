"""Preference losses: pure functions of per-sequence statistics, one file each, one registry.

The single public entry point is :func:`compute`; :data:`LOSSES` lists what is registered
(``asft losses`` prints it). :func:`get_spec` and :func:`resolve_hparams` are the one place
where a loss name or hyperparameter is checked: config validation, method specs and
:func:`compute` all go through them. Formulas, defaults and metric keys: docs/losses.md.
"""

from __future__ import annotations

import difflib
import math
from numbers import Real

import torch

# Each loss registers itself on import; this order is the order `asft losses` shows.
# isort: off
from asft.losses import asft as _asft  # noqa: F401
from asft.losses import sft as _sft  # noqa: F401
from asft.losses import dpo as _dpo  # noqa: F401
from asft.losses import ipo as _ipo  # noqa: F401
from asft.losses import hinge as _hinge  # noqa: F401
from asft.losses import rpo as _rpo  # noqa: F401
from asft.losses import orpo as _orpo  # noqa: F401
from asft.losses import simpo as _simpo  # noqa: F401
from asft.losses import cpo as _cpo  # noqa: F401
from asft.losses import kto as _kto  # noqa: F401
from asft.losses import tpo as _tpo  # noqa: F401
from asft.losses import mrpo as _mrpo  # noqa: F401

# isort: on
from asft.losses.base import (
    LOSSES,
    LossSpec,
    Metrics,
    SequenceStats,
    log1mexp,
    prepare,
    require_reference,
)

__all__ = [
    "LOSSES",
    "LossArgumentError",
    "LossSpec",
    "SequenceStats",
    "compute",
    "get_spec",
    "log1mexp",
    "resolve_hparams",
]


def _suggest(word: object, choices: list[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or ''. The same words as
    :func:`asft.config.schema.suggest`, written out here because a loss imports nothing of
    asft (the import rules in pyproject.toml)."""
    close = difflib.get_close_matches(str(word), choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class LossArgumentError(ValueError):
    """An unknown loss name, or a bad hyperparameter of a registered loss.

    Attributes:
        hparam: the offending hyperparameter's name, or None when the loss name itself is
            unknown (lets a config error point at ``loss.name`` or ``loss.hparams.<key>``).
    """

    def __init__(self, message: str, hparam: str | None = None):
        super().__init__(message)
        self.hparam = hparam


def get_spec(name: str) -> LossSpec:
    """The registered :class:`LossSpec` for ``name``.

    Raises:
        LossArgumentError: unknown ``name``, with a "did you mean" and the valid names.
    """
    try:
        return LOSSES[name]
    except (KeyError, TypeError):
        valid = ", ".join(sorted(LOSSES))
        raise LossArgumentError(
            f"unknown loss {name!r}{_suggest(name, list(LOSSES))}; valid losses: {valid}"
        ) from None


def resolve_hparams(name: str, /, **hparams: float) -> dict[str, float]:
    """Defaults of loss ``name`` overridden by ``hparams``, as floats.

    ``name`` is positional-only so that any key of ``hparams`` (even ``name``) is judged as a
    hyperparameter.

    Raises:
        LossArgumentError: an unknown loss; an unknown hyperparameter (with a "did you mean"
            and the valid ones with their defaults); or a value that is not a finite real
            number in range (> 0 for the loss's ``positive`` ones, such as beta and tau;
            >= 0 for the others).
    """
    spec = get_spec(name)
    valid = ", ".join(f"{k}={v:g}" for k, v in spec.defaults.items()) or "none"
    unknown = [k for k in hparams if k not in spec.defaults]
    if unknown:
        named = ", ".join(f"{k}{_suggest(k, list(spec.defaults))}" for k in unknown)
        raise LossArgumentError(
            f"unknown hyperparameter(s) {named} for loss {name!r}; valid: {valid}", unknown[0]
        )
    resolved = dict(spec.defaults)
    for key, value in hparams.items():
        if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
            raise LossArgumentError(
                f"loss {name!r}: {key} must be a finite number, got {value!r}", key
            )
        value = float(value)
        if key in spec.positive and value <= 0:
            raise LossArgumentError(f"loss {name!r}: {key} must be > 0, got {value:g}", key)
        if value < 0:
            raise LossArgumentError(f"loss {name!r}: {key} must be >= 0, got {value:g}", key)
        resolved[key] = value
    return resolved


def compute(name: str, stats: SequenceStats, **hparams: float) -> tuple[torch.Tensor, Metrics]:
    """Per-example loss [B] and a dict of detached per-example metrics ([B] tensors).

    The loss is computed in float32, or float64 when the statistics are float64, whatever
    the input dtype (bf16 statistics are upcast; gradients flow back in their own dtype).
    Reference log-probs are treated as constants (detached).

    A pair with a response of zero tokens cannot be scored (its mean log-prob is 0/0): its
    loss and metrics are 0, no gradient reaches it, and ``pairs/scorable`` (1.0 / 0.0) says
    so. Average with ``loss.sum() / metrics["pairs/scorable"].sum().clamp_min(1)`` and report
    the unscorable count, rather than ``loss.mean()``.

    Metrics present for every loss: ``pairs/scorable``, ``logps/chosen``, ``logps/rejected``
    (s_w and s_l: mean token log-probs, nats/token, the keys of metrics.jsonl),
    ``logps_sum/chosen``, ``logps_sum/rejected`` (summed log-probs, nats), and
    one ``terms/<name>`` per additive term, unweighted. Losses with implicit rewards add
    ``rewards/chosen``, ``rewards/rejected``, ``rewards/margin`` and ``rewards/accuracy``.

    Args:
        name: a key of :data:`LOSSES` (``asft losses`` lists them).
        stats: the batch's :class:`SequenceStats`, every tensor of shape [B].
        **hparams: overrides of the loss's defaults; unknown names raise a ValueError.

    Raises:
        ValueError: unknown loss or hyperparameter, a value out of range, tensors of
            mismatched shapes, or a reference loss without reference log-probs.
    """
    spec = get_spec(name)
    resolved = resolve_hparams(name, **hparams)
    if spec.needs_reference:
        require_reference(name, stats)
    if spec.extra is not None and stats.extra_logps is None:
        raise ValueError(f"loss {name!r} reads a third response ({spec.extra}) but "
                         "SequenceStats.extra_logps is None")
    stats, scorable = prepare(stats, spec.unpaired)
    loss, metrics = spec.fn(stats, **resolved)
    metrics = {
        **metrics,
        "logps/chosen": stats.mean_chosen().detach(),
        "logps/rejected": stats.mean_rejected().detach(),
        "logps_sum/chosen": stats.chosen_logps.detach(),
        "logps_sum/rejected": stats.rejected_logps.detach(),
    }
    zero = loss.new_zeros(())
    loss = torch.where(scorable, loss, zero)
    metrics = {k: torch.where(scorable, v.to(loss.dtype), zero) for k, v in metrics.items()}
    metrics["pairs/scorable"] = scorable.to(loss.dtype)
    return loss, metrics
