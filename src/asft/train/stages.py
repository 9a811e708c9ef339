"""Staged runs (``stages:`` in the config): several trainings one after another in one output
folder, each starting from the model the previous one ended with.

The two-stage beta-ASFT of arXiv 2502.01237 is the case in point: SFT on the chosen responses,
then ASFT's alignment term alone (``sft_weight: 0``, ``beta < 1``) from the SFT model. Each
stage is an ordinary run of :func:`asft.train.loop.train` (its own checkpoints, exact resume,
final model) in ``stages/01-<name>/``, ``stages/02-<name>/``, ...; the stage's config is the
run's with the stage's loss, hyperparameters, learning rate and length, and ``model.name`` set
to the previous stage's ``model/``. Around them this module keeps the run folder::

    config.yaml      the whole config, stages included
    metrics.jsonl    every stage's records in order, each with ``stage`` (its name) and
                     ``stage_step``; ``step`` counts on across the stages
    model/           the last stage's model (hard links: no second copy on disk)
    summary.json     the whole run: steps, first and last loss and probe
    stages/          the stages' own run folders (live metrics of the running stage are there)

``--resume`` skips the stages that finished (their ``summary.json`` exists), resumes the
running one from its newest checkpoint and starts the rest; a killed staged run therefore
loses at most the steps since the running stage's last checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from asft import atomic
from asft.config import Config, stage_loss, to_yaml
from asft.config.sections import StageConfig
from asft.errors import AsftError
from asft.train.loop import TrainResult
from asft.train.loop import train as train_one
from asft.train.rundir import DATA_REPORT, SUMMARY_FILE, default_output_dir

STAGES_DIR = "stages"


def stage_dir(out: Path, index: int, stage: StageConfig) -> Path:
    """``out/stages/01-sft`` for the first stage named ``sft``."""
    return out / STAGES_DIR / f"{index + 1:02d}-{stage.name}"


def stage_config(cfg: Config, index: int, out: Path) -> Config:
    """The config of stage ``index``: the run's, with the stage's overrides, trained from the
    previous stage's final model, into the stage's folder, never pushed by itself."""
    stage = cfg.stages[index]
    training = cfg.training
    if stage.max_steps is not None:
        training = dataclasses.replace(training, max_steps=stage.max_steps)
    elif stage.epochs is not None:
        training = dataclasses.replace(training, max_steps=None, epochs=stage.epochs)
    model = cfg.model
    if index > 0:
        model = dataclasses.replace(model, name=str(stage_dir(out, index - 1, cfg.stages[index - 1])
                                                    / "model"))
    return dataclasses.replace(
        cfg, output_dir=str(stage_dir(out, index, stage)), stages=[], model=model,
        loss=stage_loss(cfg, stage), training=training,
        optim=dataclasses.replace(cfg.optim, lr=stage.lr if stage.lr is not None else cfg.optim.lr),
        hub=dataclasses.replace(cfg.hub, repo_id=None))


def is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def prepare_folder(out: Path, cfg: Config, resume: bool, overwrite: bool,
                   parts: str = STAGES_DIR) -> None:
    """Refuse to mix a new run of parts (stages, online rounds: the ``parts`` folder) into an
    old one (every process judges, so that all stop together); the main process clears it with
    ``overwrite`` and writes the config."""
    held = (out / parts).exists() or (out / "metrics.jsonl").exists()
    if held and not resume and not overwrite:
        raise AsftError(f"{out} holds a run: continue it with --resume, or pass --overwrite "
                        "to train it again")
    if not is_main():
        return
    if held and overwrite:
        for name in (parts, "model", "metrics.jsonl", SUMMARY_FILE):
            path = out / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    out.mkdir(parents=True, exist_ok=True)
    atomic.write_text(out / "config.yaml", to_yaml(cfg))


def merge_metrics(out: Path, key: str, parts: Sequence[tuple[Any, list[dict], TrainResult | None]]) -> None:
    """The records of runs done one after another (stages, online rounds) in one
    ``metrics.jsonl``. Each part is ``(name, leading records, result)``: its leading records
    (an online round's sample record) come first, at the step the part starts from, then the
    result's own records (None: the part trained nothing). ``step`` continues across parts (a
    part's step 0, the probe before it trains, follows the previous part's last step); ``key``
    (``stage``, ``round``) and ``<key>_step`` say where each record came from."""
    records, offset = [], 0
    for name, leading, result in parts:
        records += [{**r, "step": offset, key: name, f"{key}_step": 0} for r in leading]
        if result is None:
            continue
        for line in result.metrics_path.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                records.append({**r, "step": offset + r["step"], key: name, f"{key}_step": r["step"]})
        offset += result.steps
    atomic.write_jsonl(out / "metrics.jsonl", records)


def link_model(src: Path, dest: Path) -> None:
    """``dest`` as a copy of folder ``src`` made of hard links (a plain copy across file
    systems), written aside and renamed into place."""
    def link(a: str, b: str) -> None:
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    with atomic.folder(dest) as tmp:
        shutil.copytree(src, tmp, copy_function=link, dirs_exist_ok=True)


def combined_result(out: Path, done: list[TrainResult], probe_first: dict[str, float]) -> TrainResult:
    """The result of the runs ``done`` one after another in ``out`` (stages, online rounds):
    steps, pairs and time summed, the first run's first loss and the last run's last loss and
    probe; ``probe_first`` is the caller's (its probe pairs may change from run to run)."""
    first, last = done[0], done[-1]
    return TrainResult(
        output_dir=out, model_dir=out / "model", metrics_path=out / "metrics.jsonl",
        config_path=out / "config.yaml", steps=sum(r.steps for r in done),
        pairs_seen=sum(r.pairs_seen for r in done), loss_first=first.loss_first,
        loss_last=last.loss_last, probe_first=probe_first, probe_last=last.probe_last,
        resumed_from=next((r.resumed_from for r in done if r.resumed_from), None),
        elapsed_s=sum(r.elapsed_s for r in done), timing={})


def finished_result(path: Path) -> TrainResult | None:
    """The result of a stage that finished (its summary.json), else None."""
    summary = path / SUMMARY_FILE
    if not summary.is_file():
        return None
    d = json.loads(summary.read_text())
    paths = {"output_dir", "model_dir", "metrics_path", "config_path", "resumed_from"}
    return TrainResult(**{k: (Path(v) if k in paths and v is not None else v) for k, v in d.items()
                          if k in {f.name for f in dataclasses.fields(TrainResult)}})


def train(config: Config, *, resume: bool = False, overwrite: bool = False,
          console: Any = None) -> TrainResult:
    """Train ``config``: one run, or its ``stages`` one after another (module docstring).
    A multi-process run's process group is ended once, after the last stage."""
    try:
        if not config.stages:
            return train_one(config, resume=resume, overwrite=overwrite, console=console)
        return _train_stages(config, resume, overwrite, console)
    finally:
        _end_process_group()


def _end_process_group() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        with contextlib.suppress(AssertionError, RuntimeError, ValueError):
            dist.destroy_process_group()


def _train_stages(config: Config, resume: bool, overwrite: bool, console: Any) -> TrainResult:
    out = Path(config.output_dir) if config.output_dir else default_output_dir(config)
    cfg = dataclasses.replace(config, output_dir=str(out))
    prepare_folder(out, cfg, resume, overwrite)
    done: list[TrainResult] = []
    for i, stage in enumerate(cfg.stages):
        sub = stage_dir(out, i, stage)
        result = finished_result(sub)
        if result is None:
            result = train_one(stage_config(cfg, i, out), resume=resume and sub.exists(),
                               overwrite=overwrite, console=console)
        done.append(result)
        if is_main():
            merge_metrics(out, "stage", [(s.name, [], r) for s, r in zip(cfg.stages, done)])
    last, first = done[-1], done[0]
    if is_main() and last.model_dir is not None:
        link_model(last.model_dir, out / "model")
        report = last.output_dir / DATA_REPORT  # the data every stage read (a model card's)
        if report.is_file():
            shutil.copyfile(report, out / DATA_REPORT)
    result = combined_result(out, done, probe_first=first.probe_first)
    if is_main():
        atomic.write_json(out / SUMMARY_FILE, result.to_dict())
    return result
