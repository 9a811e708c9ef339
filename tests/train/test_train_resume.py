"""Exact resume: a run killed at any moment (SIGKILL, a crash inside a checkpoint write, a full
disk) and resumed ends with the weights of an uninterrupted run, and no complete checkpoint is
ever damaged. Also: damaged checkpoints are skipped with a reason, or resume explains why it
cannot continue."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from asft.config import load_config
from asft.errors import AsftError
from asft.train import StoppedBySignal, faults, train
from asft.train import checkpoint as ckpt
from run_checks import assert_same_run

pytestmark = pytest.mark.fault

STEPS = 12
# fp32 on the CPU; checkpoints every 2 steps; the metric window (3) and the probe period (5)
# do not divide the checkpoint period, so resumed runs must restore half-filled windows.
SETTINGS = [
    "model.name=tiny-llama", "model.dtype=fp32", "training.precision=fp32",
    "data.source=builtin:mixed", "data.limit=60",
    "data.probe_size=4", f"training.max_steps={STEPS}", "training.batch_size=2",
    "optim.lr=1e-3", "optim.warmup_steps=2", "logging.every=3", "logging.probe_every=5",
    "logging.progress=false", "logging.tensorboard=false", "checkpoint.every=2",
    "checkpoint.keep_last=2",
]
CHECKPOINT_POINTS = [p for p in faults.POINTS if p.startswith("checkpoint.")
                     and p not in faults.SHARDED_ONLY]  # single-process runs


def _cfg(out: Path, *extra: str):
    return load_config(None, [*SETTINGS, f"output_dir={out}", *extra])


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model" / "model.safetensors"))


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _assert_complete_checkpoints_intact(run: Path) -> list[str]:
    complete = [p for p in ckpt.candidates(run / ckpt.DIRNAME) if (p / ckpt.MARKER).exists()]
    for p in complete:
        assert ckpt.verify(p) is None, p
    return [p.name for p in complete]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    train(_cfg(out))
    return out


def _cli(out: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    sets = [x for s in SETTINGS for x in ("--set", s)]
    return subprocess.Popen(
        [sys.executable, "-m", "asft.cli", "train", *sets, "--output-dir", str(out), *args],
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )


def test_sigkill_at_any_moment_then_resume_equals_uninterrupted(tmp_path, uninterrupted):
    out = tmp_path / "run"
    # 1. SIGKILL inside the second checkpoint write, after the weights and before the rest.
    proc = _cli(out, env={faults.ENV: "checkpoint.after_model@2=kill"})
    assert proc.wait(timeout=120) == -signal.SIGKILL, proc.stderr.read()
    assert _assert_complete_checkpoints_intact(out) == ["step-0000002"]
    assert (out / ckpt.DIRNAME / ".tmp-step-0000004").is_dir()
    # 2. Resume, and SIGKILL it from outside at a random moment once training is under way.
    proc = _cli(out, "--resume")
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if any(r["step"] > 2 for r in _records_or_empty(out)):
            time.sleep(random.uniform(0.0, 0.3))
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    complete = _assert_complete_checkpoints_intact(out)
    assert complete and len(complete) <= 2
    # 3. Resume to the end.
    result = train(_cfg(out), resume=True)
    assert result.resumed_from is not None
    assert_same_run(out, uninterrupted)
    assert not [p for p in (out / ckpt.DIRNAME).iterdir() if p.name.startswith(".")]


def _records_or_empty(run: Path) -> list[dict]:
    try:
        return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
                if line.endswith("}")]
    except (OSError, ValueError):
        return []


def test_crash_at_every_checkpoint_point_then_resume_equals_uninterrupted(tmp_path, monkeypatch,
                                                                          uninterrupted):
    """One chain of runs, each dying at the next fault point (with ``error``, which leaves the
    disk as a kill would: the checkpoint code has no cleanup for it), each resuming the last."""
    out = tmp_path / "run"
    points = [*CHECKPOINT_POINTS, "train.step", "final.before_rename"]
    for i, point in enumerate(points):
        faults.reset()
        monkeypatch.setenv(faults.ENV, f"{point}@1=error")
        with pytest.raises(RuntimeError, match=f"injected fault at {point}"):
            train(_cfg(out), resume=i > 0)
        _assert_complete_checkpoints_intact(out)
    faults.reset()
    monkeypatch.delenv(faults.ENV)
    train(_cfg(out), resume=True)
    assert_same_run(out, uninterrupted)


def test_sigterm_stops_after_the_step_with_a_checkpoint(tmp_path, monkeypatch, uninterrupted):
    out = tmp_path / "run"
    faults.reset()
    monkeypatch.setenv(faults.ENV, "train.step@3=term")
    with pytest.raises(StoppedBySignal, match="stopped by SIGTERM after step 4") as info:
        train(_cfg(out))
    assert info.value.code == 128 + signal.SIGTERM
    assert _assert_complete_checkpoints_intact(out) == ["step-0000004", "step-0000002"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored
    faults.reset()
    monkeypatch.delenv(faults.ENV)
    train(_cfg(out), resume=True)
    assert_same_run(out, uninterrupted)


def test_full_disk_during_checkpoint_keeps_earlier_ones(tmp_path, monkeypatch, uninterrupted):
    out = tmp_path / "run"
    faults.reset()
    monkeypatch.setenv(faults.ENV, "checkpoint.after_optimizer@2=enospc")
    with pytest.raises(ckpt.CheckpointError) as info:
        train(_cfg(out))
    message = str(info.value)
    assert "step-0000004" in message and "No space left on device" in message
    assert "step-0000002 untouched" in message
    assert _assert_complete_checkpoints_intact(out) == ["step-0000002"]
    assert not (out / ckpt.DIRNAME / ".tmp-step-0000004").exists()
    faults.reset()
    monkeypatch.delenv(faults.ENV)
    train(_cfg(out), resume=True)
    assert_same_run(out, uninterrupted)


def test_full_disk_while_logging_metrics_names_the_file_and_resumes(tmp_path, monkeypatch, uninterrupted):
    """ENOSPC on the 5th metrics record (step 9: records are written at steps 0, 3, 5, 6, 9, ...):
    a one-line error naming metrics.jsonl and the checkpoint to resume from, then an exact resume."""
    out = tmp_path / "run"
    faults.reset()
    monkeypatch.setenv(faults.ENV, "metrics.write@5=enospc")
    with pytest.raises(AsftError) as info:
        train(_cfg(out))
    message = str(info.value)
    assert "metrics.jsonl" in message and "No space left on device" in message, message
    assert "step-0000008" in message and "--resume" in message, message
    assert sorted(_assert_complete_checkpoints_intact(out)) == ["step-0000006", "step-0000008"]
    faults.reset()
    monkeypatch.delenv(faults.ENV)
    train(_cfg(out), resume=True)
    assert_same_run(out, uninterrupted)


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished run keeping its last 3 checkpoints (steps 8, 10, 12)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    train(_cfg(out, "checkpoint.keep_last=3"))
    return out


def _copy(run: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "copy"
    shutil.copytree(run, dest)
    return dest


def _damage(path: Path, how: str) -> None:
    if how == "truncate":
        f = path / "model.safetensors"
        f.write_bytes(f.read_bytes()[:-100])
    elif how == "bitflip":
        f = path / "optimizer.safetensors"
        data = bytearray(f.read_bytes())
        data[len(data) // 2] ^= 0x01
        f.write_bytes(bytes(data))
    elif how == "no-marker":
        (path / ckpt.MARKER).unlink()
    elif how == "bad-marker":
        (path / ckpt.MARKER).write_text("{not json")
    elif how == "missing-file":
        (path / "rank-00000.json").unlink()


REASONS = {"truncate": "truncated", "bitflip": "SHA-256", "no-marker": "interrupted",
           "bad-marker": "unreadable", "missing-file": "missing"}


@pytest.mark.parametrize("how", sorted(REASONS))
def test_damaged_newest_checkpoint_is_skipped_with_reason(how, finished, tmp_path):
    run = _copy(finished, tmp_path)
    newest = run / ckpt.DIRNAME / "step-0000012"
    _damage(newest, how)
    path, skipped = ckpt.resume_point(run)
    assert path is not None and path.name == "step-0000010"
    assert len(skipped) == 1 and skipped[0].startswith("step-0000012") and REASONS[how] in skipped[0]


def test_resume_from_older_checkpoint_after_damage_ends_the_same(finished, tmp_path):
    run = _copy(finished, tmp_path)
    _damage(run / ckpt.DIRNAME / "step-0000012", "bitflip")
    _damage(run / ckpt.DIRNAME / "step-0000010", "truncate")
    result = train(_cfg(run, "checkpoint.keep_last=3"), resume=True)
    assert result.resumed_from.name == "step-0000008"
    assert_same_run(run, finished)
    assert _assert_complete_checkpoints_intact(run) == ["step-0000012", "step-0000010", "step-0000008"]


def test_resume_explains_when_no_checkpoint_is_usable(finished, tmp_path):
    run = _copy(finished, tmp_path)
    for path, how in zip(ckpt.candidates(run / ckpt.DIRNAME), ("truncate", "no-marker", "bitflip")):
        _damage(path, how)
    with pytest.raises(ckpt.CheckpointError) as info:
        train(_cfg(run), resume=True)
    message = str(info.value)
    assert "no complete checkpoint" in message
    for name in ("step-0000012", "step-0000010", "step-0000008"):
        assert name in message


def test_resume_refuses_a_different_config_and_a_fresh_run_refuses_an_old_folder(finished, tmp_path):
    run = _copy(finished, tmp_path)
    with pytest.raises(ckpt.CheckpointError, match=r"loss\.name: 'asft' in the checkpoint, 'orpo' now"):
        train(_cfg(run, "loss.name=orpo"), resume=True)
    with pytest.raises(AsftError, match="already holds a run; pass --resume"):
        train(_cfg(run))
    # more steps is a legitimate change: the run continues from its last checkpoint
    result = train(_cfg(run, f"training.max_steps={STEPS + 2}", "checkpoint.keep_last=3"), resume=True)
    assert result.resumed_from.name == "step-0000012" and result.steps == STEPS + 2


def test_optimizer_and_rng_state_round_trip(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1, betas=(0.8, 0.9))
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    tensors, meta = ckpt.flatten_optimizer(opt.state_dict())
    ckpt.write_tensors(tmp_path / "o.safetensors", tensors)
    ckpt.write_json(tmp_path / "o.json", meta)
    again = ckpt.unflatten_optimizer(load_file(str(tmp_path / "o.safetensors")),
                                     json.loads((tmp_path / "o.json").read_text()))
    fresh = torch.optim.AdamW(model.parameters(), lr=0.5)
    fresh.load_state_dict(again)
    assert fresh.param_groups[0]["betas"] == (0.8, 0.9) and fresh.param_groups[0]["lr"] == 0.1
    for p in model.parameters():
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(fresh.state[p][key], opt.state[p][key])

    import numpy as np

    rng_tensors, rng_meta = ckpt.capture_rng()
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    ckpt.restore_rng(rng_tensors, json.loads(json.dumps(rng_meta)))
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_fault_spec_parsing():
    assert faults.parse("train.step@3=kill:1, checkpoint.begin") == [
        faults.Fault("train.step", 3, "kill", 1), faults.Fault("checkpoint.begin", 1, "kill", None)]
    with pytest.raises(ValueError, match="unknown fault point"):
        faults.parse("train.stpe")
    with pytest.raises(ValueError, match="unknown action"):
        faults.parse("train.step=explode")
