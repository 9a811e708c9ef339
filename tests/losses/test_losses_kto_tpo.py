"""KTO and TPO, the losses with a third response, against independent float64 references.

KTO (arXiv 2402.01306) is written here in TRL's form: a pair is two unpaired examples (chosen
desirable, rejected undesirable), each with its own term against the reference point
z0 = max(0, mean(logpi(y'|x) - logpi_ref(y'|x))) over the batch's mismatched completions,
and the batch loss is the mean over those examples. TPO (arXiv 2405.16681) is written in the
authors' trainer's form: the mean logistic term on summed log-probs plus alpha times one
cross-entropy over all the gold tokens of the batch.
"""

from __future__ import annotations

import pytest
import torch

from asft.losses import SequenceStats, compute, get_spec

F64 = torch.float64


def _random(n: int, seed: int, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    counts = [torch.randint(1, 80, (n,), generator=g) for _ in range(3)]
    means = [-(torch.rand(n, generator=g, dtype=F64) * 3 + 1e-4) for _ in range(3)]
    logps = [(m * c).to(dtype) for m, c in zip(means, counts)]
    refs = [(lp.double() + torch.randn(n, generator=g, dtype=F64) * 3).clamp(max=0).to(dtype) for lp in logps]
    return logps, counts, refs


def _ref_kto(cw, cl, rw, rl, kl, rkl, beta, wd, wu, has_w, has_l):
    """TRL's KTO on the unpaired examples: mean over the desirable and undesirable ones."""
    z0 = torch.clamp((kl - rkl).mean(), min=0).detach()
    chosen = wd * (1 - torch.sigmoid(beta * ((cw - rw) - z0)))
    rejected = wu * (1 - torch.sigmoid(beta * (z0 - (cl - rl))))
    return torch.cat([chosen[has_w], rejected[has_l]]).mean()


@pytest.mark.parametrize("hp", [{}, {"beta": 0.5, "desirable_weight": 1.33, "undesirable_weight": 0.7}])
def test_kto_paired_equals_trl_form_with_gradients(hp):
    (cw, cl, kl), (nw, nl, nk), (rw, rl, rkl) = _random(64, seed=1)
    rkl = rkl - 5.0  # a positive KL estimate, so z0 is not clamped away
    full = {"beta": 0.1, "desirable_weight": 1.0, "undesirable_weight": 1.0, **hp}
    leaves = [x.clone().requires_grad_() for x in (cw, cl)]
    loss, metrics = compute("kto", SequenceStats(*leaves, nw, nl, rw, rl, kl, nk, rkl), **hp)
    ours = loss.mean()
    ref_leaves = [x.clone().requires_grad_() for x in (cw, cl)]
    every = torch.ones(64, dtype=torch.bool)
    ref = _ref_kto(*ref_leaves, rw, rl, kl, rkl, full["beta"], full["desirable_weight"],
                   full["undesirable_weight"], every, every)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    for a, b in zip(torch.autograd.grad(ours, leaves), torch.autograd.grad(ref, ref_leaves)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert metrics["kl/z0"][0].item() == pytest.approx((kl - rkl).mean().item())
    torch.testing.assert_close(loss.detach(), full["desirable_weight"] * metrics["terms/desirable"]
                               + full["undesirable_weight"] * metrics["terms/undesirable"])


def test_kto_unpaired_examples_equal_trl_form():
    """Each example has one side (the other 0 tokens); the mean over examples is TRL's."""
    (cw, cl, kl), (nw, nl, nk), (rw, rl, rkl) = _random(40, seed=2)
    desirable = torch.arange(40) % 3 != 0
    nw, nl = torch.where(desirable, nw, 0), torch.where(desirable, 0, nl)
    cw, rw = torch.where(desirable, cw, 0.0), torch.where(desirable, rw, 0.0)
    cl, rl = torch.where(desirable, 0.0, cl), torch.where(desirable, 0.0, rl)
    loss, metrics = compute("kto", SequenceStats(cw, cl, nw, nl, rw, rl, kl, nk, rkl - 2.0))
    assert metrics["pairs/scorable"].tolist() == [1.0] * 40
    ref = _ref_kto(cw, cl, rw, rl, kl, rkl - 2.0, 0.1, 1.0, 1.0, desirable, ~desirable)
    torch.testing.assert_close(loss.mean(), ref, rtol=1e-12, atol=1e-12)
    assert (metrics["terms/undesirable"][desirable] == 0).all()
    assert (metrics["terms/desirable"][~desirable] == 0).all()


def test_kto_reference_point_is_clamped_detached_and_averaged_over_processes():
    one = torch.tensor([-4.0], dtype=F64)
    kl = torch.tensor([-3.0], dtype=F64, requires_grad=True)
    n = torch.tensor([2])
    # policy = reference: every log-ratio 0, z0 = 0, each term 1 - sigma(0) = 1/2
    loss, m = compute("kto", SequenceStats(one, one, n, n, one, one, kl, n, kl.detach()))
    assert loss.item() == pytest.approx(0.5) and m["kl/z0"].item() == 0.0
    # a negative KL estimate is clamped to 0, and no gradient reaches the KL completions
    loss, m = compute("kto", SequenceStats(one, one, n, n, one, one, kl, n, kl.detach() + 1.0))
    assert m["kl/z0"].item() == 0.0
    assert not loss.requires_grad  # z0 is a constant: nothing reaches the KL completions
    # the local estimate (2.0) is averaged with another process's (4.0, simulated)
    stats = SequenceStats(one, one, n, n, one, one, kl.detach(), n, kl.detach() - 2.0,
                          mean_over_processes=lambda t: (t + 4.0) / 2)
    loss, m = compute("kto", stats, beta=1.0)
    assert m["kl/z0"].item() == pytest.approx(3.0)
    expected = ((1 - torch.sigmoid(torch.tensor(-3.0))) + (1 - torch.sigmoid(torch.tensor(3.0)))) / 2
    assert loss.item() == pytest.approx(expected.item())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name", ["kto", "tpo", "tpo_l"])
def test_finite_at_edge_likelihoods(name, dtype):
    edges = [0.0, -1e-30, -1e-9, -2.0, -1e4]
    grid = [(a, b) for a in edges for b in edges]
    cw = torch.tensor([a for a, _ in grid], dtype=dtype, requires_grad=True)
    cl = torch.tensor([b for _, b in grid], dtype=dtype, requires_grad=True)
    n = torch.tensor([1, 7, 500] * len(grid))[:len(grid)]
    refs = cl.detach().flip(0)
    loss, metrics = compute(name, SequenceStats(cw, cl, n, n.flip(0), refs, refs.flip(0), cl.detach(), n, refs))
    g = torch.autograd.grad(loss.sum(), [cw, cl])
    assert torch.isfinite(loss).all() and all(torch.isfinite(x.float()).all() for x in g)
    assert all(torch.isfinite(v).all() for v in metrics.values())


def _ref_tpo(cw, cl, gold, gold_n, beta, alpha):
    """The authors' trainer: mean logistic term + alpha * cross-entropy over all gold tokens."""
    pref = -torch.nn.functional.logsigmoid(beta * (cw - cl)).mean()
    return pref + alpha * (-gold.sum() / gold_n.sum())


@pytest.mark.parametrize("hp", [{}, {"beta": 0.7, "alpha": 0.0}, {"beta": 0.05, "alpha": 2.0}])
def test_tpo_equals_authors_form_with_gradients(hp):
    (cw, cl, gold), (nw, nl, ng), _ = _random(48, seed=3)
    full = {"beta": 0.1, "alpha": 0.5, **hp}
    leaves = [x.clone().requires_grad_() for x in (cw, cl, gold)]
    loss, metrics = compute("tpo", SequenceStats(leaves[0], leaves[1], nw, nl, extra_logps=leaves[2],
                                                 extra_tokens=ng), **hp)
    ref_leaves = [x.clone().requires_grad_() for x in (cw, cl, gold)]
    ref = _ref_tpo(*ref_leaves, ng.double(), full["beta"], full["alpha"])
    torch.testing.assert_close(loss.mean(), ref, rtol=1e-12, atol=1e-12)
    for a, b in zip(torch.autograd.grad(loss.mean(), leaves, allow_unused=True),
                    torch.autograd.grad(ref, ref_leaves, allow_unused=True)):
        if a is None or b is None:
            assert full["alpha"] == 0.0
            continue
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(metrics["logps/gold"], gold / ng)
    torch.testing.assert_close(loss.detach(), metrics["terms/pref"] + full["alpha"] * metrics["terms/gold"])


def test_tpo_without_gold_uses_the_chosen_response():
    """A pair with no gold response (0 tokens) takes its chosen one as gold."""
    (cw, cl, gold), (nw, nl, ng), _ = _random(6, seed=4)
    ng = torch.tensor([3, 0, 5, 0, 2, 0])
    loss, metrics = compute("tpo", SequenceStats(cw, cl, nw, nl, extra_logps=gold, extra_tokens=ng))
    use = ng > 0
    g, n = torch.where(use, gold, cw), torch.where(use, ng, nw).double()
    torch.testing.assert_close(loss.mean(), _ref_tpo(cw, cl, g, n, 0.1, 0.5), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(metrics["logps/gold"], g / n)


def test_third_response_and_reference_are_required():
    one, n = torch.tensor([-1.0]), torch.tensor([1])
    with pytest.raises(ValueError, match=r"loss 'tpo' reads a third response \(gold\)"):
        compute("tpo", SequenceStats(one, one, n, n))
    with pytest.raises(ValueError, match=r"loss .kto. needs a reference model .*ref_extra_logps"):
        compute("kto", SequenceStats(one, one, n, n, one, one, one, n))
    assert get_spec("kto").extra == "mismatched" and get_spec("kto").unpaired
    assert get_spec("tpo").extra == "gold" and not get_spec("tpo").unpaired


@pytest.mark.parametrize("hp", [{}, {"beta": 2.0, "gamma": 0.0, "alpha": 0.05}])
def test_tpo_l_equals_authors_form_with_gradients(hp):
    """TPO-L (the authors' loss_type "tpo-l"): logits = s_w - s_l - gamma / beta on mean
    log-probs, -log sigma(beta * logits), plus alpha times the batch's gold cross-entropy."""
    (cw, cl, gold), (nw, nl, ng), _ = _random(40, seed=5)
    full = {"beta": 0.1, "gamma": 0.5, "alpha": 0.5, **hp}
    leaves = [x.clone().requires_grad_() for x in (cw, cl, gold)]
    loss, _ = compute("tpo_l", SequenceStats(leaves[0], leaves[1], nw, nl, extra_logps=leaves[2],
                                             extra_tokens=ng), **hp)
    ref_leaves = [x.clone().requires_grad_() for x in (cw, cl, gold)]
    logits = ref_leaves[0] / nw - ref_leaves[1] / nl - full["gamma"] / full["beta"]
    ref = (-torch.nn.functional.logsigmoid(full["beta"] * logits).mean()
           + full["alpha"] * (-ref_leaves[2].sum() / ng.double().sum()))
    torch.testing.assert_close(loss.mean(), ref, rtol=1e-12, atol=1e-12)
    for a, b in zip(torch.autograd.grad(loss.mean(), leaves), torch.autograd.grad(ref, ref_leaves)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
