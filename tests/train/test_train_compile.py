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


@pytest.mark.parametrize("strategy", ["none", "fsdp"])
def test_compile_fixes_the_chunk_first_and_compiles_layers_under_fsdp(tiny_model_dir, strategy):
    """The head's chunk is resolved before compiling (on a GPU it reads the device's
    properties, which has no place in a graph); under fsdp each decoder layer is compiled on
    its own, before FSDP2 wraps it, and the scorer is left eager."""
    from asft.model.load import load_model
    from asft.model.logprobs import PreferenceScorer, default_chunk
    from asft.train.setup import _compile
    from asft.train.sharding import decoder_layers

    scorer = PreferenceScorer(load_model(str(tiny_model_dir), dtype="fp32"))
    cfg = load_config(None, ["training.compile=true", "training.compile_backend=aot_eager"])
    lines: list[str] = []
    _compile(cfg, scorer, strategy, torch.device("cpu"), lines.append)
    assert scorer.chunk_size == default_chunk(scorer.vocab, "cpu")
    layers = decoder_layers(scorer.model)
    compiled = [layer._compiled_call_impl is not None for layer in layers]
    assert compiled == [strategy == "fsdp"] * len(layers)
    assert (scorer._compiled_call_impl is not None) == (strategy == "none")
    assert ("each of the 2 decoder layers" in lines[0]) == (strategy == "fsdp")
