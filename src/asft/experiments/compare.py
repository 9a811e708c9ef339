"""Compare methods on equal terms: same model, data, steps, batch and seed; only the loss (and
its hyperparameters) changes. Each method is trained with :func:`asft.train.train`, then it
and the untrained base model are evaluated on the same held-out pairs
(:func:`asft.evaluate.heldout.evaluate_pairs`); a Markdown report and the likelihood-dynamics
plot summarize them.

With a learning-rate grid and several seeds (:mod:`asft.experiments.sweep`), each method's
learning rate is chosen on validation pairs held out from training and test
(:mod:`asft.experiments.splits`), and the chosen one is retrained at every seed; the report
gives means over seeds with 95% t-intervals (:mod:`asft.experiments.intervals`).

Each job runs in a fresh process by default (:mod:`asft.experiments.jobs`), so the peak
memory reported for it is its own and one method's leftovers cannot affect the next. A job
whose result file exists is not run again: an interrupted comparison resumes job by job.

Output folder::

    report.md        the table, observations, plot and reproducing command
    dynamics.png     probe log-likelihoods during training, one line per method
    results.json     every number of the report, one row per method (base model first)
    runs/<method>/   each method's training output (config.yaml, metrics.jsonl, model/) and
                     its result.json; runs/base/result.json for the untrained model. With a
                     grid or several seeds, one folder per run instead:
                     runs/<method>/lr-<lr>/seed-<seed>/ with validation.json (selection
                     runs) and result.json (test runs); runs/base/validation.json.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from pathlib import Path

from asft.evaluate.methods import MethodSpec, number_text
from asft.experiments.jobs import read_result, run_one, training_config
from asft.experiments.report import MethodResult
from asft.experiments.splits import TEST, VALIDATION, eval_source
from asft.experiments.sweep import (
    BASE_FOLDER,
    CRITERIA,
    Job,
    base_row,
    is_swept,
    lr_grid,
    method_row,
    run_folder,
    seed_list,
    select_lr,
    selection_failure,
)

__all__ = ["DEFAULT_METHODS", "CompareSettings", "eval_source", "read_result", "run_compare",
           "training_config"]

DEFAULT_METHODS = "sft,dpo,orpo,simpo,asft,asft:beta=0.1,sft_weight=0"


@dataclass
class CompareSettings:
    """A comparison.

    Attributes:
        methods: what to compare (:func:`asft.evaluate.methods.parse_methods`); a method's
            own ``lr=a|b`` replaces ``lrs`` for it.
        output_dir: folder for the report, the plot and every run.
        config: base training YAML (None: the trainer's defaults, the default job).
        overrides: ``dotted.key=value`` training overrides applied to every method
            (e.g. ``model.name=tiny-llama``, ``training.max_steps=60``).
        eval_data: held-out source for evaluation; None: the training source's ``test`` split.
        eval_split: split of ``eval_data`` (None: ``test`` when eval_data is None).
        eval_samples: held-out (test) pairs evaluated (generation and scoring).
        max_new_tokens: generated tokens per answer (greedy).
        eval_batch_size: prompts per generate call and pairs per scoring forward.
        isolate: run each job in a fresh process (per-job peak memory; slower start).
        rerun: ignore existing results and run every job again.
        lrs: learning rates shared by the methods; with more than one, each method's is
            chosen on the validation pairs. Empty: the config's ``optim.lr``, no choice.
        seeds: runs per method at its learning rate, with seeds counted up from the config's
            ``seed``; metrics are their mean with a 95% t-interval.
        select_by: the validation criterion that chooses the learning rate: ``accuracy``
            (preference accuracy, mean log-prob per token of chosen > rejected; no
            generation) or ``bleu4`` (BLEU-4 of greedy answers against the chosen ones).
        val_samples: validation pairs, read after the training pairs of the training source.
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
    lrs: list[float] = field(default_factory=list)
    seeds: int = 1
    select_by: str = "accuracy"
    val_samples: int = 100

    def __post_init__(self) -> None:
        if self.select_by not in CRITERIA:
            raise ValueError(f"select_by must be one of {', '.join(CRITERIA)}, got {self.select_by!r}")
        for name in ("eval_samples", "seeds", "val_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    def selects(self, cfg) -> bool:
        """Whether any method chooses its learning rate (has more than one)."""
        return any(len(lr_grid(self, m, cfg)) > 1 for m in self.methods)


def check_configs(settings: CompareSettings) -> None:
    """Build every training config the comparison will use (each method at each learning
    rate), so that a bad value stops it before anything runs; and, when learning rates are
    chosen, make sure validation pairs can be held out after the training pairs."""
    cfg = training_config(settings, None)
    for method in settings.methods:
        for lr in lr_grid(settings, method, cfg):
            training_config(settings, method, lr=lr)
    if settings.selects(cfg) and cfg.data.limit is None:
        from asft.errors import AsftError

        raise AsftError("choosing a learning rate holds out validation pairs after the training "
                        "pairs, so training must read a bounded prefix of its source: set "
                        "training.max_steps or data.limit")


def _method(settings: CompareSettings, method: MethodSpec, cfg, seeds: list[int], log) -> MethodResult:
    """A method's row: choose its learning rate when it has several, then test it at each seed."""
    grid, swept, key = lr_grid(settings, method, cfg), is_swept(settings, method), CRITERIA[settings.select_by]
    selection = {}
    if len(grid) > 1:
        for lr in grid:
            job = Job(method, VALIDATION, lr, seeds[0], run_folder(method, lr, seeds[0], True))
            selection[lr] = run_one(settings, job, log)
        failed = selection_failure(method, grid, seeds, selection, key)
        if failed is not None:
            log(f"[{method.label}] no learning rate chosen: {failed.error.splitlines()[0]}")
            return failed
        chosen = select_lr(selection, key)
        log(f"[{method.label}] chose lr {number_text(chosen)} (validation {key} "
            f"{selection[chosen].metrics[key]:.4g})")
    else:
        chosen = grid[0]
    tests = []
    for seed in seeds:
        folder = run_folder(method, chosen, seed, swept)
        # the selection run at the chosen lr is the first seed's run: same config and data
        reuse = seed == seeds[0] and chosen in selection and (settings.output_dir / folder / "model").is_dir()
        job = Job(method, TEST, chosen if swept else None, seed if swept else None, folder, not reuse)
        tests.append(run_one(settings, job, log))
    return method_row(method, chosen, grid, seeds, tests, selection, key,
                      run_folder(method, chosen, seeds[0], swept))


def run_compare(settings: CompareSettings, log=print) -> list[MethodResult]:
    """Run (or resume) every job and return one row per method, base model first.

    A failed job is recorded with its error and the comparison goes on; its result file is
    not written as final, so a rerun tries it again.
    """
    settings.output_dir.mkdir(parents=True, exist_ok=True)
    cfg = training_config(settings, None)
    seeds = seed_list(settings, cfg)
    base = run_one(settings, Job(None, TEST, folder=BASE_FOLDER, train=False), log)
    validation = None
    if settings.selects(cfg):
        validation = run_one(settings, Job(None, VALIDATION, folder=BASE_FOLDER, train=False), log)
    rows = [base_row(base, validation, CRITERIA[settings.select_by])]
    return rows + [_method(settings, method, cfg, seeds, log) for method in settings.methods]


def describe_machine() -> str:
    """CPU/GPU, thread count and torch version, for the report."""
    import torch

    if torch.cuda.is_available():
        device = torch.cuda.get_device_name(0)
    else:
        device = f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)"
    return f"{device}, torch {torch.__version__}, Python {platform.python_version()}"
