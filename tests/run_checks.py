"""Shared assertion of the resume tests: a run folder ends exactly like a reference run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file


def assert_same_run(run: Path, reference: Path, atol: float = 1e-6) -> None:
    """The final weights of ``run`` equal the reference's to ``atol``, and its metrics.jsonl has
    the same records (throughput and wall-clock time aside: they measure the machine, not the run)."""
    got = load_file(str(run / "model" / "model.safetensors"))
    want = load_file(str(reference / "model" / "model.safetensors"))
    assert got.keys() == want.keys()
    for k in want:
        assert torch.allclose(got[k], want[k], rtol=0, atol=atol), k
    a = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (reference / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for ra, rb in zip(a, b):
        for key, value in rb.items():
            if not key.startswith("throughput/") and key != "time":
                assert ra[key] == pytest.approx(value, abs=atol), (rb["step"], key)
