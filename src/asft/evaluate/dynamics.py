"""Likelihood dynamics of training runs, read back from their output folders.

A run folder holds ``metrics.jsonl`` (one JSON object per line with ``step``) and the
resolved ``config.yaml``. The trainer scores a fixed probe set of held-out pairs every
``logging.probe_every`` steps and logs ``probe/logps/chosen`` and ``probe/logps/rejected``
(mean token log-probs, nats); when a run has no probe records, the training batches'
``logps/chosen`` and ``logps/rejected`` are used instead (noisier: each step sees other pairs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

PROBE_KEYS = ("probe/logps/chosen", "probe/logps/rejected")
TRAIN_KEYS = ("logps/chosen", "logps/rejected")

Series = tuple[list[int], list[float]]


@dataclass
class RunCurves:
    """What ``asft plot`` draws for one run.

    Attributes:
        label: the method (``asft`` or ``asft:beta=0.1,sft_weight=0``) or the folder name.
        source: ``probe`` or ``train``: which keys the series come from.
        series: ``{"chosen": (steps, values), "rejected": (steps, values)}``.
    """

    label: str
    source: str
    series: dict[str, Series]


def run_label(run_dir: Path) -> str:
    """``loss`` or ``loss:k=v,...`` (hyperparameters that differ from the registry defaults)
    from the run's ``config.yaml``; the folder name when that cannot be read."""
    import yaml

    from asft.evaluate.methods import MethodSpec
    from asft.losses import LOSSES

    try:
        config = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
        name = config["loss"]["name"]
        hparams = config["loss"].get("hparams") or {}
    except (OSError, ValueError, RecursionError, yaml.YAMLError, KeyError, TypeError, AttributeError):
        return run_dir.resolve().name
    if not isinstance(name, str) or not name or not isinstance(hparams, dict):
        return run_dir.resolve().name
    defaults = LOSSES[name].defaults if name in LOSSES else {}
    changed = {}
    for k, v in hparams.items():
        value = float(v) if isinstance(v, float) or (isinstance(v, int) and abs(v) < 1e300) else math.nan
        if math.isfinite(value) and not math.isclose(value, defaults.get(k, math.nan)):
            changed[str(k)] = value
    return MethodSpec(name, changed).label


def _series(records: list[dict], key: str) -> Series:
    last: dict[int, float] = {}
    for rec in records:
        value = rec.get(key)
        if isinstance(value, (int, float)) and math.isfinite(value):
            last[rec["step"]] = float(value)  # a resumed run may repeat a step: keep the last
    steps = sorted(last)
    return steps, [last[s] for s in steps]


def load_run(run_dir: str | Path) -> RunCurves:
    """Read one run folder. Raises ValueError when it has no usable log-likelihood records."""
    run_dir = Path(run_dir)
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        raise ValueError(f"{run_dir}: no metrics.jsonl (is this a training output folder?)")
    from asft.train.tracking import read_metrics

    records = read_metrics(path)
    for source, keys in (("probe", PROBE_KEYS), ("train", TRAIN_KEYS)):
        chosen, rejected = (_series(records, k) for k in keys)
        if chosen[0] and rejected[0]:
            return RunCurves(run_label(run_dir), source, {"chosen": chosen, "rejected": rejected})
    raise ValueError(f"{path}: no records with {' / '.join(PROBE_KEYS + TRAIN_KEYS)}")


def distinct_labels(runs: list[RunCurves], dirs: list[Path]) -> None:
    """Make labels unique in place by appending the folder name to repeated ones."""
    labels = [r.label for r in runs]
    for run, d in zip(runs, dirs):
        if labels.count(run.label) > 1:
            run.label = f"{run.label} ({Path(d).resolve().name})"
