"""Per-sequence response log-probs from a Hugging Face causal LM, computing only what a loss uses.

The decoder runs once over a batch from :func:`asft.data.collate.collate`; the LM head and the
log-softmax then run only at the N positions that predict a response token, in chunks, inside
one autograd function that recomputes each chunk's logits in the backward pass. So neither the
[rows, length, vocab] logits nor a float32 [N, vocab] log-softmax ever exists whole: peak extra
memory is one [chunk, vocab] block. For a 49k vocabulary the head is most of a small model's
cost, and on HH-RLHF only about 13% of the positions of a plain padded batch carry loss
(bench/RESULTS.md: 334 response tokens among TRL's 2664 positions per step of 4 pairs).

Everything here is exact: the same numbers as ``log_softmax(model(...).logits)`` gathered at the
targets, up to float rounding (tests/model/test_logprobs.py checks to 1e-5 in fp32).
"""

from __future__ import annotations

import torch
from torch import nn

from asft.data.collate import Pair, collate
from asft.model.masks import attention_mask, attention_mask_4d, for_kernel
from asft.model.spans import KERNEL as SPANS_KERNEL
from asft.model.spans import decoder_kwargs

__all__ = ["HEADS", "PreferenceScorer", "attention_mask_4d", "move_batch", "shared_layout_refusal",
           "shared_layout_supported", "target_logprobs", "use_attention"]

HEADS = ("chunked", "full")


class _TargetLogProb(torch.autograd.Function):
    """log softmax(h W^T + b)[target] for each row of h, chunked, logits recomputed in backward.

    Forward memory: [chunk, V] float32 at a time plus the [N] log-sum-exps. Returns [N] float32
    (float64 for float64 inputs, which the tests use). With p = softmax of a chunk and
    go = the incoming gradient [n], the gradient wrt the logits is go * (onehot - p), so

        dh = go * (W[target] - p W),   dW += onehot^T (go h) - p^T (go h),   db += onehot^T go - p^T go

    The row scaling by go and the one-hot part act on [n, H] and [n] tensors, never on the
    [n, V] block, which only goes through one in-place exp and the matmuls (the elementwise
    passes over [n, V] cost as much as the matmuls on a CPU). Soft-capped logits take the
    direct route (their derivative scales each logit separately).

    Matmuls run in the autocast dtype when autocast is on (the backward pass runs outside
    autocast, so the dtype is recorded in forward and applied by hand), softmax math in fp32.
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, chunk: int, softcap: float):
        n = hidden.shape[0]
        acc = _acc_dtype(hidden.dtype)
        mm = _matmul_dtype(hidden.device, weight.dtype)
        w = weight.to(mm)
        out = torch.empty(n, dtype=acc, device=hidden.device)
        lse = torch.empty(n, dtype=acc, device=hidden.device)
        for i in range(0, n, chunk):
            logits = _softcap(_raw_logits(hidden[i:i + chunk].to(mm), w, bias, acc), softcap)
            target_logit = logits.gather(1, targets[i:i + chunk, None]).squeeze(1)
            lse[i:i + chunk] = _logsumexp_(logits)
            out[i:i + chunk] = target_logit - lse[i:i + chunk]
        ctx.save_for_backward(hidden, weight, bias, targets, lse)
        ctx.chunk, ctx.softcap, ctx.mm = chunk, softcap, mm
        return out

    @staticmethod
    def backward(ctx, grad_out):
        hidden, weight, bias, targets, lse = ctx.saved_tensors
        chunk, softcap, mm = ctx.chunk, ctx.softcap, ctx.mm
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        acc = _acc_dtype(hidden.dtype)
        w = weight.to(mm)
        grad_h = torch.zeros_like(hidden) if need_h else None
        # The weight gradient, float32 across chunks even for bf16 weights, starts as the first
        # chunk's product: a [V, H] block of zeros first would cost a pass over it and, on a
        # CPU, the page faults of a fresh allocation that size (a tenth of a second at V = 49k)
        grad_w = None
        grad_b = torch.zeros(weight.shape[0], dtype=acc, device=weight.device) if need_b else None
        for i in range(0, hidden.shape[0], chunk):
            h = hidden[i:i + chunk].to(mm)
            tgt = targets[i:i + chunk]
            go = grad_out[i:i + chunk].to(acc)
            raw = _raw_logits(h, w, bias, acc)
            if softcap:
                capped = _softcap(raw, softcap)
                g = capped.sub_(lse[i:i + chunk, None]).exp_().mul_(-go[:, None])
                g.scatter_add_(1, tgt[:, None], go[:, None])
                g.mul_(1 - torch.tanh(raw / softcap) ** 2)
                if need_b:
                    grad_b += g.sum(0)
                g = g.to(mm)
                if need_h:
                    grad_h[i:i + chunk] = g @ w
                if need_w:
                    grad_w = _accumulate(grad_w, g.T, h, acc, 1.0)
                continue
            p = raw.sub_(lse[i:i + chunk, None]).exp_()  # softmax, in the recomputed logits' memory
            if need_b:
                grad_b -= go @ p
                grad_b.index_add_(0, tgt, go)
            p = p.to(mm)
            if need_h:
                grad_h[i:i + chunk] = (w[tgt].to(acc) - (p @ w).to(acc)) * go[:, None]
            if need_w:
                gh = h.to(acc) * go[:, None]
                grad_w = _accumulate(grad_w, p.T, gh.to(mm), acc, -1.0)
                grad_w.index_add_(0, tgt, gh)
        return (
            grad_h,
            (grad_w if grad_w is not None else torch.zeros_like(weight, dtype=acc)).to(weight.dtype)
            if need_w else None,
            grad_b.to(bias.dtype) if need_b else None,
            None, None, None,
        )


def _accumulate(total: torch.Tensor | None, a: torch.Tensor, b: torch.Tensor,
                dtype: torch.dtype, alpha: float) -> torch.Tensor:
    """``total + alpha * (a @ b)`` in ``dtype``, in place where the operands allow (no [V, H]
    temporary when the matmul runs in ``dtype``); the first chunk's product starts the sum."""
    if total is None:
        first = (a @ b).to(dtype)
        return first if alpha == 1.0 else first.mul_(alpha)
    if a.dtype == dtype:
        return total.addmm_(a, b, alpha=alpha)
    return total.add_(a @ b, alpha=alpha)


def _logsumexp_(logits: torch.Tensor) -> torch.Tensor:
    """Row-wise log-sum-exp [n] of ``logits`` [n, V], overwriting it (saves two [n, V] buffers)."""
    top = logits.amax(dim=1, keepdim=True)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    return logits.sub_(top).exp_().sum(dim=1).log_().add_(top.squeeze(1))


def _matmul_dtype(device: torch.device, dtype: torch.dtype) -> torch.dtype:
    """The dtype the LM head's matmuls run in: autocast's when it is on, else the weights'."""
    if torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    return dtype


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """Softmax and accumulation precision: float32, or float64 for float64 inputs."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _raw_logits(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                acc: torch.dtype) -> torch.Tensor:
    """[n, V] logits of one chunk: the matmul in the operands' dtype, the rest in ``acc``."""
    raw = (h @ weight.T).to(acc)
    return raw + bias.to(acc) if bias is not None else raw


def _softcap(raw: torch.Tensor, softcap: float) -> torch.Tensor:
    """Gemma-2 style final logit soft-capping (identity when softcap is 0)."""
    return softcap * torch.tanh(raw / softcap) if softcap else raw


def target_logprobs(hidden: torch.Tensor, head: nn.Module, targets: torch.Tensor, chunk: int,
                    softcap: float = 0.0) -> torch.Tensor:
    """log p(target) for each row of ``hidden`` [N, H] under the linear LM ``head``: [N] float32.

    A head sharded by FSDP2 as a unit of its own holds only a shard of its weight outside its
    own forward, so the computation then runs as that forward, through the unit's hooks: they
    gather the weight before it, free it after, gather it again for the backward pass and
    reduce-scatter its gradient, as for any FSDP2 module.
    """
    def run(h: torch.Tensor) -> torch.Tensor:
        return _TargetLogProb.apply(h, head.weight, getattr(head, "bias", None), targets, chunk, softcap)

    if not _is_fsdp_unit(head):
        return run(hidden)
    head.forward = run  # for this one call: the module's own forward is the full-logits one
    try:
        return head(hidden)
    finally:
        del head.forward


def _is_fsdp_unit(module: nn.Module) -> bool:
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # a torch built without distributed
        return False
    return isinstance(module, FSDPModule)


def default_chunk(vocab: int, device: torch.device | str = "cpu") -> int:
    """Rows per LM-head chunk so that one [chunk, vocab] float32 block stays within a memory
    budget: 64 MB on a CPU (larger blocks only add cache misses there), and on a GPU 1/64 of
    its memory up to 1 GiB (2,048 rows at a 128k vocabulary), where bigger matmuls keep it
    busy. The GPU budget is untested (no GPU here)."""
    budget = 64 << 20
    device = torch.device(device)
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
        budget = max(budget, min(1 << 30, total // 64))
    return max(16, budget // 4 // max(vocab, 1))


def _unwrap(model: nn.Module) -> nn.Module:
    """The transformers model under a peft wrapper (LoRA layers stay injected in place)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


class PreferenceScorer(nn.Module):
    """Wraps a causal LM so that ``forward(batch)`` returns per-sequence response log-probs.

    Prepare this module (not the bare model) with accelerate, so DDP/FSDP see the real forward.

    Args:
        model: a Hugging Face causal LM (optionally wrapped by peft).
        head: ``chunked`` (response positions only, chunked, default) or ``full`` (the plain
            path: full logits and log_softmax, kept for ablations and as a test reference).
        chunk_size: rows per LM-head chunk; default :func:`default_chunk` for the device the
            batch runs on.

    Returns from forward: ``(logps, tokens)``, both [K*B]: summed log-probs (float32) and token
    counts of the chosen responses (first B), then the rejected ones, then (K = 3) the third
    responses (``num_seqs`` of the batch; an absent response scores 0 with 0 tokens).
    """

    def __init__(self, model: nn.Module, head: str = "chunked", chunk_size: int | None = None):
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"unknown head {head!r}; valid: {', '.join(HEADS)}")
        self.model = model
        self.head = head
        lm = _unwrap(model)
        self.vocab = lm.config.get_text_config().vocab_size  # the weight may become a shard
        self.chunk_size = chunk_size
        self.softcap = float(getattr(lm.config, "final_logit_softcapping", None) or 0.0)

    def forward(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        lm = _unwrap(self.model)
        embed = lm.get_input_embeddings().weight
        dtype = embed.dtype
        if batch["input_ids"].device != embed.device:
            batch = move_batch(batch, embed.device)
        kernel = attn_implementation(self.model)
        batch = for_kernel(batch, kernel)
        input_ids = batch["input_ids"]
        mask = attention_mask(batch, kernel, dtype)
        extra = decoder_kwargs(batch, kernel)
        index, targets = batch["target_index"], batch["target_ids"]
        if self.head == "full":
            logits = self.model(input_ids=input_ids, attention_mask=mask,
                                position_ids=batch["position_ids"], use_cache=False, **extra).logits
            logp = torch.log_softmax(logits.float().flatten(0, 1)[index], dim=-1)
            token_logps = logp.gather(1, targets[:, None]).squeeze(1)
        else:
            hidden = lm.get_decoder()(input_ids=input_ids, attention_mask=mask,
                                      position_ids=batch["position_ids"], use_cache=False,
                                      **extra).last_hidden_state
            chunk = self.chunk_size or default_chunk(self.vocab, hidden.device)
            token_logps = target_logprobs(hidden.flatten(0, 1)[index], lm.get_output_embeddings(),
                                          targets, chunk, self.softcap)
        n_seq = batch.get("num_seqs", 2 * batch["num_pairs"])
        seq = batch["target_seq"]
        # one slot past the last sequence takes the padding of asft.data.collate.pad_targets
        # (a compiled run's batches) and is dropped;
        # index_add rather than bincount, whose data-dependent shape breaks a compiled graph
        slots = torch.zeros(n_seq + 1, dtype=torch.float32, device=token_logps.device)
        logps = slots.index_add(0, seq, token_logps.float())[:n_seq]
        counts = torch.zeros(n_seq + 1, dtype=torch.long, device=seq.device)
        tokens = counts.index_add(0, seq, torch.ones_like(seq))[:n_seq]
        # copies, not views: FSDP2 hooks the root module's outputs for its backward, and warns
        # (every run, every process) that a view could lose that hook to an in-place op
        return logps.clone(), tokens.clone()


# kernels that do not run the shared layout: FlashAttention-2 takes no 4D mask of any kind (it
# packs padding-free instead: asft.data.collate.padding_free). flex runs it through a BlockMask
# (asft.model.masks.block_mask), checked on the CPU's forward against separate sequences
NO_SHARED_LAYOUT = ("flash_attention_2",)


def attn_implementation(model: nn.Module) -> str | None:
    """The attention kernel transformers set up for ``model`` (``sdpa``, ``eager``, ...)."""
    return getattr(_unwrap(model).config, "_attn_implementation", None)


def use_attention(model: nn.Module, kernel: str) -> None:
    """Switch ``model`` to attention ``kernel`` in place (transformers looks the kernel up at
    every forward, so a prepared or sharded model follows)."""
    _unwrap(model).set_attn_implementation(kernel)


def shared_layout_refusal(model: nn.Module, scorer: nn.Module | None = None,
                          low_precision: bool = False) -> str | None:
    """Why ``model`` cannot run asft's shared-prompt packed layout, or None when it can
    (arguments: :func:`shared_layout_supported`)."""
    kernel = attn_implementation(model)
    if kernel in NO_SHARED_LAYOUT:
        return f"attention {kernel!r} does not run the shared layout (it takes no 4D mask, so no " \
               "prompt sharing)"
    error: list[str] = []
    if not shared_layout_supported(model, error, scorer, low_precision):
        if error:
            return f"this model cannot run the 4D attention mask (the check raised {error[0]})"
        return "this model ignores the 4D attention mask"
    return None


def shared_layout_supported(model: nn.Module, error: list[str] | None = None,
                            scorer: nn.Module | None = None, low_precision: bool = False) -> bool:
    """Whether ``model`` honours a 4D attention mask and position ids, checked by computation.

    Scores a few random pairs with the shared (packed) layout and with the plain layout and
    compares (flat, pair by pair, when the model runs :data:`asft.model.spans.KERNEL`, where a
    layer that drops the span plan attends across pairs and fails the comparison). A model
    that raises, or silently ignores the 4D mask or the position ids, gives different numbers
    (seeing the chosen tokens moves the rejected log-probs far more than rounding does), and
    the caller falls back to ``plain``. Costs one small forward pass.
    The exception of a check that raised is appended to ``error`` (one line), for the caller
    to report.

    ``scorer``: the :class:`PreferenceScorer` that will run, as prepared (DDP-wrapped, or
    sharded by FSDP2, where a fresh scorer around the sharded model cannot run), so that the
    check runs the kernel and device of training; a fresh scorer when None. Under FSDP it is
    a collective: every process calls it. ``low_precision``: ``scorer`` computes in bf16
    (accelerate's autocast or FSDP2's mixed-precision policy under bf16-mixed), which the
    tolerance then allows for, as for bf16 weights.
    """
    lm = _unwrap(model)
    if attn_implementation(model) in NO_SHARED_LAYOUT:
        return False
    vocab = lm.config.get_text_config().vocab_size  # the weight may be a shard
    device = lm.get_input_embeddings().weight.device
    gen = torch.Generator().manual_seed(0)

    def ids(n: int) -> list[int]:
        return torch.randint(0, vocab, (n,), generator=gen).tolist()

    pairs = [Pair(ids(5), ids(4), ids(3)), Pair(ids(3), ids(2), ids(4))]
    scorer = scorer if scorer is not None else PreferenceScorer(model)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            flat = attn_implementation(model) == SPANS_KERNEL
            shared, tokens = scorer(move_batch(collate(pairs, 0, "shared", pack=True, flat=flat),
                                               device))
            plain, _ = scorer(move_batch(collate(pairs, 0, "plain"), device))
    except Exception as err:  # any failure of the custom mask path means: use the plain layout
        if error is not None:
            text = " ".join(str(err).split()) or type(err).__name__
            error.append(f"{type(err).__name__}: {text[:200]}")
        return False
    finally:
        model.train(was_training)
    half = low_precision or lm.get_input_embeddings().weight.dtype in (torch.float16, torch.bfloat16)
    per_token = ((shared - plain).abs() / tokens).max().item()
    return per_token < (5e-2 if half else 1e-3)


def move_batch(batch: dict, device: torch.device | str) -> dict:
    """The batch with its tensors on ``device`` (ints and strings unchanged)."""
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
