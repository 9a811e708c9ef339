"""The memory floor of exact full fine-tuning with AdamW: what any trainer of the model holds
before its first activation.

One process (its own, like every job: :mod:`worker`) goes through the stages a trainer must,
and reads its resident set size after each:

    imports    torch and transformers imported (every trainer of a Hugging Face model needs
               them; asft train and TRL import more)
    weights    the model loaded in fp32 as ``asft train`` loads it, every weight read once (a
               training step reads them all; loaded weights may be mapped from the file and
               only count once touched)
    gradients  one fp32 gradient per weight (what the backward pass fills)
    adamw      asft's AdamW after one step: its two fp32 moments per weight (the step runs on
               zero gradients, which leaves the weights as they are)

Nothing here runs the model, so the last stage is a lower bound for ``asft train`` and for any
other exact trainer with fp32 master weights (16 bytes a parameter: weight, gradient, two
moments) on the same interpreter: the bench compares it with TRL ORPO's measured peak, against
the 0.4x memory target (issue 14). Resident size is read from /proc/self/status (VmRSS) where
there is one, else the peak (ru_maxrss), which equals it here because nothing is freed.
"""

from __future__ import annotations

from pathlib import Path

from jobs import Job, load_model, peak_rss_bytes


def rss_bytes() -> int:
    """This process's resident set size now (VmRSS); its peak where /proc is missing."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return peak_rss_bytes()


def measure_floor(job: Job) -> dict:
    """Resident bytes after each stage above for ``job``'s model (loaded in ``job.weights``,
    fp32 for the floor), with its parameter count and 16 bytes a parameter."""
    import torch
    import transformers  # noqa: F401  (part of the floor: every trainer imports it)

    from asft.config import Config, OptimConfig
    from asft.train.optim import build_optimizer

    rss = {"imports": rss_bytes()}
    model, _ = load_model(job)
    params = [p for p in model.parameters() if p.requires_grad]
    with torch.no_grad():
        for p in params:
            p.sum()  # every weight read once, as a step reads it
    rss["weights"] = rss_bytes()
    for p in params:
        p.grad = torch.zeros_like(p)
    rss["gradients"] = rss_bytes()
    opt = build_optimizer(model, Config(optim=OptimConfig(lr=1e-6, weight_decay=0.0)))
    opt.step()
    rss["adamw"] = rss_bytes()
    n = sum(p.numel() for p in params)
    return {"rss_bytes": rss, "parameters": n, "state_bytes": 16 * n}
