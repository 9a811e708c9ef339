"""The benchmark harness (bench/) end to end on tiny-llama, so it keeps working.

Speed is never asserted here (bench/RESULTS.md holds the measured figures); these tests check
that every system runs the same pairs, that the numbers are wired correctly (positions,
tokens, FLOPs, ratios) and that RESULTS.md is written.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import flops  # noqa: E402
import run  # noqa: E402
import workload  # noqa: E402

HAVE_TRL = importlib.util.find_spec("trl") is not None


def _record(i: int) -> dict:
    """An HH-RLHF style record: two turns of shared prompt, different final replies."""
    prompt = (f"\n\nHuman: question {i} about the sea?\n\nAssistant: Which sea?"
              f"\n\nHuman: the one with {i} fish" + " and more" * (i % 5))
    return {"chosen": prompt + f"\n\nAssistant: A kind answer {i}." + " Sure." * (i % 3),
            "rejected": prompt + "\n\nAssistant: No." + " Go away." * (i % 4)}


@pytest.fixture
def data(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("ASFT_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "hh.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for i in range(12):
            f.write(json.dumps(_record(i)) + "\n")
    return path


def test_workload_draws_the_same_fitting_pairs_for_a_seed(data):
    from asft.model.load import load_tokenizer

    tok = load_tokenizer("tiny-llama")
    kw = dict(max_length=90, batch_size=2, warmup=1, steps=2)
    a = workload.build_workload(data, tok, "tiny-llama", seed=0, **kw)
    b = workload.build_workload(data, tok, "tiny-llama", seed=0, **kw)
    c = workload.build_workload(data, tok, "tiny-llama", seed=1, **kw)
    origins = [[p.origin for p in batch] for batch in a.batches]
    assert origins == [[p.origin for p in batch] for batch in b.batches]
    assert origins != [[p.origin for p in batch] for batch in c.batches]
    assert a.total_pairs == 12 and 6 <= a.eligible_pairs < 12
    for p in (p for batch in a.batches for p in batch):
        P, C, R = p.lengths
        assert P + max(C, R) <= 90 - workload.MARGIN
        assert p.chosen[0]["role"] == "assistant" and p.prompt[-1]["role"] == "user"
    assert a.timed_batches() == a.batches[1:]
    with pytest.raises(ValueError, match="fit max_length"):
        workload.build_workload(data, tok, "tiny-llama", seed=0, max_length=90, batch_size=6,
                                warmup=1, steps=1)


def test_pair_flops_by_hand():
    shape = flops.ModelShape(layer_params=10, hidden=2, vocab=3, layers=1)
    # layers 6*10*(2+1+1) = 240, head 6*2*3*(1+1) = 72, attention 6*1*2*(3^2 + 3^2 - 2^2) = 168
    assert flops.pair_flops(shape, 2, 1, 1) == 480
    assert flops.pair_flops(shape, 2, 1, 1, reference=True) == 640


def _run(tmp_path, data, *extra):
    out = tmp_path / "out"
    rc = run.main(["--tiny", "--inline", "--threads", "1", "--batch-size", "2", "--data", str(data),
                   "--out", str(out), *extra])
    assert rc == 0
    summary = json.loads((out / "results" / "summary.json").read_text())
    return out, {s["label"]: s for s in summary["summaries"]}, summary


def test_tiny_run_without_trl(tmp_path, data):
    out, rows, summary = _run(tmp_path, data, "--no-trl")
    assert "fp32" in summary["peaks"] and summary["peaks"]["fp32"] > 0
    main = rows["asft ASFT"]
    assert main["steps"] == 1 and main["s_per_step"] > 0 and main["mfu"] > 0
    # Same pairs everywhere: the distinct tokens per step agree across every configuration.
    assert len({r["unique_tokens_per_step"] for r in rows.values()}) == 1
    # The shared prompt is computed once: fewer real tokens than the plain layout's.
    assert main["real_tokens_per_step"] < rows["asft ASFT, layout plain"]["real_tokens_per_step"]
    assert main["real_tokens_per_step"] == main["unique_tokens_per_step"]
    assert rows["asft ASFT, all off"]["positions_per_step"] > main["positions_per_step"]
    assert rows["asft DPO"]["phases"]["reference fwd"] > 0
    text = (out / "RESULTS.md").read_text()
    for needle in ("## Machine and versions", "## Targets", "Ablation", "Where asft's step time goes",
                   "torch.profiler"):
        assert needle in text
    # The report is rebuilt from the raw results alone.
    (out / "RESULTS.md").unlink()
    assert run.main(["--report-only", "--out", str(out)]) == 0
    assert (out / "RESULTS.md").read_text() == text
    # A run kept in a sub-folder shows up as a supplementary run with its targets table.
    shutil.copytree(out / "results", out / "again" / "results")
    assert run.main(["--report-only", "--out", str(out)]) == 0
    text = (out / "RESULTS.md").read_text()
    assert "## Supplementary runs" in text and "`again/RESULTS.md`" in text
    origins = json.loads((out / "results" / "workload-tiny-llama.json").read_text())["origins"]
    assert len(origins) == 2 and all(len(b) == 2 for b in origins)
    assert len({o for b in origins for o in b}) == 4  # distinct pairs


@pytest.mark.skipif(not HAVE_TRL, reason="trl is not installed (pip install -e '.[bench]')")
def test_tiny_run_with_trl(tmp_path, data):
    out, rows, _ = _run(tmp_path, data, "--no-ablation", "--no-profile")
    orpo, dpo, main = rows["TRL ORPO"], rows["TRL DPO"], rows["asft ASFT"]
    assert "error" not in orpo and "error" not in dpo
    # TRL's plain layout computes the prompt twice.
    assert dpo["real_tokens_per_step"] > main["real_tokens_per_step"]
    assert orpo["steps"] == dpo["steps"] == 1
    text = (out / "RESULTS.md").read_text()
    assert "| tiny-llama | fp32 |" in text and "TRL ORPO" in text
