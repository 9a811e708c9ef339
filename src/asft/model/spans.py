"""Attention pair by pair for flat rows: every pair of a batch in one row, no pad, and no
attention computed between pairs that never see each other.

A packed row of the shared layout (:func:`asft.data.collate.collate`) holds several pairs;
with a dense [R, 1, T, T] mask, SDPA computes every query against every key of the row and
then masks most of them away, and rows are padded to the longest. A *flat* batch
(``collate(..., flat=True)``) puts all pairs end to end in one row without a pad and records
where each pair lies (``spans``: row, start, end and segment lengths per pair, Python ints).
The kernel :data:`KERNEL` then runs SDPA per pair (:class:`Piece`): causally over its prompt
and chosen response, with no mask, then once per later response over the keys prompt + that
response with a small mask (the shared-prefix rule: rejected tokens see the prompt, never the
chosen ones), and the outputs are concatenated back in place. The linear layers see only real
tokens, and attention costs about the pairs' own triangles instead of R * T^2
(bench/RESULTS.md has the measurement on this CPU: the `padded rows` ablation).

:data:`KERNEL` is registered with transformers (``AttentionInterface`` for the attention,
``AttentionMaskInterface`` with SDPA's mask builder), and without spans in its call it is
exactly transformers' SDPA, so a model switched to it (:func:`adopt`) still generates,
evaluates and saves as an SDPA model (transformers does not save the kernel name). The spans
reach every attention layer as a keyword argument of the decoder's forward
(:func:`decoder_kwargs`), which transformers passes down through its layers, gradient
checkpointing included (the recomputation sees the same spans). An architecture that drops
the keyword on the way would attend across the whole flat row: the layout check
(:func:`asft.model.logprobs.shared_layout_supported`) compares with separate sequences and
catches that, and training then keeps the padded rows with their dense mask.

Used on CPUs, where it is measured; a GPU runs the BlockMask of flex_attention instead (one
kernel launch rather than one per pair and layer).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

#: the registered kernel name (``config._attn_implementation`` of an adopted model)
KERNEL = "asft_sdpa_spans"
#: the keyword argument that carries a :class:`SpanPlan` to every attention layer
KWARG = "asft_spans"


@dataclass
class Piece:
    """One pair (or plain sequence) of a flat row, as the kernel computes it.

    Attributes:
        start: its first position in the row; ``head_end``: the end of its prompt and first
            response, which attend causally (SDPA's ``is_causal``, whose kernel skips the
            blocks above the diagonal: no mask needed); ``end``: its end.
        tails: (start, end, keys, mask) of each later response (the rejected one, a third
            one): its queries attend the prompt and itself causally, never the responses
            before it; ``keys`` long [P + L], the row positions of prompt + itself; ``mask``
            bool [1, 1, L, P + L] over those keys (True = attend).
        positions: long [end - start], its position ids (a sliding window counts in them).
    """

    start: int
    head_end: int
    end: int
    tails: list[tuple[int, int, torch.Tensor, torch.Tensor]]
    positions: torch.Tensor


@dataclass
class SpanPlan:
    """Where each pair lies in a flat batch and how its attention runs (:class:`Piece`).

    Attributes:
        pieces: one per pair (or plain sequence), in row order.
        segment_ids: [T] long, the row's segments (for a windowed piece's full mask).
        windowed: full masks with a sliding window applied, cached per (piece, window).
    """

    pieces: list[Piece]
    segment_ids: torch.Tensor
    windowed: dict[tuple[int, int], torch.Tensor] = field(default_factory=dict)

    def window_mask(self, i: int, window: int) -> torch.Tensor:
        """Piece ``i``'s whole rule as one bool [1, 1, L, L] mask, keys fewer than ``window``
        positions back only (used when a piece is longer than a layer's sliding window)."""
        key = (i, window)
        if key not in self.windowed:
            from asft.model.masks import allowed  # masks imports this module's KERNEL

            piece = self.pieces[i]
            s = self.segment_ids[piece.start:piece.end][None]
            pos = piece.positions
            rule = allowed(torch.zeros_like(s), s)  # one pair: one group
            self.windowed[key] = (rule & ((pos[:, None] - pos[None, :]) < window))[:, None]
        return self.windowed[key]


def plan(batch: dict) -> SpanPlan:
    """The :class:`SpanPlan` of a flat batch (one row; ``spans`` from the collator), its masks
    built once per forward on the batch's device and shared by every layer."""
    if batch["input_ids"].shape[0] != 1:
        raise ValueError("a span plan needs a flat batch (one row): collate(..., flat=True)")
    device = batch["input_ids"].device
    pos = batch["position_ids"][0]
    pieces = []
    for _, start, end, lengths in batch["spans"]:
        prompt_end = start + lengths[0]
        head_end = prompt_end + (lengths[1] if len(lengths) > 1 else 0)
        tails, at = [], head_end
        for n in lengths[2:]:
            mask = torch.ones(n, lengths[0] + n, dtype=torch.bool, device=device)
            mask[:, lengths[0]:].tril_()
            keys = torch.cat([torch.arange(start, prompt_end, device=device),
                              torch.arange(at, at + n, device=device)])
            tails.append((at, at + n, keys, mask[None, None]))
            at += n
        pieces.append(Piece(start, head_end, end, tails, pos[start:end]))
    return SpanPlan(pieces, batch["segment_ids"][0])


def span_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor,
                   value: torch.Tensor, attention_mask: torch.Tensor | None, **kwargs):
    """transformers' attention-function signature: query [1, H, T, D], key and value
    [1, H_kv, T, D] -> ([1, T, H, D], None). With a :class:`SpanPlan` under :data:`KWARG`,
    transformers' SDPA runs per pair: causal over its prompt and first response, then once
    per later response over the keys prompt + itself with its mask (or, for a pair longer
    than the layer's sliding window, once over the whole pair with the windowed rule); without
    a plan this is transformers' SDPA over the given mask (generation, evaluation, a padded
    batch). On a CPU under bf16 or fp16 (autocast or low-precision weights) both attend in
    fp32 (:func:`_attend`)."""
    spans: SpanPlan | None = kwargs.pop(KWARG, None)
    low = _low_dtype(query)
    if spans is None:
        return _attend(module, query, key, value, attention_mask, low, **kwargs), None
    if query.shape[0] != 1:
        raise ValueError(f"{KERNEL}: spans need a flat batch of one row, got {query.shape[0]} rows")
    window = kwargs.pop("sliding_window", None)
    kwargs.pop("is_causal", None)  # said per call below

    def sdpa(q: slice, kv: torch.Tensor | slice, mask: torch.Tensor | None) -> torch.Tensor:
        k, v = (key[:, :, kv], value[:, :, kv]) if isinstance(kv, slice) else \
            (key.index_select(2, kv), value.index_select(2, kv))
        return _attend(module, query[:, :, q], k, v, mask, low, is_causal=mask is None, **kwargs)

    outs = []
    for i, piece in enumerate(spans.pieces):
        whole = slice(piece.start, piece.end)
        if window and piece.end - piece.start > window:
            outs.append(sdpa(whole, whole, spans.window_mask(i, window)))
            continue
        outs.append(sdpa(slice(piece.start, piece.head_end), slice(piece.start, piece.head_end), None))
        for start, end, keys, mask in piece.tails:
            outs.append(sdpa(slice(start, end), keys, mask))
    return torch.cat(outs, dim=1), None


def _low_dtype(query: torch.Tensor) -> torch.dtype | None:
    """The low precision a CPU attention call runs under (autocast's dtype, or bf16/fp16
    ``query``), for :func:`_attend` to attend in fp32 instead; None elsewhere (fp32, a GPU)."""
    if query.device.type != "cpu":
        return None
    if torch.is_autocast_enabled("cpu"):
        return torch.get_autocast_dtype("cpu")
    return query.dtype if query.dtype in (torch.bfloat16, torch.float16) else None


def _attend(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
            mask: torch.Tensor | None, low: torch.dtype | None, **kwargs) -> torch.Tensor:
    """transformers' SDPA -> [B, T, H, D]; with ``low`` set, in fp32 with autocast off and
    the output handed on in ``low``.

    Why: on a CPU, torch's flash-attention kernel runs slower in bf16 than in fp32 at a pair's
    lengths (2x at 60-200 tokens), and under autocast RoPE hands q and k over in fp32 anyway
    (the bf16 bench step ~9% faster and 0.3 GiB lower at peak; tests/model/test_spans.py).
    The padded path (no plan) does the same, so that the start-up layout check, which compares
    flat pairs with padded plain rows through this kernel, compares like with like: bf16
    attention against fp32 differs by up to 0.075 nats/token on SmolLM2-135M, far beyond the
    check's tolerance, and the run would fall back to padded rows for rounding alone."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if low is None:
        return sdpa_attention_forward(module, query, key, value, mask, **kwargs)[0]
    if mask is not None and mask.is_floating_point():
        mask = mask.float()
    with torch.autocast("cpu", enabled=False):
        out = sdpa_attention_forward(module, query.float(), key.float(), value.float(), mask,
                                     **kwargs)[0]
    return out.to(low)


def register() -> None:
    """Register :data:`KERNEL` with transformers (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    if KERNEL not in AttentionInterface._global_mapping:
        AttentionInterface.register(KERNEL, span_attention)
        AttentionMaskInterface.register(KERNEL, sdpa_mask)


def adopt(model: torch.nn.Module) -> bool:
    """Switch an SDPA ``model`` (or a peft wrapper of one) to :data:`KERNEL` in place; True
    when it now runs it. Other kernels are left alone (flex has its BlockMask, FA2 no mask)."""
    from asft.model.logprobs import attn_implementation, use_attention  # it imports this module

    current = attn_implementation(model)
    if current == KERNEL:
        return True
    if current != "sdpa":
        return False
    register()
    try:
        use_attention(model, KERNEL)
    except (ValueError, ImportError):
        return False
    # an architecture outside transformers' AttentionInterface keeps its kernel (with a warning)
    return attn_implementation(model) == KERNEL


def decoder_kwargs(batch: dict, kernel: str | None) -> dict:
    """The extra keyword arguments the decoder's forward takes for ``batch`` under ``kernel``:
    the span plan when the batch is flat and the kernel reads it, else none."""
    if kernel == KERNEL and "spans" in batch:
        return {KWARG: plan(batch)}
    return {}
