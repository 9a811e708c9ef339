"""Log-probs and gradients of the kernels only a GPU trains with, against sdpa one sequence
at a time (issue 14, item 6, on a GPU; never run by CI, which has no GPU).

    python scripts/gpu_check_kernels.py                    # on a CUDA machine, ~1 min
    python scripts/gpu_check_kernels.py --device cpu       # a rehearsal: sdpa and eager only

For each kernel the pairs go through what ``asft train`` runs: the batch its batcher builds
for that kernel (:func:`asft.train.setup._batcher`: flex's BlockMask on the shared packed
layout, FA2's padding-free rows), then :class:`asft.model.logprobs.PreferenceScorer`, then
the backward of the summed log-probs. The reference is the same weights under sdpa, one
sequence at a time, log-softmax in float64 (as tests/model/test_logprobs.py's ``naive``).

- sdpa, eager and flex_attention in fp32: log-probs within 1e-4 nats and every weight's
  gradient within 1e-3 of the reference's largest entry (flex's backward exists on CUDA
  only: on a CPU torch refuses it, which is why the CPU tests check its forward alone).
- flash_attention_2 (only where ``import flash_attn`` works) with bf16 weights, FA2 having no
  fp32 kernel, against the same bf16 weights under sdpa: within 5e-2 nats per token.

One line per kernel; exit status 1 when any differs or fails, 0 otherwise.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from types import SimpleNamespace

import torch
from transformers import AutoConfig

from asft.config import load_config
from asft.data.collate import Pair
from asft.model.load import load_model, load_tokenizer, resolve_model
from asft.model.logprobs import PreferenceScorer


def make_pairs(n: int, vocab: int, seed: int = 0) -> list[Pair]:
    """``n`` pairs of random ids of uneven lengths (prompts 20-60, responses 5-40 tokens)."""
    gen = torch.Generator().manual_seed(seed)

    def ids(lo: int, hi: int) -> list[int]:
        k = int(torch.randint(lo, hi, (1,), generator=gen))
        return torch.randint(3, vocab, (k,), generator=gen).tolist()

    return [Pair(ids(20, 60), ids(5, 40), ids(5, 40)) for _ in range(n)]


def reference(model: torch.nn.Module, pairs: list[Pair]) -> torch.Tensor:
    """Summed response log-probs [2B] (chosen then rejected), one sequence at a time."""
    out = []
    for which in ("chosen_ids", "rejected_ids"):
        for p in pairs:
            resp = getattr(p, which)
            ids = torch.tensor([p.prompt_ids + resp], device=next(model.parameters()).device)
            logp = torch.log_softmax(model(input_ids=ids).logits[0].double(), -1)
            start = len(p.prompt_ids) - 1
            pos = torch.arange(start, start + len(resp), device=ids.device)
            out.append(logp[pos, ids[0, start + 1:]].sum())
    return torch.stack(out)


def grads_of(model: torch.nn.Module, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {n: p.grad.detach().double().clone() for n, p in model.named_parameters()
            if p.grad is not None}


def sdpa_reference(name: str, dtype: str, pairs: list[Pair], device: str
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The reference log-probs [2B] and weight gradients: sdpa, one sequence at a time."""
    model = load_model(name, dtype=dtype, attn_implementation="sdpa").to(device).train()
    logps = reference(model, pairs)
    return logps.detach(), grads_of(model, logps.sum())


def check(name: str, kernel: str, dtype: str, pairs: list[Pair], device: str,
          ref: torch.Tensor, ref_grads: dict[str, torch.Tensor]) -> tuple[bool, str]:
    """(passed, one line) for ``kernel`` in ``dtype`` against the per-sequence sdpa ``ref``
    and ``ref_grads`` (:func:`sdpa_reference`, same weights and dtype)."""
    tokenizer = load_tokenizer(name)
    model = load_model(name, dtype=dtype, attn_implementation=kernel).to(device).train()
    said: list[str] = []
    cfg = load_config(None, [f"model.name={name}", f"model.attn_implementation={kernel}"])
    from asft.train.setup import _batcher  # asft train's own batch builder (private on purpose)

    batch = _batcher(cfg, SimpleNamespace(device=device), model, tokenizer, said.append)(pairs)
    logps, counts = PreferenceScorer(model)(batch)
    grads = grads_of(model, logps.sum())
    tokens = counts.double().clamp(min=1).to(ref.device)
    if dtype == "fp32":
        worst = (logps.double() - ref).abs().max().item()
        ok_logps = worst <= 1e-4
    else:  # FA2's bf16 against sdpa's bf16 on the same weights: rounding, per token
        worst = ((logps.double() - ref).abs() / tokens).max().item()
        ok_logps = worst <= 5e-2
    rel = max(((grads[n] - g).abs().max() / g.abs().max().clamp(min=1e-12)).item()
              for n, g in ref_grads.items())
    ok_grads = rel <= (1e-3 if dtype == "fp32" else 1e-1)
    layout = f"layout {batch.get('layout', 'shared')}, rows {tuple(batch['input_ids'].shape)}"
    line = (f"{kernel:<18} {dtype}: log-probs max |diff| {worst:.2e}"
            f"{' nats' if dtype == 'fp32' else ' nats/token'}, gradients max rel diff "
            f"{rel:.2e} ({layout}){'; ' + ' | '.join(said) if said else ''}")
    return ok_logps and ok_grads, line


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    p.add_argument("--model", default="tiny-llama", help="a name asft loads, or a saved folder")
    p.add_argument("--pairs", type=int, default=6)
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA GPU visible to torch; --device cpu rehearses sdpa and eager")
        return 1
    vocab = AutoConfig.from_pretrained(resolve_model(args.model)).vocab_size
    pairs = make_pairs(args.pairs, vocab)
    runs = [("sdpa", "fp32"), ("eager", "fp32")]
    if args.device == "cuda":
        runs.append(("flex_attention", "fp32"))
        try:
            importlib.import_module("flash_attn")
            runs.append(("flash_attention_2", "bf16"))
        except Exception as e:  # not installed, or built for another torch
            print(f"flash_attention_2: not checked (import flash_attn: {type(e).__name__})")
    failed, refs = 0, {}
    for kernel, dtype in runs:
        try:
            if dtype not in refs:  # one reference per dtype, shared by its kernels
                refs[dtype] = sdpa_reference(args.model, dtype, pairs, args.device)
            ok, line = check(args.model, kernel, dtype, pairs, args.device, *refs[dtype])
        except Exception as e:  # one kernel's failure is reported, the others still run
            ok, line = False, f"{kernel:<18} {dtype}: failed: {type(e).__name__}: {e}"[:600]
        failed += not ok
        print(("PASS " if ok else "FAIL ") + line, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
