"""Benchmark asft's ASFT step against TRL's ORPO and DPO trainers; writes RESULTS.md.

    python bench/run.py            # full run, ~45 min on 2 cores: bench/RESULTS.md, bench/results/
    python bench/run.py --quick    # ~5 min: the small model only, few steps, to another folder
    python bench/run.py --tiny     # seconds: tiny-llama, smoke test of the harness

One run measures, on the same randomly drawn batches of HH-RLHF pairs: the matmul peak,
TRL ORPO, TRL DPO, asft ASFT with every optimization, asft with each one switched off, and
asft DPO, for each model and dtype. Each job runs in its own process (bench/worker.py) so
its peak memory is its own; raw numbers go to ``<out>/results/*.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

from jobs import Job
from peers import trl_version

BENCH = Path(__file__).resolve().parent
DATA = BENCH.parents[1] / "shared" / "data" / "hh-rlhf" / "harmless-base-test.jsonl.gz"

# (warm-up, timed) steps per model: TRL on SmolLM2-135M in fp32 takes ~20-26 s a step here.
FULL_STEPS = {"smollm2-135m": (2, 4), "small": (2, 8)}
QUICK_STEPS = {"small": (1, 2)}
TINY_STEPS = {"tiny-llama": (1, 1)}
# asft's switches for each row: (label suffix, overrides of the all-on configuration)
ABLATIONS = [
    (", no grad ckpt", {"grad_ckpt": False}),
    (", layout plain", {"layout": "plain"}),
    (", pack off", {"pack": False}),
    (", head full", {"head": "full"}),
    (", all off", {"layout": "plain", "pack": False, "head": "full"}),
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="small model only, 1+2 steps (~5 min)")
    mode.add_argument("--tiny", action="store_true", help="tiny-llama smoke run (seconds)")
    p.add_argument("--out", type=Path, default=None,
                   help="folder for RESULTS.md and results/ (default: bench/ for a full run, "
                        "a temporary folder for --quick and --tiny)")
    p.add_argument("--data", type=Path, default=DATA, help="HH-RLHF .jsonl.gz file")
    p.add_argument("--models", default=None, help="comma list among smollm2-135m, small, tiny-llama")
    p.add_argument("--dtypes", default="fp32,bf16", help="comma list of fp32, bf16")
    p.add_argument("--steps", default=None,
                   help="per-model warm-up and timed steps, e.g. 'small=2:8,smollm2-135m=2:4'")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--only", default=None,
                   help="run only jobs whose label contains one of these comma-separated words")
    p.add_argument("--no-trl", action="store_true", help="skip the TRL jobs")
    p.add_argument("--no-ablation", action="store_true", help="only asft ASFT and asft DPO")
    p.add_argument("--no-profile", action="store_true", help="skip the torch.profiler job")
    p.add_argument("--inline", action="store_true",
                   help="run jobs in this process (fast for tests; peak memory then meaningless)")
    p.add_argument("--limit", type=int, default=None, help="read only the first N records")
    p.add_argument("--timeout", type=int, default=1800, help="seconds per job before it is killed")
    p.add_argument("--report-only", action="store_true",
                   help="rewrite RESULTS.md from the raw results already in --out (default bench/)")
    return p.parse_args(argv)


def plan(args: argparse.Namespace) -> tuple[dict[str, tuple[int, int]], list[str]]:
    """Steps per model and dtypes for the mode and options."""
    steps = dict(TINY_STEPS if args.tiny else QUICK_STEPS if args.quick else FULL_STEPS)
    if args.models:
        names = args.models.split(",")
        default = (1, 1) if args.tiny else (1, 2) if args.quick else (2, 4)
        steps = {m: steps.get(m, FULL_STEPS.get(m, default)) for m in names}
    if args.steps:
        for item in args.steps.split(","):
            name, spec = item.split("=")
            warm, timed = spec.split(":")
            steps[name] = (int(warm), int(timed))
    for name, (warm, timed) in steps.items():
        if warm < 1 or timed < 1:
            raise SystemExit(f"{name}: need at least 1 warm-up and 1 timed step, got {warm}:{timed}")
    dtypes = ["fp32"] if args.tiny and args.dtypes == "fp32,bf16" else args.dtypes.split(",")
    return steps, dtypes


def make_jobs(args: argparse.Namespace, models: list[str], dtypes: list[str],
              workloads: dict[str, Path]) -> list[Job]:
    """Every job of the run, in order: matmul peaks, then per model and dtype TRL then asft."""
    size, secs = (512, 0.3) if args.tiny else (2048, 3.0)
    jobs = [Job(f"matmul {d}", "matmul", "", d, threads=args.threads, matmul_size=size,
                matmul_seconds=secs) for d in dtypes]
    have_trl = trl_version() is not None and not args.no_trl
    for model in models:
        for dtype in dtypes:
            base = dict(model=model, dtype=dtype, workload=str(workloads[model]),
                        threads=args.threads)
            if have_trl:
                jobs += [Job("TRL ORPO", "trl-orpo", **base), Job("TRL DPO", "trl-dpo", **base)]
            jobs.append(Job("asft ASFT", "asft", **base))
            if not args.no_ablation:
                jobs += [Job("asft ASFT" + suffix, "asft", **base, **over) for suffix, over in ABLATIONS]
            jobs.append(Job("asft DPO", "asft", loss="dpo", **base))
            if not args.no_profile:
                jobs.append(Job("profile", "profile", **base))
    if args.only:
        words = args.only.split(",")
        jobs = [j for j in jobs if j.system == "matmul" or any(w in j.label for w in words)]
    return jobs


def run_one(job: Job, folder: Path, inline: bool, timeout: int) -> dict:
    """Run ``job`` in a child process (or inline) and return its result record."""
    if inline:
        from worker import run_job

        try:
            return run_job(job.to_dict())
        except Exception as e:  # a failed system is reported, not fatal to the run
            return {"job": job.to_dict(), "error": f"{type(e).__name__}: {e}"}
    job_path = folder / "job.json"
    out_path = folder / "result.json"
    out_path.unlink(missing_ok=True)
    job_path.write_text(json.dumps(job.to_dict()))
    env = dict(os.environ, OMP_NUM_THREADS=str(job.threads), MKL_NUM_THREADS=str(job.threads),
               TRL_EXPERIMENTAL_SILENCE="1", TOKENIZERS_PARALLELISM="false")
    try:
        proc = subprocess.run([sys.executable, str(BENCH / "worker.py"), str(job_path), str(out_path)],
                              env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"job": job.to_dict(), "error": f"timed out after {timeout} s"}
    if proc.returncode != 0 or not out_path.exists():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"job": job.to_dict(), "error": f"exit {proc.returncode}: {tail[0][:300]}"}
    return json.loads(out_path.read_text())


def _slug(job: Job) -> str:
    label = job.label.lower().replace(",", "").replace(" ", "-")
    return "-".join(x for x in (job.model, job.dtype, label) if x)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report_only:
        render(args.out or BENCH)
        return 0
    steps, dtypes = plan(args)
    models = list(steps)
    mode = "tiny" if args.tiny else "quick" if args.quick else "full"
    out = args.out or (BENCH if mode == "full" else Path(tempfile.mkdtemp(prefix=f"asft-bench-{mode}-")))
    results_dir = out / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    if not args.data.is_file():
        raise SystemExit(f"data file not found: {args.data}")

    import torch

    from asft.model.load import load_tokenizer
    from report import machine_info, versions
    from workload import build_workload

    torch.set_num_threads(args.threads)
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    load_start = os.getloadavg()[0]
    code_versions = versions()  # before the jobs: the code they run
    t0 = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix="asft-bench-"))
    workload_paths, workload_info = {}, {}
    for model in models:
        warm, timed = steps[model]
        tok_name = "tiny-llama" if model == "tiny-llama" else "smollm2-135m"
        w = build_workload(args.data, load_tokenizer(tok_name), tok_name, max_length=args.max_length,
                           batch_size=args.batch_size, warmup=warm, steps=timed, seed=args.seed,
                           limit=args.limit)
        workload_paths[model] = scratch / f"workload-{model}.json"
        w.save(workload_paths[model])
        # The pairs' text stays out of the repository: only line numbers and lengths are kept.
        info = {k: v for k, v in asdict(w).items() if k != "batches"}
        info.update(batch_size=args.batch_size, origins=[[p.origin for p in b] for b in w.batches],
                    lengths=[[list(p.lengths) for p in b] for b in w.batches])
        workload_info[model] = info
        (results_dir / f"workload-{model}.json").write_text(json.dumps(info))

    jobs = make_jobs(args, models, dtypes, workload_paths)
    results = _run_all(jobs, scratch, args, results_dir)
    meta = {
        "command": "python bench/run.py" + "".join(" " + shlex.quote(a) for a in (argv or sys.argv[1:])),
        "mode": mode, "inline": args.inline, "started": started, "wall_s": time.perf_counter() - t0,
        "load_start": load_start, "load_end": os.getloadavg()[0],
        "machine": machine_info(), "versions": code_versions,
        "settings": {"threads": args.threads, "batch_size": args.batch_size,
                     "max_length": args.max_length, "seed": args.seed, "dtypes": dtypes,
                     "steps": steps, "trl": not args.no_trl,
                     "matmul_size": jobs[0].matmul_size if jobs else None},
        "jobs": [_slug(j) for j in jobs],
        "models": models,
    }
    (results_dir / "run.json").write_text(json.dumps(meta, indent=1))
    render(out)
    failed = [r for r in results if "error" in r]
    for r in failed:
        print(f"FAILED {r['job']['label']} ({r['job']['model']} {r['job']['dtype']}): {r['error']}",
              file=sys.stderr)
    return 1 if failed else 0


def render(out: Path) -> None:
    """(Re)write ``out/RESULTS.md`` and ``out/results/summary.json`` from the raw results."""
    from report import summarize, write_results

    results_dir = out / "results"
    meta = json.loads((results_dir / "run.json").read_text())
    results = [json.loads((results_dir / f"{slug}.json").read_text()) for slug in meta["jobs"]]
    workload_info = {m: json.loads((results_dir / f"workload-{m}.json").read_text())
                     for m in meta["models"]}
    peaks = {r["job"]["dtype"]: r["flops_per_s"] for r in results
             if r["job"]["system"] == "matmul" and "error" not in r}
    summaries = [summarize(r, workload_info[r["job"]["model"]], peaks) for r in results
                 if r["job"]["system"] in ("asft", "trl-orpo", "trl-dpo")]
    profiles = {f"{r['job']['model']}-{r['job']['dtype']}": r.get("profile", r)
                for r in results if r["job"]["system"] == "profile"}
    loads = [r["load_before"] for r in results if "load_before" in r]
    meta["load_range"] = [min(loads), max(loads)] if loads else None
    tokenize_path = BENCH / "results" / "tokenize.json"
    tokenize = json.loads(tokenize_path.read_text()) if tokenize_path.is_file() else None
    (results_dir / "summary.json").write_text(json.dumps(
        {"meta": meta, "peaks": peaks, "summaries": summaries}, indent=1))
    # Runs kept in sub-folders (e.g. a re-measurement of one model) are summarized too.
    supplements = [{"folder": p.parents[1].relative_to(out).as_posix(), **json.loads(p.read_text())}
                   for p in sorted(out.glob("*/results/summary.json"))]
    write_results(out / "RESULTS.md", meta, summaries, workload_info, peaks, profiles, tokenize,
                  supplements)
    print(f"wrote {out / 'RESULTS.md'} and {results_dir}/")


def _run_all(jobs: list[Job], scratch: Path, args: argparse.Namespace, results_dir: Path) -> list[dict]:
    """Run the jobs in order, writing each raw result as soon as it is in."""
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    results = []
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task("benchmark", total=len(jobs))
        for job in jobs:
            progress.update(task, description=f"{job.label} {job.model} {job.dtype}".strip())
            load = os.getloadavg()[0]
            results.append({**run_one(job, scratch, args.inline, args.timeout), "load_before": load})
            (results_dir / f"{_slug(job)}.json").write_text(json.dumps(results[-1], indent=1))
            progress.advance(task)
    return results


if __name__ == "__main__":
    sys.exit(main())
