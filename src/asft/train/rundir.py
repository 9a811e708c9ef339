"""The output folder of a run: what it holds, and whether a new run may use it.

``<output_dir>/`` holds ``config.yaml`` (resolved), ``data_report.json``, ``metrics.jsonl``,
``tensorboard/``, ``checkpoints/`` (:mod:`asft.train.checkpoint`), ``reference_logps.safetensors``
(reference strategy ``cache``), the final ``model/`` and ``summary.json``. A fresh run refuses a
folder that holds progress (unless told to overwrite it); ``--resume`` continues from its newest
complete checkpoint, provided the config matches the one the checkpoint was trained with.
"""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

from asft.config import Config, ConfigError, from_dict, parse_yaml, to_dict
from asft.errors import AsftError
from asft.train import checkpoint as ckpt

SUMMARY_FILE = "summary.json"
DATA_REPORT = "data_report.json"
MODEL_DIR = "model"
# What a resumed run may change: how long it runs, how it reports and where it is published.
# Everything else must match the checkpoint's config, or the resumed run would not continue
# the same training.
RESUMABLE_CHANGES = ("output_dir", "training.max_steps", "logging.", "checkpoint.", "hub.")
_ARTIFACTS = ("config.yaml", "metrics.jsonl", SUMMARY_FILE, DATA_REPORT, ckpt.DIRNAME, MODEL_DIR,
              "tensorboard", "reference_logps.safetensors")


def default_output_dir(cfg: Config) -> Path:
    """``runs/<loss>-<YYYYmmdd-HHMMSS>`` for a config without an output_dir."""
    return Path("runs") / f"{cfg.loss.name}-{datetime.now():%Y%m%d-%H%M%S}"


def has_run(out: Path) -> bool:
    """True when ``out`` holds training progress (a config alone, from a run that failed
    before its first step, does not count)."""
    return any((out / name).exists() for name in ("metrics.jsonl", SUMMARY_FILE, ckpt.DIRNAME, MODEL_DIR))


def config_differences(old: Config, new: Config) -> list[str]:
    def flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in d.items():
            if isinstance(v, dict) and k != "hparams":
                out.update(flat(v, f"{prefix}{k}."))
            else:
                out[f"{prefix}{k}"] = v
        return out

    a, b = flat(to_dict(old)), flat(to_dict(new))
    return [f"{k}: {a.get(k)!r} in the checkpoint, {b.get(k)!r} now" for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k) and not any(k == p or (p.endswith(".") and k.startswith(p))
                                                for p in RESUMABLE_CHANGES)]


def plan(cfg: Config, out: Path, resume: bool, overwrite: bool) -> tuple[Path | None, list[str]]:
    """Check the output folder on the main process: the checkpoint to resume (or None) and notes."""
    notes: list[str] = []
    if resume and overwrite:
        raise AsftError("--resume and --overwrite contradict each other; pass one")
    if resume:
        path, skipped = ckpt.resume_point(out)
        notes += [f"skipped damaged checkpoint {s}" for s in skipped]
        if path is None:
            if (out / MODEL_DIR).exists() or (out / SUMMARY_FILE).exists():
                raise ckpt.CheckpointError(
                    f"cannot resume {out}: it holds a finished run without checkpoints "
                    "(checkpoint.every was 0); pass --overwrite to train it again")
            notes.append(f"no checkpoint in {out}: starting from step 0"
                         + (" (the run stopped before its first checkpoint)" if has_run(out) else ""))
            return None, notes
        try:
            data, _ = parse_yaml((path / "config.yaml").read_bytes(), str(path / "config.yaml"))
            old = from_dict(data)
        except (OSError, ConfigError) as err:
            raise ckpt.CheckpointError(f"cannot resume from {path}: its config.yaml is unusable ({err})") from None
        diffs = config_differences(old, cfg)
        if diffs:
            raise ckpt.CheckpointError(
                f"cannot resume from {path}: the config differs from the one it was trained with:\n  "
                + "\n  ".join(diffs)
                + "\nOnly training.max_steps, logging.*, checkpoint.* and hub.* may change on resume.")
        return path, notes
    if has_run(out):
        if not overwrite:
            raise AsftError(f"{out} already holds a run; pass --resume to continue it, --overwrite to "
                            "replace it, or choose another --output-dir")
        for name in _ARTIFACTS:
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
        notes.append(f"removed the previous run in {out} (--overwrite)")
    return None, notes
