"""The training loop: one loop on accelerate for every registered loss.

Data flows one way: pairs -> tokens -> batches -> log-probs -> loss -> optimizer step ->
metrics. The loss is looked up by name in the registry; the loop has no per-loss branch.
A reference model exists only when ``LOSSES[name].needs_reference`` (see
:mod:`asft.train.reference`). Each optimizer step sees ``batch_size x processes x grad_accum`` pairs
chosen by :class:`asft.train.sampling.DataOrder` from (seed, epoch) alone, so a run resumed from a
checkpoint (:mod:`asft.train.checkpoint`) continues exactly as the uninterrupted run would have.

Run it from Python with :func:`train`, or as ``asft train`` (single process) and
``torchrun --nproc_per_node N -m asft.cli train ...`` or ``accelerate launch -m asft.cli train``
(DDP; FSDP and DeepSpeed through an accelerate config).
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from asft.config import Config, to_dict, to_yaml
from asft.errors import AsftError
from asft.train import checkpoint as ckpt
from asft.train import faults, rundir
from asft.train.optim import build_optimizer, lr_lambda
from asft.train.policy import build_model, load_trainable, save_final_model, trainable_names
from asft.train.rundir import DATA_REPORT, SUMMARY_FILE, default_output_dir
from asft.train.sampling import DataOrder, balanced_shard
from asft.train.tracking import MetricsWriteError, Window


class NonFiniteLossError(AsftError):
    """The loss or the gradient norm became NaN or infinite; the run stopped before stepping."""


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

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(self).items()}


# ---------------------------------------------------------------------------------------------
# Output folder and resume point


def _broadcast(accelerator: Any, value: Any) -> Any:
    """``value`` of the main process, on every process (an exception there is re-raised everywhere)."""
    if accelerator.num_processes == 1:
        if isinstance(value, BaseException):
            raise value
        return value
    from accelerate.utils import broadcast_object_list

    box = [value]
    broadcast_object_list(box, from_process=0)
    if isinstance(box[0], BaseException):
        raise box[0]
    return box[0]


# ---------------------------------------------------------------------------------------------
# Data


def load_examples(cfg: Config, tokenizer: Any, log: Callable[[str], None],
                  report_path: Path | None = None) -> tuple[list[Any], list[Any]]:
    """(training pairs, probe pairs), tokenized; the probe is ``data.probe_size`` pairs drawn
    with the seed and held out of training. Writes what loading and tokenizing dropped to
    ``report_path`` (JSON) when given."""
    from asft.data import DataError, load_pairs
    from asft.data.tokenize import tokenize_pairs
    from asft.model.load import cache_root

    try:
        loaded = load_pairs(cfg.data.source, limit=cfg.data.limit)
    except DataError as err:
        raise AsftError(f"data.source {cfg.data.source!r}: {err}") from None
    tok = tokenize_pairs(loaded.pairs, tokenizer, max_length=cfg.data.max_length,
                         max_prompt_length=cfg.data.max_prompt_length,
                         cache_dir=cache_root() / "tokens", overflow=cfg.data.overflow,
                         progress=report_path is not None)
    dropped = tok.report.num_dropped
    log(f"data: {len(tok.examples)} pairs from {cfg.data.source}"
        + (f"; {loaded.report.num_skipped} records skipped" if loaded.report.num_skipped else "")
        + (f"; {dropped} pairs dropped ({', '.join(f'{k} {v}' for k, v in tok.report.dropped.items())})"
           if dropped else ""))
    if report_path is not None:
        ckpt.write_json(report_path, {"load": loaded.report.to_dict(), "tokenize": tok.report.to_dict()})
    examples = list(tok.examples)
    n_probe = min(cfg.data.probe_size, len(examples) // 2)
    probe_idx = set(random.Random(cfg.seed).sample(range(len(examples)), n_probe))
    probe = [ex for i, ex in enumerate(examples) if i in probe_idx]
    train = [ex for i, ex in enumerate(examples) if i not in probe_idx]
    return train, probe


# ---------------------------------------------------------------------------------------------
# Metrics over a logging window


# ---------------------------------------------------------------------------------------------
# Model, optimizer, schedule


# ---------------------------------------------------------------------------------------------
# The loop


def _score_probe(accelerator: Any, scorer: Any, model: torch.nn.Module,
                 probe: Sequence[Any], make_batch: Callable[[Sequence[Any]], dict],
                 batch_size: int) -> dict[str, float]:
    """Mean per-token log-likelihood of the probe's chosen and rejected responses (no grad)."""
    mine = balanced_shard(len(probe), accelerator.process_index, accelerator.num_processes)
    sums = torch.zeros(4, dtype=torch.float64, device=accelerator.device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(mine), batch_size):
                chunk = mine[start:start + batch_size]
                logps, tokens = scorer(make_batch([probe[i] for i, _ in chunk]))
                b = len(chunk)
                counts = torch.tensor([c for _, c in chunk], dtype=torch.float64, device=sums.device)
                s = (logps.double() / tokens.clamp_min(1).double())
                s_w, s_l = s[:b], s[b:]
                sums += torch.stack([(s_w * counts).sum(), (s_l * counts).sum(),
                                     ((s_w > s_l).double() * counts).sum(), counts.sum()])
    finally:
        model.train(was_training)
    if accelerator.num_processes > 1:
        sums = accelerator.reduce(sums, "sum")
    chosen, rejected, correct, n = sums.tolist()
    n = max(n, 1.0)
    return {"probe/logps/chosen": chosen / n, "probe/logps/rejected": rejected / n,
            "probe/logps/margin": (chosen - rejected) / n, "probe/accuracy": correct / n}


def _info(m: dict[str, float]) -> str:
    return (f"loss {m['loss']:.4f}  chosen {m['logps/chosen']:.3f}  rejected {m['logps/rejected']:.3f}"
            f"  acc {m['logps/accuracy']:.2f}  {m['throughput/pairs_per_s']:.2f} pairs/s")


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
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState
    from accelerate.utils import set_seed
    from transformers.utils import logging as hf_logging

    from asft.data.collate import collate
    from asft.losses import LOSSES, SequenceStats, compute
    from asft.model.load import load_tokenizer
    from asft.model.logprobs import PreferenceScorer, move_batch, shared_layout_supported
    from asft.train.reference import build as build_reference
    from asft.train.tracking import Tracker, read_metrics

    t_start = time.perf_counter()
    cfg = config
    if resume and cfg.output_dir is None:
        raise AsftError("--resume needs the folder of the run to continue: pass --output-dir")
    # accelerate keeps its settings in process-wide singletons; a process that trains twice
    # (asft compare runs several methods) may change precision or accumulation in between.
    AcceleratorState._reset_state(reset_partial_state=False)
    GradientState._reset_state()
    hf_logging.disable_progress_bar()
    accelerator = Accelerator(cpu=not _has_accelerator(),
                              mixed_precision={"fp32": "no", "bf16-mixed": "bf16"}[cfg.training.precision],
                              gradient_accumulation_steps=cfg.training.grad_accum)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if accelerator.num_processes != world:
        raise AsftError(f"{world} processes were launched but accelerate set up "
                        f"{accelerator.num_processes}; each would train alone into the same folder")
    sharded = accelerator.distributed_type.value in ("FSDP", "DEEPSPEED")
    if sharded and (cfg.checkpoint.every or resume):
        # Their optimizer state is sharded and laid out by the engine: saving it from one
        # process, as asft.train.checkpoint does, would not resume exactly.
        raise AsftError(f"resumable checkpoints are not supported under "
                        f"{accelerator.distributed_type.value} yet; set checkpoint.every: 0 "
                        "(the final model is still saved) or train with DDP")
    main = accelerator.is_main_process
    out = Path(_broadcast(accelerator, cfg.output_dir or str(default_output_dir(cfg)) if main else None))
    cfg = dataclasses.replace(cfg, output_dir=str(out))
    config_text = to_yaml(cfg)

    plan: Any = None
    if main:
        try:
            out.mkdir(parents=True, exist_ok=True)
            plan = rundir.plan(cfg, out, resume, overwrite)
            ckpt.clean_stale(out / ckpt.DIRNAME)
            (out / "config.yaml").write_text(config_text)
        except (AsftError, OSError) as err:
            plan = err if isinstance(err, AsftError) else AsftError(f"cannot use {out}: {err}")
    resume_from, notes = _broadcast(accelerator, plan)

    from rich.console import Console

    console = console or Console(stderr=True)

    def log(message: str) -> None:
        if main:
            console.print(message, highlight=False)

    for note in notes:
        log(note)
    set_seed(cfg.seed)

    # The main process converts or builds the model and fills the token cache first; the
    # others then read both from the cache instead of racing to write them.
    with accelerator.main_process_first():
        tokenizer = _explain_load("tokenizer", cfg, lambda: load_tokenizer(
            cfg.model.name, trust_remote_code=cfg.model.trust_remote_code))
        train_ex, probe_ex = load_examples(cfg, tokenizer, log, out / DATA_REPORT if main else None)
    try:
        order = DataOrder(len(train_ex), cfg.training.batch_size, accelerator.num_processes,
                          cfg.training.grad_accum, cfg.seed)
    except ValueError as err:
        raise AsftError(str(err)) from None
    total = cfg.training.max_steps or cfg.training.epochs * order.steps_per_epoch
    warmup = (cfg.optim.warmup_steps if cfg.optim.warmup_steps is not None
              else math.ceil(cfg.optim.warmup_ratio * total))

    model = _explain_load("model", cfg, lambda: build_model(cfg, log))
    layout, pack = cfg.data.layout, cfg.data.pack
    # Both the shared layout and packing rest on the 4D mask; check the model honours it once.
    if (layout == "shared" or pack) and not shared_layout_supported(model):
        log("data: this model ignores the 4D attention mask; using the 'plain' layout without packing")
        layout, pack = "plain", False
    pad_id = tokenizer.pad_token_id

    def make_batch(examples: Sequence[Any]) -> dict:
        return move_batch(collate(list(examples), pad_id, layout, pack=pack), accelerator.device)

    scorer = PreferenceScorer(model)
    scorer.train()
    optimizer = build_optimizer(scorer, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg.optim.schedule, warmup, total))
    # The scheduler is stepped by hand once per optimizer step: accelerate's prepared scheduler
    # would step once per process, which makes the schedule depend on the process count.
    scorer, optimizer = accelerator.prepare(scorer, optimizer)
    inner = accelerator.unwrap_model(scorer)

    start_step = 0
    window = Window(accelerator.device)
    tracker_state: dict[str, Any] = {}
    if resume_from is not None:
        load_trainable(inner, ckpt.load_model_state(resume_from), resume_from)
        optimizer.load_state_dict(ckpt.load_optimizer_state(resume_from))
        state = ckpt.load_trainer_state(resume_from)
        if state["global_batch"] != order.global_batch:
            raise ckpt.CheckpointError(
                f"cannot resume from {resume_from}: it was trained with a global batch of "
                f"{state['global_batch']} pairs ({state['num_processes']} process(es)), this run has "
                f"{order.global_batch}; keep batch_size x processes x grad_accum the same")
        scheduler.load_state_dict(state["scheduler"])
        start_step = state["step"]
        tracker_state = state.get("tracker", {})
        rank_tensors, rank_meta = ckpt.load_rank_state(resume_from, accelerator.process_index)
        ckpt.restore_rng(rank_tensors, rank_meta)
        window.restore(rank_tensors, state["window"])
        log(f"resumed from {resume_from} (step {start_step})")

    peft_model = inner.model if hasattr(inner.model, "disable_adapter") else None
    train_batch = lambda idx: make_batch([train_ex[i] for i in idx])  # noqa: E731
    reference = build_reference(cfg, accelerator, scorer=scorer, peft_model=peft_model,
                                examples=train_ex, make_batch=train_batch, output_dir=out,
                                fresh=start_step == 0, log=log)
    needs_reference = LOSSES[cfg.loss.name].needs_reference
    hparams = cfg.loss.hparams
    log(f"training: loss {cfg.loss.name} ({', '.join(f'{k}={v:g}' for k, v in hparams.items())}), "
        f"{len(train_ex)} pairs, {total} steps of {order.global_batch} pairs, "
        f"{accelerator.num_processes} process(es), output {out}")

    tracker = Tracker(cfg.logging, out, total, start_step, to_dict(cfg), enabled=main,
                      state=tracker_state, console=console)
    last_ckpt = resume_from

    def probe_due(step: int) -> bool:
        every = cfg.logging.probe_every
        return bool(probe_ex) and every > 0 and (step == 0 or step % every == 0 or step == total)

    stop_signal = StopSignal()
    try:
        if start_step == 0 and probe_due(0):
            tracker.log(0, _score_probe(accelerator, scorer, inner.model, probe_ex, make_batch,
                                        cfg.training.batch_size))
        for step in range(start_step + 1, total + 1):
            t_step = time.perf_counter()
            bad = torch.zeros((), dtype=torch.bool, device=accelerator.device)
            for micro in range(cfg.training.grad_accum):
                idx = order.micro_indices(step - 1, micro, accelerator.process_index)
                batch = train_batch(idx)
                with accelerator.accumulate(scorer):
                    logps, tokens = scorer(batch)
                    b = batch["num_pairs"]
                    ref = reference(batch, idx) if needs_reference else None
                    stats = SequenceStats(logps[:b], logps[b:], tokens[:b], tokens[b:],
                                          None if ref is None else ref[:b],
                                          None if ref is None else ref[b:])
                    losses, metrics = compute(cfg.loss.name, stats, **hparams)
                    loss = faults.poison("train.loss", losses.sum() / b)
                    accelerator.backward(loss)
                bad |= ~torch.isfinite(loss.detach())
                window.add_micro(losses, metrics, batch["num_tokens"])
            if not accelerator.sync_gradients:
                raise RuntimeError("gradient accumulation out of step with the optimizer")
            nonfinite, stop = _any(accelerator, bad, stop_signal.requested)
            if nonfinite:
                raise NonFiniteLossError(_nonfinite_message("loss", step, last_ckpt, out))
            lr = optimizer.param_groups[0]["lr"]
            max_norm = cfg.optim.max_grad_norm or float("inf")
            grad_norm = float(accelerator.clip_grad_norm_(scorer.parameters(), max_norm))
            if not math.isfinite(grad_norm):
                raise NonFiniteLossError(_nonfinite_message("gradient norm", step, last_ckpt, out))
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            faults.hit("train.step")
            window.add_step(grad_norm, lr, time.perf_counter() - t_step)

            record: dict[str, float] = {}
            if step % cfg.logging.every == 0 or step == total:
                record.update(window.flush(accelerator))
                record["epoch"] = step / order.steps_per_epoch
            if probe_due(step):
                record.update(_score_probe(accelerator, scorer, inner.model, probe_ex, make_batch,
                                           cfg.training.batch_size))
            if record:
                tracker.log(step, record)
            if "loss" in record:
                tracker.print(f"step {step}/{total}  {_info(record)}")
                tracker.advance(step, f"loss {record['loss']:.4f}")
            else:
                tracker.advance(step)
            if (cfg.checkpoint.every and step % cfg.checkpoint.every == 0) or (stop and step < total):
                tracker.sync()
                last_ckpt = _save_checkpoint(accelerator, scorer, optimizer, scheduler, window,
                                             tracker, order, cfg, config_text, out, step)
            if stop and step < total:
                raise StoppedBySignal(f"stopped by {stop_signal.name} after step {step} of {total}; "
                                      f"checkpoint {last_ckpt} saved: continue with --resume",
                                      code=128 + stop_signal.number)
        tracker.sync()
        try:
            model_dir = save_final_model(accelerator, scorer, tokenizer, cfg, out)
        except OSError as err:
            raise AsftError(f"could not save the final model in {out / 'model'}: "
                            f"{err.strerror or err}; {_resume_hint(last_ckpt)}") from None
    except MetricsWriteError as err:
        raise AsftError(f"{err}; {_resume_hint(last_ckpt)}") from None
    finally:
        stop_signal.restore()
        tracker.close()

    records = read_metrics(out / "metrics.jsonl")
    losses_logged = [r["loss"] for r in records if r.get("loss") is not None]
    probes = [{k: v for k, v in r.items() if k.startswith("probe/")} for r in records
              if "probe/logps/chosen" in r]
    result = TrainResult(
        output_dir=out, model_dir=model_dir, metrics_path=out / "metrics.jsonl",
        config_path=out / "config.yaml", steps=total, pairs_seen=total * order.global_batch,
        loss_first=losses_logged[0] if losses_logged else None,
        loss_last=losses_logged[-1] if losses_logged else None,
        probe_first=probes[0] if probes else {}, probe_last=probes[-1] if probes else {},
        resumed_from=resume_from, elapsed_s=time.perf_counter() - t_start,
    )
    if main:
        ckpt.write_json(out / SUMMARY_FILE, result.to_dict())
    accelerator.wait_for_everyone()
    with suppress(AssertionError, RuntimeError, ValueError):
        accelerator.end_training()
    return result


def _explain_load(what: str, cfg: Config, load: Callable[[], Any]) -> Any:
    """``load()``, with loading failures (no such model, a broken folder) as an AsftError."""
    try:
        return load()
    except AsftError:
        raise
    except (OSError, ValueError) as err:
        name = cfg.model.name
        if name.startswith((".", "/", "~")) and not Path(name).expanduser().exists():
            raise AsftError(f"model.name {name!r}: no such folder") from None
        raise AsftError(f"model.name {name!r}: cannot load the {what}: {str(err)[:500]}") from None


def _has_accelerator() -> bool:
    """A GPU (CUDA/ROCm), XPU or MPS device; otherwise accelerate must be told to use the CPU,
    or it would not set up multi-process (gloo) training."""
    xpu = getattr(torch, "xpu", None)
    return (torch.cuda.is_available() or bool(xpu and xpu.is_available())
            or torch.backends.mps.is_available())


def _any(accelerator: Any, flag: torch.Tensor, stop: bool) -> tuple[bool, bool]:
    """(``flag`` on any process, ``stop`` on any process), in one reduction: every process
    must take the same branch, or the next collective would hang."""
    value = torch.stack([flag.to(torch.float32).reshape(()),
                         torch.tensor(float(stop), device=flag.device)])
    if accelerator.num_processes > 1:
        value = accelerator.reduce(value, "sum")
    nonfinite, stopped = value.tolist()
    return nonfinite > 0, stopped > 0


def _resume_hint(last_ckpt: Path | None) -> str:
    """What survives a failed write, and how to go on."""
    if last_ckpt:
        return f"the last checkpoint, {last_ckpt}, is intact: free space and pass --resume"
    return "no checkpoint was kept (checkpoint.every: 0)"


class StoppedBySignal(AsftError):
    """SIGTERM or SIGINT stopped the run after a step; a checkpoint of that step was saved."""


class StopSignal:
    """Turns the first SIGTERM (a cluster's preemption notice) or SIGINT (Ctrl-C) into a
    request to stop after the current step with a checkpoint; a second SIGINT interrupts at
    once. Installed only in the main thread (Python allows signal handlers nowhere else)."""

    def __init__(self) -> None:
        self.requested = False
        self.name, self.number = "", 0
        self._previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, number: int, frame: Any) -> None:
        if self.requested and number == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        self.name, self.number = signal.Signals(number).name, number

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


def _nonfinite_message(what: str, step: int, last: Path | None, out: Path) -> str:
    keep = (f"the last good checkpoint, {last}, is intact: fix the cause and pass --resume"
            if last else "no checkpoint was written yet")
    return (f"non-finite {what} at step {step}: training stopped before that step's update, "
            f"so no weights were changed by it; {keep}. Common causes: a learning rate too high "
            f"for the loss (try a lower optim.lr or optim.max_grad_norm), or bf16 overflow "
            f"(try model.dtype: fp32). Metrics up to step {step - 1} are in {out / 'metrics.jsonl'}.")


def _save_checkpoint(accelerator: Any, scorer: Any, optimizer: Any, scheduler: Any, window: Window,
                     tracker: Any, order: DataOrder, cfg: Config, config_text: str, out: Path,
                     step: int) -> Path:
    inner = accelerator.unwrap_model(scorer)
    names = set(trainable_names(inner))
    full = accelerator.get_state_dict(scorer)
    window_tensors, window_meta = window.state()
    state = {
        "epoch": order.epoch_of(step),
        "pairs_seen": step * order.global_batch,
        "global_batch": order.global_batch,
        "num_processes": accelerator.num_processes,
        "scheduler": scheduler.state_dict(),
        "window": window_meta,
        "tracker": tracker.state(),
        "saved_at": datetime.now().isoformat(timespec="seconds"),
    }
    return ckpt.save(
        accelerator, out / ckpt.DIRNAME, step,
        model_state=lambda: {k: v for k, v in full.items() if k in names},
        optimizer_state=optimizer.state_dict,
        trainer_state=state,
        rank_tensors=window_tensors,
        rank_meta={},
        config_text=config_text,
        keep_last=cfg.checkpoint.keep_last,
    )
