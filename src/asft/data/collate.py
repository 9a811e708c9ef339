"""Batches of preference pairs laid out so that each forward pass does only useful work.

Two layouts, one batch format:

``shared`` (default): one sequence per pair, ``prompt | chosen | rejected``. Position ids
restart after the prompt for the rejected part, and the attention rule (built on the device by
:func:`asft.model.logprobs.attention_mask_4d`) lets rejected tokens see the prompt but never the
chosen tokens. The prompt is computed once per pair instead of twice (arXiv 2410.20305).

``plain``: two sequences per pair, ``prompt | chosen`` and ``prompt | rejected``, the layout
every peer uses; kept as the fallback for models that reject a 4D attention mask and as the
reference the optimized path is tested against.

A third response (``extra_ids`` on the examples: TPO's gold response, or KTO's mismatched
completion for its KL estimate) is one more segment after the rejected one, which again sees
only the prompt: the prompt is still computed once per pair for all three responses. An empty
response (one side of an unpaired KTO example, a missing gold) is simply not laid out: it has no
tokens and scores 0 with a count of 0.

With ``pack=True`` several pairs share a row (first-fit decreasing into rows no longer than
the longest pair of the batch), so padding shrinks without changing which pairs form a step.
With ``flat=True`` all of them share one row without a single pad, for attention computed
pair by pair (:mod:`asft.model.spans`), which never computes the pairs' mutual blocks that a
dense mask computes and throws away.

Batch keys (R rows of T positions, N response tokens, B pairs):
    input_ids     [R, T] long   token ids; pad positions hold ``pad_id``
    position_ids  [R, T] long   restart at 0 for each pair, and after the prompt for rejected
    group_ids     [R, T] long   which pair (or plain sequence) of the row a token belongs to; -1 = pad
    segment_ids   [R, T] long   0 prompt, 1 chosen, 2 rejected, 3 extra, -1 pad
    target_index  [N]    long   flat index r * T + t of the position whose output predicts a
                                response token (the previous token; for the first token of
                                either response, the last prompt token)
    target_ids    [N]    long   the response token being predicted
    target_seq    [N]    long   sequence it belongs to: pair i chosen -> i, rejected -> B + i,
                                extra -> 2B + i
    num_pairs     int    B
    num_seqs      int    K * B: K = 3 when the examples carry ``extra_ids``, else 2
    num_tokens    int    real (non-pad) tokens in the batch, for throughput metrics
    packed        bool   some row holds more than one pair (or plain sequence)
    spans         list   only with ``flat=True``: (row, start, end, lengths) of each piece (a
                         pair in the shared layout, a sequence in the plain one), Python
                         ints; ``lengths``: its segments' token counts in row order
    layout        str    ``shared``, ``plain`` or ``varlen`` (:func:`padding_free`)

``varlen`` (:func:`padding_free`, for FlashAttention-2, which takes no 4D mask): the plain
layout's sequences end to end in one row without a single pad, each restarting its position
ids at 0. FA2 reads the sequence boundaries from those restarts (transformers derives
``cu_seqlens`` from the positions equal to 0) and attends within each sequence only; no
prompt sharing, which FA2 cannot express, but no padding either.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

LAYOUTS = ("shared", "plain")  # what collate builds; padding_free makes "varlen" of plain
PROMPT, CHOSEN, REJECTED, EXTRA = 0, 1, 2, 3


class PairTokens(Protocol):
    prompt_ids: Sequence[int]
    chosen_ids: Sequence[int]
    rejected_ids: Sequence[int]


@dataclass
class Pair:
    """A minimal tokenized pair (the data pipeline's TokenizedPair satisfies the same protocol)."""

    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]


@dataclass
class Triple(Pair):
    """A pair with a third response (``extra_ids``; see the module docstring)."""

    extra_ids: list[int]


def responses_per_pair(examples: Sequence[PairTokens]) -> int:
    """K: 3 when the examples carry a third response (``extra_ids``), else 2."""
    return 3 if hasattr(examples[0], "extra_ids") else 2


def _pieces(ex: PairTokens, layout: str, k: int) -> list[list[tuple[Sequence[int], int]]]:
    """The sequences ("pieces") one pair contributes: lists of (token ids, segment)."""
    if len(ex.prompt_ids) == 0:
        raise ValueError("a pair has an empty prompt: the first response token has nothing to condition on")
    responses = [(ex.chosen_ids, CHOSEN), (ex.rejected_ids, REJECTED)]
    if k == 3:
        responses.append((ex.extra_ids, EXTRA))
    if not ex.chosen_ids and not ex.rejected_ids:
        raise ValueError("a pair has an empty response on both sides: there is nothing to score")
    responses = [(ids, seg) for ids, seg in responses if len(ids)]
    if layout == "shared":
        return [[(ex.prompt_ids, PROMPT), *responses]]
    return [[(ex.prompt_ids, PROMPT), r] for r in responses]


def _assign_rows(lengths: list[int], pack: bool, flat: bool = False) -> list[list[int]]:
    """Indices of pieces per row: one each, first-fit decreasing into rows of the max length,
    or (``flat``) all in one row in order."""
    if flat:
        return [list(range(len(lengths)))]
    if not pack:
        return [[i] for i in range(len(lengths))]
    capacity = max(lengths)
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda j: (-lengths[j], j)):
        for r, free in enumerate(room):
            if lengths[i] <= free:
                rows[r].append(i)
                room[r] -= lengths[i]
                break
        else:
            rows.append([i])
            room.append(capacity - lengths[i])
    return rows


def collate(
    examples: Sequence[PairTokens],
    pad_id: int,
    layout: str = "shared",
    pack: bool = False,
    pad_to_multiple_of: int = 1,
    flat: bool = False,
) -> dict:
    """Build one batch (see the module docstring for the keys and shapes).

    Args:
        examples: B tokenized pairs (``prompt_ids``, ``chosen_ids``, ``rejected_ids``, and
            ``extra_ids`` on every example or on none).
        pad_id: token id written at pad positions (never attended to, never scored).
        layout: ``shared`` (prompt once per pair) or ``plain`` (prompt per sequence).
        pack: put several pairs (or sequences) in one row to avoid padding.
        pad_to_multiple_of: round T up, which helps some kernels.
        flat: every piece in one row, end to end, without a pad (implies packing), with
            ``spans`` recording where each lies, for attention run piece by piece
            (:mod:`asft.model.spans`; any kernel also runs it with the dense mask).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; valid: {', '.join(LAYOUTS)}")
    if not examples:
        raise ValueError("cannot collate an empty batch")
    B = len(examples)
    k = responses_per_pair(examples)
    pieces = []  # (pair index, [(ids, segment), ...])
    for i, ex in enumerate(examples):
        pieces.extend((i, p) for p in _pieces(ex, layout, k))
    lengths = [sum(len(ids) for ids, _ in p) for _, p in pieces]
    rows = _assign_rows(lengths, pack, flat)
    T = max(sum(lengths[i] for i in row) for row in rows)
    T = -(-T // pad_to_multiple_of) * pad_to_multiple_of
    batch = _write_rows(pieces, lengths, rows, T, B, pad_id)
    spans = batch.pop("spans")
    return {
        **batch,
        "num_pairs": B,
        "num_seqs": k * B,
        "num_tokens": int(sum(lengths)),
        "layout": layout,
        "packed": any(len(row) > 1 for row in rows),
        **({"spans": spans} if flat else {}),
    }


def _write_rows(pieces: list, lengths: list[int], rows: list[list[int]], T: int, B: int,
                pad_id: int) -> dict:
    """The batch's tensors (module docstring) for ``pieces`` placed in ``rows`` of ``T``
    positions, and ``spans``: (row, start, end, segment lengths) of each piece."""
    R = len(rows)
    input_ids = torch.full((R, T), pad_id, dtype=torch.long)
    position_ids = torch.zeros((R, T), dtype=torch.long)
    group_ids = torch.full((R, T), -1, dtype=torch.long)
    segment_ids = torch.full((R, T), -1, dtype=torch.long)
    t_index: list[int] = []
    t_ids: list[int] = []
    t_seq: list[int] = []
    spans: list[tuple[int, int, int, tuple[int, ...]]] = []
    for r, row in enumerate(rows):
        col = 0
        for g, piece_idx in enumerate(row):
            pair, segs = pieces[piece_idx]
            spans.append((r, col, col + lengths[piece_idx], tuple(len(ids) for ids, _ in segs)))
            prompt_last = -1  # flat index of the last prompt token: predicts each response's first token
            pos = 0
            for ids, seg in segs:
                n = len(ids)
                input_ids[r, col:col + n] = torch.as_tensor(list(ids), dtype=torch.long)
                segment_ids[r, col:col + n] = seg
                group_ids[r, col:col + n] = g
                if seg == PROMPT:
                    position_ids[r, col:col + n] = torch.arange(n)
                    pos = n
                    prompt_last = r * T + col + n - 1
                else:
                    # Every response starts right after the prompt, whatever precedes it in the row.
                    position_ids[r, col:col + n] = torch.arange(pos, pos + n)
                    seq = (seg - CHOSEN) * B + pair
                    t_index.append(prompt_last)
                    t_index.extend(range(r * T + col, r * T + col + n - 1))
                    t_ids.extend(ids)
                    t_seq.extend([seq] * n)
                col += n
    return {
        "input_ids": input_ids,
        "position_ids": position_ids,
        "group_ids": group_ids,
        "segment_ids": segment_ids,
        "target_index": torch.tensor(t_index, dtype=torch.long),
        "target_ids": torch.tensor(t_ids, dtype=torch.long),
        "target_seq": torch.tensor(t_seq, dtype=torch.long),
        "spans": spans,
    }


def pad_positions(batch: dict, multiple: int) -> dict:
    """``batch`` with T rounded up to a multiple of ``multiple`` by pad positions at the end of
    every row (FlexAttention's BlockMask works in blocks of 128 positions, and a compiled
    kernel sees a few lengths instead of one per batch); ``target_index`` (flat r * T + t)
    follows its tokens to the longer rows. The batch itself when T is already a multiple."""
    T = batch["input_ids"].shape[1]
    width = -(-T // multiple) * multiple
    if width == T:
        return batch
    fill = {"input_ids": 0, "position_ids": 0, "group_ids": -1, "segment_ids": -1}
    out = {key: torch.nn.functional.pad(batch[key], (0, width - T), value=value)
           for key, value in fill.items()}
    index = batch["target_index"]
    return {**batch, **out, "target_index": index // T * width + index % T}


def bucket(n: int, smallest: int = 16) -> int:
    """The smallest bucket >= ``n``: ``smallest``, then 2^k and 1.5 x 2^k (two buckets per
    doubling: padding to one wastes under a third, about a sixth on average, while a run whose
    counts span a few doublings compiles a few graphs)."""
    if n <= smallest:
        return smallest
    k = max(0, (n - 1).bit_length() - 2)  # n - 1 < 4 * 2^k
    return -(-n // (1 << k)) * (1 << k)


def pad_targets(batch: dict) -> dict:
    """``batch`` with its N response-token targets padded to :func:`bucket` (N), so that a
    compiled scorer, whose LM head loops over them in chunks, sees a few counts rather than
    one per batch. The padding predicts token 0 from position 0 for the sequence
    ``num_seqs`` (one past the last), which the scorer drops: the log-probs are exact."""
    n = batch["target_ids"].shape[0]
    extra = bucket(n) - n
    if extra == 0:
        return batch
    pad = lambda t, value: torch.nn.functional.pad(t, (0, extra), value=value)  # noqa: E731
    return {**batch, "target_index": pad(batch["target_index"], 0),
            "target_ids": pad(batch["target_ids"], 0),
            "target_seq": pad(batch["target_seq"], batch["num_seqs"])}


def padding_free(batch: dict) -> dict:
    """The ``plain`` batch ``batch`` as one row of its real tokens in row-major order, without
    pads (layout ``varlen``, module docstring); ``target_index`` follows the tokens it points
    at. Refuses the shared layout, whose rejected part restarts its positions after the prompt
    (FA2 would read that as a new sequence)."""
    if batch["layout"] != "plain":
        raise ValueError(f"a padding-free batch is made from the plain layout, not {batch['layout']!r}")
    keep = (batch["group_ids"] >= 0).flatten()
    new_index = keep.cumsum(0) - 1  # flat position -> its place among the kept tokens
    out = {key: batch[key].flatten()[keep][None] for key in
           ("input_ids", "position_ids", "group_ids", "segment_ids")}
    return {**batch, **out, "target_index": new_index[batch["target_index"]], "layout": "varlen"}
