"""The training loop: one loop on accelerate for every registered loss.

Data flows one way: pairs -> tokens -> batches -> log-probs -> loss -> optimizer step ->
metrics. :func:`train` is three parts: :func:`asft.train.setup.setup` returns a run,
:func:`asft.train.step.train_step` runs one optimizer step, :func:`finish` saves the model
and summarises. The loss is looked up by name in the registry; the loop has no per-loss
branch. A reference model exists only when ``LOSSES[name].needs_reference`` (see
:mod:`asft.train.reference`). Each optimizer step sees ``batch_size x processes x grad_accum``
pairs chosen by :class:`asft.train.sampling.DataOrder` from (seed, epoch) alone, so a run
resumed from a checkpoint (:mod:`asft.train.checkpoint`) continues exactly as the
uninterrupted run would have.

Run it from Python with :func:`train`, or as ``asft train`` (single process) and
``torchrun --nproc_per_node N -m asft.cli train ...`` or ``accelerate launch -m asft.cli train``
(DDP, or FSDP2 with ``distributed.strategy: fsdp``: :mod:`asft.train.sharding`).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from asft.config import Config
from asft.errors import AsftError
from asft.train import checkpoint as ckpt
from asft.train import sharding, shards
from asft.train.policy import save_final_model, trainable_names
from asft.train.probe import probe_due, probe_metrics
from asft.train.rundir import SUMMARY_FILE
from asft.train.setup import Run, setup
from asft.train.step import train_step
from asft.train.stopping import (
    NonFiniteLossError,
    StoppedBySignal,
    StopSignal,
    resume_hint,
)
from asft.train.tracking import MetricsWriteError, read_metrics

__all__ = ["NonFiniteLossError", "StoppedBySignal", "TrainResult", "finish", "train"]


@dataclass
class TrainResult:
    """What a run did and where its results are.

    Attributes:
        output_dir: the run's folder.
        model_dir: the final model (Hugging Face format), loadable with ``from_pretrained``.
        metrics_path: ``metrics.jsonl``.
        config_path: the resolved ``config.yaml``.
        steps: optimizer steps done in total (including those before a resume).
        pairs_seen: training pairs processed (steps x global batch).
        loss_first: mean loss of the first logged window; loss_last of the last one.
        probe_first: ``probe/*`` metrics at step 0 (before training); probe_last at the end.
        resumed_from: the checkpoint this run resumed from, if any.
        elapsed_s: wall-clock seconds of this invocation.
        timing: where those seconds went: ``data_s`` (reading and tokenizing), ``model_s``
            (model, optimizer, resume), ``reference_s`` (reference log-probs, e.g. the cache's
            precompute), ``setup_s`` (all of setup), ``first_step_at`` (Unix time the first
            step began) and ``train_s`` (the steps, logging and checkpoints).
        compiled_graphs: graphs ``torch.compile`` made in the main process by the end of the
            run (``training.compile``; the start-up layout check's included), None when not
            compiled: a count that grows with the steps means the run keeps recompiling.
    """

    output_dir: Path
    model_dir: Path | None
    metrics_path: Path
    config_path: Path
    steps: int
    pairs_seen: int
    loss_first: float | None = None
    loss_last: float | None = None
    probe_first: dict[str, float] = field(default_factory=dict)
    probe_last: dict[str, float] = field(default_factory=dict)
    resumed_from: Path | None = None
    elapsed_s: float = 0.0
    timing: dict[str, float] = field(default_factory=dict)
    compiled_graphs: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(self).items()}


def train(config: Config, *, resume: bool = False, overwrite: bool = False,
          console: Any = None) -> TrainResult:
    """Train ``config`` and return what was done; see the module docstring.

    Args:
        config: a validated :class:`asft.config.Config`.
        resume: continue from the newest complete checkpoint in the output folder (a fresh
            start when the folder has none; an error explaining why when all are damaged).
        overwrite: replace a previous run in the output folder.
        console: a rich Console for progress and messages (default: stderr).
    """
    run = setup(config, resume=resume, overwrite=overwrite, console=console)
    run.stop_signal = StopSignal()
    try:
        if run.start_step == 0 and probe_due(run, 0):
            run.tracker.log(0, probe_metrics(run))
        run.timing["first_step_at"] = time.time()
        t_train = time.perf_counter()
        for step in range(run.start_step + 1, run.total + 1):
            stop = train_step(run, step)
            after_step(run, step, stop)
        run.timing["train_s"] = time.perf_counter() - t_train
        run.tracker.sync()
        model_dir = save_model(run)
    except MetricsWriteError as err:
        raise AsftError(f"{err}; {resume_hint(run.last_ckpt)}") from None
    finally:
        run.stop_signal.restore()
        run.tracker.close()
    return finish(run, model_dir)


def after_step(run: Run, step: int, stop: bool) -> None:
    """Log the window and the probe when due, advance the bar, checkpoint when due or asked
    to stop (then raise :class:`StoppedBySignal`)."""
    cfg, tracker = run.cfg, run.tracker
    record: dict[str, float] = {}
    if step % cfg.logging.every == 0 or step == run.total:
        record.update(run.window.flush(run.accelerator))
        record["epoch"] = step / run.order.steps_per_epoch
    if probe_due(run, step):
        record.update(probe_metrics(run))
    if record:
        tracker.log(step, record)
    if "loss" in record:
        tracker.print(f"step {step}/{run.total}  {_info(record)}")
        tracker.advance(step, f"loss {record['loss']:.4f}")
    else:
        tracker.advance(step)
    stopping = stop and step < run.total
    if (cfg.checkpoint.every and step % cfg.checkpoint.every == 0) or stopping:
        tracker.sync()
        run.last_ckpt = save_checkpoint(run, step)
    if stopping:
        signal = run.stop_signal
        raise StoppedBySignal(f"stopped by {signal.name} after step {step} of {run.total}; "
                              f"checkpoint {run.last_ckpt} saved: continue with --resume",
                              code=128 + signal.number)


def _info(m: dict[str, float]) -> str:
    return (f"loss {m['loss']:.4f}  chosen {m['logps/chosen']:.3f}  rejected {m['logps/rejected']:.3f}"
            f"  acc {m['logps/accuracy']:.2f}  {m['throughput/pairs_per_s']:.2f} pairs/s")


def save_checkpoint(run: Run, step: int) -> Path:
    """A resumable checkpoint of ``step`` (see :mod:`asft.train.checkpoint`); its folder.
    Under ``fsdp`` every process writes its own shards (:mod:`asft.train.shards`); otherwise
    the main process writes the whole states."""
    acc, order = run.accelerator, run.order
    names = set(trainable_names(run.inner))
    window_tensors, window_meta = run.window.state()
    state = {
        "epoch": order.epoch_of(step),
        "pairs_seen": step * order.global_batch,
        "global_batch": order.global_batch,
        "num_processes": acc.num_processes,
        "scheduler": run.scheduler.state_dict(),
        "window": window_meta,
        "tracker": run.tracker.state(),
        "saved_at": datetime.now().isoformat(timespec="seconds"),
    }
    if sharding.is_sharded(run.scorer):
        whole: dict[str, Any] = {"model_state": None, "optimizer_state": None, "shards": (
            lambda folder: shards.save(folder, run.scorer, run.optimizer, names, acc.is_main_process))}
    else:
        full = acc.get_state_dict(run.scorer)
        whole = {"model_state": lambda: {k: v for k, v in full.items() if k in names},
                 "optimizer_state": run.optimizer.state_dict}
    return ckpt.save(acc, run.out / ckpt.DIRNAME, step, trainer_state=state,
                     rank_tensors=window_tensors, rank_meta={}, config_text=run.config_text,
                     keep_last=run.cfg.checkpoint.keep_last, **whole)


def save_model(run: Run) -> Path:
    """The final model in Hugging Face format; a failed write names what survives."""
    try:
        return save_final_model(run.accelerator, run.scorer, run.tokenizer, run.cfg, run.out)
    except OSError as err:
        raise AsftError(f"could not save the final model in {run.out / 'model'}: "
                        f"{err.strerror or err}; {resume_hint(run.last_ckpt)}") from None


def compiled_graphs() -> int:
    """Graphs torch.compile (dynamo) has made in this process so far."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def finish(run: Run, model_dir: Path | None) -> TrainResult:
    """The run's summary (first and last loss and probe, read back from metrics.jsonl),
    written to ``summary.json`` by the main process; then the processes part."""
    out, acc = run.out, run.accelerator
    records = read_metrics(out / "metrics.jsonl")
    losses = [r["loss"] for r in records if r.get("loss") is not None]
    probes = [{k: v for k, v in r.items() if k.startswith("probe/")} for r in records
              if "probe/logps/chosen" in r]
    result = TrainResult(
        output_dir=out, model_dir=model_dir, metrics_path=out / "metrics.jsonl",
        config_path=out / "config.yaml", steps=run.total,
        pairs_seen=run.total * run.order.global_batch,
        loss_first=losses[0] if losses else None, loss_last=losses[-1] if losses else None,
        probe_first=probes[0] if probes else {}, probe_last=probes[-1] if probes else {},
        resumed_from=run.resume_from, elapsed_s=time.perf_counter() - run.t_start,
        timing=dict(run.timing),
        compiled_graphs=compiled_graphs() if run.cfg.training.compile else None,
    )
    if run.main:
        ckpt.write_json(out / SUMMARY_FILE, result.to_dict())
    acc.wait_for_everyone()
    # the process group outlives the run: a staged run trains its next stage in it
    # (asft.train.stages ends it after the last one)
    return result
