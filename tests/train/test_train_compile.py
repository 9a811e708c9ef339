"""training.compile: the scorer is compiled with dynamic shapes and the response tokens are
padded to buckets, so a run whose every batch has a new response-token count compiles a
graph per bucket rather than one per batch, and trains exactly as the uncompiled run does.

The backend is ``aot_eager``: dynamo and AOTAutograd trace the same forward and backward
graphs as with inductor (so the graph count is the one that matters), without inductor's C++
code generation, which takes minutes per graph on this CPU."""

from __future__ import annotations

import json

import pytest
import torch

from asft.config import load_config
from asft.errors import AsftError


def _losses(out):
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in records if "loss" in r]


def test_compiled_run_compiles_a_few_graphs_and_trains_as_the_eager_one(tiny_train_overrides, tmp_path,
                                                                       monkeypatch):
    from torch._dynamo.utils import counters

    from asft.data import collate as collate_module
    from asft.data.collate import bucket
    from asft.train import train

    counts: list[int] = []  # response tokens per batch, seen as the batches are built
    real = collate_module.collate
    monkeypatch.setattr(collate_module, "collate", lambda *a, **k: _seen(real(*a, **k), counts))

    steps = ["training.max_steps=6", "data.probe_size=0", "training.batch_size=4"]
    eager = load_config(None, [*tiny_train_overrides, *steps, f"output_dir={tmp_path / 'eager'}"])
    train(eager)
    torch._dynamo.reset()
    counters.clear()
    compiled = load_config(None, [*tiny_train_overrides, *steps, "training.compile=true",
                                  "training.compile_backend=aot_eager",
                                  f"output_dir={tmp_path / 'compiled'}"])
    train(compiled)
    graphs = counters["stats"]["unique_graphs"]
    buckets = {bucket(n) for n in counts}
    assert len(set(counts)) >= 5 > len(buckets)  # without buckets: a graph per batch
    # a graph per bucket, and the start-up layout check's two (shared and plain, no grad)
    assert graphs <= len(buckets) + 2, (graphs, counts)
    assert _losses(tmp_path / "compiled") == pytest.approx(_losses(tmp_path / "eager"), abs=1e-5)


def _seen(batch, counts):
    counts.append(batch["target_ids"].shape[0])
    return batch


def test_compile_refusals_name_the_field(tiny_train_overrides):
    from asft.train import train

    cfg = load_config(None, [*tiny_train_overrides, "training.compile=true",
                             "training.compile_backend=nope"])
    with pytest.raises(AsftError, match=r"training\.compile_backend: unknown backend 'nope'"):
        train(cfg)
