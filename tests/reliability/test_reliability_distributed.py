"""Faults in a two-process run (torchrun, gloo on the CPU): one rank dies or its disk fills, in
the middle of training or of a checkpoint write. The other rank stops too, no checkpoint that
misses a rank's state is ever sealed, and a two-process ``--resume`` ends with exactly the
weights and metrics of an uninterrupted two-process run.

The faults strike one after another in one output folder (a chain, as in
test_reliability_faults.py), so that one launch is both the resume after a fault and the run
the next fault stops: each launch resumes from the newest complete checkpoint the previous
fault left (checked by name), seals at least one checkpoint of its own (every 2 steps), and is
stopped by its fault in its second checkpoint write (the last fault: right after an optimizer
step); a final ``--resume`` completes the run. Each resume thus writes the checkpoint the next
one continues from, and the final weights and metrics equal the uninterrupted run's only if
every resume was exact. The chain runs under DDP and under ``distributed.strategy: fsdp``
(FSDP2: each process writes its own shards of the weights and optimizer state); under
``fsdp`` two more faults strike inside a shard write.
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
    "data.source=builtin:mixed", "data.limit=60", "data.probe_size=4", "training.max_steps=16",
    "training.batch_size=2", "optim.lr=1e-3", "logging.every=1", "logging.probe_every=3",
    "logging.progress=false", "logging.tensorboard=false", "checkpoint.every=2",
    "checkpoint.keep_last=2",
]

# (fault, the complete checkpoints it leaves). Hit counts restart in each process: "@2" of a
# checkpoint point is the second checkpoint the launch writes, after sealing the first one.
COMMON = [
    # a fresh run: ENOSPC on rank 1 in the step-4 checkpoint, after writing its own state
    ("checkpoint.after_rank_state@2=enospc:1", ["step-0000002"]),
    # resumed from 2: rank 1 dies inside the step-6 checkpoint, after writing its own state,
    # before the seal
    ("checkpoint.after_rank_state@2=kill:1", ["step-0000002", "step-0000004"]),
    # resumed from 4: the main rank dies while sealing step 8 (manifest not yet written)
    ("checkpoint.before_manifest@2=kill:0", ["step-0000004", "step-0000006"]),
]
CHAINS = {
    "ddp": [
        *COMMON,
        # resumed from 6: rank 1 dies right after the optimizer step 11; 8 and 10 stay
        ("train.step@5=kill:1", ["step-0000008", "step-0000010"]),
    ],
    "fsdp": [
        *COMMON,
        # resumed from 6: rank 1 dies right after writing its weight shard of the step-10
        # checkpoint (the third shard write: model and optimizer shards at step 8, then the
        # model at step 10), before the processes agree the write is done
        ("checkpoint.shard@3=kill:1", ["step-0000006", "step-0000008"]),
        # resumed from 8: ENOSPC on rank 1 inside DCP's write of its optimizer shard at step 12:
        # DCP's collective error becomes rank 1's own OSError and, on rank 0, a stop that names
        # process 1
        ("checkpoint.shard@4=enospc:1", ["step-0000008", "step-0000010"]),
        # resumed from 10: rank 1 dies right after the optimizer step 15; 12 and 14 stay
        ("train.step@5=kill:1", ["step-0000012", "step-0000014"]),
    ],
}


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


def _assert_resumed_from(proc: subprocess.CompletedProcess, run: Path, name: str) -> None:
    unwrapped = proc.stderr.replace("\n", "")  # the console wraps long paths
    assert f"resumed from {run / ckpt.DIRNAME / name}" in unwrapped, proc.stderr[-2000:]


def _assert_one_disk_error(proc: subprocess.CompletedProcess, fault: str, run: Path,
                           sealed: list[str]) -> None:
    """ENOSPC on rank 1 at ``fault``: both processes stop with the same CheckpointError, the
    partial folder is removed and the newest complete checkpoint is named untouched."""
    struck = ckpt.step_dirname(ckpt.step_of(Path(sealed[-1])) + 2)
    assert proc.stderr.count(f"could not write checkpoint {struck}") == 2, proc.stderr[-3000:]
    # rank 1 gives its own error; rank 0 names the process that failed and why
    name = fault.split("@")[0]
    assert f"No space left on device (injected at {name})" in proc.stderr
    assert "process 1 failed: No space left on device;" in proc.stderr, proc.stderr[-3000:]
    assert f"newest earlier checkpoint {sealed[-1]} untouched" in proc.stderr
    # asft's own output is one error line per process; the traceback after it is torchrun's
    assert "Traceback" not in proc.stderr.split("torch/distributed/elastic")[0]
    assert not list((run / ckpt.DIRNAME).glob(".tmp-*"))


def test_faults_on_one_rank_then_two_process_resume_equals_uninterrupted(uninterrupted, strategy,
                                                                          tmp_path):
    """The chain of faults of the module docstring, then a two-process ``--resume``."""
    run = tmp_path / "run"
    newest: str | None = None  # the checkpoint the next launch resumes from
    for fault, sealed in CHAINS[strategy]:
        proc = _torchrun(run, *(["--resume"] if newest else []), fault=fault, strategy=strategy)
        assert proc.returncode != 0, f"{fault}: the run should have died"
        if newest:
            _assert_resumed_from(proc, run, newest)
        if "=enospc" in fault:
            _assert_one_disk_error(proc, fault, run, sealed)
        assert _complete(run) == sealed, fault
        assert not (run / "model").exists(), fault
        newest = sealed[-1]
    proc = _torchrun(run, "--resume", strategy=strategy)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _assert_resumed_from(proc, run, newest)
    assert_same_run(run, uninterrupted)
