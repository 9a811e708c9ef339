"""Pairwise metrics: hand-checked arithmetic, and scoring equal to a naive full forward."""

from __future__ import annotations

import pytest
import torch

from asft.data.collate import Pair
from asft.evaluate.pairwise import pairwise_metrics, score_pairs


def test_pairwise_metrics_by_hand():
    """Pair 1: sums -4 vs -6 over 2 vs 2 tokens: s = -2 vs -3, both rankings prefer chosen.
    Pair 2: sums -6 vs -4 over 6 vs 2 tokens: s = -1 vs -2 (mean prefers chosen), but the
    sum prefers rejected. Pair 3: s = -1 vs -1, a tie, counts as not preferred."""
    cw = torch.tensor([-4.0, -6.0, -3.0], dtype=torch.float64)
    cl = torch.tensor([-6.0, -4.0, -3.0], dtype=torch.float64)
    tw = torch.tensor([2.0, 6.0, 3.0], dtype=torch.float64)
    tl = torch.tensor([2.0, 2.0, 3.0], dtype=torch.float64)
    m = pairwise_metrics(cw, cl, tw, tl)
    assert m["pref_acc_mean"] == pytest.approx(200 / 3)
    assert m["pref_acc_sum"] == pytest.approx(100 / 3)
    assert m["logps_chosen"] == pytest.approx((-2 - 1 - 1) / 3)
    assert m["logps_rejected"] == pytest.approx((-3 - 2 - 1) / 3)
    assert m["margin"] == pytest.approx(2 / 3)
    assert m["margin_sum"] == pytest.approx(0.0)
    assert m["logps_sum_chosen"] == pytest.approx(-13 / 3)
    assert m["pairs"] == 3


def test_score_pairs_matches_naive_forward():
    from asft.model import tiny

    model = tiny.build_model(100, hidden=64, layers=2, seed=1)
    gen = torch.Generator().manual_seed(0)

    def ids(n):
        return torch.randint(4, 100, (n,), generator=gen).tolist()

    pairs = [Pair(ids(p), ids(c), ids(r)) for p, c, r in [(5, 3, 4), (2, 6, 1), (7, 2, 2)]]

    def naive(prompt, response):
        full = torch.tensor([prompt + response])
        with torch.no_grad():
            logp = torch.log_softmax(model(full).logits.double(), -1)[0]
        return sum(logp[len(prompt) - 1 + t, tok].item() for t, tok in enumerate(response))

    done = []
    cw, cl, tw, tl = score_pairs(model, pairs, pad_id=0, batch_size=2, on_batch=done.append)
    assert done == [2, 1]
    for i, p in enumerate(pairs):
        assert cw[i].item() == pytest.approx(naive(p.prompt_ids, p.chosen_ids), abs=1e-4)
        assert cl[i].item() == pytest.approx(naive(p.prompt_ids, p.rejected_ids), abs=1e-4)
        assert (tw[i].item(), tl[i].item()) == (len(p.chosen_ids), len(p.rejected_ids))
    assert model.training  # restored


def test_pair_means_count_unpaired_examples_only_where_they_have_a_response():
    """A KTO example with one side: its response counts in that side's mean only, and the
    pairwise numbers (margin, accuracy) come from the examples with both sides."""
    import torch

    from asft.model.scoring import pair_means

    table = torch.tensor([[-2.0, -4.0, 0.0], [-3.0, 0.0, -6.0], [2, 2, 0], [3, 0, 3]], dtype=torch.float64)
    m = pair_means(table)
    assert (m["logps_chosen"], m["logps_rejected"]) == (-1.5, -1.5)  # (-1 - 2) / 2 each
    assert (m["margin"], m["accuracy"], m["accuracy_sum"], m["pairs"]) == (0.0, 0.0, 1.0, 3)
