"""One measurement ("job"), the models it can name, and what every job reports.

Each job runs in its own process (:mod:`worker`), so its peak resident memory is its own.
"""

from __future__ import annotations

import resource
import sys
from dataclasses import asdict, dataclass, field

# The "small" model: a random Llama with SmolLM2's 49,152-token vocabulary, where the LM head
# is most of the cost (like the peers' figures in ../shared/docs/performance-facts.md).
SMALL = {"hidden": 256, "layers": 4}
MODELS = ("smollm2-135m", "small", "tiny-llama")
SYSTEMS = ("asft", "trl-orpo", "trl-dpo", "matmul", "profile")


@dataclass
class Job:
    """What one measuring process does.

    Attributes:
        label: row name in the tables, e.g. ``asft ASFT`` or ``asft ASFT, head full``.
        system: ``asft`` (asft's step), ``trl-orpo``, ``trl-dpo`` (TRL trainers), ``matmul``
            (the peak) or ``profile`` (torch.profiler over one asft step).
        model: ``smollm2-135m``, ``small`` or ``tiny-llama``.
        dtype: ``fp32`` or ``bf16``: the weights' dtype, for every system.
        workload: path of the workload JSON (:class:`workload.Workload`).
        loss: asft loss name (``asft`` or ``dpo``).
        layout: ``shared`` or ``plain`` (asft only).
        pack: several pairs per row (asft only).
        head: ``chunked`` or ``full`` (asft only).
        grad_ckpt: gradient checkpointing (TRL's default is on).
        threads: torch intra-op threads.
        lr: AdamW learning rate (TRL's default, 1e-6, for everyone).
        seed: model initialisation seed (the small model).
        matmul_size: n of the [n, n] @ [n, n] peak measurement.
        matmul_seconds: how long the peak measurement repeats the product.
    """

    label: str
    system: str
    model: str
    dtype: str
    workload: str = ""
    loss: str = "asft"
    layout: str = "shared"
    pack: bool = True
    head: str = "chunked"
    grad_ckpt: bool = True
    threads: int = 2
    lr: float = 1e-6
    seed: int = 0
    matmul_size: int = 2048
    matmul_seconds: float = 3.0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class StepLog:
    """Per-step measurements of one job, warm-up steps included (the first ``warmup``).

    Attributes:
        seconds: wall time of each optimizer step.
        cpu_seconds: CPU time of this process (all threads) in each step: less sensitive than
            wall time to other processes on the machine.
        positions: positions the system's model computed (rows x length, padding included).
        real_tokens: non-pad tokens in those rows (the prompt counts twice in a plain layout).
        phases: per-step seconds per phase (asft only), e.g. ``decoder fwd``.
    """

    seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    real_tokens: list[int] = field(default_factory=list)
    phases: list[dict[str, float]] = field(default_factory=list)


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def load_model(job: Job):
    """(model, tokenizer) for ``job``: same weights and dtype for every system."""
    import torch

    from asft.model.load import load_model as load_named
    from asft.model.load import load_tokenizer
    from asft.model.tiny import build_model

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[job.dtype]
    if job.model == "small":
        tok = load_tokenizer("smollm2-135m")
        model = build_model(len(tok), hidden=SMALL["hidden"], layers=SMALL["layers"], seed=job.seed)
        model.config.eos_token_id = tok.eos_token_id
        model.config.pad_token_id = tok.pad_token_id
        return model.to(dtype), tok
    if job.model not in MODELS:
        raise ValueError(f"unknown model {job.model!r}; valid: {', '.join(MODELS)}")
    return load_named(job.model, dtype=job.dtype), load_tokenizer(job.model)
