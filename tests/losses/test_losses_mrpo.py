"""MRPO (arXiv 2405.16388) against an independent float64 transcription of its authors' code
(thaihungle/MRPO, trainer_mref.py: two references, CTRO clipping, ARWC weights), and the
identity that makes it DPO when both references agree."""

from __future__ import annotations

import pytest
import torch

from asft.losses import SequenceStats, compute

F64 = torch.float64


def _random(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)

    def logps(scale=40.0):
        return -torch.rand(n, generator=g, dtype=F64) * scale - 1e-3

    cw, cl = logps(), logps()
    pw, pl = logps(), logps()
    ow, ol = pw + torch.randn(n, generator=g, dtype=F64) * 6, pl + torch.randn(n, generator=g, dtype=F64) * 6
    return cw, cl, pw, pl, ow.clamp(max=0), ol.clamp(max=0)


def _authors(cw, cl, pw, pl, ow, ol, beta, eta, alpha):
    """trainer_mref.py's arithmetic: reference = the further model (o), reference2 = the
    primary (p); eta < 0 means a fixed clipping rate, alpha < 0 adaptive weights."""
    a2, a1 = pw - pl, ow - ol
    alpha = torch.abs(a1) / (torch.abs(a1) + torch.abs(a2) + 1e-6) if alpha < 0 else alpha
    b1, b2 = (pw + ow) / 2, (pl + ol) / 2
    scale = torch.abs(b1) / (torch.abs(b1) + torch.abs(b2))
    eta1, eta2 = (eta * scale, eta * (1 - scale)) if eta >= 0 else (-eta, -eta)

    def virtual(o, p, e):
        o = torch.min(torch.max(o, p * (1 + e)), p * (1 - e))
        c = torch.max(o, p)
        return o + p - (c + torch.log(alpha * torch.exp(o - c) + (1 - alpha) * torch.exp(p - c)))

    vw, vl = virtual(ow, pw, eta1), virtual(ol, pl, eta2)
    return -torch.nn.functional.logsigmoid(beta * ((cw - vw) - (cl - vl)))


@pytest.mark.parametrize(("hp", "authors"), [
    ({}, {"beta": 0.1, "eta": 0.1, "alpha": -1}),
    ({"beta": 0.5, "eta": 0.3, "fixed_eta": 1}, {"beta": 0.5, "eta": -0.3, "alpha": -1}),
    ({"adaptive_alpha": 0, "alpha": 0.25, "eta": 0.05}, {"beta": 0.1, "eta": 0.05, "alpha": 0.25}),
    ({"eta": 0.0}, {"beta": 0.1, "eta": 0.0, "alpha": -1}),
])
def test_mrpo_equals_the_authors_code_with_gradients(hp, authors):
    cw, cl, pw, pl, ow, ol = _random(128, seed=11)
    ours_w, ours_l = cw.clone().requires_grad_(), cl.clone().requires_grad_()
    stats = SequenceStats(ours_w, ours_l, torch.full_like(cw, 7), torch.full_like(cl, 9), pw, pl,
                          more_ref_chosen_logps=ow[None], more_ref_rejected_logps=ol[None])
    loss, metrics = compute("mrpo", stats, **hp)
    ref_w, ref_l = cw.clone().requires_grad_(), cl.clone().requires_grad_()
    ref = _authors(ref_w, ref_l, pw, pl, ow, ol, **authors)
    torch.testing.assert_close(loss, ref, rtol=1e-10, atol=1e-12)
    for a, b in zip(torch.autograd.grad(loss.sum(), [ours_w, ours_l]), torch.autograd.grad(ref.sum(), [ref_w, ref_l])):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert ((metrics["mrpo/alpha"] >= 0) & (metrics["mrpo/alpha"] <= 1)).all()


@pytest.mark.parametrize("hp", [{}, {"fixed_eta": 1, "eta": 0.5}, {"adaptive_alpha": 0, "alpha": 0.9}])
def test_mrpo_with_agreeing_references_is_dpo(hp):
    """o = p: the clip keeps o, and 1/pi~ = alpha/p + (1 - alpha)/p gives pi~ = pi_p."""
    cw, cl, pw, pl, _, _ = _random(64, seed=12)
    n = torch.full_like(cw, 5)
    mrpo, _ = compute("mrpo", SequenceStats(cw, cl, n, n, pw, pl, more_ref_chosen_logps=pw[None],
                                            more_ref_rejected_logps=pl[None]), beta=0.3, **hp)
    dpo, _ = compute("dpo", SequenceStats(cw, cl, n, n, pw, pl), beta=0.3)
    torch.testing.assert_close(mrpo, dpo, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_mrpo_finite_at_edge_likelihoods(dtype):
    edges = torch.tensor([0.0, -1e-30, -1e-9, -2.0, -1e4])
    grid = torch.cartesian_prod(edges, edges, edges).to(dtype)
    cw, cl = grid[:, 0].clone().requires_grad_(), grid[:, 1].clone().requires_grad_()
    p, o = grid[:, 2], grid[:, 0].flip(0)
    n = torch.ones(len(grid))
    loss, metrics = compute("mrpo", SequenceStats(cw, cl, n, n, p, p.flip(0), more_ref_chosen_logps=o[None],
                                                  more_ref_rejected_logps=o.flip(0)[None]))
    assert torch.isfinite(loss).all() and all(torch.isfinite(v).all() for v in metrics.values())
    assert all(torch.isfinite(g.float()).all() for g in torch.autograd.grad(loss.sum(), [cw, cl]))


def test_mrpo_with_one_reference_is_dpo_and_two_references_at_most():
    cw, cl, pw, pl, _, _ = _random(16, seed=13)
    n = torch.full_like(cw, 3)
    alone, _ = compute("mrpo", SequenceStats(cw, cl, n, n, pw, pl))
    torch.testing.assert_close(alone, compute("dpo", SequenceStats(cw, cl, n, n, pw, pl))[0])
    one, n = torch.tensor([-1.0]), torch.tensor([1])
    with pytest.raises(ValueError, match=r"loss 'mrpo' needs a reference model .*ref_chosen_logps"):
        compute("mrpo", SequenceStats(one, one, n, n))
    with pytest.raises(ValueError, match="defined for two references"):
        compute("mrpo", SequenceStats(one, one, n, n, one, one, more_ref_chosen_logps=torch.ones(2, 1) * -1,
                                      more_ref_rejected_logps=torch.ones(2, 1) * -1))
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\]"):
        compute("mrpo", SequenceStats(one, one, n, n, one, one, more_ref_chosen_logps=one[None],
                                      more_ref_rejected_logps=one[None]), alpha=2.0)
