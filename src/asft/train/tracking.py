"""Training metrics: averaged over a logging window (:class:`Window`), then written to
metrics.jsonl, TensorBoard and W&B, with a rich progress bar (:class:`Tracker`).

Only the main process tracks. ``metrics.jsonl`` holds one JSON object per line, each with a
``step`` key (the optimizer step after which it was measured; 0 = before training) and a
``time`` key (Unix seconds when it was written: wall-clock plots, start-up time). On resume
the lines past the checkpoint's step are dropped, so that the file reads as one uninterrupted
run; TensorBoard gets ``purge_step`` for the same reason, and W&B resumes its run id.
"""

from __future__ import annotations

import json
import math
import os
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import Progress

from asft import atomic
from asft.config import LoggingConfig
from asft.errors import AsftError
from asft.progress import progress_bar
from asft.train import faults

METRICS_FILE = "metrics.jsonl"


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl file, skipping a torn last line (a killed writer)."""
    records = []
    if path.is_file():
        # damaged bytes (a crash, a bad disk) spoil their own line only
        for line in path.read_bytes().decode("utf-8", "replace").splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and isinstance(rec.get("step"), int):
                records.append(rec)
    return records


def truncate_metrics(path: Path, last_step: int) -> None:
    """Keep only the records of steps <= ``last_step`` (atomic rewrite)."""
    keep = [r for r in read_metrics(path) if r["step"] <= last_step]
    atomic.write_jsonl(path, keep)


def _clean(value: float) -> float | None:
    """JSON has no NaN or inf: write them as null (the loop stops on a non-finite loss anyway)."""
    return value if math.isfinite(value) else None


class MetricsWriteError(AsftError):
    """metrics.jsonl could not be written (a full disk, a vanished folder)."""


class Tracker:
    """Metrics sinks and console progress for one run (a no-op on non-main processes).

    Args:
        cfg: the ``logging`` section of the config.
        output_dir: the run's folder.
        total_steps: optimizer steps of the whole run (for the bar and ETA).
        start_step: the step training starts from (> 0 when resuming).
        run_config: the resolved config as a dict (sent to W&B).
        enabled: False on non-main processes.
        state: what :meth:`state` returned when the checkpoint was written (W&B run id).
    """

    def __init__(self, cfg: LoggingConfig, output_dir: Path, total_steps: int, start_step: int,
                 run_config: dict[str, Any], enabled: bool = True,
                 state: dict[str, Any] | None = None, console: Console | None = None):
        self.enabled = enabled
        self.console = console or Console(stderr=True)
        self.path = output_dir / METRICS_FILE
        self._file = None
        self._tb = None
        self._wandb = None
        self._progress: Progress | None = None
        self._task = None
        self._state = dict(state or {})
        if not enabled:
            return
        if start_step > 0:
            truncate_metrics(self.path, start_step)
        elif self.path.exists():
            self.path.unlink()
        self._file = open(self.path, "a")  # noqa: SIM115 (kept open for the run; closed in close())
        if cfg.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(output_dir / "tensorboard"),
                                     purge_step=start_step + 1 if start_step else None)
        if cfg.wandb_project:
            self._wandb = self._init_wandb(cfg, output_dir, run_config)
        if cfg.progress:
            self._progress = progress_bar(count_first=True, bar_width=24, fields=("info",),
                                          console=self.console)
            self._task = self._progress.add_task("step", total=total_steps, completed=start_step,
                                                 info="")
            self._progress.start()

    def _init_wandb(self, cfg: LoggingConfig, output_dir: Path, run_config: dict[str, Any]):
        try:
            import wandb
        except ImportError:
            from asft.errors import AsftError

            raise AsftError("logging.wandb_project is set but wandb is not installed: "
                            "pip install wandb (or set logging.wandb_project: null)") from None
        run = wandb.init(project=cfg.wandb_project, name=cfg.wandb_run_name or output_dir.name,
                         id=self._state.get("wandb_id"), resume="allow", dir=str(output_dir),
                         config=run_config)
        self._state["wandb_id"] = run.id
        return run

    def state(self) -> dict[str, Any]:
        """What a checkpoint must keep so that a resumed run logs to the same places."""
        return dict(self._state)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        """Write one record: metrics.jsonl (flushed), TensorBoard, W&B."""
        if not self.enabled:
            return
        record = {"step": step, "time": round(time.time(), 3),
                  **{k: _clean(float(v)) for k, v in metrics.items()}}
        try:
            faults.hit("metrics.write")
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()
        except OSError as err:
            # A torn last line is harmless: read_metrics skips it and resume truncates to the
            # checkpoint's step. The caller adds which checkpoint to resume from.
            raise MetricsWriteError(f"could not append step {step} to {self.path}: "
                                    f"{err.strerror or err}") from None
        if self._tb is not None:
            for key, value in metrics.items():
                if math.isfinite(value):
                    self._tb.add_scalar(key, value, step)
        if self._wandb is not None:
            self._wandb.log(dict(metrics), step=step)

    def sync(self) -> None:
        """Push metrics to disk (called before each checkpoint, so they agree after a crash)."""
        if self._file is not None:
            try:
                self._file.flush()
                os.fsync(self._file.fileno())
            except OSError as err:
                raise MetricsWriteError(f"could not write {self.path}: {err.strerror or err}") from None
        if self._tb is not None:
            self._tb.flush()

    def advance(self, step: int, info: str = "") -> None:
        """Move the progress bar to ``step``; ``info`` is shown beside the ETA."""
        if self._progress is not None:
            self._progress.update(self._task, completed=step, info=info)

    def print(self, message: str) -> None:
        """A line on the console above the progress bar (main process only)."""
        if self.enabled:
            self.console.print(message, highlight=False)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        if self._file is not None:
            # After a failed write, closing retries the same flush; that error was already raised.
            with suppress(OSError):
                self._file.close()
            self._file = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None


class Window:
    """Running sums of per-pair metrics on this process, plus per-step global values.

    Per-pair sums stay on the device (no sync per micro-batch) and are reduced over the
    processes only when a record is written. Everything is float64 so that a resumed run's
    sums, restored from a checkpoint, equal the uninterrupted run's.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.sums: dict[str, torch.Tensor] = {}
        self.steps = 0
        self.grad_norm = 0.0
        self.lr = 0.0
        self.seconds = 0.0

    def _add(self, key: str, value: torch.Tensor) -> None:
        value = value.detach().to(torch.float64)
        if key in self.sums:
            self.sums[key] += value
        else:
            self.sums[key] = value.clone()

    def add_micro(self, losses: torch.Tensor, metrics: dict[str, torch.Tensor], num_tokens: int) -> None:
        """One micro-batch: per-pair ``losses`` [B] and the loss's ``metrics`` ([B] each)."""
        scorable = metrics["pairs/scorable"]
        self._add("loss", losses.sum())
        for key, value in metrics.items():
            if key != "pairs/scorable":
                self._add(key, value.sum())
        margin = metrics["logps/chosen"] - metrics["logps/rejected"]
        self._add("logps/margin", margin.sum())
        self._add("logps/accuracy", ((margin > 0).to(margin.dtype) * scorable).sum())
        self._add("_scorable", scorable.sum())
        self._add("_pairs", torch.tensor(float(losses.numel()), device=losses.device))
        self._add("_tokens", torch.tensor(float(num_tokens), device=losses.device))

    def add_step(self, grad_norm: float, lr: float, seconds: float) -> None:
        self.steps += 1
        self.grad_norm += grad_norm
        self.lr += lr
        self.seconds += seconds

    def flush(self, accelerator: Any) -> dict[str, float]:
        """The window's means over all processes; resets the window."""
        keys = sorted(self.sums)
        local = torch.stack([self.sums[k] for k in keys])
        total = accelerator.reduce(local, "sum") if accelerator.num_processes > 1 else local
        values = dict(zip(keys, total.tolist()))
        scorable = max(values.pop("_scorable"), 1.0)
        pairs, tokens = values.pop("_pairs"), values.pop("_tokens")
        out = {"loss": values.pop("loss") / scorable}
        out.update({k: v / scorable for k, v in values.items()})
        if pairs > scorable:
            out["pairs/unscorable"] = pairs - scorable
        steps = max(self.steps, 1)
        out["grad_norm"] = self.grad_norm / steps
        out["lr"] = self.lr / steps
        seconds = max(self.seconds, 1e-9)
        out["throughput/step_s"] = self.seconds / steps
        out["throughput/tokens_per_s"] = tokens / seconds
        out["throughput/pairs_per_s"] = pairs / seconds
        self.__init__(self.device)
        return out

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """(per-process tensors, global values) to store in a checkpoint."""
        return ({f"window.{k}": v for k, v in self.sums.items()},
                {"steps": self.steps, "grad_norm": self.grad_norm, "lr": self.lr, "seconds": self.seconds})

    def restore(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        self.sums = {k.removeprefix("window."): v.to(self.device)
                     for k, v in tensors.items() if k.startswith("window.")}
        self.steps, self.grad_norm = meta["steps"], meta["grad_norm"]
        self.lr, self.seconds = meta["lr"], meta["seconds"]
