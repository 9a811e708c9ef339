"""bench/gpu.py's plan and report, without a GPU and without training (seconds).

The GPU rows themselves need a CUDA machine (scripts/gpu_bench.sh); ``python bench/gpu.py
--dry-run`` runs the whole pipeline on a CPU. These tests check what can go wrong silently:
which rows run on which device, and that the section's figures are computed from the loop
turns and both peaks.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import cli_side  # noqa: E402
import gpu  # noqa: E402
import gpu_report  # noqa: E402
from jobs import Job  # noqa: E402


def test_dry_run_plans_cpu_rows_and_the_default_plans_the_gpu_rows(tmp_path):
    args = gpu.parse_args(["--dry-run", "--out", str(tmp_path)])
    assert (args.device, args.model, args.attn) == ("cpu", "tiny-llama", "sdpa")
    assert (args.warmup, args.steps, args.batch_size) == (1, 2, 2)
    jobs = gpu.make_jobs(args, tmp_path / "w.json")
    assert [j.label for j in jobs] == ["matmul bf16", "asft ASFT, sdpa", "asft DPO, sdpa",
                                       "TRL ORPO", "TRL DPO"]
    assert {j.device for j in jobs} == {"cpu"} and jobs[0].matmul_size == 512
    args = gpu.parse_args(["--trl-weights", "bf16,fp32"])
    assert args.out == BENCH and args.device == "cuda" and args.batch_size == 8
    by = {j.label: j for j in gpu.make_jobs(args, tmp_path / "w.json")}
    assert by["matmul bf16"].matmul_size == 8192
    assert by["asft ASFT, flash_attention_2"].attn == "flash_attention_2"
    assert by["asft DPO, flex_attention"].loss == "dpo"
    assert by["asft ASFT, sdpa"].weights == "fp32" and by["TRL ORPO"].weights == "bf16"
    assert by["TRL DPO, fp32 weights"].weights == "fp32"
    assert {j.device for j in by.values()} == {"cuda"} and {j.dtype for j in by.values()} == {"bf16"}
    with pytest.raises(SystemExit):
        gpu.parse_args(["--attn", "sdpa,bogus"])


def test_cpu_bench_jobs_keep_their_shape():
    """The CPU benchmark's raw results gain no keys: device and attn appear only when set."""
    d = Job("asft ASFT", "asft-cli", "tiny-llama", "fp32").to_dict()
    assert "device" not in d and "attn" not in d and Job(**d).device is None
    assert Job("x", "asft-cli", "tiny-llama", "bf16", device="cuda").to_dict()["device"] == "cuda"


def test_flash_attention_2_tokens_may_count_the_prompt_twice():
    msgs = [{"role": "user", "content": "hi"}]
    pair = cli_side.BenchPair("f:1", msgs, msgs, msgs, [1, 1, 1], [2], [3, 3])  # P, C, R = 3, 1, 2
    plain = [{"throughput/step_s": 1.0, "throughput/tokens_per_s": 9.0}]
    assert cli_side.check_tokens(plain, [[pair]], plain_ok=True) == [9]
    with pytest.raises(RuntimeError, match="did not train"):
        cli_side.check_tokens(plain, [[pair]])


def _result(**over) -> dict:
    job = Job("asft ASFT, sdpa", "asft-cli", "tiny-llama", "bf16", weights="fp32", attn="sdpa",
              device="cuda")
    return {"job": job.to_dict(), "threads": 1, "batches": [0, 3], "warmup": 1,
            "log": {"seconds": [9.0, 0.1, 0.1], "cpu_seconds": [], "positions": [],
                    "real_tokens": [8, 8, 8], "phases": []},
            "shape": {"layer_params": 10, "hidden": 2, "vocab": 3, "layers": 1},
            "turn_seconds": [9.0, 0.25, 0.25], "peak_rss_bytes": 1, "peak_gpu_bytes": 2 ** 31,
            "spawned_at": 100.0, "first_step_at": 103.0, "last_step_at": 112.5,
            "pairs_trained": 6, "timing": {"setup_s": 1.0}, **over}


def test_rows_are_timed_by_loop_turn_against_both_peaks():
    work = {"warmup": 1, "lengths": [[[2, 1, 1], [2, 1, 1]]] * 3}
    row = gpu_report.gpu_row(_result(), work, peak=7680.0)
    # 2 timed steps of 2 pairs in 0.5 s of loop turns; 480 useful FLOPs a pair (test_bench_smoke)
    assert row["pairs_per_s"] == 8.0 and row["tokens_per_s"] == 32.0
    assert row["step_s_own"] == pytest.approx(0.1) and row["s_per_step"] == 0.25
    assert row["mfu"] == pytest.approx(0.5)
    assert row["mfu_nominal"] == pytest.approx(3840 / gpu_report.NOMINAL_PEAK)
    assert row["peak_gpu_bytes"] == 2 ** 31 and row["startup_s"] == 3.0
    missing = {"job": Job("asft ASFT, flash_attention_2", "asft-cli", "tiny-llama", "bf16",
                          attn="flash_attention_2", device="cuda").to_dict(),
               "error": "not installable here: import flash_attn failed"}
    rows = [row, gpu_report.gpu_row(missing, work, 7680.0)]
    meta = {"command": "python bench/gpu.py", "started": "now", "wall_s": 60.0,
            "device": "NVIDIA H100", "versions": {"asft": "abc", "torch": "2", "trl": "1"},
            "settings": {"model": "m", "steps": 2, "warmup": 1, "batch_size": 2,
                         "max_length": 64, "grad_ckpt": True, "matmul_size": 8192}}
    text = "\n".join(gpu_report.gpu_section({"meta": meta, "peak_flops": 7680.0, "rows": rows}))
    assert "| asft ASFT, sdpa | sdpa | fp32 | 2 (+1 warm-up) | 0.250 (0.250-0.250) | 8.0 | 32 | 2.00 | 50.0 | 0.0 |" in text
    assert "| asft ASFT, flash_attention_2 | flash_attention_2 | bf16 | not installable here" in text


def test_unmeasured_section_says_so_and_names_the_command():
    text = "\n".join(gpu_report.gpu_section(None))
    assert text.startswith("## GPU (bench/results/gpu.json)")
    assert "**Not measured.**" in text and "`bash scripts/gpu_bench.sh`" in text
    assert "| " + " | ".join(gpu_report.HEADER) + " |" in text
    for label, *_ in gpu_report.SYSTEMS:
        assert f"| {label} |" in text
    assert text.count("not measured |") == len(gpu_report.SYSTEMS)


def test_random_weights_copy_keeps_the_architecture_and_every_row_can_load_it(tmp_path):
    """``--random-weights``: the model's config and tokenizer with seeded random weights, in a
    folder that the jobs (bench/jobs.py) and the workload's tokenizer read like a named model."""
    import gzip
    import json

    import torch

    from jobs import load_model
    from run import build_workloads

    a = gpu.random_copy("tiny-llama", tmp_path / "a", seed=0)
    b = gpu.random_copy("tiny-llama", tmp_path / "b", seed=0)
    c = gpu.random_copy("tiny-llama", tmp_path / "c", seed=1)
    named, _ = load_model(Job("x", "asft", "tiny-llama", "fp32"))
    ma, tok = load_model(Job("x", "asft", str(a), "fp32"))
    mb, _ = load_model(Job("x", "asft", str(b), "fp32"))
    mc, _ = load_model(Job("x", "asft", str(c), "fp32"))
    shape = ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size")
    assert [getattr(ma.config, k) for k in shape] == [getattr(named.config, k) for k in shape]
    wa, wb, wc = (m.model.layers[0].mlp.up_proj.weight for m in (ma, mb, mc))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)  # seeded, and the seed matters
    assert len(tok) <= ma.config.vocab_size
    with pytest.raises(ValueError, match="saved model's folder"):
        load_model(Job("x", "asft", str(tmp_path / "none"), "fp32"))
    data = tmp_path / "hh.jsonl.gz"  # HH-RLHF's format, enough pairs for 1 + 1 steps of 2
    with gzip.open(data, "wt") as f:
        for i in range(6):
            f.write(json.dumps({"chosen": f"\n\nHuman: q{i}\n\nAssistant: yes {i}",
                                "rejected": f"\n\nHuman: q{i}\n\nAssistant: no"}) + "\n")
    args = gpu.parse_args(["--dry-run", "--out", str(tmp_path), "--data", str(data)])
    paths, infos = build_workloads(args, {str(a): (1, 1)}, tmp_path, tmp_path)
    assert paths[str(a)].name == "workload-a.json" and infos[str(a)]["tokenizer"] == str(a)


def test_rows_are_written_after_each_job_and_a_cut_run_says_so(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(gpu, "run_one", lambda job, scratch, inline, timeout: {"job": job.to_dict(),
                                                                               "error": "x"})
    jobs = [Job("a", "asft-cli", "tiny-llama", "bf16"), Job("b", "asft-cli", "tiny-llama", "bf16")]
    gpu.run_jobs(jobs, tmp_path, 1, done=lambda rs: seen.append(len(rs)))
    assert seen == [1, 2]
    meta = {"command": "python bench/gpu.py", "started": "now", "wall_s": 60.0, "complete": False,
            "rows_planned": 6, "device": "NVIDIA H100",
            "versions": {"asft": "abc", "torch": "2", "trl": "1"},
            "settings": {"model": "smollm2-135m", "random_weights": True, "seed": 0, "steps": 2,
                         "warmup": 1, "batch_size": 2, "max_length": 64, "grad_ckpt": True,
                         "matmul_size": 8192}}
    row = gpu_report.gpu_row({"job": jobs[0].to_dict(), "error": "boom"}, {}, None)
    text = "\n".join(gpu_report.gpu_section({"meta": meta, "peak_flops": None, "rows": [row]}))
    assert "**Incomplete run:**" in text and "after 1 of its 6 rows" in text
    assert "smollm2-135m with random weights" in text and "seed 0" in text
    meta.update(complete=True, settings=dict(meta["settings"], random_weights=False))
    text = "\n".join(gpu_report.gpu_section({"meta": meta, "peak_flops": None, "rows": [row]}))
    assert "Incomplete" not in text and "random weights" not in text


def test_the_gpu_kernel_check_passes_asft_s_layouts_and_catches_a_leak(monkeypatch, capsys):
    """scripts/gpu_check_kernels.py, rehearsed on a CPU (sdpa and eager; flex and FA2 need the
    GPU): asft train's batches score and differentiate as sequences run alone; with the
    shared-prefix rule broken (rejected tokens see the chosen ones) and the start-up layout
    check that would catch it switched off, the same check fails."""
    sys.path.insert(0, str(BENCH.parent / "scripts"))
    import gpu_check_kernels

    from asft.model import masks
    from asft.train import setup

    assert gpu_check_kernels.main(["--device", "cpu", "--pairs", "4"]) == 0
    out = capsys.readouterr().out
    assert out.count("PASS ") == 2 and "FAIL" not in out
    rule = masks.allowed

    def leaky(groups, segments):
        return rule(groups, segments) | ((segments[..., :, None] == 2) & (segments[..., None, :] == 1))

    monkeypatch.setattr(masks, "allowed", leaky)
    monkeypatch.setattr(setup, "_layout_check", lambda *a, **k: None)
    assert gpu_check_kernels.main(["--device", "cpu", "--pairs", "4"]) == 1
    assert "FAIL eager" in capsys.readouterr().out
