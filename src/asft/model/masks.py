"""The attention mask of a collated batch, in the form each attention kernel takes.

:func:`asft.data.collate.collate` lays pairs out with ``group_ids`` (which pair a token belongs
to, -1 at pads) and ``segment_ids`` (0 prompt, 1 chosen, 2 rejected, 3 a third response); the
rule is the same for every kernel: query i may attend key j when both belong to the same pair,
j <= i, and j is a prompt token or in i's own segment (rejected tokens see the prompt, never
the chosen response), and every position attends to itself (pad rows stay finite).

- ``sdpa`` and ``eager``: a dense additive [R, 1, T, T] mask (:func:`attention_mask_4d`).
- ``flex_attention``: a FlexAttention ``BlockMask`` built from the same rule as a ``mask_mod``
  (:func:`block_mask`), rows padded to whole blocks (:func:`for_kernel`); blocks where no
  query sees any key (pairs packed in one row that never see each other) are skipped by the
  kernel, and no [T, T] float tensor exists. transformers passes a 4D BlockMask given as
  ``attention_mask`` to the kernel unchanged.
- one sequence per row (the plain layout without packing): a 2D padding mask, which every
  kernel takes (:func:`attention_mask` picks it).
- ``asft_sdpa_spans`` (:mod:`asft.model.spans`) on a flat batch: no mask here; each pair's
  [1, 1, L, L] mask goes with the span plan. On any other batch it is sdpa.
- ``flash_attention_2``: no mask; the plain layout packed padding-free into one row
  (:func:`asft.data.collate.padding_free`), its sequences told apart by their position ids.
"""

from __future__ import annotations

import torch

from asft.data.collate import PROMPT, pad_positions
from asft.model.spans import KERNEL as SPANS_KERNEL

#: kernels whose mask is a FlexAttention BlockMask rather than a dense tensor
BLOCK_MASK_KERNELS = ("flex_attention",)
#: FlexAttention's block size: their rows are padded to a multiple of it
#: (:func:`asft.data.collate.pad_positions`), so that blocks align with the rows' ends and a
#: compiled kernel sees a few lengths rather than one per batch
FLEX_BLOCK = 128


def attention_mask_4d(group_ids: torch.Tensor, segment_ids: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Additive mask [R, 1, T, T] (0 = attend, dtype min = blocked) for packed pair rows.

    Args:
        group_ids: [R, T] long, -1 at pads.
        segment_ids: [R, T] long, 0 prompt, 1 chosen, 2 rejected, 3 third, -1 pad.
    """
    R, T = group_ids.shape
    mask = torch.zeros(R, 1, T, T, dtype=dtype, device=group_ids.device)
    return mask.masked_fill_(~allowed(group_ids, segment_ids)[:, None], torch.finfo(dtype).min)


def allowed(group_ids: torch.Tensor, segment_ids: torch.Tensor) -> torch.Tensor:
    """The rule as a bool [R, T, T] (True = attend): causal within a pair (or plain sequence),
    later responses seeing the prompt but no response before them, a pad only itself (so no
    row of the softmax is empty). Ids as in :func:`attention_mask_4d`."""
    T = group_ids.shape[1]
    device = group_ids.device
    q_group, k_group = group_ids[:, :, None], group_ids[:, None, :]
    q_seg, k_seg = segment_ids[:, :, None], segment_ids[:, None, :]
    causal = torch.ones(T, T, dtype=torch.bool, device=device).tril_()
    rule = (q_group == k_group) & (k_group >= 0) & causal & ((k_seg == PROMPT) | (q_seg == k_seg))
    return rule | torch.eye(T, dtype=torch.bool, device=device)


def block_mask(group_ids: torch.Tensor, segment_ids: torch.Tensor):
    """The same rule as a FlexAttention ``BlockMask`` of shape [R, 1, T, T] (heads broadcast).

    Built uncompiled on the CPU (where it checks the rule position by position) and compiled on
    a GPU, so that long rows never materialise a [T, T] boolean per row there (the GPU path is
    untested: no GPU was available when it was written).
    """
    from torch.nn.attention.flex_attention import create_block_mask

    R, T = group_ids.shape
    return create_block_mask(mask_mod(group_ids, segment_ids), R, None, T, T,
                             device=group_ids.device, _compile=group_ids.device.type == "cuda")


def mask_mod(group_ids: torch.Tensor, segment_ids: torch.Tensor):
    """The rule as a FlexAttention ``mask_mod(b, h, q, kv) -> bool`` over the batch's ids."""

    def allowed(b, h, q, kv):
        gq, gk = group_ids[b, q], group_ids[b, kv]
        sq, sk = segment_ids[b, q], segment_ids[b, kv]
        return ((gq == gk) & (gk >= 0) & (kv <= q) & ((sk == PROMPT) | (sq == sk))) | (q == kv)

    return allowed


def for_kernel(batch: dict, kernel: str | None) -> dict:
    """``batch`` laid out as ``kernel`` needs it: a BlockMask kernel's rows padded to whole
    blocks (:data:`FLEX_BLOCK`); every other kernel's unchanged."""
    if kernel in BLOCK_MASK_KERNELS and batch["layout"] != "varlen":
        return pad_positions(batch, FLEX_BLOCK)
    return batch


def attention_mask(batch: dict, kernel: str | None, dtype: torch.dtype):
    """The mask ``batch`` needs under attention ``kernel`` (module docstring); ``dtype`` is the
    model's (the dense mask's blocked value is that dtype's minimum)."""
    if batch["layout"] == "varlen":
        return None  # FlashAttention-2 finds the sequences from the position ids' restarts
    if kernel == SPANS_KERNEL and "spans" in batch:
        return None  # each pair's own mask travels with the span plan (asft.model.spans)
    # "packed" is a Python bool from the collator: testing the ids here breaks a compiled graph
    if batch["layout"] == "plain" and not batch["packed"]:
        return (batch["group_ids"] >= 0).long()  # one sequence per row
    if kernel in BLOCK_MASK_KERNELS:
        return block_mask(batch["group_ids"], batch["segment_ids"])
    return attention_mask_4d(batch["group_ids"], batch["segment_ids"], dtype)
