"""Pair scoring without gradients: the one function behind the training probe, the reference
log-prob cache and ``asft eval``'s pairwise metrics.

For each tokenized pair the scorer gives the summed log-prob logpi(y) of the chosen and the
rejected response and their token counts |y|; s(y) = logpi(y) / |y| is the mean token
log-prob (nats per token), the quantity the trainer logs as ``logps/chosen``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from asft.data.collate import responses_per_pair

#: Rows of the table :func:`score_pairs` returns.
CHOSEN, REJECTED, CHOSEN_TOKENS, REJECTED_TOKENS = range(4)


def pair_sizes(examples: Sequence[Any]) -> list[int]:
    """Tokens of each pair (prompt once, both responses)."""
    if hasattr(examples, "lengths"):  # a token store: from its lengths array, no pair built
        return examples.lengths.sum(axis=1).tolist()
    return [len(ex.prompt_ids) + len(ex.chosen_ids) + len(ex.rejected_ids) for ex in examples]


def score_pairs(
    scorer: Callable[[dict], tuple[torch.Tensor, torch.Tensor]],
    examples: Sequence[Any],
    make_batch: Callable[[Sequence[Any]], dict],
    batch_size: int,
    *,
    indices: Sequence[int] | None = None,
    counted: Sequence[bool] | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Score ``examples[i]`` for each i in ``indices`` (default: all, longest first).

    Args:
        scorer: a :class:`asft.model.logprobs.PreferenceScorer` (or one wrapped by DDP/FSDP):
            batch -> (summed log-probs [2B], token counts [2B]), chosen responses first.
        examples: tokenized pairs (``prompt_ids``, ``chosen_ids``, ``rejected_ids``).
        make_batch: examples -> a collated batch on the scorer's device.
        batch_size: pairs per forward.
        indices: which examples to score, in this order; repeats are allowed (a process's
            share in :func:`asft.train.distributed.score_shards` pads with repeats).
        counted: per index, whether its row is written (False: computed but not counted, so
            that every process runs the same number of forwards).
        on_batch: called with the number of pairs after each batch (a progress bar).

    Returns:
        float64 tensor [4, N] on the CPU, N = len(examples): rows CHOSEN, REJECTED (summed
        log-probs, nats), CHOSEN_TOKENS, REJECTED_TOKENS; zeros for examples not scored. For
        examples with a third response (``extra_ids``) the table is [6, N]: the K = 3 summed
        log-probs (chosen, rejected, extra), then their K token counts.
    """
    if indices is None:
        size = pair_sizes(examples)
        # longest first: similar lengths share a batch, so little padding is computed
        indices = sorted(range(len(examples)), key=size.__getitem__, reverse=True)
    counted = [True] * len(indices) if counted is None else counted
    k = responses_per_pair([examples[indices[0]]]) if len(indices) else 2
    table = torch.zeros(2 * k, len(examples), dtype=torch.float64)
    # each submodule's own mode is restored: a fresh scorer around a model in eval mode must
    # not leave that model in training mode
    modes = [(m, m.training) for m in scorer.modules()] if isinstance(scorer, torch.nn.Module) else []
    for m, _ in modes:
        m.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(indices), batch_size):
                idx = list(indices[start:start + batch_size])
                keep = torch.tensor(counted[start:start + batch_size], dtype=torch.bool)
                logps, tokens = scorer(make_batch([examples[i] for i in idx]))
                b = len(idx)
                rows = torch.cat([logps.view(-1, b), tokens.view(-1, b)]).double().cpu()
                table[:, torch.tensor(idx)[keep]] = rows[:, keep]
                if on_batch is not None:
                    on_batch(b)
    finally:
        for m, training in modes:
            m.training = training
    return table


def pair_means(table: torch.Tensor) -> dict[str, float]:
    """Means over the pairs of a [4, N] table from :func:`score_pairs`.

    Returns ``logps_chosen`` and ``logps_rejected`` (mean s(y), nats per token), ``margin``
    (mean s(y_w) - s(y_l)), ``accuracy`` (fraction with s(y_w) > s(y_l); ties count as not
    preferred), ``accuracy_sum`` (the same on summed log-probs), ``logps_sum_chosen``,
    ``logps_sum_rejected`` and ``margin_sum`` (nats per response) and ``pairs``.

    Unpaired examples (KTO's, one side with 0 tokens) count only where they have a response:
    ``logps_chosen`` averages the examples with a chosen one, ``logps_rejected`` those with a
    rejected one, and the pairwise numbers the examples with both (0.0 when there are none).
    """
    chosen, rejected = table[CHOSEN], table[REJECTED]
    has_w, has_l = table[CHOSEN_TOKENS] >= 1, table[REJECTED_TOKENS] >= 1
    both = has_w & has_l
    s_w = chosen / table[CHOSEN_TOKENS].clamp_min(1)
    s_l = rejected / table[REJECTED_TOKENS].clamp_min(1)

    def mean(x: torch.Tensor, where: torch.Tensor) -> float:
        return x[where].mean().item() if bool(where.any()) else 0.0

    return {
        "logps_chosen": mean(s_w, has_w),
        "logps_rejected": mean(s_l, has_l),
        "margin": mean(s_w - s_l, both),
        "accuracy": mean((s_w > s_l).double(), both),
        "accuracy_sum": mean((chosen > rejected).double(), both),
        "logps_sum_chosen": mean(chosen, has_w),
        "logps_sum_rejected": mean(rejected, has_l),
        "margin_sum": mean(chosen - rejected, both),
        "pairs": int(s_w.numel()),
    }
