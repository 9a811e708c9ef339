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
    """
    import torch

    from asft.data.collate import collate
    from asft.model.logprobs import PreferenceScorer, shared_layout_supported

    if not examples:
        raise ValueError("no pairs to score")
    layout = "shared" if shared_layout_supported(model) else "plain"
    scorer = PreferenceScorer(model)
    n = len(examples)
    out = torch.zeros(4, n, dtype=torch.float64)

    def length(i: int) -> int:
        ex = examples[i]
        return len(ex.prompt_ids) + len(ex.chosen_ids) + len(ex.rejected_ids)

    order = sorted(range(n), key=length, reverse=True)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            batch = collate([examples[i] for i in idx], pad_id, layout, pack=True)
            with torch.inference_mode():
                logps, tokens = scorer(batch)
            b = len(idx)
            rows = torch.stack([logps[:b], logps[b:], tokens[:b], tokens[b:]]).double().cpu()
            out[:, idx] = rows
            if on_batch is not None:
                on_batch(b)
    finally:
        model.train(was_training)
    return out[0], out[1], out[2], out[3]


def pairwise_metrics(chosen_logps, rejected_logps, chosen_tokens, rejected_tokens) -> dict[str, float]:
    """The metrics of the module docstring from per-pair summed log-probs and token counts [N]."""
    s_w = chosen_logps / chosen_tokens.clamp_min(1)
    s_l = rejected_logps / rejected_tokens.clamp_min(1)
    return {
        "pref_acc_mean": 100.0 * (s_w > s_l).double().mean().item(),
        "pref_acc_sum": 100.0 * (chosen_logps > rejected_logps).double().mean().item(),
        "logps_chosen": s_w.mean().item(),
        "logps_rejected": s_l.mean().item(),
        "margin": (s_w - s_l).mean().item(),
        "logps_sum_chosen": chosen_logps.mean().item(),
        "logps_sum_rejected": rejected_logps.mean().item(),
        "margin_sum": (chosen_logps - rejected_logps).mean().item(),
        "pairs": int(s_w.numel()),
    }
