"""Exact numbers for every loss in asft.losses.

Three kinds of check:
- hand-worked numbers: small inputs, the arithmetic written out in each test's docstring;
- an independent float64 reference written here from the formulas of the method doc
  (../shared/docs/asft-method.md, "Baseline losses"), on random and extreme inputs, losses
  and autograd gradients agreeing to 1e-5;
- identities (ASFT closed form and gradients, DPO = log 2 at the reference), numerical edges
  (log-probs 0, tiny negatives, -1e4, bf16, empty responses) and the registry's contract.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, localcontext

import pytest
import torch

from asft.cli import main as cli_main
from asft.losses import LOSSES, SequenceStats, compute, get_spec, log1mexp, resolve_hparams
from asft.losses.asft import log_odds

F64 = torch.float64

# name -> (needs_reference, {hyperparameter: default}): the contract of issue 2, written out.
REGISTRY = {
    "asft": (False, {"lam": 1.0, "beta": 1.0, "sft_weight": 1.0}),
    "sft": (False, {}),
    "dpo": (True, {"beta": 0.1}),
    "ipo": (True, {"tau": 0.1}),
    "hinge": (True, {"beta": 0.1}),
    "rpo": (True, {"beta": 0.1, "alpha": 1.0}),
    "orpo": (False, {"lam": 0.1}),
    "simpo": (False, {"beta": 2.0, "gamma": 0.5}),
    "cpo": (False, {"beta": 0.1, "alpha": 1.0}),
}
# Non-default hyperparameters, so the reference check does not only see the defaults.
OTHER_HPARAMS = {
    "asft": {"lam": 0.3, "beta": 0.2, "sft_weight": 0.0},
    "sft": {},
    "dpo": {"beta": 0.5},
    "ipo": {"tau": 0.7},
    "hinge": {"beta": 0.05},
    "rpo": {"beta": 0.3, "alpha": 0.25},
    "orpo": {"lam": 2.0},
    "simpo": {"beta": 0.7, "gamma": 1.5},
    "cpo": {"beta": 0.4, "alpha": 0.0},
}
# loss = sum over terms of weight * terms/<term>; a weight is a number or a hyperparameter name.
TERM_WEIGHTS = {
    "asft": {"sft": "sft_weight", "align": "lam"},
    "sft": {"sft": 1.0},
    "dpo": {"pref": 1.0},
    "ipo": {"pref": 1.0},
    "hinge": {"pref": 1.0},
    "rpo": {"pref": 1.0, "sft": "alpha"},
    "orpo": {"sft": 1.0, "pref": "lam"},
    "simpo": {"pref": 1.0},
    "cpo": {"pref": 1.0, "sft": "alpha"},
}
WITH_REWARDS = {"dpo", "ipo", "hinge", "rpo", "simpo", "cpo"}
ALL = list(REGISTRY)


def t(*values: float, dtype: torch.dtype = F64) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype)


def stats_of(cw, cl, nw, nl, rw=None, rl=None, dtype=F64, grad=False) -> SequenceStats:
    """SequenceStats from lists; log-prob tensors are leaves with grad when ``grad``."""

    def leaf(v):
        return None if v is None else torch.tensor(v, dtype=dtype, requires_grad=grad)

    return SequenceStats(
        leaf(cw), leaf(cl), torch.tensor(nw), torch.tensor(nl), leaf(rw), leaf(rl)
    )


# ---------------------------------------------------------------------------------------------
# The independent reference: plain float64 from the method doc, sharing no code with asft.

S_MAX = -1e-7  # documented in docs/losses.md: above it log(1 - exp(s)) follows its tangent


def ref_neg_log_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """-log sigma(x) = log(exp(0) + exp(-x)), by logaddexp so that nothing overflows."""
    return torch.logaddexp(torch.zeros_like(x), -x)


def ref_log1m_exp(s: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(s)) in float64 (exact enough below S_MAX), tangent continuation above."""
    at = math.log(1 - math.exp(S_MAX))
    slope = -math.exp(S_MAX) / (1 - math.exp(S_MAX))
    exact = torch.log(1 - torch.exp(torch.minimum(s, torch.tensor(S_MAX, dtype=s.dtype))))
    return torch.where(s > S_MAX, at + slope * (s - S_MAX), exact)


def ref_loss(name, cw, cl, nw, nl, rw, rl, **hp) -> torch.Tensor:
    """Per-pair loss of the method doc; cw/cl summed log-probs, nw/nl counts, rw/rl reference."""
    s_w, s_l = cw / nw, cl / nl

    def r(s):
        return s - ref_log1m_exp(s)

    if name == "asft":
        align = ref_neg_log_sigmoid(hp["beta"] * r(s_w)) + ref_neg_log_sigmoid(-hp["beta"] * r(s_l))
        return hp["sft_weight"] * -s_w + hp["lam"] * align
    if name == "sft":
        return -s_w
    if name == "dpo":
        return ref_neg_log_sigmoid(hp["beta"] * ((cw - rw) - (cl - rl)))
    if name == "ipo":
        h = (s_w - rw / nw) - (s_l - rl / nl)
        return (h - 1 / (2 * hp["tau"])) ** 2
    if name == "hinge":
        return torch.clamp(1 - hp["beta"] * ((cw - rw) - (cl - rl)), min=0)
    if name == "rpo":
        return ref_neg_log_sigmoid(hp["beta"] * ((cw - rw) - (cl - rl))) + hp["alpha"] * -s_w
    if name == "orpo":
        return -s_w + hp["lam"] * ref_neg_log_sigmoid(r(s_w) - r(s_l))
    if name == "simpo":
        return ref_neg_log_sigmoid(hp["beta"] * (s_w - s_l) - hp["gamma"])
    if name == "cpo":
        return ref_neg_log_sigmoid(hp["beta"] * (cw - cl)) + hp["alpha"] * -s_w
    raise AssertionError(f"no reference for {name}")


def random_inputs(seed: int, n: int = 256):
    """Random float64 (cw, cl, nw, nl, rw, rl) of shape [n], extremes included.

    Mean log-probs are drawn log-uniformly in [-80, -1e-9] and mixed with the edge values
    0, -1e-9, -80; counts span 1..500; some summed log-probs are -1e4; some references
    equal the policy. Values are kept off the exact kinks (S_MAX, the hinge at 0).
    """
    g = torch.Generator().manual_seed(seed)

    def counts():
        c = torch.randint(1, 501, (n,), generator=g)
        c[:4] = torch.tensor([1, 1, 500, 500])
        return c

    def means():
        s = -torch.exp(torch.empty(n, dtype=F64).uniform_(math.log(1e-9), math.log(80), generator=g))
        edges = torch.tensor([0.0, -1e-9, -80.0, -1e-12, -5e-8, -0.69, -0.7], dtype=F64)
        pick = torch.randint(0, n, (len(edges) * 3,), generator=g)
        s[pick] = edges.repeat(3)
        return s

    nw, nl = counts(), counts()
    cw, cl = means() * nw, means() * nl
    huge = torch.randint(0, n, (n // 8,), generator=g)
    cw[huge] = -1e4
    cl[huge.flip(0)] = -1e4
    rw = (cw + 5 * torch.randn(n, dtype=F64, generator=g)).clamp(max=0)
    rl = (cl + 5 * torch.randn(n, dtype=F64, generator=g)).clamp(max=0)
    same = torch.randint(0, n, (n // 8,), generator=g)
    rw[same], rl[same] = cw[same], cl[same]
    rw[:2] = -1e4
    return cw, cl, nw, nl, rw, rl


def loss_and_grads(name, cw, cl, nw, nl, rw, rl, hp, dtype=F64, ours=True):
    """(loss [B], d sum(loss)/d chosen_logps, d sum(loss)/d rejected_logps) in float64."""
    leaf_w = cw.detach().to(dtype).requires_grad_()
    leaf_l = cl.detach().to(dtype).requires_grad_()
    if ours:
        stats = SequenceStats(leaf_w, leaf_l, nw, nl, rw.to(dtype), rl.to(dtype))
        loss, _ = compute(name, stats, **hp)
    else:
        full = resolve_hparams(name, **hp)
        n_w, n_l = nw.to(F64), nl.to(F64)
        loss = ref_loss(name, leaf_w.to(F64), leaf_l.to(F64), n_w, n_l, rw.to(F64), rl.to(F64), **full)
    gw, gl = grads(loss, leaf_w, leaf_l)
    return loss.detach().to(F64), gw.to(F64), gl.to(F64)


def grads(loss: torch.Tensor, *leaves: torch.Tensor) -> list[torch.Tensor]:
    """d sum(loss) / d leaf for each leaf; zeros where the loss does not read it (SFT)."""
    found = torch.autograd.grad(loss.sum(), leaves, allow_unused=True)
    return [torch.zeros_like(x) if g is None else g for x, g in zip(leaves, found)]


# ---------------------------------------------------------------------------------------------
# Hand-worked numbers.


def test_asft_by_hand():
    """ASFT, lam = beta = sft_weight = 1.

    chosen: 2 tokens, summed log-prob 2 ln(1/2) -> s_w = ln(1/2), P_w = 1/2.
    rejected: 1 token, log-prob ln(1/4)         -> s_l = ln(1/4), P_l = 1/4.
    L_SFT   = -s_w = ln 2
    L_align = -log P_w - log(1 - P_l) = ln 2 - ln(3/4) = ln 2 + ln(4/3)
    L       = 2 ln 2 + ln(4/3) = 1.386294 + 0.287682 = 1.673976
    log-odds: r_w = ln(1/2 / 1/2) = 0, r_l = ln(1/4 / 3/4) = -ln 3.
    """
    loss, m = compute("asft", stats_of([2 * math.log(0.5)], [math.log(0.25)], [2], [1]))
    assert loss.item() == pytest.approx(1.673976, abs=1e-6)
    assert m["terms/sft"].item() == pytest.approx(math.log(2), abs=1e-12)
    assert m["terms/align"].item() == pytest.approx(math.log(2) + math.log(4 / 3), abs=1e-12)
    assert m["log_odds/chosen"].item() == pytest.approx(0.0, abs=1e-12)
    assert m["log_odds/rejected"].item() == pytest.approx(-math.log(3), abs=1e-12)


def test_asft_temperature_and_two_stage_by_hand():
    """ASFT with beta = 0.5, lam = 2, sft_weight = 0 (alignment-only stage), same pair.

    r_w = 0, r_l = -ln 3 (see above). beta * r_l = -ln(sqrt 3).
    -log sigma(0) = ln 2;  -log sigma(ln sqrt 3) = ln(1 + 1/sqrt 3) = ln(1.577350) = 0.455746
    L = 0 * ln 2 + 2 * (0.693147 + 0.455746) = 2.297787
    """
    stats = stats_of([2 * math.log(0.5)], [math.log(0.25)], [2], [1])
    loss, _ = compute("asft", stats, beta=0.5, lam=2.0, sft_weight=0.0)
    assert loss.item() == pytest.approx(2.297787, abs=1e-6)


def test_sft_by_hand():
    """SFT: chosen summed log-prob -10 over 5 tokens -> -s_w = 2; the rejected is ignored."""
    loss, _ = compute("sft", stats_of([-10.0, -3.0], [-1.0, -99.0], [5, 3], [1, 9]))
    assert loss.tolist() == pytest.approx([2.0, 1.0], abs=1e-12)


def test_dpo_by_hand():
    """DPO, beta = 0.1.

    logpi_w = -10, ref_w = -12 -> Delta_w = 2;  logpi_l = -15, ref_l = -11 -> Delta_l = -4.
    z = 0.1 * (2 - (-4)) = 0.6;  L = -log sigma(0.6) = ln(1 + e^-0.6) = ln(1.548812) = 0.437488
    rewards: chosen 0.2, rejected -0.4, margin 0.6, accuracy 1.
    """
    loss, m = compute("dpo", stats_of([-10.0], [-15.0], [5], [7], [-12.0], [-11.0]))
    assert loss.item() == pytest.approx(0.437488, abs=1e-6)
    assert m["rewards/chosen"].item() == pytest.approx(0.2, abs=1e-12)
    assert m["rewards/rejected"].item() == pytest.approx(-0.4, abs=1e-12)
    assert m["rewards/margin"].item() == pytest.approx(0.6, abs=1e-12)
    assert m["rewards/accuracy"].item() == 1.0


def test_ipo_by_hand():
    """IPO, tau = 0.1, on mean log-probs.

    chosen 4 tokens: policy -8 -> s_w = -2, reference -12 -> -3: Delta'_w = 1.
    rejected 5 tokens: policy -15 -> s_l = -3, reference -10 -> -2: Delta'_l = -1.
    L = (1 - (-1) - 1/(2 * 0.1))^2 = (2 - 5)^2 = 9.
    (Summed log-probs would give (4 - (-5) - 5)^2 = 16: the test tells them apart.)
    """
    loss, m = compute("ipo", stats_of([-8.0], [-15.0], [4], [5], [-12.0], [-10.0]))
    assert loss.item() == pytest.approx(9.0, abs=1e-12)
    assert m["rewards/margin"].item() == pytest.approx(2.0, abs=1e-12)


def test_hinge_by_hand():
    """Hinge, beta = 0.1.

    pair 1: Delta_w - Delta_l = 2 - (-4) = 6   -> max(0, 1 - 0.6) = 0.4
    pair 2: Delta_w - Delta_l = 10 - (-10) = 20 -> max(0, 1 - 2.0) = 0
    """
    stats = stats_of([-10.0, -10.0], [-15.0, -30.0], [5, 5], [7, 7], [-12.0, -20.0], [-11.0, -20.0])
    loss, _ = compute("hinge", stats)
    assert loss.tolist() == pytest.approx([0.4, 0.0], abs=1e-12)


def test_rpo_by_hand():
    """RPO, beta = 0.1, alpha = 1: the DPO pair above (0.437488) plus -s_w = 10 / 5 = 2.

    L = 0.437488 + 2 = 2.437488; with alpha = 0.5: 0.437488 + 1 = 1.437488.
    """
    stats = stats_of([-10.0], [-15.0], [5], [7], [-12.0], [-11.0])
    assert compute("rpo", stats)[0].item() == pytest.approx(2.437488, abs=1e-6)
    assert compute("rpo", stats, alpha=0.5)[0].item() == pytest.approx(1.437488, abs=1e-6)


def test_orpo_by_hand():
    """ORPO, lam = 0.1.

    s_w = ln(1/2): P_w = 1/2, r_w = 0;  s_l = ln(1/4): P_l = 1/4, r_l = ln(1/3) = -ln 3.
    odds-ratio term: -log sigma(r_w - r_l) = -log sigma(ln 3) = ln(1 + 1/3) = ln(4/3) = 0.287682
    L = -s_w + 0.1 * 0.287682 = 0.693147 + 0.028768 = 0.721915
    """
    loss, m = compute("orpo", stats_of([3 * math.log(0.5)], [2 * math.log(0.25)], [3], [2]))
    assert loss.item() == pytest.approx(0.721915, abs=1e-6)
    assert m["log_odds/margin"].item() == pytest.approx(math.log(3), abs=1e-12)


def test_simpo_by_hand():
    """SimPO, beta = 2, gamma = 0.5.

    chosen -4 over 4 tokens -> s_w = -1;  rejected -9 over 6 tokens -> s_l = -1.5.
    2 * (-1 - (-1.5)) - 0.5 = 0.5;  L = ln(1 + e^-0.5) = ln(1.606531) = 0.474077
    """
    loss, m = compute("simpo", stats_of([-4.0], [-9.0], [4], [6]))
    assert loss.item() == pytest.approx(0.474077, abs=1e-6)
    assert m["rewards/margin"].item() == pytest.approx(1.0, abs=1e-12)


def test_cpo_by_hand():
    """CPO, beta = 0.1, alpha = 1.

    logpi_w = -10 (5 tokens), logpi_l = -20: 0.1 * (-10 + 20) = 1; ln(1 + e^-1) = 0.313262.
    NLL(y_w) = -s_w = 10 / 5 = 2.   L = 0.313262 + 2 = 2.313262.
    """
    loss, _ = compute("cpo", stats_of([-10.0], [-20.0], [5], [8]))
    assert loss.item() == pytest.approx(2.313262, abs=1e-6)


# ---------------------------------------------------------------------------------------------
# Against the independent float64 reference.


@pytest.mark.parametrize("which", ["defaults", "other"])
@pytest.mark.parametrize("name", ALL)
def test_matches_float64_reference_with_gradients(name, which):
    hp = {} if which == "defaults" else OTHER_HPARAMS[name]
    inputs = random_inputs(seed=len(name) * 7 + len(which))
    ours = loss_and_grads(name, *inputs, hp)
    ref = loss_and_grads(name, *inputs, hp, ours=False)
    for what, a, b in zip(("loss", "d/d chosen_logps", "d/d rejected_logps"), ours, ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=lambda m, w=what: f"{name} {w}: {m}")


@pytest.mark.parametrize("name", ALL)
def test_float32_inputs_match_reference(name):
    """Float32 statistics at ordinary magnitudes (s in [-20, -1e-4], counts 1..500)."""
    g = torch.Generator().manual_seed(3)
    n = 128
    nw, nl = torch.randint(1, 501, (n,), generator=g), torch.randint(1, 501, (n,), generator=g)
    cw = torch.empty(n, dtype=F64).uniform_(-20, -1e-4, generator=g) * nw
    cl = torch.empty(n, dtype=F64).uniform_(-20, -1e-4, generator=g) * nl
    rw, rl = cw + torch.randn(n, dtype=F64, generator=g), cl + torch.randn(n, dtype=F64, generator=g)
    # Round the inputs to float32 first so that both sides see the same numbers.
    inputs = [x.float().double() if x.is_floating_point() else x for x in (cw, cl, nw, nl, rw, rl)]
    ours = loss_and_grads(name, *inputs, {}, dtype=torch.float32)
    ref = loss_and_grads(name, *inputs, {}, ours=False)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.edge
def test_bf16_inputs_are_upcast(name):
    """bf16 statistics: computed in float32 (error ~1e-6, not bf16's ~1e-2), grads in bf16."""
    cw, cl, nw, nl, rw, rl = random_inputs(seed=11, n=64)
    as_bf16 = [x.to(torch.bfloat16) for x in (cw, cl, rw, rl)]
    leaf_w, leaf_l = (x.clone().requires_grad_() for x in as_bf16[:2])
    loss, metrics = compute(name, SequenceStats(leaf_w, leaf_l, nw, nl, *as_bf16[2:]))
    assert loss.dtype == torch.float32
    assert all(v.dtype == torch.float32 for v in metrics.values())
    gw, gl = grads(loss, leaf_w, leaf_l)
    assert gw.dtype == torch.bfloat16
    assert torch.isfinite(gw.float()).all() and torch.isfinite(gl.float()).all()
    exact = [x.double() for x in as_bf16]
    expected = ref_loss(name, exact[0], exact[1], nw.double(), nl.double(), exact[2], exact[3], **get_spec(name).defaults)
    torch.testing.assert_close(loss.double(), expected, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Identities from the method doc.


@pytest.mark.parametrize("lam", [0.0, 0.5, 1.0, 3.0])
def test_asft_closed_form(lam):
    """beta = 1: L = -(1 + lam) s_w - lam log(1 - exp(s_l)), here with naive float64 math."""
    g = torch.Generator().manual_seed(int(lam * 10))
    n_w, n_l = torch.randint(1, 300, (64,), generator=g), torch.randint(1, 300, (64,), generator=g)
    s_w = -torch.exp(torch.empty(64, dtype=F64).uniform_(-12, 4, generator=g))
    s_l = -torch.exp(torch.empty(64, dtype=F64).uniform_(-12, 4, generator=g))
    loss, _ = compute("asft", SequenceStats(s_w * n_w, s_l * n_l, n_w, n_l), lam=lam)
    closed = [-(1 + lam) * w - lam * math.log(1 - math.exp(sl)) for w, sl in zip(s_w.tolist(), s_l.tolist())]
    torch.testing.assert_close(loss, torch.tensor(closed, dtype=F64), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("lam", [0.5, 1.0, 2.0])
def test_asft_analytic_gradients(lam):
    """dL/ds_w = -(1 + lam) and dL/ds_l = lam P_l / (1 - P_l); chain rule: d s / d sum = 1 / n."""
    s_w = t(-0.01, -0.5, -2.5, -7.0, -30.0)
    s_l = t(-1e-5, -0.3, -2.5, -9.0, -60.0)
    n_w, n_l = torch.tensor([1, 4, 17, 100, 500]), torch.tensor([3, 1, 50, 8, 200])
    stats = SequenceStats((s_w * n_w).requires_grad_(), (s_l * n_l).requires_grad_(), n_w, n_l)
    loss, _ = compute("asft", stats, lam=lam)
    loss.sum().backward()
    p_l = torch.exp(s_l)
    torch.testing.assert_close(stats.chosen_logps.grad * n_w, torch.full_like(s_w, -(1 + lam)))
    torch.testing.assert_close(stats.rejected_logps.grad * n_l, lam * p_l / (1 - p_l))


@pytest.mark.parametrize("beta", [0.01, 0.1, 1.0, 5.0])
def test_dpo_is_log2_at_the_reference(beta):
    cw, cl = t(-1.0, -250.0, -1e4, 0.0), t(-3.0, -7.0, -1e4, -1e-9)
    stats = SequenceStats(cw, cl, torch.tensor([1, 2, 3, 4]), torch.tensor([5, 6, 7, 8]), cw.clone(), cl.clone())
    loss, m = compute("dpo", stats, beta=beta)
    torch.testing.assert_close(loss, torch.full_like(cw, math.log(2)))
    assert (m["rewards/margin"] == 0).all()


def test_reference_logps_are_constants():
    """No gradient reaches the (frozen) reference log-probs, even if they carry one."""
    ref_w, ref_l = t(-12.0).requires_grad_(), t(-11.0).requires_grad_()
    loss, _ = compute("dpo", SequenceStats(t(-10.0), t(-15.0), torch.tensor([5]), torch.tensor([7]), ref_w, ref_l))
    assert not loss.requires_grad


# ---------------------------------------------------------------------------------------------
# Numerical edges.


@pytest.mark.parametrize("dtype", [torch.float32, F64, torch.bfloat16])
@pytest.mark.parametrize("s", [0.0, -1e-9, -80.0])
@pytest.mark.edge
def test_log1mexp_edges_finite(s, dtype):
    x = torch.tensor(s, dtype=dtype, requires_grad=True)
    y = log1mexp(x)
    y.backward()
    assert y.dtype in (torch.float32, F64)
    assert math.isfinite(y.item()) and math.isfinite(x.grad.float().item())
    assert y.item() < 0


def test_log1mexp_values_and_tangent():
    """Exact where it can be; at and above S_MAX the tangent: continuous, C1, monotone."""
    grid = t(-80.0, -30.0, -2.0, -math.log(2) - 1e-9, -math.log(2) + 1e-9, -0.1, -1e-3, -1e-6)
    with localcontext() as ctx:  # 50-digit decimals: an exact enough reference at any s
        ctx.prec = 50
        exact = [float((1 - Decimal(v).exp()).ln()) for v in grid.tolist()]
    expected = torch.tensor(exact, dtype=F64)
    torch.testing.assert_close(log1mexp(grid), expected, rtol=1e-12, atol=1e-300)
    torch.testing.assert_close(log1mexp(grid.float()), expected.float(), rtol=2e-6, atol=1e-30)
    assert log1mexp(t(0.0)).item() == pytest.approx(math.log(1e-7) - 1.0, abs=1e-6)
    # continuity and the push on a near-certain rejected response: gradient ~ -1e7, not 0
    x = t(-1e-7 - 1e-15, -1e-7, -1e-7 + 1e-15, -1e-9, 0.0, 1e-8).requires_grad_()
    y = log1mexp(x)
    y.sum().backward()
    assert (y.diff() < 0).all()
    torch.testing.assert_close(x.grad, torch.full_like(x, -1e7), rtol=1e-6, atol=0)
    dense = torch.linspace(-5, 0, 100001, dtype=torch.float32)
    assert (log1mexp(dense).diff() <= 0).all()


# log-probs of 0, a float32 denormal, tiny negatives, ordinary ones, -1e4.
EDGE_LOGPS = [0.0, -1e-40, -1e-30, -1e-12, -1e-9, -1e-3, -2.0, -1e4]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, F64])
@pytest.mark.parametrize("name", ALL)
@pytest.mark.edge
def test_every_loss_finite_at_edges(name, dtype):
    pairs = [(a, b) for a in EDGE_LOGPS for b in EDGE_LOGPS]
    cw = torch.tensor([a for a, _ in pairs], dtype=dtype, requires_grad=True)
    cl = torch.tensor([b for _, b in pairs], dtype=dtype, requires_grad=True)
    n = len(pairs)
    counts = torch.tensor([1, 7, 500] * n)[:n]
    refs = torch.tensor([b for _, b in reversed(pairs)], dtype=dtype)
    loss, metrics = compute(name, SequenceStats(cw, cl, counts, counts.flip(0), refs, refs.flip(0)))
    gw, gl = grads(loss, cw, cl)
    assert torch.isfinite(loss).all(), loss
    assert torch.isfinite(gw.float()).all() and torch.isfinite(gl.float()).all()
    assert all(torch.isfinite(v).all() for v in metrics.values())


@pytest.mark.parametrize("name", ALL)
@pytest.mark.edge
def test_empty_responses_are_flagged_not_scored(name):
    """Pair 0 is fine, pair 1 has an empty chosen response, pair 2 an empty rejected one."""
    cw, cl = t(-6.0, 0.0, -4.0).requires_grad_(), t(-9.0, -3.0, 0.0).requires_grad_()
    nw, nl = torch.tensor([3, 0, 2]), torch.tensor([3, 2, 0])
    rw, rl = t(-5.0, -1.0, -3.0), t(-8.0, -2.0, -1.0)
    loss, metrics = compute(name, SequenceStats(cw, cl, nw, nl, rw, rl))
    gw, gl = grads(loss, cw, cl)
    assert metrics["pairs/scorable"].tolist() == [1.0, 0.0, 0.0]
    assert loss[1:].tolist() == [0.0, 0.0]
    assert gw[1:].tolist() == [0.0, 0.0] and gl[1:].tolist() == [0.0, 0.0]
    assert all(v[1:].tolist() == [0.0, 0.0] for v in metrics.values() if v is not metrics["pairs/scorable"])
    alone, _ = compute(name, SequenceStats(t(-6.0), t(-9.0), nw[:1], nl[:1], t(-5.0), t(-8.0)))
    assert loss[0].item() == pytest.approx(alone.item(), abs=1e-12)


# ---------------------------------------------------------------------------------------------
# Metrics and the registry's contract.


@pytest.mark.parametrize("name", ALL)
def test_metrics_shapes_and_terms_add_up(name):
    cw, cl, nw, nl, rw, rl = random_inputs(seed=5, n=32)
    hp = OTHER_HPARAMS[name]
    loss, metrics = compute(name, SequenceStats(cw.requires_grad_(), cl, nw, nl, rw, rl), **hp)
    assert loss.shape == (32,)
    common = {"pairs/scorable", "logps/chosen", "logps/rejected", "logps_sum/chosen", "logps_sum/rejected"}
    assert common <= set(metrics)
    terms = {k.removeprefix("terms/") for k in metrics if k.startswith("terms/")}
    assert terms == set(TERM_WEIGHTS[name])
    rewards = {k for k in metrics if k.startswith("rewards/")}
    expected_rewards = {"rewards/chosen", "rewards/rejected", "rewards/margin", "rewards/accuracy"}
    assert rewards == (expected_rewards if name in WITH_REWARDS else set())
    for key, value in metrics.items():
        assert value.shape == (32,) and not value.requires_grad, key
    full = resolve_hparams(name, **hp)
    total = sum(
        (full[w] if isinstance(w, str) else w) * metrics[f"terms/{term}"]
        for term, w in TERM_WEIGHTS[name].items()
    )
    torch.testing.assert_close(total, loss.detach(), rtol=1e-9, atol=1e-9)
    if rewards:
        torch.testing.assert_close(metrics["rewards/margin"], metrics["rewards/chosen"] - metrics["rewards/rejected"])
    torch.testing.assert_close(metrics["logps/chosen"], cw.detach() / nw)
    torch.testing.assert_close(metrics["logps_sum/chosen"], cw.detach())


# The losses with a third response (tests/losses/test_losses_kto_tpo.py): name -> (needs
# reference, defaults, what the third response is, whether unpaired examples are accepted).
THIRD = {
    "kto": (True, {"beta": 0.1, "desirable_weight": 1.0, "undesirable_weight": 1.0}, "mismatched", True),
    "tpo": (False, {"beta": 0.1, "alpha": 0.5}, "gold", False),
    "tpo_l": (False, {"beta": 0.1, "gamma": 0.5, "alpha": 0.5}, "gold", False),
    # no third response, but further reference models (tests/losses/test_losses_mrpo.py)
    "mrpo": (True, {"beta": 0.1, "eta": 0.1, "fixed_eta": 0.0, "alpha": 0.5, "adaptive_alpha": 1.0},
             None, False),
}


def test_registry_contract():
    assert list(LOSSES) == [*REGISTRY, *THIRD]
    for name, (needs_reference, defaults, extra, unpaired) in THIRD.items():
        spec = get_spec(name)
        assert (spec.needs_reference, spec.defaults, spec.extra, spec.unpaired) == (
            needs_reference, defaults, extra, unpaired), name
    assert all(get_spec(n).extra is None and not get_spec(n).unpaired for n in REGISTRY)
    assert [n for n, spec in LOSSES.items() if spec.multi_reference] == ["mrpo"]
    for name, (needs_reference, defaults) in REGISTRY.items():
        spec = get_spec(name)
        assert spec.name == name
        assert spec.needs_reference is needs_reference, name
        assert spec.defaults == defaults, name
        assert resolve_hparams(name) == defaults
        assert (spec.paper == "") == (name == "sft"), name


def test_unknown_loss_lists_valid_names():
    with pytest.raises(ValueError, match="unknown loss 'dpoo'") as err:
        compute("dpoo", stats_of([-1.0], [-2.0], [1], [1]))
    for name in REGISTRY:
        assert name in str(err.value)


def test_unknown_hyperparameter_lists_valid_ones():
    with pytest.raises(ValueError, match=r"unknown hyperparameter\(s\) lambda") as err:
        compute("asft", stats_of([-1.0], [-2.0], [1], [1]), **{"lambda": 1.0})
    assert "lam=1, beta=1, sft_weight=1" in str(err.value)
    with pytest.raises(ValueError, match="valid: none"):
        resolve_hparams("sft", beta=0.1)


@pytest.mark.parametrize(
    ("name", "hp", "message"),
    [
        ("ipo", {"tau": 0.0}, "tau must be > 0"),
        ("dpo", {"beta": -0.1}, "beta must be > 0"),
        ("asft", {"lam": -1.0}, "lam must be >= 0"),
        ("asft", {"beta": float("nan")}, "beta must be a finite number"),
        ("orpo", {"lam": "0.1"}, "lam must be a finite number"),
        ("cpo", {"alpha": True}, "alpha must be a finite number"),
    ],
)
def test_bad_hyperparameter_values(name, hp, message):
    with pytest.raises(ValueError, match=message):
        resolve_hparams(name, **hp)


@pytest.mark.parametrize("name", [n for n, (ref, _) in REGISTRY.items() if ref])
def test_reference_loss_without_reference_logps(name):
    with pytest.raises(ValueError, match=rf"loss '{name}' needs a reference model .*ref_chosen_logps and ref_rejected_logps is None"):
        compute(name, stats_of([-1.0], [-2.0], [1], [1]))
    with pytest.raises(ValueError, match="ref_rejected_logps is None"):
        compute(name, stats_of([-1.0], [-2.0], [1], [1], rw=[-1.0]))


def test_shape_mismatch_names_the_field():
    with pytest.raises(ValueError, match=r"rejected_tokens has shape \[3\], expected \[B\] = \[2\]"):
        compute("asft", SequenceStats(t(-1.0, -2.0), t(-1.0, -2.0), torch.tensor([1, 1]), torch.tensor([1, 1, 1])))
    with pytest.raises(ValueError, match="must have shape"):
        compute("sft", SequenceStats(t(-1.0).reshape(1, 1), t(-1.0).reshape(1, 1), torch.ones(1, 1), torch.ones(1, 1)))


def test_log_odds_is_shared_and_stable():
    """asft.log_odds (used by ORPO too): sigma(r) = P, finite at s = 0."""
    s = t(-1e-3, -0.5, -4.0, -80.0)
    torch.testing.assert_close(torch.sigmoid(log_odds(s)), torch.exp(s))
    assert math.isfinite(log_odds(t(0.0)).item())


# ---------------------------------------------------------------------------------------------
# What users see: `asft losses` (its Markdown table: tests/losses/test_losses_docs.py).


def test_cli_lists_every_loss(capsys):
    assert cli_main(["losses"]) == 0
    out = capsys.readouterr().out
    for name, spec in LOSSES.items():
        assert re.search(rf"\b{name}\b", out), name
        if spec.paper:
            assert spec.paper in out
