"""Setting a run up: processes, run folder, data, model, optimizer, resume point, reference.

:func:`setup` returns a :class:`Run`, everything the loop (:mod:`asft.train.loop`) and the
step (:mod:`asft.train.step`) need, so that neither re-derives anything from the config.
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from asft import atomic
from asft.config import Config, to_dict, to_yaml
from asft.errors import AsftError
from asft.losses import LOSSES
from asft.train import checkpoint as ckpt
from asft.train import rundir, sharding, shards
from asft.train.distributed import broadcast, has_accelerator
from asft.train.optim import build_optimizer, lr_lambda
from asft.train.policy import build_model, load_trainable, trainable_names
from asft.train.reference import Reference
from asft.train.rundir import DATA_REPORT, default_output_dir
from asft.train.sampling import DataOrder
from asft.train.stopping import StopSignal
from asft.train.tracking import Tracker, Window


@dataclass
class Run:
    """A training run between :func:`setup` and the loop's finish.

    Attributes:
        cfg: the resolved config (``output_dir`` filled in).
        accelerator: the accelerate ``Accelerator`` (device, processes, mixed precision).
        out: the run folder; ``config_text`` the resolved ``config.yaml`` written there.
        console: the rich Console of messages and the progress bar.
        tokenizer: the model's tokenizer (saved beside the final model).
        train_ex, probe_ex: tokenized training pairs and the held-out probe pairs.
        order: which pairs each process sees at each step (:class:`DataOrder`).
        total: optimizer steps of the whole run (including those before a resume).
        scorer: the prepared (DDP-wrapped when distributed) PreferenceScorer being trained.
        optimizer, scheduler: the prepared optimizer and its LR schedule (stepped by hand).
        make_batch: tokenized pairs -> a collated batch on the device, in the run's layout.
        window: metrics averaged over the current logging window.
        tracker: metrics.jsonl, TensorBoard, W&B and the progress bar (main process only).
        reference: reference log-probs, or None when the loss needs none.
        start_step: the step training starts after (0, or the checkpoint's step).
        resume_from: the checkpoint resumed from; last_ckpt the newest one written or read.
        stop_signal: SIGTERM/SIGINT turned into a stop request (installed by the loop).
        t_start: ``time.perf_counter()`` when setup began.
        timing: seconds of each part of setup (``data_s``, ``model_s``, ``reference_s``,
            ``setup_s`` in all); the loop adds ``first_step_at`` (Unix time) and ``train_s``.
    """

    cfg: Config
    accelerator: Any
    out: Path
    config_text: str
    console: Any
    tokenizer: Any
    train_ex: Sequence[Any]  # TokenStore views (memory-mapped)
    probe_ex: Sequence[Any]
    order: DataOrder
    total: int
    scorer: Any
    optimizer: Any
    scheduler: Any
    make_batch: Callable[[Sequence[Any]], dict]
    window: Window
    tracker: Tracker | None = None
    reference: Reference | None = None
    start_step: int = 0
    resume_from: Path | None = None
    last_ckpt: Path | None = None
    stop_signal: StopSignal | None = None
    t_start: float = 0.0
    timing: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def inner(self) -> Any:
        """The PreferenceScorer without its DDP/FSDP wrapper."""
        return self.accelerator.unwrap_model(self.scorer)

    def log(self, message: str) -> None:
        if self.main:
            self.console.print(message, highlight=False)

    def mean_over_processes(self, t: torch.Tensor) -> torch.Tensor:
        """A scalar averaged over the processes (a collective: every process calls it in the
        same step, as every loss computes the same statistics; itself in one process)."""
        if self.accelerator.num_processes == 1:
            return t
        return self.accelerator.reduce(t.detach().clone(), "mean")

    def batch(self, indices: Sequence[int]) -> dict:
        """The training pairs at ``indices``, collated on the device."""
        return self.make_batch([self.train_ex[i] for i in indices])


def setup(config: Config, *, resume: bool, overwrite: bool, console: Any = None) -> Run:
    """Everything :func:`asft.train.train` documents, up to the first step."""
    from accelerate.utils import set_seed
    from rich.console import Console

    t_start = time.perf_counter()
    if resume and config.output_dir is None:
        raise AsftError("--resume needs the folder of the run to continue: pass --output-dir")
    accelerator = start_accelerator(config)
    main = accelerator.is_main_process
    out = Path(broadcast(accelerator, config.output_dir or str(default_output_dir(config))
                         if main else None))
    cfg = dataclasses.replace(config, output_dir=str(out))
    config_text = to_yaml(cfg)
    resume_from, notes = plan_folder(accelerator, cfg, out, config_text, resume, overwrite)
    console = console or Console(stderr=True)

    def log(message: str) -> None:
        if main:
            console.print(message, highlight=False)

    for note in notes:
        log(note)
    set_seed(cfg.seed)
    t_data = time.perf_counter()
    # The main process converts or builds the model and fills the token cache first; the
    # others then read both from the cache instead of racing to write them.
    with accelerator.main_process_first():
        tokenizer = explain_load("tokenizer", cfg, lambda: _tokenizer(cfg))
        train_ex, probe_ex = load_examples(cfg, tokenizer, log, out / DATA_REPORT if main else None)
    train_ex = for_loss(cfg, train_ex)
    try:
        order = DataOrder(len(train_ex), cfg.training.batch_size, accelerator.num_processes,
                          cfg.training.grad_accum, cfg.seed, cfg.training.order == "random")
    except ValueError as err:
        raise AsftError(str(err)) from None
    total = cfg.training.max_steps or cfg.training.epochs * order.steps_per_epoch
    t_model = time.perf_counter()
    model = explain_load("model", cfg, lambda: build_model(cfg, log, accelerator.device.type))
    scorer, optimizer, scheduler = _optimization(cfg, accelerator, model, total, log)
    make_batch = _batcher(cfg, accelerator, model, tokenizer, log, scorer)
    cfg = _with_kernel(cfg, model)
    run = Run(cfg, accelerator, out, config_text, console, tokenizer, train_ex, probe_ex, order,
              total, scorer, optimizer, scheduler, make_batch,
              Window(accelerator.device), resume_from=resume_from, last_ckpt=resume_from,
              t_start=t_start)
    tracker_state = restore(run, resume_from) if resume_from is not None else {}
    t_ref = time.perf_counter()
    _attach_reference(run)
    now = time.perf_counter()
    run.timing = {"data_s": t_model - t_data, "model_s": t_ref - t_model, "reference_s": now - t_ref,
                  "setup_s": now - t_start}
    run.log("setup: {setup_s:.1f} s (data {data_s:.1f} s, model {model_s:.1f} s, "
            "reference {reference_s:.1f} s)".format(**run.timing))
    run.tracker = Tracker(cfg.logging, out, total, run.start_step, to_dict(cfg), enabled=main,
                          state=tracker_state, console=console)
    return run


def start_accelerator(cfg: Config) -> Any:
    """An Accelerator for this process, after checking the launch set up what it claims."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState
    from transformers.utils import logging as hf_logging

    # accelerate keeps its settings in process-wide singletons; a process that trains twice
    # (asft compare runs several methods) may change precision or accumulation in between.
    AcceleratorState._reset_state(reset_partial_state=False)
    GradientState._reset_state()
    hf_logging.disable_progress_bar()
    accelerator = Accelerator(cpu=not has_accelerator(),
                              mixed_precision={"fp32": "no", "bf16-mixed": "bf16"}[cfg.training.precision],
                              gradient_accumulation_steps=cfg.training.grad_accum)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if accelerator.num_processes != world:
        raise AsftError(f"{world} processes were launched but accelerate set up "
                        f"{accelerator.num_processes}; each would train alone into the same folder")
    if cfg.distributed.strategy == "fsdp" and accelerator.num_processes > 1:
        why = sharding.refusal(cfg)
        if why:
            raise AsftError(why)
    why = engine_refusal(accelerator.distributed_type.value)
    if why:
        raise AsftError(why)
    from asft.model.load import attention_refusal

    why = attention_refusal(cfg.model.attn_implementation, accelerator.device.type)
    if why:
        raise AsftError(why)
    return accelerator


def engine_refusal(kind: str) -> str | None:
    """Why an accelerate config's own engine cannot run asft, said before any weight loads."""
    if kind == "DEEPSPEED":
        # ZeRO-3 partitions the LM head that the chunked head reads outside the module's
        # forward, and the vocabulary read from its weight is 0: it would fail mid-setup.
        return ("DeepSpeed is not supported; launch without the DeepSpeed config and set "
                "distributed.strategy: fsdp (FSDP2, applied by asft) to shard the model")
    if kind == "FSDP":
        # its wrap policy finds no decoder layer inside asft's scorer: every step would
        # all-gather the whole model; asft shards layer by layer itself
        return ("accelerate's FSDP plugin is not used by asft; launch without the FSDP config "
                "and set distributed.strategy: fsdp (FSDP2, applied by asft layer by layer)")
    return None


def plan_folder(accelerator: Any, cfg: Config, out: Path, config_text: str, resume: bool,
                overwrite: bool) -> tuple[Path | None, list[str]]:
    """(checkpoint to resume from, notes for the log), decided by the main process for all;
    the main process also clears stale temporary folders and writes ``config.yaml``."""
    plan: Any = None
    if accelerator.is_main_process:
        try:
            out.mkdir(parents=True, exist_ok=True)
            plan = rundir.plan(cfg, out, resume, overwrite)
            ckpt.clean_stale(out / ckpt.DIRNAME)
            atomic.write_text(out / "config.yaml", config_text)
        except (AsftError, OSError) as err:
            plan = err if isinstance(err, AsftError) else AsftError(f"cannot use {out}: {err}")
    return broadcast(accelerator, plan)


def _tokenizer(cfg: Config) -> Any:
    from asft.model.load import load_tokenizer

    return load_tokenizer(cfg.model.name, trust_remote_code=cfg.model.trust_remote_code)


def load_examples(cfg: Config, tokenizer: Any, log: Callable[[str], None],
                  report_path: Path | None = None) -> tuple[Any, Any]:
    """(training pairs, probe pairs), tokenized by the one data loader
    (:func:`asft.data.spec.prepare`, as ``asft data check`` reads them); the probe is
    ``data.probe_size`` pairs drawn with the seed and held out of training. Writes what
    loading and tokenizing skipped and dropped to ``report_path`` (JSON) when given."""
    from rich.markup import escape

    from asft.data import DataError
    from asft.data.spec import prepare
    from asft.model.load import cache_root

    try:
        prepared = prepare(cfg.data, tokenizer, seed=cfg.seed, cache_dir=cache_root() / "tokens",
                           progress=report_path is not None)
    except DataError as err:
        raise AsftError(f"data.source {cfg.data.source!r}: {err}") from None
    log(f"data: {prepared.summary()}")
    for warning in prepared.warnings:
        log(f"[bold yellow]warning:[/] data: {escape(warning)}")
    if report_path is not None:
        ckpt.write_json(report_path, prepared.report())
    store = prepared.tokenized.examples  # memory-mapped: ranks share the pages
    n_probe = min(cfg.data.probe_size, len(store) // 2)
    probe_idx = sorted(random.Random(cfg.seed).sample(range(len(store)), n_probe))
    keep = np.ones(len(store), dtype=bool)
    keep[probe_idx] = False
    return store.take(np.flatnonzero(keep)), store.take(probe_idx)


def for_loss(cfg: Config, pairs: Any) -> Any:
    """The training pairs as loss ``cfg.loss.name`` reads them: with its third response
    (:class:`asft.data.views.WithExtra`) when it has one; refused with one line when the data
    holds unpaired examples (one side empty) and the loss needs pairs."""
    from asft.data.views import WithExtra

    spec = LOSSES[cfg.loss.name]
    lengths = np.asarray(pairs.lengths) if hasattr(pairs, "lengths") else None
    if lengths is not None and not spec.unpaired:
        one_sided = int(((lengths[:, 1] == 0) | (lengths[:, 2] == 0)).sum())
        if one_sided:
            takes = ", ".join(n for n, s in LOSSES.items() if s.unpaired)
            raise AsftError(f"data.source {cfg.data.source!r}: {one_sided} of {len(pairs)} training "
                            f"examples are unpaired (one response with a desirable/undesirable "
                            f"label); loss {cfg.loss.name!r} needs pairs: use a loss that reads "
                            f"unpaired examples ({takes})")
    return pairs if spec.extra is None else WithExtra(pairs, spec.extra)


def _batcher(cfg: Config, accelerator: Any, model: torch.nn.Module, tokenizer: Any,
             log: Callable[[str], None], scorer: Any = None) -> Callable[[Sequence[Any]], dict]:
    """Pairs -> a batch on the device, in the configured layout if the model supports it.

    The layout is checked with ``scorer``, the prepared scorer that trains (on the device,
    through DDP or FSDP2, with the kernel that runs); None checks a fresh one around ``model``.
    """
    from asft.data.collate import collate, pad_targets, padding_free
    from asft.model.logprobs import attn_implementation, move_batch

    layout, pack = cfg.data.layout, cfg.data.pack
    pad_id = tokenizer.pad_token_id
    # buckets for a compiled head; under fsdp only the layers are compiled and the head is eager
    bucketed = cfg.training.compile and not sharding.is_sharded(scorer)
    finish = pad_targets if bucketed else (lambda batch: batch)
    flat = _pair_by_pair(cfg, accelerator, model)
    # Both the shared layout and packing rest on the 4D mask; check the model honours it once.
    why = _layout_check(cfg, model, scorer, log) if (layout == "shared" or pack) else None
    if flat and why:
        flat = _keep_padded_rows(model, why, log)
        why = _layout_check(cfg, model, scorer, log)
    if flat:
        log("data: all pairs of a batch in one row without padding, attention pair by pair "
            "(the shared layout on sdpa, asft.model.spans)")
    if why and pack and attn_implementation(model) == "flash_attention_2":
        log(f"data: {why}; using the 'plain' layout packed padding-free (FlashAttention-2's "
            "variable-length sequences)")
        return lambda examples: move_batch(finish(padding_free(
            collate(list(examples), pad_id, "plain", pack=True))), accelerator.device)
    if why:
        log(f"data: {why}; using the 'plain' layout without packing")
        layout, pack = "plain", False
    return lambda examples: move_batch(finish(collate(list(examples), pad_id, layout, pack=pack,
                                                      flat=flat)), accelerator.device)


def _pair_by_pair(cfg: Config, accelerator: Any, model: torch.nn.Module) -> bool:
    """Whether batches go flat with attention pair by pair (:mod:`asft.model.spans`): the
    shared, packed layout on a CPU's sdpa (where it is measured; a GPU has flex's BlockMask),
    not compiled (each batch's spans are Python ints, which a compiled graph would guard on).
    Switches an sdpa ``model`` to the span kernel when so (:func:`asft.model.spans.adopt`)."""
    from asft.model import spans

    return (cfg.data.layout == "shared" and cfg.data.pack
            and torch.device(accelerator.device).type == "cpu" and not cfg.training.compile
            and spans.adopt(model))


def _keep_padded_rows(model: torch.nn.Module, why: str, log: Callable[[str], None]) -> bool:
    """Back from the span kernel to sdpa with padded rows and their dense mask, said in one
    line (the span kernel is an optimization: its failing never stops a run); False."""
    from asft.model.logprobs import use_attention

    use_attention(model, "sdpa")
    log(f"model: attention sdpa over padded rows, not pair by pair: {why}")
    return False


def _layout_check(cfg: Config, model: torch.nn.Module, scorer: Any,
                  log: Callable[[str], None]) -> str | None:
    """Why the shared layout cannot run (:func:`asft.model.logprobs.shared_layout_refusal`),
    or None. When ``auto`` chose flex_attention and the check raised there (a kernel that does
    not compile or run on this device), the model goes back to sdpa, said in one line, and is
    checked again: auto's choice is never what stops a run.

    Under ``bf16-mixed`` the prepared scorer computes in bf16 (accelerate's autocast, or
    FSDP2's policy), where padded and packed rows round differently (0.036 nats/token on
    SmolLM2-135M through sdpa), so its check allows for bf16 rounding. Rounding of that size
    would also hide a small leak across pairs (0.063 nats/token where a flat row ignores the
    pairs' bounds), so where the model can also run outside the prepared scorer (not
    sharded) the layout is checked a second time in fp32, on the same device and kernel, at
    fp32's tolerance."""
    from asft.model.logprobs import attn_implementation, shared_layout_refusal, use_attention

    low = cfg.training.precision == "bf16-mixed" and scorer is not None

    def check() -> str | None:
        why = shared_layout_refusal(model, scorer, low_precision=low)
        if why is None and low and not sharding.is_sharded(scorer):
            why = shared_layout_refusal(model)
        return why

    why = check()
    if why and "raised" in why and cfg.model.attn_implementation == "auto" \
            and attn_implementation(model) == "flex_attention":
        use_attention(model, "sdpa")
        log(f"model: attention sdpa instead of flex_attention, which auto chose: {why}")
        why = check()
    return why


def _with_kernel(cfg: Config, model: torch.nn.Module) -> Config:
    """``cfg`` naming the attention kernel that ``auto`` chose for the policy when it is not
    transformers' default (flex_attention on CUDA), so that a reference model loaded from it
    runs the same kernel on the same batches."""
    from asft.model.logprobs import attn_implementation

    kernel = attn_implementation(model)
    if cfg.model.attn_implementation != "auto" or kernel != "flex_attention":
        return cfg
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, attn_implementation=kernel))


def _compile(cfg: Config, scorer: torch.nn.Module, strategy: str, device: torch.device,
             log: Callable[[str], None]) -> None:
    """``torch.compile`` the scorer in place (its state dict keeps its names) with dynamic
    shapes: rows and lengths vary from batch to batch. The LM head loops over the response
    tokens in chunks, which specializes a graph to their count: the batcher pads it to a few
    buckets (:func:`asft.data.collate.pad_targets`), outside the compiled code, whose guards
    would otherwise see every raw count. The head's chunk size is fixed first, for the device
    (:func:`asft.model.logprobs.default_chunk` reads a GPU's properties, which has no place
    in a graph).

    Under ``fsdp`` each decoder layer is compiled on its own instead, before FSDP2 wraps it
    (as torchtitan does): FSDP2 gathers and frees a layer's weights in hooks around the
    layer's call, which stay outside its graph, and every layer runs the same code, so the
    layers share their graphs. The head and the rest of the model then run eagerly."""
    from torch._dynamo import list_backends

    from asft.model.logprobs import default_chunk

    backends = list_backends(exclude_tags=())
    if cfg.training.compile_backend not in backends:
        raise AsftError(f"training.compile_backend: unknown backend "
                        f"{cfg.training.compile_backend!r} (torch has: {', '.join(list_backends())}, "
                        "aot_eager, ...)")
    scorer.chunk_size = scorer.chunk_size or default_chunk(scorer.vocab, device)
    options = {"backend": cfg.training.compile_backend, "dynamic": True}
    if strategy == "fsdp":
        layers = sharding.decoder_layers(scorer.model)
        for layer in layers:
            layer.compile(**options)
        log(f"training: torch.compile of each of the {len(layers)} decoder layers "
            f"({cfg.training.compile_backend}, dynamic shapes; head and embeddings eager); "
            "the first steps compile")
        return
    scorer.compile(**options)
    log(f"training: torch.compile ({cfg.training.compile_backend}, dynamic shapes, response "
        "tokens padded to buckets); the first steps compile")


def _optimization(cfg: Config, accelerator: Any, model: torch.nn.Module,
                  total: int, log: Callable[[str], None]) -> tuple[Any, Any, Any]:
    """(prepared scorer, prepared optimizer, LR scheduler) for ``total`` steps."""
    from asft.model.logprobs import PreferenceScorer

    warmup = (cfg.optim.warmup_steps if cfg.optim.warmup_steps is not None
              else math.ceil(cfg.optim.warmup_ratio * total))
    scorer = PreferenceScorer(model)
    scorer.train()
    strategy = sharding.resolve(cfg.distributed.strategy, accelerator.num_processes,
                                sum(p.numel() for p in model.parameters()), accelerator.device)
    if cfg.training.compile:
        _compile(cfg, scorer, strategy, torch.device(accelerator.device), log)
    if strategy == "fsdp":
        # an explicit fsdp was judged in start_accelerator, before any weight loaded
        why = sharding.refusal(cfg) if cfg.distributed.strategy == "auto" else None
        if why:
            raise AsftError(f"{why} (distributed.strategy: auto chose fsdp for this model)")
        # sharded before the optimizer is built, so that AdamW's state is sharded too
        layers, head = sharding.shard(scorer.to(accelerator.device), cfg.training.precision,
                                      cfg.distributed.cpu_offload)
        log(f"distributed: fsdp (FSDP2 over {accelerator.num_processes} processes: {layers} "
            f"decoder layers{', the LM head' if head else ''}, then the whole model; fp32 "
            f"master weights sharded"
            + (", bf16 compute" if cfg.training.precision == "bf16-mixed" else "")
            + (", CPU offload" if cfg.distributed.cpu_offload else "") + ")")
    optimizer = build_optimizer(scorer, cfg)
    schedule = lr_lambda(cfg.optim.schedule, warmup, total)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    # The scheduler is stepped by hand once per optimizer step: accelerate's prepared scheduler
    # would step once per process, which makes the schedule depend on the process count.
    if strategy == "ddp":
        scorer, optimizer = accelerator.prepare(scorer, optimizer)
    return scorer, optimizer, scheduler


def restore(run: Run, path: Path) -> dict[str, Any]:
    """Load weights, optimizer, schedule, step, random state and metrics window of the
    checkpoint at ``path`` into ``run``; returns the tracker's saved state."""
    state = ckpt.load_trainer_state(path)
    # checked before any weight is read: the data order depends on the global batch
    if state["global_batch"] != run.order.global_batch:
        raise ckpt.CheckpointError(
            f"cannot resume from {path}: it was trained with a global batch of "
            f"{state['global_batch']} pairs ({state['num_processes']} process(es)), this run has "
            f"{run.order.global_batch}; keep batch_size x processes x grad_accum the same")
    if ckpt.layout_of(path) == "sharded":  # written under fsdp: each process reads its shards
        shards.load(path, run.scorer, run.optimizer, set(trainable_names(run.inner)))
    else:
        load_trainable(run.inner, ckpt.load_model_state(path), path)  # checks the names too
        run.optimizer.load_state_dict(ckpt.load_optimizer_state(path))
    run.scheduler.load_state_dict(state["scheduler"])
    run.start_step = state["step"]
    rank_tensors, rank_meta = ckpt.load_rank_state(path, run.accelerator.process_index)
    ckpt.restore_rng(rank_tensors, rank_meta)
    run.window.restore(rank_tensors, state["window"])
    run.log(f"resumed from {path} (step {run.start_step})")
    return state.get("tracker", {})


def _attach_reference(run: Run) -> None:
    """The reference log-probs the loss needs (none for reference-free losses)."""
    from asft.train.reference import build as build_reference

    cfg, inner = run.cfg, run.inner
    peft_model = inner.model if hasattr(inner.model, "disable_adapter") else None
    run.reference = build_reference(cfg, run.accelerator, scorer=run.scorer, peft_model=peft_model,
                                    examples=run.train_ex, make_batch=run.make_batch,
                                    output_dir=run.out, fresh=run.start_step == 0, log=run.log,
                                    needed=run.order.indices_of_steps(run.start_step, run.total))
    hparams = ", ".join(f"{k}={v:g}" for k, v in cfg.loss.hparams.items())
    run.log(f"training: loss {cfg.loss.name} ({hparams}), {len(run.train_ex)} pairs, {run.total} "
            f"steps of {run.order.global_batch} pairs, {run.accelerator.num_processes} "
            f"process(es), output {run.out}")


def explain_load(what: str, cfg: Config, load: Callable[[], Any]) -> Any:
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
