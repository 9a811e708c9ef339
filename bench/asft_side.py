"""asft's training step rebuilt bare, timed: collate, forward, loss, backward, clip, AdamW.

The headline asft rows are real ``asft train`` processes (:mod:`cli_side`); this bare step is
the yardstick for what the product adds per step (the CLI-overhead ratio) and the place where
each optimization can be switched off (the ablation rows).

The step is what ``asft train`` does per optimizer step (src/asft/train/step.py), built from the
same parts: :func:`asft.data.collate.collate`, :class:`asft.model.logprobs.PreferenceScorer`,
:func:`asft.losses.compute` and asft's own AdamW (:func:`asft.train.optim.build_optimizer`), with
TRL's learning rate (1e-6), no weight decay and the gradient norm clipped at 1.0 like TRL.
Each optimization is a switch (layout, pack, flat, head), so the ablation runs the same code with
one switch off. Precision follows the job like the CLI's ``training.precision``: in the
``fp32`` group plain float32; in the ``bf16`` group fp32 weights with the forward and the
loss under ``torch.autocast("cpu", dtype=torch.bfloat16)`` (bf16-mixed, as accelerate runs
it), the backward and AdamW outside.

Phases are timed with module and tensor hooks, which cost microseconds and change nothing:
the decoder's forward, everything after it up to the loss (LM head, log-softmax, loss), the
backward down to the decoder's output (head backward), the rest of the backward (decoder,
recomputation under gradient checkpointing included), and the optimizer.
"""

from __future__ import annotations

import copy
import time

from jobs import Job, StepLog
from workload import BenchPair

PHASES = ("collate", "reference fwd", "decoder fwd", "head fwd + loss", "head bwd",
          "decoder bwd", "optimizer")


class _Clock:
    """Timestamps of the decoder's forward end and of its output's gradient."""

    def __init__(self, decoder):
        self.marks: dict[str, float] = {}
        self.enabled = True
        decoder.register_forward_pre_hook(self._pre)
        decoder.register_forward_hook(self._post)

    def _pre(self, module, args):
        if self.enabled:
            self.marks["dec_start"] = time.perf_counter()

    def _post(self, module, args, output):
        if not self.enabled:
            return
        self.marks["dec_end"] = time.perf_counter()
        hidden = output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0]
        if hidden.requires_grad:
            hidden.register_hook(self._grad)

    def _grad(self, grad):
        self.marks["hid_grad"] = time.perf_counter()


class AsftStep:
    """One optimizer step of asft per call, with the job's switches; see the module docstring."""

    def __init__(self, job: Job, model, tokenizer):
        from asft.config import Config, OptimConfig
        from asft.losses import LOSSES
        from asft.model import spans
        from asft.model.logprobs import PreferenceScorer
        from asft.train.optim import build_optimizer
        from asft.train.policy import enable_checkpointing

        self.job = job
        self.model = model
        self.ref_scorer = None
        # asft train's choice on a CPU (asft.train.setup._pair_by_pair), before the copy
        self.flat = job.layout == "shared" and job.pack and job.flat and spans.adopt(model)
        if LOSSES[job.loss].needs_reference:
            ref = copy.deepcopy(model).eval().requires_grad_(False)
            self.ref_scorer = PreferenceScorer(ref, head=job.head)
        model.train()
        if job.grad_ckpt:
            enable_checkpointing(model)  # asft train's own (non-reentrant)
        model.config.use_cache = False
        self.scorer = PreferenceScorer(model, head=job.head)
        self.opt = build_optimizer(model, Config(optim=OptimConfig(lr=job.lr, weight_decay=0.0)))
        self.clock = _Clock(model.get_decoder())
        self.pad = tokenizer.pad_token_id
        if job.dtype == "bf16" and job.weights != "fp32":
            raise ValueError(f"{job.label}: the bare step's bf16 mode is bf16-mixed, fp32 weights")
        self.autocast = job.dtype == "bf16"

    def __call__(self, examples: list[BenchPair], log: StepLog) -> None:
        """Run one step on ``examples`` and append its measurements to ``log``."""
        import torch

        from asft.data.collate import collate
        from asft.losses import SequenceStats, compute

        job = self.job
        c0, t0 = time.process_time(), time.perf_counter()
        batch = collate(examples, self.pad, job.layout, job.pack, flat=self.flat)
        t1 = time.perf_counter()
        B = batch["num_pairs"]
        ref_w = ref_l = None
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.autocast):
            if self.ref_scorer is not None:
                self.clock.enabled = False
                with torch.no_grad():
                    ref_logps, _ = self.ref_scorer(batch)
                self.clock.enabled = True
                ref_w, ref_l = ref_logps[:B], ref_logps[B:]
            t2 = time.perf_counter()
            logps, tokens = self.scorer(batch)
            stats = SequenceStats(logps[:B], logps[B:], tokens[:B], tokens[B:], ref_w, ref_l)
            losses, metrics = compute(job.loss, stats)
            loss = losses.sum() / metrics["pairs/scorable"].sum().clamp_min(1)
        t3 = time.perf_counter()
        loss.backward()
        t4 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        t5 = time.perf_counter()
        m = self.clock.marks
        log.seconds.append(t5 - t0)
        log.cpu_seconds.append(time.process_time() - c0)
        log.positions.append(int(batch["input_ids"].numel()))
        log.real_tokens.append(int(batch["num_tokens"]))
        log.phases.append({
            "collate": t1 - t0,
            "reference fwd": t2 - t1,
            "decoder fwd": m["dec_end"] - m["dec_start"],
            "head fwd + loss": t3 - m["dec_end"],
            "head bwd": m["hid_grad"] - t3,
            "decoder bwd": t4 - m["hid_grad"],
            "optimizer": t5 - t4,
        })


def run_asft(job: Job, model, tokenizer, batches: list[list[BenchPair]]) -> StepLog:
    """Train ``model`` one step per batch; returns the per-step log."""
    step = AsftStep(job, model, tokenizer)
    log = StepLog()
    for examples in batches:
        step(examples, log)
    return log


def profile_asft(job: Job, model, tokenizer, batches: list[list[BenchPair]], top: int = 15) -> dict:
    """torch.profiler over the last batch's step, the others as warm-up: top ops by self CPU,
    each with the FLOPs torch's ``FlopCounterMode`` counts for it (the matrix products and
    attention; the recomputation of gradient checkpointing included) in one more step on
    the same batch, run outside the profiler: the profiler's own FLOP estimate needs shape
    recording, whose overhead inflated the timed step 2.5x on this CPU (2026-12-07)."""
    from torch.profiler import ProfilerActivity, profile
    from torch.utils.flop_counter import FlopCounterMode

    step = AsftStep(job, model, tokenizer)
    log = StepLog()
    for examples in batches[:-1]:
        step(examples, log)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step(batches[-1], log)
    counter = FlopCounterMode(display=False)
    with counter:
        step(batches[-1], StepLog())
    flops = {str(op).replace(".", "::", 1): n for op, n in counter.get_flop_counts()["Global"].items()}
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    return {
        "step_s": log.seconds[-1],
        "total_self_cpu_s": total / 1e6,
        "top": [{"op": e.key, "calls": e.count, "self_cpu_s": e.self_cpu_time_total / 1e6,
                 "share": e.self_cpu_time_total / total, "flops": flops.get(e.key)}
                for e in events[:top]],
    }
