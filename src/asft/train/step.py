"""One optimizer step: batch -> scores -> stats -> loss -> backward, then the update.

The loss is looked up by name in the registry (:func:`asft.losses.compute`); nothing here
depends on which loss it is. A step sees ``batch_size x processes x grad_accum`` pairs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import torch

from asft import losses as registry
from asft.losses import SequenceStats
from asft.train import faults
from asft.train.distributed import any_of
from asft.train.setup import Run
from asft.train.sharding import as_float
from asft.train.stopping import NonFiniteLossError, nonfinite_message


def train_step(run: Run, step: int) -> bool:
    """Run optimizer step ``step`` (1-based); returns whether any process was asked to stop.

    Every process agrees, in one reduction, on whether the loss was finite anywhere: a
    non-finite loss or gradient norm raises :class:`NonFiniteLossError` before the update,
    so no weight is changed by that step.
    """
    acc, cfg = run.accelerator, run.cfg
    t_step = time.perf_counter()
    bad = torch.zeros((), dtype=torch.bool, device=acc.device)
    for micro in range(cfg.training.grad_accum):
        idx = run.order.micro_indices(step - 1, micro, acc.process_index)
        loss = micro_step(run, idx)
        bad |= ~torch.isfinite(loss.detach())
    if not acc.sync_gradients:
        raise RuntimeError("gradient accumulation out of step with the optimizer")
    nonfinite, stop = any_of(acc, bad, run.stop_signal is not None and run.stop_signal.requested)
    if nonfinite:
        raise NonFiniteLossError(nonfinite_message("loss", step, run.last_ckpt, run.out))
    lr = run.optimizer.param_groups[0]["lr"]
    max_norm = cfg.optim.max_grad_norm or float("inf")
    grad_norm = as_float(acc.clip_grad_norm_(run.scorer.parameters(), max_norm))
    if not math.isfinite(grad_norm):
        raise NonFiniteLossError(nonfinite_message("gradient norm", step, run.last_ckpt, run.out))
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    faults.hit("train.step")
    run.window.add_step(grad_norm, lr, time.perf_counter() - t_step)
    return stop


def micro_step(run: Run, indices: Sequence[int]) -> torch.Tensor:
    """Forward and backward of one micro-batch (the training pairs at ``indices``); returns
    its mean loss per pair (a scalar) and adds its metrics to the logging window."""
    batch = run.batch(indices)
    b = batch["num_pairs"]
    with run.accelerator.accumulate(run.scorer):
        logps, tokens = run.scorer(batch)
        ref = run.reference(batch, indices) if run.reference is not None else None
        stats = SequenceStats.from_scores(logps, tokens, ref, b, run.mean_over_processes)
        # looked up at call time, so that a test may wrap the registry's entry point
        losses, metrics = registry.compute(run.cfg.loss.name, stats, **run.cfg.loss.hparams)
        loss = faults.poison("train.loss", losses.sum() / b)
        run.accelerator.backward(loss)
    run.window.add_micro(losses, metrics, batch["num_tokens"])
    return loss
