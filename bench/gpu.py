"""GPU benchmark (issue 14, item 8): `asft train` and TRL's trainers on one CUDA GPU, bf16.

    bash scripts/gpu_bench.sh            # on the GPU machine: bench/results/gpu.json, RESULTS.md
    python bench/gpu.py --dry-run        # any CPU, ~1 min: the whole pipeline on tiny-llama

SmolLM2-135M, the same HH-RLHF batches for every row (drawn once, bench/workload.py): `asft
train` with loss ASFT under the attention kernels sdpa, flex_attention and flash_attention_2
(only where ``import flash_attn`` works; otherwise the row says why not), with loss DPO under
sdpa and flex_attention, and TRL's ORPOTrainer and DPOTrainer. Each row runs in a process of
its own through the CPU benchmark's machinery (bench/run.py's ``run_one``, bench/worker.py),
so its peak GPU memory is its own. Rows and section: bench/gpu_report.py.

``--dry-run`` (= ``--device cpu --model tiny-llama --warmup 1 --steps 2 --batch-size 2 --attn
sdpa``, results in a temporary folder) checks on a machine without a GPU that everything up to
the device works: workload, jobs, the peak-memory wrapper, the report.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from gpu_report import SYSTEMS, gpu_row, gpu_section
from jobs import Job
from run import BENCH, DATA, build_workloads, render, run_one

ATTNS = ("sdpa", "flex_attention", "flash_attention_2")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dry-run", action="store_true",
                   help="CPU smoke run: --device cpu, tiny-llama, 1+2 steps of 2 pairs, sdpa only, "
                        "results in a temporary folder")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--model", default="smollm2-135m", help="smollm2-135m or tiny-llama")
    p.add_argument("--data", type=Path, default=DATA, help="HH-RLHF .jsonl.gz file")
    p.add_argument("--attn", default=",".join(ATTNS), help=f"comma list among {', '.join(ATTNS)}")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=20, help="timed steps")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-grad-ckpt", action="store_true",
                   help="gradient checkpointing off everywhere (default on: TRL's default)")
    p.add_argument("--no-trl", action="store_true", help="skip the TRL rows")
    p.add_argument("--trl-weights", default="bf16",
                   help="comma list of TRL weight dtypes: bf16 (default), fp32 (TRL's mixed "
                        "precision, like asft's fp32 weights under bf16 autocast)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads per process (default 8)")
    p.add_argument("--timeout", type=int, default=300, help="seconds per row before it is killed")
    p.add_argument("--out", type=Path, default=None,
                   help="folder for results/gpu.json (default bench/; with --dry-run a temporary "
                        "folder). Into bench/, RESULTS.md is rewritten; elsewhere GPU.md")
    p.add_argument("--limit", type=int, default=None, help="read only the first N records")
    p.add_argument("--random-weights", action="store_true",
                   help="the model's architecture (its config and tokenizer, no weights needed) "
                        "with random weights drawn from --seed, saved once and trained by every "
                        "row: for a machine without a copy of the weights; speed and memory do "
                        "not depend on their values")
    args = p.parse_args(argv)
    if args.dry_run:
        args.device, args.model, args.attn = "cpu", "tiny-llama", "sdpa"
        args.warmup, args.steps, args.batch_size = 1, 2, 2
    unknown = set(args.attn.split(",")) - set(ATTNS)
    if unknown or args.warmup < 1 or args.steps < 1:
        p.error(f"need known kernels ({', '.join(ATTNS)}) and at least 1 warm-up and 1 timed "
                f"step; got --attn {args.attn} --warmup {args.warmup} --steps {args.steps}")
    args.threads = args.threads or (2 if args.device == "cpu" else 8)
    if args.out is None:
        args.out = Path(tempfile.mkdtemp(prefix="asft-gpu-dry-")) if args.dry_run else BENCH
    return args


def flash_attn_missing() -> str | None:
    """Why flash-attn cannot be used here, or None when ``import flash_attn`` works."""
    try:
        importlib.import_module("flash_attn")
    except Exception as e:  # ImportError, or a build for another torch/CUDA failing to load
        return (f"not installable here: import flash_attn failed ({type(e).__name__}: "
                f"{str(e)[:160]}); nothing is fetched on the GPU machine")
    return None


def make_jobs(args: argparse.Namespace, workload: Path) -> list[Job]:
    """The matmul peak, then every row of :data:`gpu_report.SYSTEMS` that ``args`` asks for."""
    matmul = (8192, 3.0) if args.device == "cuda" else (512, 0.3)
    jobs = [Job("matmul bf16", "matmul", "", "bf16", device=args.device, threads=args.threads,
                matmul_size=matmul[0], matmul_seconds=matmul[1])]
    attns = args.attn.split(",")
    base = dict(model=args.model, dtype="bf16", workload=str(workload), threads=args.threads,
                seed=args.seed, grad_ckpt=not args.no_grad_ckpt, device=args.device)
    for label, system, loss, attn in SYSTEMS:
        if system == "asft-cli" and attn in attns:
            jobs.append(Job(label, system, loss=loss, attn=attn, weights="fp32", **base))
        elif system != "asft-cli" and not args.no_trl:
            for weights in args.trl_weights.split(","):
                name = label if weights == "bf16" else f"{label}, {weights} weights"
                jobs.append(Job(name, system, weights=weights, **base))
    return jobs


def device_info(device: str) -> str:
    """The GPU in words (name, memory, CUDA), or the CPU for a dry run."""
    import torch

    if device != "cuda":
        from report import machine_info

        return f"CPU ({machine_info()['cpu']}), a dry run: no GPU figure"
    props = torch.cuda.get_device_properties(0)
    return (f"{props.name}, {props.total_memory / 1024**3:.0f} GiB, compute capability "
            f"{props.major}.{props.minor}, CUDA {torch.version.cuda}")


def random_copy(name: str, dest: Path, seed: int) -> Path:
    """``name``'s architecture with random weights (transformers' own initialization, seeded)
    and its tokenizer, saved to ``dest``: what every row trains under ``--random-weights``."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from asft.model.load import load_tokenizer, resolve_model

    config = AutoConfig.from_pretrained(resolve_model(name))
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.save_pretrained(dest)
    load_tokenizer(name).save_pretrained(dest)
    return dest


def run_jobs(jobs: list[Job], scratch: Path, timeout: int,
             done: Callable[[list[dict]], None] = lambda results: None) -> list[dict]:
    """Each job in its own worker process, flash_attention_2 only where flash-attn imports;
    ``done`` gets the results so far after each job (gpu.json is rewritten, so a run killed
    at the device's time limit keeps its finished rows)."""
    missing = flash_attn_missing()
    results = []
    for i, job in enumerate(jobs, 1):
        print(f"[{i}/{len(jobs)}] {job.label} ...", end=" ", flush=True)
        t0 = time.perf_counter()
        if job.attn == "flash_attention_2" and missing:
            results.append({"job": job.to_dict(), "error": missing})
        else:
            results.append(run_one(job, scratch, inline=False, timeout=timeout))
        print(results[-1].get("error", "ok").splitlines()[0][:200],
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
        done(results)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.data.is_file():
        raise SystemExit(f"data file not found: {args.data} (pass --data)")
    import torch

    from report import versions

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU visible to torch; use --dry-run on a CPU")
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    code_versions = versions()
    scratch = Path(tempfile.mkdtemp(prefix="asft-gpu-"))
    (scratch / "info").mkdir()  # the workload's summary; gpu.json keeps it, not bench/results
    name = args.model
    if args.random_weights:
        args.model = str(random_copy(name, scratch / "model", args.seed))
    paths, infos = build_workloads(args, {args.model: (args.warmup, args.steps)}, scratch,
                                   scratch / "info")
    jobs = make_jobs(args, paths[args.model])
    settings = {k: getattr(args, k) for k in ("device", "warmup", "steps", "batch_size",
                                              "max_length", "seed", "threads", "attn")}
    settings.update(model=Path(name).name if Path(name).is_dir() else name,
                    random_weights=args.random_weights,
                    grad_ckpt=not args.no_grad_ckpt, matmul_size=jobs[0].matmul_size)
    meta = {"command": "python bench/gpu.py" + "".join(
                " " + shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)),
            "started": started, "device": device_info(args.device), "rows_planned": len(jobs) - 1,
            "versions": code_versions, "settings": settings}

    def write(results: list[dict], complete: bool) -> dict:
        peak = next((r.get("flops_per_s") for r in results if r["job"]["system"] == "matmul"), None)
        rows = [gpu_row(r, infos[args.model], peak) for r in results
                if r["job"]["system"] != "matmul"]
        gpu = {"meta": dict(meta, wall_s=time.perf_counter() - t0, complete=complete),
               "peak_flops": peak, "workload": infos[args.model], "rows": rows, "results": results}
        (args.out / "results").mkdir(parents=True, exist_ok=True)
        (args.out / "results" / "gpu.json").write_text(json.dumps(gpu, indent=1))
        return gpu

    results = run_jobs(jobs, scratch, args.timeout, done=lambda rs: write(rs, complete=False))
    gpu = write(results, complete=True)
    section = "\n".join(gpu_section(gpu))
    if args.out.resolve() == BENCH and (BENCH / "results" / "run.json").is_file():
        render(BENCH)  # RESULTS.md from every raw result, this section included
        where = BENCH / "RESULTS.md"
    else:
        where = args.out / "GPU.md"
        where.write_text(section + "\n")
    print(section, f"\nwrote {args.out / 'results' / 'gpu.json'} and {where}", sep="\n")
    failed = [r for r in gpu["rows"] if "error" in r and not r["error"].startswith("not installable")]
    return 1 if failed or gpu["peak_flops"] is None else 0


if __name__ == "__main__":
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    sys.exit(main())
