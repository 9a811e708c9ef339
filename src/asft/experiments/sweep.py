"""The jobs of a comparison, and how their results become the report's rows.

Without a learning-rate grid (``--lrs`` or a method's own ``lr=``) and with one seed, a
method is one job, as it always was: train at the config's learning rate and seed in
``runs/<method>/``, evaluate on the test pairs. Otherwise each run has its own folder,
``runs/<method>/lr-<lr>/seed-<seed>/``, and a method is:

1. with more than one learning rate: one *selection* job per learning rate at the first
   seed, trained on the training pairs and evaluated on the validation pairs only
   (``validation.json``); the learning rate with the best validation criterion is chosen
   (:func:`select_lr`);
2. one *test* job per seed at the chosen learning rate (``result.json``). The first seed's
   run is the selection run at that learning rate (same config, same data, same seed), so
   its model is evaluated on the test pairs without training it again.

The base model has no learning rate and no seed: greedy decoding and pair scoring do not
depend on either, so it is evaluated once on the test pairs and once on the validation
pairs. Each job writes its own result file, so an interrupted sweep resumes job by job.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from asft.evaluate.methods import MethodSpec, number_text
from asft.experiments.intervals import mean_interval
from asft.experiments.report import MethodResult
from asft.experiments.splits import TEST, VALIDATION

RESULT_FILE = "result.json"
VALIDATION_FILE = "validation.json"
BASE_FOLDER = "runs/base"
#: Error text of a selection run whose loss became non-finite: a final outcome (that learning
#: rate is unusable), saved so that a rerun does not train it again, and never chosen.
DIVERGED = "diverged: "
#: ``--select-by`` -> the validation metric maximized.
CRITERIA = {"accuracy": "pref_acc_mean", "bleu4": "bleu4"}
#: The key of the base model's entry in a row's ``validation``.
UNTRAINED = "untrained"


@dataclass(frozen=True)
class Job:
    """One unit of a comparison: run in its own process, resumed on its own.

    Attributes:
        method: the method to train; None: the untrained base model.
        split: :data:`~asft.experiments.splits.TEST` or ``VALIDATION`` (the pairs evaluated).
        lr: learning rate; None: the config's (``optim.lr``).
        seed: training seed; None: the config's (``seed``).
        folder: the job's folder relative to the comparison's output folder: the training
            output and the result file.
        train: False when the model to evaluate is already there (the base model, or a test
            job whose run the selection job trained).
    """

    method: MethodSpec | None
    split: str = TEST
    lr: float | None = None
    seed: int | None = None
    folder: str = BASE_FOLDER
    train: bool = True

    @property
    def label(self) -> str:
        """What the log calls it: ``dpo``, ``dpo lr=5e-06 seed=42 (validation)``."""
        parts = [self.method.label if self.method is not None else "base"]
        if self.lr is not None:
            parts.append(f"lr={number_text(self.lr)}")
        if self.seed is not None:
            parts.append(f"seed={self.seed}")
        if self.split == VALIDATION:
            parts.append("(validation)")
        return " ".join(parts)

    @property
    def result_file(self) -> str:
        return VALIDATION_FILE if self.split == VALIDATION else RESULT_FILE


def is_swept(settings, method: MethodSpec) -> bool:
    """Whether ``method``'s runs are kept per learning rate and seed (see the module doc)."""
    return bool(method.lrs or settings.lrs) or settings.seeds > 1


def lr_grid(settings, method: MethodSpec, cfg) -> list[float]:
    """The method's learning rates: its own, else the comparison's, else the config's."""
    return list(method.lrs or settings.lrs or [cfg.optim.lr])


def seed_list(settings, cfg) -> list[int]:
    """``settings.seeds`` seeds counted up from the config's ``seed``."""
    return [cfg.seed + i for i in range(settings.seeds)]


def run_folder(method: MethodSpec, lr: float, seed: int, swept: bool) -> str:
    """``runs/<method>`` (one run) or ``runs/<method>/lr-<lr>/seed-<seed>``."""
    if not swept:
        return f"runs/{method.slug}"
    return f"runs/{method.slug}/lr-{number_text(lr)}/seed-{seed}"


def criterion(result: MethodResult | None, key: str) -> float | None:
    """The validation value ``key`` of a finished selection job; None when it failed,
    diverged or has no finite value."""
    if result is None or result.error:
        return None
    value = result.metrics.get(key)
    return value if _number(value) and math.isfinite(value) else None


def select_lr(selection: dict[float, MethodResult], key: str) -> float | None:
    """The learning rate whose selection job has the highest ``key``; ties go to the smaller
    learning rate (the more conservative step); None when no job has a value."""
    scored = [(criterion(r, key), lr) for lr, r in selection.items()]
    scored = [(value, lr) for value, lr in scored if value is not None]
    if not scored:
        return None
    return max(scored, key=lambda vl: (vl[0], -vl[1]))[1]


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def mean_metrics(per_seed: list[dict]) -> tuple[dict, dict[str, list[float]]]:
    """(mean of each metric over the seeds, metric -> [low, high] of its 95% t-interval).

    A metric that is not a number in every seed's results is None; one that is the same in
    every seed (a count) keeps its value, with a zero-width interval. One seed: its metrics
    as they are, and no intervals.
    """
    if len(per_seed) == 1:
        return dict(per_seed[0]), {}
    means: dict = {}
    ci95: dict[str, list[float]] = {}
    for key in per_seed[0]:
        values = [m.get(key) for m in per_seed]
        if not all(_number(v) and math.isfinite(v) for v in values):
            means[key] = values[0] if all(v == values[0] for v in values) else None
            continue
        # equal values keep their type and exact value (a count stays an int)
        same = all(v == values[0] for v in values)
        mean, half = (values[0], 0.0) if same else mean_interval(values)
        means[key] = mean
        ci95[key] = [mean - half, mean + half]
    return means, ci95


def _peak(results: list[MethodResult]) -> int | None:
    known = [r.peak_memory_bytes for r in results if r.peak_memory_bytes is not None]
    return max(known) if known else None


def method_row(method: MethodSpec, lr: float, grid: list[float], seeds: list[int],
               tests: list[MethodResult], selection: dict[float, MethodResult],
               key: str, run_dir: str) -> MethodResult:
    """A method's row: the mean of its test jobs over the seeds with their intervals, the
    chosen ``lr`` and the validation ``key`` of each learning rate of its grid. Peak memory
    is the largest of all its jobs; times are per run (the mean over seeds). A failed test
    job fails the row, naming the seed when there are several."""
    row = MethodResult(method.label, run_dir=run_dir, lr=lr, lr_grid=list(grid), seeds=list(seeds),
                       peak_memory_bytes=_peak([*tests, *selection.values()]),
                       validation={number_text(v): criterion(r, key) for v, r in selection.items()})
    failed = [(seed, r) for seed, r in zip(seeds, tests) if r.error]
    if failed:
        seed, result = failed[0]
        row.error = f"seed {seed}: {result.error}" if len(seeds) > 1 else result.error
        return row
    row.per_seed = [r.metrics for r in tests]
    row.metrics, row.ci95 = mean_metrics(row.per_seed)
    row.train_s = math.fsum(r.train_s for r in tests) / len(tests)
    row.eval_s = math.fsum(r.eval_s for r in tests) / len(tests)
    return row


def selection_failure(method: MethodSpec, grid: list[float], seeds: list[int],
                      selection: dict[float, MethodResult], key: str) -> MethodResult | None:
    """The failed row when no learning rate can be chosen yet: a selection job failed (it may
    succeed on a rerun and change the choice), or every one diverged. None when one can."""
    failed = [(lr, r) for lr, r in selection.items() if r.error and not r.error.startswith(DIVERGED)]
    if failed:
        lr, result = failed[0]
        why = f"the selection run at lr {number_text(lr)} failed: {result.error}"
    elif select_lr(selection, key) is None:
        why = f"no learning rate of the grid gave a validation {key} (all diverged or failed)"
    else:
        return None
    return MethodResult(method.label, error=why, lr_grid=list(grid), seeds=list(seeds),
                        validation={number_text(v): criterion(r, key) for v, r in selection.items()})


def base_row(test: MethodResult, validation: MethodResult | None, key: str) -> MethodResult:
    """The base model's row: its one test evaluation, and its validation ``key`` when the
    comparison chose learning rates (for reference: the untrained model's value)."""
    if validation is not None:
        test.validation = {UNTRAINED: criterion(validation, key)}
    return test
