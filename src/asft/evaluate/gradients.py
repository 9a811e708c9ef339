"""How each loss pushes the chosen and rejected likelihoods: autograd of the registered loss
with respect to the two sequence scores, across a range of likelihoods.

The ASFT paper (arXiv 2409.10571, section 3) argues from these gradients: ASFT's
dL/ds_w = -(1 + lam) is a constant push up on the chosen response and dL/ds_l =
lam * P_l / (1 - P_l) a push down on the rejected one that depends only on its own
likelihood, whereas DPO's two gradients are equal and opposite and depend on the margin.

Set-up: responses of one token, so the summed and the mean log-prob coincide (s = log P)
and every loss is differentiated with respect to the same score. One likelihood sweeps the
grid while the other stays at ``fixed``; reference models (DPO and kin) give both
responses the likelihood ``fixed``, so the policy starts equal to the reference at the point
where the swept likelihood equals ``fixed``. Values are computed in float64.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from asft.evaluate.methods import MethodSpec

CSV_FIELDS = ("method", "varied", "p_chosen", "p_rejected", "s_chosen", "s_rejected",
              "grad_chosen", "grad_rejected")


@dataclass(frozen=True)
class GradientRow:
    """One point: the scores and dL/ds for both responses (one row of the CSV).

    ``varied`` says which likelihood sweeps the grid (``chosen`` or ``rejected``).
    """

    method: str
    varied: str
    p_chosen: float
    p_rejected: float
    s_chosen: float
    s_rejected: float
    grad_chosen: float
    grad_rejected: float


def score_gradients(method: MethodSpec, s_chosen, s_rejected, s_reference: float):
    """dL/ds_w and dL/ds_l, each [N], at N points of scores ``s_chosen``, ``s_rejected`` [N].

    Scores are log-likelihoods of one-token responses; ``s_reference`` is the reference
    model's log-likelihood of both responses (used only by losses that need a reference).
    TPO's gold response is the chosen one; KTO's reference point z0 is 0 (its mismatched
    completions scored at the reference's likelihood); MRPO has its single reference (DPO).
    """
    import torch

    from asft.losses import SequenceStats, compute, get_spec

    s_w = torch.as_tensor(s_chosen, dtype=torch.float64).clone().requires_grad_(True)
    s_l = torch.as_tensor(s_rejected, dtype=torch.float64).clone().requires_grad_(True)
    ones = torch.ones_like(s_w)
    spec = get_spec(method.name)
    ref = torch.full_like(s_w, s_reference) if spec.needs_reference else None
    third = {}
    if spec.extra == "gold":  # no gold response: TPO takes the chosen one
        third = {"extra_logps": torch.zeros_like(s_w), "extra_tokens": torch.zeros_like(ones)}
    elif spec.extra == "mismatched":  # KTO's KL completions at the reference: z0 = 0
        third = {"extra_logps": ref.clone(), "extra_tokens": ones, "ref_extra_logps": ref.clone()}
    stats = SequenceStats(
        chosen_logps=s_w, rejected_logps=s_l, chosen_tokens=ones, rejected_tokens=ones,
        ref_chosen_logps=ref, ref_rejected_logps=None if ref is None else ref.clone(), **third,
    )
    loss, _ = compute(method.name, stats, **method.hparams)
    # Examples are independent, so the gradient of the sum is each example's own gradient.
    g_w, g_l = torch.autograd.grad(loss.sum(), (s_w, s_l))
    return g_w, g_l


def likelihood_grid(points: int = 99, low: float = 0.01, high: float = 0.99) -> list[float]:
    """``points`` likelihoods evenly spaced in [low, high] (0 < low < high < 1)."""
    if not 0 < low < high < 1 or points < 2:
        raise ValueError(f"need 0 < low < high < 1 and points >= 2, got {low}, {high}, {points}")
    return [low + (high - low) * i / (points - 1) for i in range(points)]


def gradient_table(
    methods: Sequence[MethodSpec], grid: Sequence[float], fixed: float = 0.1
) -> list[GradientRow]:
    """For each method, two sweeps over ``grid``: the chosen likelihood varies with the
    rejected one at ``fixed``, then the reverse. Returns one row per point."""
    if not 0 < fixed < 1:
        raise ValueError(f"fixed likelihood must be in (0, 1), got {fixed}")
    rows = []
    log_fixed = math.log(fixed)
    for method in methods:
        for varied in ("chosen", "rejected"):
            sweep = [math.log(p) for p in grid]
            other = [log_fixed] * len(grid)
            s_w, s_l = (sweep, other) if varied == "chosen" else (other, sweep)
            g_w, g_l = score_gradients(method, s_w, s_l, log_fixed)
            rows += [
                GradientRow(method.label, varied, math.exp(a), math.exp(b), a, b, float(gw), float(gl))
                for a, b, gw, gl in zip(s_w, s_l, g_w.tolist(), g_l.tolist())
            ]
    return rows


def write_csv(rows: Sequence[GradientRow], path: str | Path) -> None:
    """Write the rows with header :data:`CSV_FIELDS`."""
    with Path(path).open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(asdict(r) for r in rows)
