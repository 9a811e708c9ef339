"""Run one job in this process and write its raw result as JSON.

    python bench/worker.py JOB.json RESULT.json

One process per job keeps each job's peak resident memory its own (ru_maxrss never goes
down), and a crash of one system cannot take the others with it.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from dataclasses import asdict
from pathlib import Path


def run_job(job_dict: dict) -> dict:
    """Measure ``job_dict`` (a :class:`jobs.Job` as a dict); returns the result record."""
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    warnings.filterwarnings("ignore")
    import torch

    from jobs import Job, load_model, peak_rss_bytes

    job = Job(**job_dict)
    torch.set_num_threads(job.threads)
    torch.manual_seed(job.seed)
    result: dict = {"job": job.to_dict(), "threads": torch.get_num_threads()}
    t0 = time.perf_counter()
    if job.system == "matmul":
        from flops import matmul_peak

        result["flops_per_s"] = matmul_peak(job.dtype, job.matmul_size, job.matmul_seconds)
        result["peak_rss_bytes"] = peak_rss_bytes()
        return result

    from flops import ModelShape
    from workload import Workload

    work = Workload.load(Path(job.workload))
    model, tokenizer = load_model(job)
    result["shape"] = asdict(ModelShape.of(model))
    result["rss_after_load_bytes"] = peak_rss_bytes()
    if job.system == "profile":
        from asft_side import profile_asft

        result["profile"] = profile_asft(job, model, tokenizer, work.batches)
    elif job.system == "asft":
        from asft_side import run_asft

        result["log"] = asdict(run_asft(job, model, tokenizer, work.batches))
    else:
        from peers import run_trl

        result["log"] = asdict(run_trl(job, model, tokenizer, work.batches, work.max_length))
    result["wall_s"] = time.perf_counter() - t0
    result["peak_rss_bytes"] = peak_rss_bytes()
    return result


def main(argv: list[str]) -> int:
    job_path, out_path = argv
    result = run_job(json.loads(Path(job_path).read_text()))
    Path(out_path).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
