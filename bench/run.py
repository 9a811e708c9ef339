"""Benchmark `asft train` against TRL's ORPO and DPO trainers; writes RESULTS.md.

    python bench/run.py            # full run (make bench), ~1.5 h on 2 cores: bench/RESULTS.md
    python bench/run.py --quick    # ~10 min (make bench-quick): SmolLM2-135M, the headline rows
    python bench/run.py --tiny     # seconds: tiny-llama, smoke test of the harness

One run measures, on the same randomly drawn batches of HH-RLHF pairs: the matmul peak, then
per model and precision TRL ORPO and TRL DPO (their own ``trainer.train()``), asft ASFT and
asft DPO as real ``asft train`` processes (bench/cli_side.py: the headline rows), the bare
step rebuilt from asft's parts (bench/asft_side.py: the CLI-overhead yardstick), the bare step
with each optimization switched off (the ablation) and a torch.profiler view of one bare step.
Each job runs in its own process (bench/worker.py) so its peak memory is its own; raw
numbers go to ``<out>/results/*.json``, and every table is computed from them.

The full run times 16 steps after 2 warm-up on SmolLM2-135M, fp32 and bf16. The random
``small`` model (``--models smollm2-135m,small``) is left out of it: at 16 steps its TRL rows
alone add about 10 minutes. ``--ablation-steps 1:4`` shortens the ablation rows.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
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

# (warm-up, timed) steps per model. TRL on SmolLM2-135M in fp32 takes ~20-30 s a step here.
FULL_STEPS = {"smollm2-135m": (2, 16)}
OTHER_STEPS = {"small": (2, 16), "tiny-llama": (1, 1)}  # for --models
QUICK_STEPS = {"smollm2-135m": (1, 3)}
TINY_STEPS = {"tiny-llama": (1, 1)}
MAX_LENGTH = {"full": 512, "quick": 256, "tiny": 512}
# the rows of --quick: the headline systems and the bare step they are measured against
QUICK_LABELS = ("TRL ORPO", "TRL DPO", "asft ASFT", "asft DPO", "bare step, asft ASFT")
BARE = "bare step, asft ASFT"
# the bare step's switches for each ablation row: (label suffix, overrides of the all-on step)
ABLATIONS = [
    (", no grad ckpt", {"grad_ckpt": False}),
    (", layout plain", {"layout": "plain"}),
    (", pack off", {"pack": False}),
    (", padded rows", {"flat": False}),
    (", head full", {"head": "full"}),
    (", all off", {"layout": "plain", "pack": False, "head": "full"}),
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true",
                      help="SmolLM2-135M, fp32 and bf16, headline rows only, 1+3 steps, "
                           "max length 256 (~10 min)")
    mode.add_argument("--tiny", action="store_true", help="tiny-llama smoke run (seconds)")
    p.add_argument("--out", type=Path, default=None,
                   help="folder for RESULTS.md and results/ (default: bench/ for a full run, "
                        "a temporary folder for --quick and --tiny)")
    p.add_argument("--data", type=Path, default=DATA, help="HH-RLHF .jsonl.gz file")
    p.add_argument("--models", default=None, help="comma list among smollm2-135m, small, tiny-llama")
    p.add_argument("--dtypes", default="fp32,bf16", help="comma list of fp32, bf16")
    p.add_argument("--steps", default=None,
                   help="per-model warm-up and timed steps, e.g. 'small=2:8,smollm2-135m=2:16'")
    p.add_argument("--ablation-steps", default=None, metavar="W:T",
                   help="warm-up and timed steps of the ablation rows (default: the model's); "
                        "at most the model's, timing the first T of its timed batches")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--max-length", type=int, default=None,
                   help="sequence budget (default 512; 256 with --quick)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--only", default=None,
                   help="run only jobs whose label contains one of these comma-separated words")
    p.add_argument("--no-trl", action="store_true", help="skip the TRL jobs")
    p.add_argument("--no-ablation", action="store_true", help="skip the ablation rows")
    p.add_argument("--no-profile", action="store_true", help="skip the torch.profiler job")
    p.add_argument("--inline", action="store_true",
                   help="run jobs in this process (fast for tests; peak memory then meaningless)")
    p.add_argument("--limit", type=int, default=None, help="read only the first N records")
    p.add_argument("--timeout", type=int, default=3600, help="seconds per job before it is killed")
    p.add_argument("--report-only", action="store_true",
                   help="rewrite RESULTS.md from the raw results already in --out (default bench/)")
    return p.parse_args(argv)


def _mode(args: argparse.Namespace) -> str:
    return "tiny" if args.tiny else "quick" if args.quick else "full"


def _pair(spec: str, what: str) -> tuple[int, int]:
    """``"W:T"`` as (W, T), at least 1 timed step."""
    try:
        warm, timed = (int(x) for x in spec.split(":"))
    except ValueError:
        raise SystemExit(f"{what}: expected W:T (warm-up:timed steps), got {spec!r}") from None
    if warm < 0 or timed < 1:
        raise SystemExit(f"{what}: need at least 1 timed step and no negative warm-up, got {spec}")
    return warm, timed


def plan(args: argparse.Namespace) -> tuple[dict[str, tuple[int, int]], list[str]]:
    """Steps per model and dtypes for the mode and options."""
    mode = _mode(args)
    steps = dict({"tiny": TINY_STEPS, "quick": QUICK_STEPS, "full": FULL_STEPS}[mode])
    if args.models:
        known = {**OTHER_STEPS, **FULL_STEPS, **steps}
        steps = {m: known.get(m, (2, 16)) for m in args.models.split(",")}
    if args.steps:
        for item in args.steps.split(","):
            name, spec = item.split("=")
            steps[name] = _pair(spec, name)
    for name, (warm, _) in steps.items():
        if warm < 1:
            raise SystemExit(f"{name}: need at least 1 warm-up step, got {warm}")
    if args.ablation_steps:
        warm, timed = _pair(args.ablation_steps, "--ablation-steps")
        for name, (w, t) in steps.items():
            if warm > w or timed > t:
                raise SystemExit(f"--ablation-steps {warm}:{timed} exceeds {name}'s {w}:{t}")
    dtypes = ["fp32"] if args.tiny and args.dtypes == "fp32,bf16" else args.dtypes.split(",")
    return steps, dtypes


def _group_jobs(args: argparse.Namespace, base: dict, have_trl: bool) -> list[Job]:
    """The jobs of one model and precision group, in the order they run."""
    jobs = []
    bf16 = base["dtype"] == "bf16"
    if have_trl:
        jobs += [Job("TRL ORPO", "trl-orpo", **base), Job("TRL DPO", "trl-dpo", **base)]
        if bf16:  # TRL's mixed precision over fp32 weights: the like-for-like rows
            jobs += [Job("TRL ORPO, fp32 weights", "trl-orpo", weights="fp32", **base),
                     Job("TRL DPO, fp32 weights", "trl-dpo", weights="fp32", **base)]
    asft = dict(base, weights="fp32")  # asft's weights stay fp32; bf16 is its mixed precision
    jobs += [Job("asft ASFT", "asft-cli", **asft), Job("asft DPO", "asft-cli", loss="dpo", **asft),
             Job(BARE, "asft", **asft)]
    if not args.no_ablation:
        short = {}
        if args.ablation_steps:
            short = dict(zip(("warmup", "steps"), _pair(args.ablation_steps, "--ablation-steps")))
        jobs += [Job(BARE + suffix, "asft", **asft, **over, **short) for suffix, over in ABLATIONS]
    if not args.no_profile:
        # the profiler needs one step after one warm-up, not the whole workload
        jobs.append(Job("profile", "profile", **asft, warmup=1, steps=1))
    return jobs


def make_jobs(args: argparse.Namespace, models: list[str], dtypes: list[str],
              workloads: dict[str, Path]) -> list[Job]:
    """Every job of the run, in order: matmul peaks, memory floors, then per model and dtype
    TRL then asft."""
    size, secs = (512, 0.3) if args.tiny else (2048, 3.0)
    jobs = [Job(f"matmul {d}", "matmul", "", d, threads=args.threads, matmul_size=size,
                matmul_seconds=secs) for d in dtypes]
    have_trl = trl_version() is not None and not args.no_trl
    # the memory floor: fp32 weights, gradients and AdamW state, the same for both precisions
    jobs += [Job("memory floor", "floor", model, "fp32", threads=args.threads) for model in models]
    for model in models:
        for dtype in dtypes:
            base = dict(model=model, dtype=dtype, workload=str(workloads.get(model, "")),
                        threads=args.threads, seed=args.seed)
            jobs += _group_jobs(args, base, have_trl)
    if args.quick:
        jobs = [j for j in jobs if j.system in ("matmul", "floor") or j.label in QUICK_LABELS]
    if args.only:
        words = args.only.split(",")
        jobs = [j for j in jobs if j.system == "matmul" or any(w in j.label for w in words)]
    return jobs


def run_one(job: Job, folder: Path, inline: bool, timeout: int) -> dict:
    """Run ``job`` in a child process (or inline) and return its result record.

    The worker is started in a session of its own, so that a timeout kills it together with
    its own child (the ``asft train`` of an asft-cli job).
    """
    if inline:
        from worker import run_job

        try:
            return run_job(job.to_dict(), time.time())
        except Exception as e:  # a failed system is reported, not fatal to the run
            return {"job": job.to_dict(), "error": f"{type(e).__name__}: {e}"}
    job_path = folder / "job.json"
    out_path = folder / "result.json"
    out_path.unlink(missing_ok=True)
    job_path.write_text(json.dumps(job.to_dict()))
    env = dict(os.environ, OMP_NUM_THREADS=str(job.threads), MKL_NUM_THREADS=str(job.threads),
               TRL_EXPERIMENTAL_SILENCE="1", TOKENIZERS_PARALLELISM="false")
    env["BENCH_SPAWNED_AT"] = repr(time.time())  # a TRL job's start-up starts here
    proc = subprocess.Popen([sys.executable, str(BENCH / "worker.py"), str(job_path), str(out_path)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return {"job": job.to_dict(), "error": f"timed out after {timeout} s"}
    if out_path.exists():
        result = json.loads(out_path.read_text())
        if proc.returncode == 0 or "error" in result:
            return result
    tail = (stderr or stdout).strip().splitlines()[-1:] or ["no output"]
    return {"job": job.to_dict(), "error": f"exit {proc.returncode}: {tail[0][:300]}"}


def _slug(job: Job) -> str:
    label = job.label.lower().replace(",", "").replace(" ", "-")
    return "-".join(x for x in (job.model, job.dtype, label) if x)


def build_workloads(args: argparse.Namespace, steps: dict[str, tuple[int, int]], scratch: Path,
                    results_dir: Path) -> tuple[dict[str, Path], dict[str, dict]]:
    """Draw each model's batches once; the full workload goes to ``scratch`` (the jobs read
    it), its line numbers and lengths to ``results_dir`` (the report reads those)."""
    from asft.model.load import load_tokenizer
    from workload import build_workload

    paths, infos = {}, {}
    for model, (warm, timed) in steps.items():
        folder = Path(model).is_dir()  # a saved model (the GPU bench's random copy): its own
        tok_name = model if folder else "tiny-llama" if model == "tiny-llama" else "smollm2-135m"
        slug = Path(model).name if folder else model
        w = build_workload(args.data, load_tokenizer(tok_name), tok_name, max_length=args.max_length,
                           batch_size=args.batch_size, warmup=warm, steps=timed, seed=args.seed,
                           limit=args.limit)
        paths[model] = scratch / f"workload-{slug}.json"
        w.save(paths[model])
        # The pairs' text stays out of the repository: only line numbers and lengths are kept.
        info = {k: v for k, v in asdict(w).items() if k != "batches"}
        info.update(batch_size=args.batch_size, origins=[[p.origin for p in b] for b in w.batches],
                    lengths=[[list(p.lengths) for p in b] for b in w.batches])
        infos[model] = info
        (results_dir / f"workload-{slug}.json").write_text(json.dumps(info))
    return paths, infos


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report_only:
        print(render(args.out or BENCH))
        return 0
    steps, dtypes = plan(args)
    mode = _mode(args)
    args.max_length = args.max_length or MAX_LENGTH[mode]
    out = args.out or (BENCH if mode == "full" else Path(tempfile.mkdtemp(prefix=f"asft-bench-{mode}-")))
    results_dir = out / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    if not args.data.is_file():
        raise SystemExit(f"data file not found: {args.data}")

    import torch

    from report import machine_info, versions

    torch.set_num_threads(args.threads)
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    load_start = os.getloadavg()[0]
    code_versions = versions()  # before the jobs: the code they run
    t0 = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix="asft-bench-"))
    workload_paths, _ = build_workloads(args, steps, scratch, results_dir)
    jobs = make_jobs(args, list(steps), dtypes, workload_paths)
    results = _run_all(jobs, scratch, args, results_dir)
    meta = {
        "command": "python bench/run.py" + "".join(" " + shlex.quote(a) for a in (argv or sys.argv[1:])),
        "mode": mode, "inline": args.inline, "started": started, "wall_s": time.perf_counter() - t0,
        "load_start": load_start, "load_end": os.getloadavg()[0],
        "machine": machine_info(), "versions": code_versions,
        "settings": {"threads": args.threads, "batch_size": args.batch_size,
                     "max_length": args.max_length, "seed": args.seed, "dtypes": dtypes,
                     "steps": steps, "ablation_steps": args.ablation_steps,
                     "trl": not args.no_trl, "matmul_size": jobs[0].matmul_size if jobs else None},
        "jobs": [_slug(j) for j in jobs],
        "models": list(steps),
    }
    (results_dir / "run.json").write_text(json.dumps(meta, indent=1))
    print(render(out))
    failed = [r for r in results if "error" in r]
    for r in failed:
        print(f"FAILED {r['job']['label']} ({r['job']['model']} {r['job']['dtype']}): {r['error']}",
              file=sys.stderr)
    return 1 if failed else 0


def render(out: Path) -> str:
    """(Re)write ``out/RESULTS.md`` and ``out/results/summary.json`` from the raw results;
    returns the headline table (markdown) for the console."""
    from report import headline_lines, summarize, target_checks, write_results

    results_dir = out / "results"
    meta = json.loads((results_dir / "run.json").read_text())
    results = [json.loads((results_dir / f"{slug}.json").read_text()) for slug in meta["jobs"]]
    workload_info = {m: json.loads((results_dir / f"workload-{m}.json").read_text())
                     for m in meta["models"]}
    peaks = {r["job"]["dtype"]: r["flops_per_s"] for r in results
             if r["job"]["system"] == "matmul" and "error" not in r}
    summaries = [summarize(r, workload_info[r["job"]["model"]], peaks) for r in results
                 if r["job"]["system"] in ("asft-cli", "asft", "trl-orpo", "trl-dpo")]
    profiles = {f"{r['job']['model']}-{r['job']['dtype']}": r.get("profile", r)
                for r in results if r["job"]["system"] == "profile"}
    floors = {r["job"]["model"]: r["floor"] for r in results
              if r["job"]["system"] == "floor" and "error" not in r}
    loads = [r["load_before"] for r in results if "load_before" in r]
    meta["load_range"] = [min(loads), max(loads)] if loads else None
    tokenize_path = BENCH / "results" / "tokenize.json"
    tokenize = json.loads(tokenize_path.read_text()) if tokenize_path.is_file() else None
    scale_path = BENCH / "results" / "data-scale.json"
    data_scale = json.loads(scale_path.read_text()) if scale_path.is_file() else None
    sharded_path = BENCH / "results" / "sharded.json"
    sharded = json.loads(sharded_path.read_text()) if sharded_path.is_file() else None
    gpu_path = BENCH / "results" / "gpu.json"  # bench/gpu.py's, measured on a GPU machine
    gpu = json.loads(gpu_path.read_text()) if gpu_path.is_file() else None
    (results_dir / "summary.json").write_text(json.dumps(
        {"meta": meta, "peaks": peaks, "summaries": summaries,
         "targets": target_checks(summaries), "profiles": profiles, "floors": floors}, indent=1))
    # Runs kept in sub-folders (e.g. a re-measurement of one model) are summarized too.
    supplements = [{"folder": p.parents[1].relative_to(out).as_posix(), **json.loads(p.read_text())}
                   for p in sorted(out.glob("*/results/summary.json"))]
    write_results(out / "RESULTS.md", meta, summaries, workload_info, peaks, profiles, tokenize,
                  supplements, data_scale, sharded, gpu, floors)
    return "\n".join(headline_lines(summaries)) + f"\nwrote {out / 'RESULTS.md'} and {results_dir}/"


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
