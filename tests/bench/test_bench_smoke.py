"""The benchmark harness (bench/) end to end on tiny-llama, so it keeps working.

Speed is never asserted here (bench/RESULTS.md holds the measured figures); these tests check
that every system runs the same pairs (the real `asft train` rows included), that the numbers
are wired correctly (positions, tokens, FLOPs, start-up, end to end, ratios) and that
RESULTS.md is written.
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

import cli_side  # noqa: E402
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


def _check_cli_rows(out: Path, rows: dict) -> None:
    """The asft train rows trained the workload's pairs and were timed from their spawn."""
    info = json.loads((out / "results" / "workload-tiny-llama.json").read_text())
    expected = [sum(map(sum, batch)) for batch in info["lengths"]]
    for label, slug in (("asft ASFT", "asft-asft"), ("asft DPO", "asft-dpo")):
        row = rows[label]
        assert row["system"] == "asft-cli" and "error" not in row
        raw = json.loads((out / "results" / f"tiny-llama-fp32-{slug}.json").read_text())
        assert raw["log"]["real_tokens"] == expected  # per step, warm-up included
        assert raw["command"][1] == "train" and "training.order=sequential" in raw["command"]
        assert row["steps"] == 1 and row["s_per_step"] > 0
        # the loop turn holds the step and its logging (1 ms stamps: allow their rounding)
        assert row["turn_s_per_step"] >= row["s_per_step"] - 0.002
        assert row["startup_s"] > 0 and row["e2e_pairs_per_s"] > 0 and row["train_span_s"] >= 0
        # start-up contains asft's own setup, and e2e is slower than the steady rate
        assert row["startup_s"] > row["timing"]["setup_s"]
        assert row["e2e_pairs_per_s"] < row["pairs_per_s"]
        assert row["cpu_s_per_step"] is None and row["contended"] is None
        assert row["real_tokens_per_step"] == row["unique_tokens_per_step"]
        assert row["peak_rss_bytes"] > 0
    assert rows["asft ASFT"]["reference_s"] is None
    assert rows["asft DPO"]["reference_s"] >= 0


def test_tiny_run_without_trl(tmp_path, data):
    out, rows, summary = _run(tmp_path, data, "--no-trl")
    assert "fp32" in summary["peaks"] and summary["peaks"]["fp32"] > 0
    _check_cli_rows(out, rows)
    bare = rows[run.BARE]
    assert bare["system"] == "asft" and bare["mfu"] > 0 and bare["cpu_s_per_step"] > 0
    # Same pairs everywhere: the distinct tokens per step agree across every configuration.
    assert len({r["unique_tokens_per_step"] for r in rows.values()}) == 1
    # The shared prompt is computed once: fewer real tokens than the plain layout's.
    assert bare["real_tokens_per_step"] < rows[run.BARE + ", layout plain"]["real_tokens_per_step"]
    assert bare["real_tokens_per_step"] == bare["unique_tokens_per_step"]
    assert rows[run.BARE + ", all off"]["positions_per_step"] > bare["positions_per_step"]
    overhead = [c for c in summary["targets"] if c["target"] == "cli_overhead"]
    assert len(overhead) == 1 and overhead[0]["value"] > 0 and overhead[0]["met"] in ("yes", "no")
    text = (out / "RESULTS.md").read_text()
    for needle in ("## Machine and versions", "## Headline", "| tiny-llama | fp32 | asft ASFT | fp32 |",
                   "| tiny-llama | fp32 | asft DPO | fp32 |", "## Targets", "Start-up and end to end",
                   "Ablation", "Where the bare step's time goes", "torch.profiler",
                   "Inside the step, `aten::mm` ("):
        assert needle in text
    # the profiled step's matrix products carry FLOPs counted by FlopCounterMode
    mm = next(e for e in summary["profiles"]["tiny-llama-fp32"]["top"] if e["op"] == "aten::mm")
    assert mm["flops"] > 0 and mm["self_cpu_s"] > 0
    # the memory floor: every stage read, 16 bytes a trainable parameter of state
    floor = summary["floors"]["tiny-llama"]
    assert list(floor["rss_bytes"]) == ["imports", "weights", "gradients", "adamw"]
    assert floor["parameters"] > 0 and floor["state_bytes"] == 16 * floor["parameters"]
    assert "**Memory floor, tiny-llama** (measured in this run;" in text
    # The report is rebuilt from the raw results alone.
    (out / "RESULTS.md").unlink()
    assert run.main(["--report-only", "--out", str(out)]) == 0
    assert (out / "RESULTS.md").read_text() == text
    # A run kept in a sub-folder shows up as a supplementary run with its targets table.
    shutil.copytree(out / "results", out / "again" / "results")
    assert run.main(["--report-only", "--out", str(out)]) == 0
    text = (out / "RESULTS.md").read_text()
    assert "## Supplementary runs" in text and "`again/RESULTS.md`" in text
    assert "- tiny-llama-fp32: `aten::mm` (" in text  # its profile's matmul rate
    origins = json.loads((out / "results" / "workload-tiny-llama.json").read_text())["origins"]
    assert len(origins) == 2 and all(len(b) == 2 for b in origins)
    assert len({o for b in origins for o in b}) == 4  # distinct pairs


@pytest.mark.skipif(not HAVE_TRL, reason="trl is not installed (pip install -e '.[bench]')")
def test_tiny_run_with_trl(tmp_path, data, capsys):
    out, rows, summary = _run(tmp_path, data, "--no-ablation", "--no-profile")
    orpo, dpo = rows["TRL ORPO"], rows["TRL DPO"]
    assert "error" not in orpo and "error" not in dpo
    _check_cli_rows(out, rows)
    # TRL's plain layout computes the prompt twice.
    assert dpo["real_tokens_per_step"] > rows[run.BARE]["real_tokens_per_step"]
    assert orpo["steps"] == dpo["steps"] == 1
    for r in (orpo, dpo):
        assert r["startup_s"] > 0 and r["e2e_pairs_per_s"] > 0 and r["cpu_s_per_step"] > 0
    assert dpo["reference_s"] == "per step" and orpo["reference_s"] is None
    by_target = {c["target"]: c for c in summary["targets"]}
    assert set(by_target) == set(run_report().TARGETS)
    assert by_target["orpo_speed"]["peer"] == "TRL ORPO" and by_target["orpo_speed"]["value"] > 0
    assert by_target["dpo_e2e"]["value"] > 0
    text = (out / "RESULTS.md").read_text()
    assert "| tiny-llama | fp32 | TRL ORPO | fp32 |" in text and "| asft ASFT vs TRL ORPO" in text
    assert "| tiny-llama | fp32 | TRL DPO | fp32 |" in capsys.readouterr().out  # printed headline


def run_report():
    import report

    return report


def _args(*argv: str):
    args = run.parse_args(list(argv))
    steps, dtypes = run.plan(args)
    return args, steps, dtypes, run.make_jobs(args, list(steps), dtypes, {})


def test_job_plans_of_the_modes():
    _, steps, dtypes, jobs = _args("--quick")
    assert steps == {"smollm2-135m": (1, 3)} and dtypes == ["fp32", "bf16"]
    labels = {(j.dtype, j.label) for j in jobs if j.system not in ("matmul", "floor")}
    assert labels == {(d, label) for d in dtypes for label in run.QUICK_LABELS}
    # one memory floor per model, whatever the precisions (both keep fp32 master weights)
    assert [(j.model, j.dtype) for j in jobs if j.system == "floor"] == [("smollm2-135m", "fp32")]
    _, steps, _, jobs = _args("--ablation-steps", "1:4")
    assert steps == {"smollm2-135m": (2, 16)}
    by = {(j.dtype, j.label): j for j in jobs}
    # bf16: TRL with bf16 weights and with fp32 weights (its mixed precision); asft fp32 weights
    assert by["bf16", "TRL ORPO"].weights == "bf16"
    assert by["bf16", "TRL DPO, fp32 weights"].weights == "fp32"
    assert ("fp32", "TRL ORPO, fp32 weights") not in by
    assert {j.weights for j in jobs if j.system in ("asft", "asft-cli", "profile")} == {"fp32"}
    assert by["bf16", "asft DPO"].system == "asft-cli" and by["bf16", "asft DPO"].loss == "dpo"
    abl = by["fp32", run.BARE + ", all off"]
    assert (abl.warmup, abl.steps) == (1, 4) and by["fp32", run.BARE].steps is None
    # the ablation's timed batches are the first 4 of the full rows' timed batches
    assert abl.batch_range(18, 2) == (1, 6, 1) and by["fp32", run.BARE].batch_range(18, 2) == (0, 18, 2)
    with pytest.raises(SystemExit, match="exceeds"):
        _args("--ablation-steps", "3:4")


def _pairs(n: int) -> list[workload.BenchPair]:
    msgs = [{"role": "user", "content": "hi"}]
    return [workload.BenchPair(f"f:{i}", msgs, [{"role": "assistant", "content": "a"}],
                               [{"role": "assistant", "content": "b"}], [1] * (3 + i), [2], [3, 3])
            for i in range(n)]


def test_cli_token_check_fails_loudly():
    batches = [_pairs(2)]  # prompts of 3 and 4 tokens, responses of 1 and 2 tokens each: 13
    ok = [{"throughput/step_s": 0.5, "throughput/tokens_per_s": 26.0}]
    assert cli_side.check_tokens(ok, batches) == [13]
    with pytest.raises(RuntimeError, match="did not train the workload's pairs"):
        cli_side.check_tokens([{"throughput/step_s": 0.5, "throughput/tokens_per_s": 30.0}], batches)


def test_loop_turns_are_the_gaps_between_records():
    records = [{"time": 101.5}, {"time": 103.0}, {"time": 103.25}]
    assert cli_side.loop_turns(records, 100.0) == [1.5, 1.5, 0.25]


def test_cli_failure_quotes_the_child_output(tmp_path, monkeypatch, data):
    fake = tmp_path / "asft"
    fake.write_text("#!/bin/sh\necho 'setting up'\necho 'boom: no such model' >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setattr(cli_side, "ASFT", fake)
    job = run.Job("asft ASFT", "asft-cli", "tiny-llama", "fp32", threads=1)
    with pytest.raises(RuntimeError, match="exited 3") as err:
        cli_side.run_cli(job, [_pairs(2)], 64)
    assert "boom: no such model" in str(err.value) and "setting up" in str(err.value)


def test_floor_reads_what_is_resident():
    """The floor's reading moves with memory that is touched, not merely reserved."""
    import torch

    import floor

    before = floor.rss_bytes()
    block = torch.ones(16 * 2**20)  # 64 MiB, every page written
    assert floor.rss_bytes() - before >= 60 * 2**20
    del block


def test_floor_paragraph_against_each_trl_orpo_peak():
    import report

    gib = 2**30
    floor = {"rss_bytes": {"imports": gib // 4, "weights": gib, "gradients": 3 * gib // 2,
                           "adamw": 2 * gib}, "parameters": 100_000_000, "state_bytes": 16 * 10**8}
    rows = [{"model": "m", "system": "trl-orpo", "label": "TRL ORPO", "dtype": "fp32",
             "weights": "fp32", "peak_rss_bytes": 6 * gib},
            {"model": "m", "system": "trl-orpo", "label": "TRL ORPO", "dtype": "bf16",
             "weights": "bf16", "peak_rss_bytes": 4 * gib},
            {"model": "m", "system": "trl-dpo", "label": "TRL DPO", "dtype": "fp32",
             "weights": "fp32", "peak_rss_bytes": 9 * gib},
            {"model": "other", "system": "trl-orpo", "label": "TRL ORPO", "dtype": "fp32",
             "weights": "fp32", "peak_rss_bytes": gib}]
    text = report.floor_lines("m", floor, rows, "here")
    assert "**2.00 GiB** with AdamW's state (100.0M parameters x 16 bytes = 1.49 GiB)" in text
    # 0.4 x 6 GiB = 2.4 GiB, 0.4 GiB above the floor; 0.4 x 4 GiB = 1.6 GiB, 0.4 GiB below it
    assert "`TRL ORPO` in fp32 peaked at 6.00 GiB: the floor is 0.33x that, and 0.4x of it leaves +0.40 GiB" in text
    assert "`TRL ORPO` in bf16 peaked at 4.00 GiB: the floor is 0.50x that, and 0.4x of it leaves -0.40 GiB" in text
    assert "TRL DPO" not in text and "1.00 GiB" not in text  # only this model's ORPO rows
    assert "Against" not in report.floor_lines("m", floor, [], "here")
