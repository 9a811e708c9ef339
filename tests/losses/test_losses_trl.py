"""asft's losses against TRL's own loss functions on the same per-sequence log-probs.

TRL's ORPO and CPO trainers expose their losses as methods of per-sequence log-probs
(``ORPOTrainer.odds_ratio_loss``, ``CPOTrainer.cpo_loss``, whose ``loss_type`` also gives SimPO,
IPO and hinge without a reference); they are called here on a stand-in ``self`` holding only
the attributes they read. TRL's NLL terms average over all chosen tokens of the batch while
asft averages per pair (the papers' form), so the preference terms are compared, not totals.
"""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest
import torch

from asft.losses import SequenceStats, compute

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
trl_orpo = pytest.importorskip("trl.experimental.orpo", reason="trl is not installed")
trl_cpo = pytest.importorskip("trl.experimental.cpo", reason="trl is not installed")


def _stats(n: int = 64, seed: int = 0) -> SequenceStats:
    """Random pairs spanning likely and unlikely responses, in float64."""
    g = torch.Generator().manual_seed(seed)
    tok_w = torch.randint(1, 60, (n,), generator=g).double()
    tok_l = torch.randint(1, 60, (n,), generator=g).double()
    mean_w = -torch.rand(n, generator=g, dtype=torch.float64) * 4 - 1e-3
    mean_l = -torch.rand(n, generator=g, dtype=torch.float64) * 4 - 1e-3
    return SequenceStats(mean_w * tok_w, mean_l * tok_l, tok_w, tok_l)


def _fake(**attrs) -> SimpleNamespace:
    return SimpleNamespace(accelerator=SimpleNamespace(device="cpu"), **attrs)


@pytest.mark.parametrize("lam", [0.1, 1.0])
def test_orpo_odds_ratio_term_equals_trl(lam):
    stats = _stats()
    _, metrics = compute("orpo", stats, lam=lam)
    losses, *_ = trl_orpo.ORPOTrainer.odds_ratio_loss(_fake(beta=lam), stats.mean_chosen(),
                                                      stats.mean_rejected())
    # TRL returns beta * log sigma(r_w - r_l) and subtracts it from the NLL
    torch.testing.assert_close(metrics["terms/pref"].double(), -losses.double() / lam,
                               atol=1e-6, rtol=1e-6)


def _cpo(loss_type: str, beta: float, chosen, rejected, gamma: float = 0.0) -> torch.Tensor:
    fake = _fake(alpha=0.0, loss_type=loss_type, beta=beta, simpo_gamma=gamma, label_smoothing=0.0)
    losses, *_ = trl_cpo.CPOTrainer.cpo_loss(fake, chosen, rejected)
    return losses.double()


def test_simpo_equals_trl():
    stats = _stats(seed=1)
    loss, _ = compute("simpo", stats, beta=2.0, gamma=0.5)
    want = _cpo("simpo", 2.0, stats.mean_chosen(), stats.mean_rejected(), gamma=0.5)
    torch.testing.assert_close(loss.double(), want, atol=1e-6, rtol=1e-6)


def test_cpo_preference_term_equals_trl():
    stats = _stats(seed=2)
    _, metrics = compute("cpo", stats, beta=0.1, alpha=1.0)
    want = _cpo("sigmoid", 0.1, stats.chosen_logps, stats.rejected_logps)  # summed log-probs
    torch.testing.assert_close(metrics["terms/pref"].double(), want, atol=1e-6, rtol=1e-6)


def _with_zero_reference(stats: SequenceStats) -> SequenceStats:
    zero = torch.zeros_like(stats.chosen_logps)
    return SequenceStats(stats.chosen_logps, stats.rejected_logps, stats.chosen_tokens,
                         stats.rejected_tokens, zero, zero)


def test_ipo_equals_trl_reference_free_form():
    """With the reference at log-prob 0, IPO is TRL's CPO-IPO on mean log-probs."""
    stats = _with_zero_reference(_stats(seed=3))
    loss, _ = compute("ipo", stats, tau=0.1)
    want = _cpo("ipo", 0.1, stats.mean_chosen(), stats.mean_rejected())
    torch.testing.assert_close(loss.double(), want, atol=1e-6, rtol=1e-6)


def test_hinge_equals_trl_reference_free_form():
    """With the reference at log-prob 0, hinge is TRL's CPO-hinge on summed log-probs."""
    stats = _with_zero_reference(_stats(seed=4))
    loss, _ = compute("hinge", stats, beta=0.1)
    want = _cpo("hinge", 0.1, stats.chosen_logps, stats.rejected_logps)
    torch.testing.assert_close(loss.double(), want, atol=1e-6, rtol=1e-6)
