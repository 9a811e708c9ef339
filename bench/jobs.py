"""One measurement ("job"), the models it can name, and what every job reports.

Each job runs in its own process (:mod:`worker`), so its peak resident memory is its own.
"""

from __future__ import annotations

import resource
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

# The "small" model: a random Llama with SmolLM2's 49,152-token vocabulary, where the LM head
# is most of the cost (like the peers' figures in ../shared/docs/performance-facts.md).
SMALL = {"hidden": 256, "layers": 4}
MODELS = ("smollm2-135m", "small", "tiny-llama")
SYSTEMS = ("asft-cli", "asft", "trl-orpo", "trl-dpo", "matmul", "profile", "floor")
WEIGHTS = ("fp32", "bf16")


@dataclass
class Job:
    """What one measuring process does.

    Attributes:
        label: row name in the tables, e.g. ``asft ASFT`` or ``bare step, asft ASFT, head full``.
        system: ``asft-cli`` (a real ``asft train`` process, :mod:`cli_side`), ``asft`` (the
            bare step rebuilt from asft's parts, :mod:`asft_side`), ``trl-orpo``, ``trl-dpo``
            (TRL trainers), ``matmul`` (the peak), ``profile`` (torch.profiler over one bare
            step) or ``floor`` (the memory held before any activation: :mod:`floor`).
        model: ``smollm2-135m``, ``small``, ``tiny-llama`` or a saved model's folder (the GPU
            bench's ``--random-weights`` copy).
        dtype: the group's compute precision, ``fp32`` or ``bf16``. ``fp32``: plain float32
            (TRL ``bf16=False``, asft ``training.precision=fp32``); ``bf16``: TRL ``bf16=True``,
            asft ``training.precision=bf16-mixed`` (the bare step: bf16 autocast). The matmul
            peak of this dtype is the MFU's denominator.
        weights: the weights' dtype, ``fp32`` or ``bf16``; None (the default): ``dtype``.
        workload: path of the workload JSON (:class:`workload.Workload`).
        loss: asft loss name (``asft`` or ``dpo``).
        layout: ``shared`` or ``plain`` (asft only).
        pack: several pairs per row (asft only).
        flat: with ``shared`` and ``pack``, all pairs in one row without padding and attention
            pair by pair (:mod:`asft.model.spans`, what ``asft train`` does on a CPU); False:
            rows as long as the longest pair, padded, under one dense mask (asft only).
        head: ``chunked`` or ``full`` (asft only).
        grad_ckpt: gradient checkpointing (TRL's default is on).
        threads: torch intra-op threads.
        lr: AdamW learning rate (TRL's default, 1e-6, for everyone).
        seed: model initialisation seed (the small model).
        matmul_size: n of the [n, n] @ [n, n] peak measurement.
        matmul_seconds: how long the peak measurement repeats the product.
        warmup: warm-up steps of this job; None: the workload's. Fewer than the workload's
            are its last ones, so the timed steps start at the same batch for every job.
        steps: timed steps of this job, the first of the workload's timed batches; None: all.
        device: None for the CPU benchmark (bench/run.py), whose jobs run as they always have;
            ``cuda`` or ``cpu`` for bench/gpu.py's jobs: TRL trains on that device, the matmul
            peak is measured there, and ``asft train`` runs under bench/peak_child.py, which
            records the child's peak GPU memory.
        attn: ``model.attn_implementation`` of an ``asft-cli`` job; None: asft's default.
    """

    label: str
    system: str
    model: str
    dtype: str
    weights: str | None = None
    workload: str = ""
    loss: str = "asft"
    layout: str = "shared"
    pack: bool = True
    flat: bool = True
    head: str = "chunked"
    grad_ckpt: bool = True
    threads: int = 2
    lr: float = 1e-6
    seed: int = 0
    matmul_size: int = 2048
    matmul_seconds: float = 3.0
    warmup: int | None = None
    steps: int | None = None
    device: str | None = None
    attn: str | None = None

    def __post_init__(self) -> None:
        self.weights = self.weights or self.dtype
        if self.system not in SYSTEMS:
            raise ValueError(f"unknown system {self.system!r}; valid: {', '.join(SYSTEMS)}")
        if self.weights not in WEIGHTS:
            raise ValueError(f"unknown weights dtype {self.weights!r}; valid: {', '.join(WEIGHTS)}")

    def to_dict(self) -> dict:
        """The job as a dict; ``device`` and ``attn`` only when set, so the CPU benchmark's raw
        results keep the shape they had before bench/gpu.py."""
        d = asdict(self)
        for key in ("device", "attn"):
            if d[key] is None:
                del d[key]
        return d

    def batch_range(self, num_batches: int, workload_warmup: int) -> tuple[int, int, int]:
        """(start, stop, warmup): this job runs batches[start:stop], the first ``warmup`` of
        them untimed. The timed ones always start at the workload's first timed batch, so a
        shorter job (an ablation row) times a prefix of what the full-length rows time."""
        warm = workload_warmup if self.warmup is None else self.warmup
        timed = num_batches - workload_warmup if self.steps is None else self.steps
        if not (0 <= warm <= workload_warmup and 1 <= timed <= num_batches - workload_warmup):
            raise ValueError(f"{self.label}: {warm}:{timed} steps do not fit the workload's "
                             f"{workload_warmup}:{num_batches - workload_warmup}")
        start = workload_warmup - warm
        return start, workload_warmup + timed, warm


@dataclass
class StepLog:
    """Per-step measurements of one job, warm-up steps included (the first ``warmup``).

    Attributes:
        seconds: wall time of each optimizer step.
        cpu_seconds: CPU time of this process (all threads) in each step: less sensitive than
            wall time to other processes on the machine. Empty for ``asft-cli``: the step runs
            in the child process, whose CPU time per step nobody records.
        positions: positions the system's model computed (rows x length, padding included);
            empty for ``asft-cli`` (its metrics.jsonl does not say).
        real_tokens: non-pad tokens in those rows (the prompt counts twice in a plain layout);
            for ``asft-cli`` the tokens its metrics.jsonl reports per step.
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


def peak_child_rss_bytes() -> int:
    """Largest peak resident set size among the waited-for children of this process."""
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def load_model(job: Job):
    """(model, tokenizer) for ``job``: same weights for every system, in ``job.weights``."""
    import torch

    from asft.model.load import load_model as load_named
    from asft.model.load import load_tokenizer
    from asft.model.tiny import build_model

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[job.weights]
    if job.model == "small":
        tok = load_tokenizer("smollm2-135m")
        model = build_model(len(tok), hidden=SMALL["hidden"], layers=SMALL["layers"], seed=job.seed)
        model.config.eos_token_id = tok.eos_token_id
        model.config.pad_token_id = tok.pad_token_id
        return model.to(dtype), tok
    if job.model not in MODELS and not Path(job.model).is_dir():
        raise ValueError(f"unknown model {job.model!r}; valid: {', '.join(MODELS)} or a "
                         "saved model's folder")
    return load_named(job.model, dtype=job.weights), load_tokenizer(job.model)
