"""Compare methods on equal terms: same model, data, steps, batch and seed; only the loss (and
its hyperparameters) changes. Each method is trained with :func:`asft.train.train`, then it
and the untrained base model are evaluated on the same held-out pairs
(:func:`asft.evaluate.heldout.evaluate_pairs`); a Markdown report and the likelihood-dynamics
plot summarize them.

Each job (the base evaluation, then one per method) runs in a fresh process by default, so
the peak memory reported for it is its own and one method's leftovers cannot affect the next.
A job whose ``result.json`` exists is not run again: an interrupted comparison resumes.

Output folder::

    report.md        the table, observations, plot and reproducing command
    dynamics.png     probe log-likelihoods during training, one line per method
    results.json     every number of the report
    runs/<method>/   each method's training output (config.yaml, metrics.jsonl, model/) and
                     its result.json; runs/base/result.json for the untrained model
"""

from __future__ import annotations

import json
import math
import multiprocessing
import platform
import resource
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from asft import atomic
from asft.evaluate.methods import MethodSpec
from asft.experiments.report import MethodResult

DEFAULT_METHODS = "sft,dpo,orpo,simpo,asft,asft:beta=0.1,sft_weight=0"
RESULT_FILE = "result.json"


@dataclass
class CompareSettings:
    """A comparison.

    Attributes:
        methods: what to compare (:func:`asft.evaluate.methods.parse_methods`).
        output_dir: folder for the report, the plot and every run.
        config: base training YAML (None: the trainer's defaults, the default job).
        overrides: ``dotted.key=value`` training overrides applied to every method
            (e.g. ``model.name=tiny-llama``, ``training.max_steps=60``).
        eval_data: held-out source for evaluation; None: the training source's ``test`` split.
        eval_split: split of ``eval_data`` (None: ``test`` when eval_data is None).
        eval_samples: held-out pairs evaluated (generation and scoring).
        max_new_tokens: generated tokens per answer (greedy).
        eval_batch_size: prompts per generate call and pairs per scoring forward.
        isolate: run each job in a fresh process (per-job peak memory; slower start).
        rerun: ignore existing results and run every job again.
    """

    methods: list[MethodSpec]
    output_dir: Path
    config: str | None = None
    overrides: list[str] = field(default_factory=list)
    eval_data: str | None = None
    eval_split: str | None = None
    eval_samples: int = 100
    max_new_tokens: int = 24
    eval_batch_size: int = 16
    isolate: bool = True
    rerun: bool = False


def training_config(settings: CompareSettings, method: MethodSpec | None):
    """The trainer :class:`~asft.config.Config` for ``method`` (None: the base model's).

    Unless the settings fix ``data.limit``, only the pairs the budget uses are read
    (steps x global batch of one process, plus the probe): every method then sees the same
    pairs once, and a reference loss scores just those for its cached reference log-probs.
    """
    from asft.config import load_config

    overrides: list = list(settings.overrides)
    if method is not None:
        overrides += [("loss.name", method.name), ("loss.hparams", dict(method.hparams)),
                      ("output_dir", str(settings.output_dir / "runs" / method.slug))]
    cfg = load_config(settings.config, overrides)
    t = cfg.training
    if cfg.data.limit is None and t.max_steps is not None:
        needed = t.max_steps * t.batch_size * t.grad_accum + cfg.data.probe_size
        cfg = load_config(settings.config, [*overrides, ("data.limit", needed)])
    return cfg


def eval_source(settings: CompareSettings, cfg) -> tuple[str, str | None]:
    """(source, split) of the held-out pairs."""
    if settings.eval_data is not None:
        return settings.eval_data, settings.eval_split
    return cfg.data.source, settings.eval_split or "test"


def _peak_memory() -> int:
    """Peak memory of this process: GPU allocations when on CUDA, else resident set size."""
    import torch

    if torch.cuda.is_available() and torch.cuda.max_memory_allocated() > 0:
        return int(torch.cuda.max_memory_allocated())
    # ru_maxrss is in KiB on Linux, in bytes on macOS.
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def run_job(settings: CompareSettings, method: MethodSpec | None) -> MethodResult:
    """Train ``method`` (None: skip training, evaluate the base model) and evaluate it."""
    import torch

    from asft.data.spec import read
    from asft.evaluate.generation import GenerationConfig
    from asft.evaluate.heldout import EvalConfig, checker_for, evaluate_pairs
    from asft.model.load import load_model, load_tokenizer

    cfg = training_config(settings, method)
    label = method.label if method is not None else "base"
    run_dir = settings.output_dir / "runs" / (method.slug if method is not None else "base")
    train_s = 0.0
    model_name = cfg.model.name
    if method is not None:
        from asft.train import train

        start = time.perf_counter()
        result = train(cfg, overwrite=True)
        train_s = time.perf_counter() - start
        model_name = str(result.model_dir)
    source, split = eval_source(settings, cfg)
    # the held-out pairs are read with the training data's spec (format, columns, policies)
    spec = replace(cfg.data, source=source, split=split, limit=None)
    pairs = read(spec, seed=cfg.seed, limit=settings.eval_samples).pairs
    start = time.perf_counter()
    tokenizer = load_tokenizer(model_name)
    model = load_model(model_name, dtype=cfg.model.dtype)
    if torch.cuda.is_available():
        model = model.cuda()
    config = EvalConfig(
        generation=GenerationConfig(max_new_tokens=settings.max_new_tokens,
                                    batch_size=settings.eval_batch_size),
        num_samples=settings.eval_samples, max_length=cfg.data.max_length,
        max_prompt_length=cfg.data.max_prompt_length, score_batch_size=settings.eval_batch_size,
        overflow=cfg.data.overflow, boundary=cfg.data.boundary,
    )
    # Evaluate in the precision the methods train in (bf16 autocast over fp32 weights by default).
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.autocast(device, dtype=torch.bfloat16,
                        enabled=cfg.training.precision == "bf16-mixed"):
        metrics, generations = evaluate_pairs(model, tokenizer, pairs, config, checker_for(source))
    eval_s = time.perf_counter() - start
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic.write_jsonl(run_dir / "generations.jsonl", generations, ensure_ascii=False)
    return MethodResult(label, metrics, train_s, eval_s, _peak_memory(),
                        str(run_dir.relative_to(settings.output_dir)))


def _job_entry(settings: CompareSettings, method: MethodSpec | None, result_path: str) -> None:
    """Child-process entry: run the job and write its result (or its error) as JSON."""
    try:
        result = run_job(settings, method)
    except BaseException as err:  # reported to the parent, which records the failure
        result = MethodResult(method.label if method else "base",
                              error=f"{type(err).__name__}: {err}\n{traceback.format_exc()}")
    atomic.write_json(result_path, asdict(result))


def _run_isolated(settings: CompareSettings, method: MethodSpec | None, result_path: Path) -> MethodResult:
    ctx = multiprocessing.get_context("spawn")
    tmp = result_path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    proc = ctx.Process(target=_job_entry, args=(settings, method, str(tmp)))
    proc.start()
    proc.join()
    if not tmp.is_file():
        return MethodResult(method.label if method else "base",
                            error=f"the job's process ended with exit code {proc.exitcode} "
                                  "and no result (killed, or out of memory?)")
    return MethodResult(**json.loads(tmp.read_text()))


def read_result(path: Path) -> MethodResult | None:
    """The result saved in ``path``; None when it is unreadable or not a result of the right
    shape (a write cut short by a kill, a hand edit), so that its job is run again."""
    try:
        result = MethodResult(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError, RecursionError):
        return None

    def number(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    ok = (isinstance(result.label, str) and isinstance(result.metrics, dict)
          and all(isinstance(k, str) and (v is None or number(v)) for k, v in result.metrics.items())
          and number(result.train_s) and number(result.eval_s)
          and (result.peak_memory_bytes is None or number(result.peak_memory_bytes))
          and isinstance(result.run_dir, str) and isinstance(result.error, str))
    return result if ok else None


def run_compare(settings: CompareSettings, log=print) -> list[MethodResult]:
    """Run (or resume) every job and return the results, base model first.

    A failed job is recorded with its error and the comparison goes on; its result file is
    not written as final, so a rerun tries it again.
    """
    settings.output_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for method in [None, *settings.methods]:
        label = method.label if method is not None else "base"
        run_dir = settings.output_dir / "runs" / (method.slug if method is not None else "base")
        path = run_dir / RESULT_FILE
        previous = read_result(path) if path.is_file() and not settings.rerun else None
        if previous is not None:
            log(f"[{label}] done before; reusing {path}")
            results.append(previous)
            continue
        if path.is_file() and not settings.rerun:
            log(f"[{label}] {path} is unreadable (an interrupted write?); running the job again")
        log(f"[{label}] {'evaluating the base model' if method is None else 'training'}")
        run_dir.mkdir(parents=True, exist_ok=True)
        if settings.isolate:
            result = _run_isolated(settings, method, path)
        else:
            try:
                result = run_job(settings, method)
                result.peak_memory_bytes = None  # the process's peak covers earlier jobs too
            except Exception as err:
                result = MethodResult(label, error=f"{type(err).__name__}: {err}")
        if result.error:
            log(f"[{label}] failed: {result.error.splitlines()[0]}")
        else:
            atomic.write_json(path, asdict(result))
            log(f"[{label}] train {result.train_s:.0f}s, eval {result.eval_s:.0f}s")
        results.append(result)
    return results


def describe_machine() -> str:
    """CPU/GPU, thread count and torch version, for the report."""
    import torch

    if torch.cuda.is_available():
        device = torch.cuda.get_device_name(0)
    else:
        device = f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)"
    return f"{device}, torch {torch.__version__}, Python {platform.python_version()}"
