"""One job of a comparison (:class:`asft.experiments.sweep.Job`): train the method with
:func:`asft.train.train` (or reuse the model already in the job's folder), evaluate it on
the job's pairs with :func:`asft.evaluate.heldout.evaluate_pairs`, and save the result.

A job runs in a fresh process by default, so the peak memory reported for it is its own and
one job's leftovers cannot affect the next. A job whose result file exists and is well formed
is not run again: an interrupted comparison resumes job by job.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import resource
import sys
import time
import traceback
from dataclasses import asdict
from pathlib import Path

from asft import atomic
from asft.experiments.report import MethodResult
from asft.experiments.splits import TEST, VALIDATION, eval_source, pairs_for
from asft.experiments.sweep import DIVERGED, VALIDATION_FILE, Job


def training_config(settings, method, *, lr: float | None = None, seed: int | None = None,
                    folder: Path | None = None):
    """The trainer :class:`~asft.config.Config` for ``method`` (None: the base model's), with
    ``lr`` and ``seed`` overriding the config's when given, writing to ``folder`` (default
    ``runs/<method>`` of the comparison).

    Unless the settings fix ``data.limit``, only the pairs the budget uses are read
    (steps x global batch of one process, plus the probe): every method then sees the same
    pairs once, and a reference loss scores just those for its cached reference log-probs.
    """
    from asft.config import load_config

    overrides: list = list(settings.overrides)
    if method is not None:
        folder = folder or settings.output_dir / "runs" / method.slug
        overrides += [("loss.name", method.name), ("loss.hparams", dict(method.hparams)),
                      ("output_dir", str(folder))]
    overrides += [(key, v) for key, v in (("optim.lr", lr), ("seed", seed)) if v is not None]
    cfg = load_config(settings.config, overrides)
    if method is not None and method.before:
        # a staged method (sft>asft) splits the same step budget between its stages
        if cfg.training.max_steps is None:
            raise ValueError(f"{method.label}: a staged method needs training.max_steps to split")
        overrides.append(("stages", method.stages(cfg.training.max_steps)))
        cfg = load_config(settings.config, overrides)
    t = cfg.training
    if cfg.data.limit is None and t.max_steps is not None:
        needed = t.max_steps * t.batch_size * t.grad_accum + cfg.data.probe_size
        cfg = load_config(settings.config, [*overrides, ("data.limit", needed)])
    return cfg


def _peak_memory() -> int:
    """Peak memory of this process: GPU allocations when on CUDA, else resident set size."""
    import torch

    if torch.cuda.is_available() and torch.cuda.max_memory_allocated() > 0:
        return int(torch.cuda.max_memory_allocated())
    # ru_maxrss is in KiB on Linux, in bytes on macOS.
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def _model(cfg, job: Job, folder: Path) -> tuple[float, str]:
    """(training seconds, model to evaluate): train unless the job reuses its folder's model,
    whose training time its selection run recorded."""
    if job.method is None:
        return 0.0, cfg.model.name
    if not job.train:
        selection = read_result(folder / VALIDATION_FILE)
        return (selection.train_s if selection is not None else 0.0), str(folder / "model")
    from asft.train import train

    start = time.perf_counter()
    result = train(cfg, overwrite=True)
    return time.perf_counter() - start, str(result.model_dir)


def run_job(settings, job: Job) -> MethodResult:
    """Train (unless ``job`` says not to) and evaluate on ``job.split``; a selection run whose
    loss became non-finite returns a :data:`~asft.experiments.sweep.DIVERGED` result."""
    import torch

    from asft.evaluate.generation import GenerationConfig
    from asft.evaluate.heldout import EvalConfig, checker_for, evaluate_pairs
    from asft.model.load import load_model, load_tokenizer
    from asft.train import NonFiniteLossError

    folder = settings.output_dir / job.folder
    cfg = training_config(settings, job.method, lr=job.lr, seed=job.seed, folder=folder)
    result = MethodResult(job.method.label if job.method is not None else "base",
                          run_dir=job.folder, lr=cfg.optim.lr if job.method is not None else None,
                          seeds=[cfg.seed] if job.method is not None else [])
    try:
        result.train_s, model_name = _model(cfg, job, folder)
    except NonFiniteLossError as err:
        if job.split != VALIDATION:
            raise
        result.error = DIVERGED + str(err)
        return result
    # every job reads its pairs with the comparison's first seed: all see the same pairs
    pairs = pairs_for(settings, cfg, job.split, training_config(settings, None).seed)
    start = time.perf_counter()
    tokenizer = load_tokenizer(model_name)
    model = load_model(model_name, dtype=cfg.model.dtype,
                       attn_implementation=cfg.model.attn_implementation)
    if torch.cuda.is_available():
        model = model.cuda()
    config = EvalConfig(
        generation=GenerationConfig(max_new_tokens=settings.max_new_tokens,
                                    batch_size=settings.eval_batch_size),
        num_samples=len(pairs), max_length=cfg.data.max_length,
        max_prompt_length=cfg.data.max_prompt_length, score_batch_size=settings.eval_batch_size,
        overflow=cfg.data.overflow, boundary=cfg.data.boundary,
        # selecting by preference accuracy needs no generation, the slow part
        generate=job.split == TEST or settings.select_by == "bleu4",
    )
    # Evaluate in the precision the methods train in (bf16 autocast over fp32 weights by default).
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.autocast(device, dtype=torch.bfloat16,
                        enabled=cfg.training.precision == "bf16-mixed"):
        source = cfg.data.source if job.split == VALIDATION else eval_source(settings, cfg)[0]
        result.metrics, generations = evaluate_pairs(model, tokenizer, pairs, config,
                                                        checker_for(source))
    result.eval_s = time.perf_counter() - start
    result.peak_memory_bytes = _peak_memory()
    folder.mkdir(parents=True, exist_ok=True)
    if generations:
        name = "generations.jsonl" if job.split == TEST else "validation_generations.jsonl"
        atomic.write_jsonl(folder / name, generations, ensure_ascii=False)
    return result


def _job_entry(settings, job: Job, result_path: str) -> None:
    """Child-process entry: run the job and write its result (or its error) as JSON."""
    try:
        result = run_job(settings, job)
    except BaseException as err:  # reported to the parent, which records the failure
        result = MethodResult(job.method.label if job.method else "base",
                              error=f"{type(err).__name__}: {err}\n{traceback.format_exc()}")
    atomic.write_json(result_path, asdict(result))


def _run_isolated(settings, job: Job, result_path: Path) -> MethodResult:
    ctx = multiprocessing.get_context("spawn")
    tmp = result_path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    proc = ctx.Process(target=_job_entry, args=(settings, job, str(tmp)))
    proc.start()
    proc.join()
    if not tmp.is_file():
        return MethodResult(job.method.label if job.method else "base",
                            error=f"the job's process ended with exit code {proc.exitcode} "
                                  "and no result (killed, or out of memory?)")
    return MethodResult(**json.loads(tmp.read_text()))


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _numbers(d) -> bool:
    """A dict of text -> finite number or None."""
    return isinstance(d, dict) and all(isinstance(k, str) and (v is None or _number(v))
                                       for k, v in d.items())


def _well_formed(r: MethodResult) -> bool:
    return (isinstance(r.label, str) and _numbers(r.metrics)
            and _number(r.train_s) and _number(r.eval_s)
            and (r.peak_memory_bytes is None or _number(r.peak_memory_bytes))
            and isinstance(r.run_dir, str) and isinstance(r.error, str)
            and (r.lr is None or _number(r.lr))
            and isinstance(r.lr_grid, list) and all(_number(v) for v in r.lr_grid)
            and isinstance(r.seeds, list)
            and all(isinstance(s, int) and not isinstance(s, bool) for s in r.seeds)
            and isinstance(r.ci95, dict)
            and all(isinstance(k, str) and isinstance(v, list) and len(v) == 2
                    and all(_number(x) for x in v) for k, v in r.ci95.items())
            and isinstance(r.per_seed, list) and all(_numbers(m) for m in r.per_seed)
            and _numbers(r.validation))


def read_result(path: Path) -> MethodResult | None:
    """The result saved in ``path``; None when it is unreadable or not a result of the right
    shape (a write cut short by a kill, a hand edit), so that its job is run again."""
    try:
        result = MethodResult(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError, RecursionError):
        return None
    return result if _well_formed(result) else None


def _doing(job: Job) -> str:
    if job.method is None:
        return "evaluating the base model" + (" on the validation pairs" if job.split == VALIDATION else "")
    if not job.train:
        return "evaluating the model its selection run trained"
    return "training" + (" (lr selection: evaluated on the validation pairs)" if job.split == VALIDATION else "")


def run_one(settings, job: Job, log=print) -> MethodResult:
    """The result of ``job``: read back when it finished before (unless ``settings.rerun``),
    else run (in a fresh process when ``settings.isolate``) and saved.

    A failed job is returned with its error and not saved, so a rerun tries it again; a
    diverged selection run is saved (it is a final outcome, not an accident).
    """
    path = settings.output_dir / job.folder / job.result_file
    previous = read_result(path) if path.is_file() and not settings.rerun else None
    if previous is not None:
        log(f"[{job.label}] done before; reusing {path}")
        return previous
    if path.is_file() and not settings.rerun:
        log(f"[{job.label}] {path} is unreadable (an interrupted write?); running the job again")
    log(f"[{job.label}] {_doing(job)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if settings.isolate:
        result = _run_isolated(settings, job, path)
    else:
        try:
            result = run_job(settings, job)
            result.peak_memory_bytes = None  # the process's peak covers earlier jobs too
        except Exception as err:
            result = MethodResult(job.method.label if job.method else "base",
                                  error=f"{type(err).__name__}: {err}")
    if result.error.startswith(DIVERGED):
        atomic.write_json(path, asdict(result))
        log(f"[{job.label}] {result.error.splitlines()[0]}")
    elif result.error:
        log(f"[{job.label}] failed: {result.error.splitlines()[0]}")
    else:
        atomic.write_json(path, asdict(result))
        log(f"[{job.label}] train {result.train_s:.0f}s, eval {result.eval_s:.0f}s")
    return result
