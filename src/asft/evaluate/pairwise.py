"""Pairwise metrics on held-out preference pairs, from the model's own log-likelihoods.

For each pair the model scores both responses (:class:`asft.model.logprobs.PreferenceScorer`):
summed log-prob logpi(y) and mean token log-prob s(y) = logpi(y) / |y|. Reported:

- ``pref_acc_mean``: % of pairs with s(y_w) > s(y_l) (length-normalized, as ASFT, ORPO
  and SimPO rank responses);
- ``pref_acc_sum``: % of pairs with logpi(y_w) > logpi(y_l) (as DPO's implicit reward does
  when the reference model scores both alike);
- ``logps_chosen``, ``logps_rejected``: mean over pairs of s(y), nats per token (the same
  quantity as the trainer's ``logps/chosen`` and ``logps/rejected``);
- ``margin``: mean of s(y_w) - s(y_l); ``margin_sum``: mean of logpi(y_w) - logpi(y_l);
- ``logps_sum_chosen``, ``logps_sum_rejected``: mean summed log-probs, nats per response;
- ``pairs``: number of pairs scored.

Ties count as not preferred.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence


def score_pairs(
    model,
    examples: Sequence,
    pad_id: int,
    batch_size: int = 8,
    on_batch: Callable[[int], None] | None = None,
):
    """Summed log-probs and token counts of every pair: four float64 tensors [N]
    ``(chosen_logps, rejected_logps, chosen_tokens, rejected_tokens)``.

    ``examples`` are tokenized pairs (``prompt_ids``, ``chosen_ids``, ``rejected_ids``).
    Pairs are batched by length and packed; the prompt is computed once per pair when the
    model honours the shared layout's 4D mask, else each sequence is scored on its own.
    The scoring itself is :func:`asft.model.scoring.score_pairs`, as in the training probe.
    """
    from asft.data.collate import collate
    from asft.model.logprobs import PreferenceScorer, shared_layout_supported
    from asft.model.scoring import score_pairs as score

    if not examples:
        raise ValueError("no pairs to score")
    # packing rests on the same 4D mask: without it each sequence gets its own row
    supported = shared_layout_supported(model)
    layout = "shared" if supported else "plain"
    table = score(PreferenceScorer(model), examples,
                  lambda exs: collate(list(exs), pad_id, layout, pack=supported), batch_size,
                  on_batch=on_batch)
    return table[0], table[1], table[2], table[3]


def pairwise_metrics(chosen_logps, rejected_logps, chosen_tokens, rejected_tokens) -> dict[str, float]:
    """The metrics of the module docstring from per-pair summed log-probs and token counts [N]."""
    import torch

    from asft.model.scoring import pair_means

    means = pair_means(torch.stack([chosen_logps, rejected_logps, chosen_tokens, rejected_tokens]))
    return {
        "pref_acc_mean": 100.0 * means.pop("accuracy"),
        "pref_acc_sum": 100.0 * means.pop("accuracy_sum"),
        **means,
    }
