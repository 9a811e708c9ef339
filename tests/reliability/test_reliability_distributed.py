"""Faults in a two-process run (torchrun, gloo on the CPU): one rank dies or its disk fills, in
the middle of training or of a checkpoint write. The other rank stops too, no checkpoint that
misses a rank's state is ever sealed, and a two-process ``--resume`` ends with exactly the
weights and metrics of an uninterrupted two-process run.

Checkpoints are written every 2 of 8 steps; the second one (step 4) is where the faults inside
a checkpoint write strike. Every test runs under DDP and under ``distributed.strategy: fsdp``
(FSDP2: each process writes its own shards of the weights and optimizer state); the last two
strike inside a shard write, which only ``fsdp`` has.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from asft.train import checkpoint as ckpt
from asft.train import faults
from run_checks import assert_same_run

pytestmark = [pytest.mark.fault, pytest.mark.slow]

SETTINGS = [
    "model.name=tiny-llama", "model.dtype=fp32", "training.precision=fp32",
    "data.source=builtin:mixed", "data.limit=60", "data.probe_size=4", "training.max_steps=8",
    "training.batch_size=2", "optim.lr=1e-3", "logging.every=1", "logging.probe_every=3",
    "logging.progress=false", "logging.tensorboard=false", "checkpoint.every=2",
    "checkpoint.keep_last=2",
]


def _torchrun(out: Path, *args: str, strategy: str,
             fault: str | None = None) -> subprocess.CompletedProcess:
    sets = [x for s in [*SETTINGS, f"distributed.strategy={strategy}"] for x in ("--set", s)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop(faults.ENV, None)
    if fault:
        env[faults.ENV] = fault
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "asft.cli", "train", *sets, "--output-dir", str(out), *args],
        env=env, capture_output=True, text=True, timeout=300,
    )


@pytest.fixture(scope="module", params=["ddp", "fsdp"])
def strategy(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, strategy) -> Path:
    out = tmp_path_factory.mktemp(strategy) / "run"
    proc = _torchrun(out, strategy=strategy)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def _complete(run: Path) -> list[str]:
    """Names of the sealed checkpoints, each verified against its manifest, oldest first."""
    sealed = [p for p in ckpt.candidates(run / ckpt.DIRNAME) if (p / ckpt.MARKER).exists()]
    for p in sealed:
        assert ckpt.verify(p) is None, p
        ranks = sorted(f.name for f in p.glob("rank-*.json"))
        assert ranks == ["rank-00000.json", "rank-00001.json"], (p, ranks)
    return sorted(p.name for p in sealed)


def _resume_and_compare(run: Path, reference: Path, expected_from: str, strategy: str) -> None:
    proc = _torchrun(run, "--resume", strategy=strategy)
    assert proc.returncode == 0, proc.stderr[-3000:]
    unwrapped = proc.stderr.replace("\n", "")  # the console wraps long paths
    assert f"resumed from {run / ckpt.DIRNAME / expected_from}" in unwrapped, proc.stderr[-2000:]
    assert_same_run(run, reference)


@pytest.mark.parametrize("fault, sealed, resume_from", [
    # rank 1 dies right after the optimizer step 5: the run stops, checkpoints 2 and 4 stay
    ("train.step@5=kill:1", ["step-0000002", "step-0000004"], "step-0000004"),
    # rank 1 dies inside the step-4 checkpoint, after writing its own state, before the seal
    ("checkpoint.after_rank_state@2=kill:1", ["step-0000002"], "step-0000002"),
    # the main rank dies while sealing step 4 (manifest not yet written)
    ("checkpoint.before_manifest@2=kill:0", ["step-0000002"], "step-0000002"),
], ids=["rank1-mid-run", "rank1-in-checkpoint", "rank0-sealing"])
def test_a_rank_killed_then_two_process_resume_equals_uninterrupted(fault, sealed, resume_from,
                                                                    uninterrupted, strategy,
                                                                    tmp_path):
    run = tmp_path / "run"
    proc = _torchrun(run, fault=fault, strategy=strategy)
    assert proc.returncode != 0, "the run should have died"
    assert _complete(run) == sealed
    assert not (run / "model").exists()
    _resume_and_compare(run, uninterrupted, resume_from, strategy)


def _full_disk_then_resume(point: str, uninterrupted: Path, strategy: str, run: Path) -> None:
    """ENOSPC on rank 1 at fault ``point`` of the step-4 checkpoint: both processes stop with
    the same CheckpointError, the partial folder is removed, step 2 is untouched, and the
    resume equals the uninterrupted run."""
    proc = _torchrun(run, fault=f"{point}=enospc:1", strategy=strategy)
    assert proc.returncode != 0
    assert proc.stderr.count("could not write checkpoint step-0000004") == 2, proc.stderr[-3000:]
    # rank 1 gives its own error; rank 0 names the process that failed and why
    name = point.split("@")[0]
    assert f"No space left on device (injected at {name})" in proc.stderr
    assert "process 1 failed: No space left on device;" in proc.stderr, proc.stderr[-3000:]
    assert "newest earlier checkpoint step-0000002 untouched" in proc.stderr
    # asft's own output is one error line per process; the traceback after it is torchrun's
    assert "Traceback" not in proc.stderr.split("torch/distributed/elastic")[0]
    assert _complete(run) == ["step-0000002"]
    assert not list((run / ckpt.DIRNAME).glob(".tmp-*"))
    _resume_and_compare(run, uninterrupted, "step-0000002", strategy)


def test_full_disk_on_one_rank_stops_both_with_one_message(uninterrupted, strategy, tmp_path):
    """ENOSPC while rank 1 writes its state into the step-4 checkpoint."""
    _full_disk_then_resume("checkpoint.after_rank_state@2", uninterrupted, strategy,
                           tmp_path / "run")


@pytest.mark.parametrize("strategy", ["fsdp"], scope="module")
def test_fsdp_rank_killed_inside_its_shard_write(uninterrupted, strategy, tmp_path):
    """Rank 1 dies right after writing its weight shard of the step-4 checkpoint (the third
    shard write: model and optimizer shards at step 2, then the model at step 4), before the
    processes agree the write is done: step 4 is never sealed, the resume starts at step 2."""
    run = tmp_path / "run"
    proc = _torchrun(run, fault="checkpoint.shard@3=kill:1", strategy=strategy)
    assert proc.returncode != 0, "the run should have died"
    assert _complete(run) == ["step-0000002"]
    _resume_and_compare(run, uninterrupted, "step-0000002", strategy)


@pytest.mark.parametrize("strategy", ["fsdp"], scope="module")
def test_fsdp_full_disk_inside_a_shard_write(uninterrupted, strategy, tmp_path):
    """ENOSPC on rank 1 inside DCP's write of its optimizer shard at step 4: DCP's collective
    error becomes rank 1's own OSError and, on rank 0, a stop that names process 1."""
    _full_disk_then_resume("checkpoint.shard@4", uninterrupted, strategy, tmp_path / "run")
