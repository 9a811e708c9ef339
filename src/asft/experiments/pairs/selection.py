"""Which samples of a prompt may pair: all of them, or those statistical rejection sampling keeps.

RSO (Liu et al., "Statistical Rejection Sampling Improves Preference Optimization", arXiv
2309.06657) turns K samples of the policy into draws from the optimal policy of the
KL-regularised reward objective, pi*(y|x) ~ pi(y|x) exp(r(x, y) / beta), by rejection: with
M the highest reward among the candidates left, each candidate y is accepted with probability
exp((r(y) - M) / beta), and accepted candidates leave the pool; rounds repeat until ``accept``
samples are kept (or none is left); candidates are looked at in a random order. The best
candidate of each round is always accepted (probability 1), so a round never comes back empty. Small beta keeps the best answers; large
beta keeps nearly uniform draws. The kept samples are then paired as usual
(:func:`asft.experiments.pairs.pairing.make_pairs`), as RSO ranks its accepted samples with
the reward model.

Pure functions: the random draws come from ``rng``, seeded per prompt by the caller, so a
prompt's selection does not depend on the other prompts or on where a run stopped.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

SELECTIONS = ("all", "rso")


def rso_select(scores: Sequence[float | None], accept: int, beta: float,
               rng: random.Random) -> list[int]:
    """The indices of the samples RSO keeps, in sample order (see the module docstring).

    Args:
        scores: K rewards; None or NaN (a scoring failure) is never a candidate.
        accept: how many samples to keep (>= 1); fewer when fewer were scored.
        beta: RSO's temperature (> 0).
        rng: the prompt's random stream: one shuffle of the candidates, then one uniform draw
            per candidate looked at.
    """
    if accept < 1 or not beta > 0:
        raise ValueError(f"rso needs accept >= 1 and beta > 0, got {accept}, {beta}")
    pool = [i for i, s in enumerate(scores) if s is not None and math.isfinite(s)]
    rng.shuffle(pool)  # the scan stops once `accept` are kept: no sample may go first always
    kept: list[int] = []
    while pool and len(kept) < accept:
        top = max(scores[i] for i in pool)  # type: ignore[type-var]
        taken = []
        for i in pool:
            if rng.random() < math.exp((scores[i] - top) / beta):  # type: ignore[operator]
                taken.append(i)
                if len(kept) + len(taken) == accept:
                    break
        kept += taken
        pool = [i for i in pool if i not in taken]
    return sorted(kept)


def rso_rng(seed: int, index: int) -> random.Random:
    """The random stream of prompt ``index``'s selection (a run's ``seed``)."""
    return random.Random(f"asft-rso-{seed}-{index}")
