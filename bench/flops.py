"""Useful FLOPs of a preference step and the machine's measured matmul peak.

Useful FLOPs count only the work an ideal layout must do for a pair with prompt, chosen and
rejected lengths P, C, R (../shared/docs/performance-facts.md, "The floor"); padding, the
prompt's second copy, logits at positions that carry no loss and recomputation under
gradient checkpointing are waste and are not counted:

    layers     6 N (P + C + R)               N = parameters outside the embedding/LM head
    LM head    6 h V (C + R)                 only positions that predict a response token
    attention  6 L h [(P+C)^2 + (P+R)^2 - P^2]   causal, the prompt's block once

(6 = 2 forward + 4 backward FLOPs per multiply-add weight use.) A reference model (DPO)
adds one forward pass, a third of each term.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class ModelShape:
    """What the FLOPs formula needs of a decoder-only model.

    Attributes:
        layer_params: N, parameters outside the input embedding and the LM head.
        hidden: h, the hidden size.
        vocab: V, rows of the LM head.
        layers: L, decoder layers.
    """

    layer_params: int
    hidden: int
    vocab: int
    layers: int

    @classmethod
    def of(cls, model) -> ModelShape:
        """Read the shape of a Hugging Face causal LM."""
        emb = model.get_input_embeddings().weight
        head = model.get_output_embeddings().weight
        seen = {id(emb), id(head)}
        n = sum(p.numel() for p in model.parameters() if id(p) not in seen)
        cfg = model.config
        return cls(n, cfg.hidden_size, head.shape[0], cfg.num_hidden_layers)


def pair_flops(shape: ModelShape, P: int, C: int, R: int, reference: bool = False) -> float:
    """Useful training FLOPs for one pair (forward + backward, plus a reference forward)."""
    layers = 6.0 * shape.layer_params * (P + C + R)
    head = 6.0 * shape.hidden * shape.vocab * (C + R)
    attn = 6.0 * shape.layers * shape.hidden * ((P + C) ** 2 + (P + R) ** 2 - P ** 2)
    total = layers + head + attn
    return total * (4.0 / 3.0) if reference else total


def matmul_peak(dtype_name: str, n: int = 2048, seconds: float = 3.0, device: str = "cpu") -> float:
    """Best sustained FLOP/s of an [n, n] @ [n, n] product in ``dtype_name`` (fp32 or bf16) on
    ``device``. On a GPU the kernels run asynchronously, so each timed sample is a run of
    products closed by a synchronize (one product alone would time the launch)."""
    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
    b = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
    out = torch.empty(n, n, dtype=dtype, device=device)
    on_gpu = torch.device(device).type == "cuda"
    sync = torch.cuda.synchronize if on_gpu else (lambda: None)
    per_sample = 10 if on_gpu else 1
    for _ in range(per_sample):  # warm-up: thread pool, packing buffers, GPU clocks, cuBLAS
        torch.matmul(a, b, out=out)
    sync()
    best = float("inf")
    deadline = time.perf_counter() + seconds
    runs = 0
    while runs < 3 or time.perf_counter() < deadline:
        t0 = time.perf_counter()
        for _ in range(per_sample):
            torch.matmul(a, b, out=out)
        sync()
        best = min(best, (time.perf_counter() - t0) / per_sample)
        runs += 1
    return 2.0 * n ** 3 / best
