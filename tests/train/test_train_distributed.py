"""Two CPU processes (torchrun, gloo) train exactly like one process with the same global batch.

``accelerate launch --cpu --num_processes 2`` quietly runs a single process on some machines,
so the test starts the two processes with torchrun (``python -m torch.distributed.run``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from asft.config import load_config
from asft.train import train

SETTINGS = [
    "model.name=tiny-llama", "model.dtype=fp32", "training.precision=fp32",
    "data.source=builtin:mixed", "data.limit=40",
    "data.probe_size=6", "training.max_steps=4", "optim.lr=1e-3", "logging.every=1",
    "logging.probe_every=2", "logging.progress=false", "logging.tensorboard=false",
    "checkpoint.every=2",
]


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize("loss, one_batch", [
    ([], ["training.batch_size=2", "training.grad_accum=2"]),
    (["loss.name=kto", "reference.strategy=cache"], ["training.batch_size=4", "training.grad_accum=1"]),
], ids=["asft", "kto-cache"])
def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path, loss, one_batch):
    """The probe and (for KTO) the reference cache are scored sharded over the processes.

    KTO's reference point z0 is a batch-level mean: two processes with 2 pairs each must average
    it over both (``SequenceStats.mean_over_processes``) to match one process with the 4 pairs in
    one micro-batch; each process's own mean would differ.
    """
    two = tmp_path / "two"
    sets = [x for s in [*SETTINGS, *loss, "training.batch_size=2", "training.grad_accum=1"]
            for x in ("--set", s)]
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "asft.cli", "train", *sets, "--output-dir", str(two)],
        env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 process(es)" in proc.stderr
    one = train(load_config(None, [*SETTINGS, *loss, *one_batch,
                                   f"output_dir={tmp_path / 'one'}"])).output_dir

    a, b = _records(one), _records(two)
    assert [r["step"] for r in a] == [r["step"] for r in b] == [0, 1, 2, 3, 4]
    for ra, rb in zip(a, b):
        assert ra.keys() == rb.keys()
        for key in ra:
            if not key.startswith("throughput/") and key != "time":
                assert ra[key] == pytest.approx(rb[key], abs=1e-4), (ra["step"], key)
    if "loss.name=kto" in loss:  # z0 moved off its clamp, so the average was exercised
        assert any(r.get("kl/z0", 0) > 1e-4 for r in b), [r.get("kl/z0") for r in b]
    # the two-process run checkpointed one state file per process
    assert sorted(p.name for p in (two / "checkpoints" / "step-0000004").glob("rank-*.json")) == [
        "rank-00000.json", "rank-00001.json"]
