"""MRPO: Multi-Reference Preference Optimization (Le et al., arXiv 2405.16388).

DPO against a virtual reference pi~ that combines the primary reference pi_p (the usual one:
the policy's starting point, or ``reference.model``) with a further one pi_o
(``reference.models``), written here as the authors' code computes it (their trainer defines
two references). Per response y, with summed log-probs p = logpi_p(y), o = logpi_o(y):

    CTRO (clipped trust region): o' = min(max(o, (1 + eta_y) p), (1 - eta_y) p)
        eta_w = eta * c, eta_l = eta * (1 - c), c = |b_w| / (|b_w| + |b_l|),
        b = (p + o) / 2 the references' mean for the chosen (w) / rejected (l) response;
        with fixed_eta = 1, eta_w = eta_l = eta.
    ARWC (adaptive weights): alpha = |a_o| / (|a_o| + |a_p| + 1e-6), a = logpi(y_w) - logpi(y_l)
        under each reference (unclipped); with adaptive_alpha = 0, the ``alpha`` given.
    log pi~(y) = o' + p - log(alpha * exp(o') + (1 - alpha) * exp(p)),
        i.e. 1 / pi~ = alpha / pi_p + (1 - alpha) / pi_o' (a weighted harmonic mean)

    L = -log sigma(beta * ((logpi_w - log pi~_w) - (logpi_l - log pi~_l)))

When the two references agree (o = p), pi~ = pi_p and MRPO is DPO; so it is with a single
reference (no ``more_ref_*``: ``reference.models`` empty). All reference quantities are
constants. c is 0/0 when both means are 0 (every reference token certain): taken as 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from asft.losses.base import Metrics, SequenceStats, register, require, reward_metrics


def _virtual(p: torch.Tensor, o: torch.Tensor, eta: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """log pi~ of one response [B] from the primary (p) and the other (o) reference log-probs."""
    o = torch.minimum(torch.maximum(o, p * (1 + eta)), p * (1 - eta))
    log_a, log_1ma = torch.log(alpha), torch.log1p(-alpha)  # -inf at alpha = 0 is fine below
    return o + p - torch.logaddexp(log_a + o, log_1ma + p)


@register(
    "mrpo",
    needs_reference=True,
    multi_reference=True,
    paper="2405.16388",
    summary="DPO against a clipped, adaptively weighted mix of two reference models",
    formula="-log σ(beta · ((logpi_w - log pi~_w) - (logpi_l - log pi~_l)))",
    positive=("beta",),
    beta=0.1,
    eta=0.1,
    fixed_eta=0.0,
    alpha=0.5,
    adaptive_alpha=1.0,
)
def mrpo_loss(stats: SequenceStats, beta: float, eta: float, fixed_eta: float, alpha: float,
              adaptive_alpha: float) -> tuple[torch.Tensor, Metrics]:
    """Per-example MRPO loss [B].

    Metrics ([B], detached): ``terms/pref`` (the loss), ``mrpo/alpha`` (the weight),
    ``rewards/*`` with reward beta * (logpi - log pi~).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"loss 'mrpo': alpha must be in [0, 1], got {alpha:g}")
    p_w, p_l = require(stats.ref_chosen_logps, "ref_chosen_logps"), require(stats.ref_rejected_logps, "ref_rejected_logps")
    if stats.more_ref_chosen_logps is None:  # one reference: pi~ = pi_p, MRPO is DPO
        more_w, more_l = p_w[None], p_l[None]
    else:
        more_w = stats.more_ref_chosen_logps
        more_l = require(stats.more_ref_rejected_logps, "more_ref_rejected_logps")
    if more_w.shape[0] != 1:
        raise ValueError(f"loss 'mrpo' is defined for two references (the primary one and one "
                         f"more), got {1 + more_w.shape[0]}")
    o_w, o_l = more_w[0], more_l[0]
    if adaptive_alpha:
        a_o, a_p = (o_w - o_l).abs(), (p_w - p_l).abs()
        weight = a_o / (a_o + a_p + 1e-6)
    else:
        weight = torch.full_like(p_w, alpha)
    if fixed_eta:
        eta_w = eta_l = torch.full_like(p_w, eta)
    else:
        b_w, b_l = ((p_w + o_w) / 2).abs(), ((p_l + o_l) / 2).abs()
        c = b_w / (b_w + b_l).clamp_min(torch.finfo(b_w.dtype).tiny)
        eta_w, eta_l = eta * c, eta * (1 - c)
    virtual_w, virtual_l = _virtual(p_w, o_w, eta_w, weight), _virtual(p_l, o_l, eta_l, weight)
    delta_w, delta_l = stats.chosen_logps - virtual_w, stats.rejected_logps - virtual_l
    pref = -F.logsigmoid(beta * (delta_w - delta_l))
    metrics = {"terms/pref": pref.detach(), "mrpo/alpha": weight.detach()}
    return pref, {**metrics, **reward_metrics(beta * delta_w, beta * delta_l)}
