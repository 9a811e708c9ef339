"""TRL's ORPOTrainer and DPOTrainer, run by their own ``trainer.train()`` on the workload's pairs.

Each trainer gets the pairs as a conversational dataset (prompt messages, one assistant
message per response), tokenizes them with its own code and the same chat template, and
trains with its defaults except where the comparison needs equal settings: batch size, max
length, learning rate, precision (``bf16=True`` in the bf16 group, with bf16 or fp32 weights as
the job says; ``bf16=False`` in fp32), gradient checkpointing (TRL's default, on), sequential
sampling so that step i sees batch i.

Timing: a callback stamps every ``on_step_end``; step i lasts from the end of step i-1 to
its own end, which includes fetching and collating its batch (asft's step time includes
collation too). ``on_train_begin`` also gives the Unix time the first step begins (the end of
start-up) and the last ``on_step_end`` the end of training. A wrapper around the data
collator counts the positions and real tokens of every batch the trainer builds.
"""

from __future__ import annotations

import copy
import itertools
import tempfile
import time

from jobs import Job, StepLog
from workload import BenchPair


def trl_version() -> str | None:
    """The installed TRL version, or None when TRL is not installed."""
    try:
        import trl
    except ImportError:
        return None
    return trl.__version__


def _rows(batches: list[list[BenchPair]]) -> list[dict]:
    return [{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected}
            for batch in batches for p in batch]


class _CountingCollator:
    """Calls the trainer's collator and records each batch's positions and real tokens."""

    def __init__(self, inner, log: StepLog):
        self.inner = inner
        self.log = log

    def __call__(self, features):
        out = self.inner(features)
        if "chosen_attention_mask" in out:  # ORPO: chosen and rejected rows, padded together
            c, r = out["chosen_attention_mask"], out["rejected_attention_mask"]
            positions = 2 * c.shape[0] * max(c.shape[1], r.shape[1])
            real = int(c.sum() + r.sum())
        else:  # DPO: [2B, T] chosen rows then rejected rows
            positions = int(out["input_ids"].numel())
            real = int(out["attention_mask"].sum())
        self.log.positions.append(positions)
        self.log.real_tokens.append(real)
        return out


def run_trl(job: Job, model, tokenizer, batches: list[list[BenchPair]],
            max_length: int) -> tuple[StepLog, dict[str, float]]:
    """Train with TRL's ORPO or DPO trainer for ``len(batches)`` steps.

    Returns the step log and the Unix times ``first_step_at`` (``on_train_begin``) and
    ``last_step_at`` (the last ``on_step_end``).
    """
    import datasets
    import torch
    from transformers import TrainerCallback

    log = StepLog()
    ends: list[tuple[float, float]] = []
    stamps: dict[str, float] = {}

    # on a GPU the step's kernels may still run at on_step_end: wait for them before the stamp
    sync = torch.cuda.synchronize if job.device == "cuda" else (lambda: None)

    class StepClock(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            sync()
            stamps["first_step_at"] = time.time()
            ends.append((time.perf_counter(), time.process_time()))

        def on_step_end(self, args, state, control, **kwargs):
            sync()
            ends.append((time.perf_counter(), time.process_time()))
            stamps["last_step_at"] = time.time()

    batch_size = len(batches[0])
    common = dict(
        per_device_train_batch_size=batch_size, gradient_accumulation_steps=1,
        max_steps=len(batches), learning_rate=job.lr, max_length=max_length,
        bf16=job.dtype == "bf16", gradient_checkpointing=job.grad_ckpt,
        train_sampling_strategy="sequential", logging_steps=10**6, save_strategy="no",
        report_to="none", disable_tqdm=True, use_cpu=job.device in (None, "cpu"),
        dataloader_num_workers=0,
        seed=job.seed,
    )
    dataset = datasets.Dataset.from_list(_rows(batches))
    with tempfile.TemporaryDirectory(prefix="bench-trl-") as out:
        if job.system == "trl-orpo":
            from trl.experimental.orpo import ORPOConfig, ORPOTrainer

            args = ORPOConfig(output_dir=out, **common)
            trainer = ORPOTrainer(model=model, args=args, train_dataset=dataset,
                                  processing_class=tokenizer, callbacks=[StepClock()])
        elif job.system == "trl-dpo":
            from trl import DPOConfig, DPOTrainer

            args = DPOConfig(output_dir=out, **common)
            ref = copy.deepcopy(model).eval().requires_grad_(False)
            trainer = DPOTrainer(model=model, ref_model=ref, args=args, train_dataset=dataset,
                                 processing_class=tokenizer, callbacks=[StepClock()])
        else:
            raise ValueError(f"not a TRL system: {job.system!r}")
        if len(trainer.train_dataset) != len(dataset):
            raise RuntimeError(f"{job.system} dropped pairs: {len(trainer.train_dataset)} of {len(dataset)} kept")
        trainer.data_collator = _CountingCollator(trainer.data_collator, log)
        trainer.train()
    log.seconds = [b[0] - a[0] for a, b in itertools.pairwise(ends)]
    log.cpu_seconds = [b[1] - a[1] for a, b in itertools.pairwise(ends)]
    if len(log.seconds) != len(batches) or len(log.positions) != len(batches):
        raise RuntimeError(f"{job.system}: {len(log.seconds)} steps timed and {len(log.positions)} "
                           f"batches built for {len(batches)} batches")
    return log, stamps
