"""Numerical edges through the trainer, end to end (tests/losses/test_losses.py covers each loss
function alone): log-probs of 0, tiny negatives and -1e4, responses of zero tokens, and bf16
statistics reach every registered loss inside ``asft.train.train``; a model whose log-probs
are pushed to those extremes trains; empty responses in the data are reported.

What must hold: the run finishes (the trainer stops on any non-finite loss or gradient norm,
so finishing means every step's loss and gradient norm were finite), the weights stay finite,
every training record of metrics.jsonl is finite, and pairs that cannot be scored are counted
in ``pairs/unscorable`` and left out of the mean loss instead of being averaged in as zeros.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from asft.config import load_config
from asft.losses import LOSSES, SequenceStats, compute
from asft.train import train

pytestmark = pytest.mark.edge

BASE = [
    "model.name=tiny-llama", "model.dtype=fp32", "training.precision=fp32",
    "data.source=builtin:mixed", "data.limit=30", "data.probe_size=0", "logging.every=1",
    "logging.progress=false", "logging.tensorboard=false", "checkpoint.every=0",
]

# One batch of six pairs, the same at every call: (chosen sum, chosen tokens, rejected sum,
# rejected tokens). Pairs 0-2 put log-probs of 0, -1e-9 and -1e4 in every position; pairs
# 3-5 have a response of zero tokens and cannot be scored.
EDGE_BATCH = [
    (0.0, 3, -1e4, 2),
    (-1e-9, 1, 0.0, 1),
    (-1e4, 1, -1e-9, 4),
    (-2.0, 0, -3.0, 2),
    (-2.0, 4, -3.0, 0),
    (0.0, 0, 0.0, 0),
]
UNSCORABLE = sum(1 for _, nw, _, nl in EDGE_BATCH if nw == 0 or nl == 0)
# for a loss that takes unpaired examples (KTO), one side suffices: only pair 5 is unscorable
UNSCORABLE_UNPAIRED = sum(1 for _, nw, _, nl in EDGE_BATCH if nw == 0 and nl == 0)


def _edge_scorer(base: type) -> type:
    """A PreferenceScorer whose outputs carry the values of EDGE_BATCH but the gradient of the
    real log-probs (value = edge, d/dθ = d real/dθ), in bf16 on every second call."""

    class EdgeScorer(base):
        calls = 0

        def forward(self, batch):
            logps, tokens = super().forward(batch)
            b = batch["num_pairs"]
            assert b == len(EDGE_BATCH)
            values = [c for c, _, _, _ in EDGE_BATCH] + [r for _, _, r, _ in EDGE_BATCH]
            counts = [n for _, n, _, _ in EDGE_BATCH] + [n for _, _, _, n in EDGE_BATCH]
            if batch["num_seqs"] == 3 * b:  # a third response (KTO, TPO): the edges again
                values, counts = values + values[:b], counts + counts[:b]
            values, counts = torch.tensor(values, dtype=torch.float64), torch.tensor(counts)
            dtype = torch.bfloat16 if EdgeScorer.calls % 2 else logps.dtype
            EdgeScorer.calls += 1
            logps = logps.to(dtype)
            edged = logps - logps.detach() + values.to(dtype).to(logps.device)
            return edged, counts.to(tokens.device, tokens.dtype)

    return EdgeScorer


def _records(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def _finite_weights(run: Path) -> None:
    for name, w in load_file(str(run / "model" / "model.safetensors")).items():
        assert torch.isfinite(w.float()).all(), name


@pytest.mark.parametrize("name", list(LOSSES))
def test_edge_log_probs_and_empty_responses_through_the_trainer(name, tmp_path, monkeypatch,
                                                                record_property):
    import asft.losses
    import asft.model.logprobs

    monkeypatch.setattr(asft.model.logprobs, "PreferenceScorer", _edge_scorer(asft.model.logprobs.PreferenceScorer))
    seen: list[tuple[SequenceStats, torch.Tensor]] = []

    def spy(loss_name, stats, **hparams):
        losses, metrics = compute(loss_name, stats, **hparams)
        seen.append((stats, losses.detach()))
        return losses, metrics

    monkeypatch.setattr(asft.losses, "compute", spy)
    out = tmp_path / "run"
    more = ["reference.models=[tiny-llama]"] if LOSSES[name].multi_reference else []
    train(load_config(None, [*BASE, f"loss.name={name}", "training.max_steps=4",
                             f"training.batch_size={len(EDGE_BATCH)}", "optim.warmup_steps=0",
                             f"output_dir={out}", *more]))
    records = [r for r in _records(out) if r["step"] > 0]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    unscorable = UNSCORABLE_UNPAIRED if LOSSES[name].unpaired else UNSCORABLE
    for r in records:
        assert all(v is not None and math.isfinite(v) for v in r.values()), r
        assert r["pairs/unscorable"] == unscorable
    assert len(seen) == len(records)
    assert {s.chosen_logps.dtype for s, _ in seen} == {torch.float32, torch.bfloat16}
    for r, (stats, losses) in zip(records, seen):
        # the edge values reached the loss; unscorable pairs got 0 and stay out of the mean
        assert stats.chosen_logps.float().tolist()[:3] == pytest.approx([0.0, -1e-9, -1e4], rel=1e-2)
        first = len(EDGE_BATCH) - unscorable  # the unscorable pairs are the last ones
        assert torch.isfinite(losses).all() and losses[first:].tolist() == [0.0] * unscorable
        assert r["loss"] == pytest.approx(losses.sum().item() / (len(EDGE_BATCH) - unscorable),
                                          rel=1e-6, abs=1e-6)
    _finite_weights(out)
    record_property("edge_cases", len(EDGE_BATCH) * len(records))


@pytest.mark.parametrize("name", ["asft", "orpo", "dpo", "simpo"])
def test_a_model_with_extreme_log_probs_trains(name, tmp_path, monkeypatch):
    """The LM head scaled by 1e4: every token's log-prob is 0 or far below -1e4, as produced by
    the model itself through the chunked log-softmax, in bf16-mixed precision."""
    import asft.train.policy

    build = asft.train.policy.build_model

    def peaked(cfg, log, device_type):
        model = build(cfg, log, device_type)
        with torch.no_grad():
            model.get_output_embeddings().weight.mul_(1e4)
        return model

    monkeypatch.setattr("asft.train.setup.build_model", peaked)
    out = tmp_path / "run"
    train(load_config(None, [*BASE, f"loss.name={name}", "training.max_steps=2",
                             "training.batch_size=4", "training.precision=bf16-mixed",
                             f"output_dir={out}"]))
    records = [r for r in _records(out) if r["step"] > 0]
    assert len(records) == 2
    for r in records:
        assert all(v is not None and math.isfinite(v) for v in r.values()), r
        assert r["logps/chosen"] < -100 or r["logps/chosen"] > -1e-3  # really at the extremes
    _finite_weights(out)


def test_bf16_weights_and_compute(tmp_path):
    """model.dtype bf16 with bf16-mixed compute: finite metrics, weights saved in bf16."""
    out = tmp_path / "run"
    train(load_config(None, [*BASE, "model.dtype=bf16", "training.precision=bf16-mixed",
                             "training.max_steps=3", "training.batch_size=4", "loss.name=asft",
                             f"output_dir={out}"]))
    for r in _records(out):
        assert all(v is not None and math.isfinite(v) for v in r.values()), r
    weights = load_file(str(out / "model" / "model.safetensors"))
    assert {w.dtype for w in weights.values()} == {torch.bfloat16}
    _finite_weights(out)


def test_empty_responses_in_the_data_are_reported(tmp_path):
    """An empty response text is kept and scored as the end-of-turn token alone (HH-RLHF has
    such pairs); data_report.json counts them. A response that tokenizes to nothing is never
    scored: the tokenizer drops its pair with a reason (tests/data/test_data_tokenize.py)."""
    data = tmp_path / "pairs.jsonl"
    recs = [{"prompt": f"question {i}", "chosen": f"answer {i}", "rejected": f"wrong {i}"}
            for i in range(12)]
    recs[3]["chosen"] = ""
    recs[7]["rejected"] = "  \n "
    data.write_text("".join(json.dumps(r) + "\n" for r in recs))
    out = tmp_path / "run"
    train(load_config(None, [*BASE, f"data.source={data}", "training.max_steps=3",
                             "training.batch_size=4", f"output_dir={out}"]))
    report = json.loads((out / "data_report.json").read_text())
    assert report["load"]["empty_responses"] == 2 and report["load"]["kept"] == 12
    assert report["tokenize"]["kept"] == 12
    for r in _records(out):
        assert all(v is not None and math.isfinite(v) for v in r.values()), r
        assert "pairs/unscorable" not in r
