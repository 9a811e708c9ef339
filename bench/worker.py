"""Run one job in this process and write its raw result as JSON.

    python bench/worker.py JOB.json RESULT.json

One process per job keeps each job's peak resident memory its own (ru_maxrss never goes
down), and a crash of one system cannot take the others with it. ``$BENCH_SPAWNED_AT``: the
Unix time at which run.py launched this process (the start of a TRL job's start-up).
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from dataclasses import asdict
from pathlib import Path


def run_job(job_dict: dict, spawned_at: float | None = None) -> dict:
    """Measure ``job_dict`` (a :class:`jobs.Job` as a dict); returns the result record.

    ``spawned_at``: Unix time at which this job's process was launched (default: now).
    """
    spawned_at = time.time() if spawned_at is None else spawned_at
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    warnings.filterwarnings("ignore")
    import torch

    from jobs import Job, peak_rss_bytes

    job = Job(**job_dict)
    torch.set_num_threads(job.threads)
    torch.manual_seed(job.seed)
    result: dict = {"job": job.to_dict(), "threads": torch.get_num_threads()}
    t0 = time.perf_counter()
    if job.system == "matmul":
        from flops import matmul_peak

        result["flops_per_s"] = matmul_peak(job.dtype, job.matmul_size, job.matmul_seconds,
                                            device=job.device or "cpu")
        result["peak_rss_bytes"] = peak_rss_bytes()
        return result
    if job.system == "floor":
        from floor import measure_floor

        result["floor"] = measure_floor(job)
        result["peak_rss_bytes"] = peak_rss_bytes()
        return result

    from workload import Workload

    work = Workload.load(Path(job.workload))
    start, stop, warm = job.batch_range(len(work.batches), work.warmup)
    result.update(batches=[start, stop], warmup=warm)
    batches = work.batches[start:stop]
    if job.system == "asft-cli":
        from cli_side import run_cli

        result.update(run_cli(job, batches, work.max_length))
        result["log"] = asdict(result["log"])
        result["shape"] = _shape(job)  # after the child: this process's memory is not measured
    else:
        result.update(_in_process(job, batches, work.max_length, spawned_at))
    result["wall_s"] = time.perf_counter() - t0
    return result


def _shape(job) -> dict:
    """The model's shape (for the FLOPs), from a copy loaded in this process."""
    from flops import ModelShape
    from jobs import load_model

    return asdict(ModelShape.of(load_model(job)[0]))


def _in_process(job, batches: list, max_length: int, spawned_at: float) -> dict:
    """A job whose steps run in this process: the bare step, its profile, or a TRL trainer."""
    from flops import ModelShape
    from jobs import load_model, peak_rss_bytes

    model, tokenizer = load_model(job)
    out: dict = {"shape": asdict(ModelShape.of(model)), "rss_after_load_bytes": peak_rss_bytes()}
    if job.system == "profile":
        from asft_side import profile_asft

        out["profile"] = profile_asft(job, model, tokenizer, batches)
    elif job.system == "asft":
        from asft_side import run_asft

        out["log"] = asdict(run_asft(job, model, tokenizer, batches))
    else:
        from peers import run_trl

        log, stamps = run_trl(job, model, tokenizer, batches, max_length)
        out.update(log=asdict(log), spawned_at=spawned_at, **stamps,
                   pairs_trained=sum(len(b) for b in batches))
    out["peak_rss_bytes"] = peak_rss_bytes()
    if job.device == "cuda":  # bench/gpu.py: the trainer's own GPU peak, this process alone
        import torch

        out["peak_gpu_bytes"] = torch.cuda.max_memory_allocated()
    return out


def main(argv: list[str]) -> int:
    job_path, out_path = argv
    job = json.loads(Path(job_path).read_text())
    spawned = os.environ.get("BENCH_SPAWNED_AT")
    try:
        result = run_job(job, float(spawned) if spawned else None)
    except Exception as e:  # the whole message (e.g. asft train's last lines) reaches the report
        Path(out_path).write_text(json.dumps({"job": job, "error": f"{type(e).__name__}: {e}"},
                                             indent=1))
        raise
    Path(out_path).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
