"""Sharded training on 2 CPU ranks: step time and peak RSS per rank, ddp against fsdp.

Runs ``torchrun --nproc_per_node 2 -m asft.cli train`` on a random ``tiny-llama-HxL`` model
(default hidden 1024, 8 layers, about 100M parameters, the tiny tokenizer's vocabulary) for each
``distributed.strategy``, each rank inside :func:`rank_main`, which runs asft's CLI in-process
and then records its own peak RSS (``ru_maxrss``). Steady step time: the mean of
``throughput/step_s`` over the steps after the first two. Also writes the per-GPU memory
estimate of Llama-3-8B's training state (16 bytes a parameter: fp32 weights, gradients and
AdamW's two moments) under ddp and fsdp on 8 GPUs. Results: bench/results/sharded.json.

On 2 CPU cores the two ranks share the cores, and gloo's all-gathers cost more than they
would over NVLink: the step times say what sharding costs here, not on GPUs.

Usage: python bench/sharded.py [--model tiny-llama-1024x8] [--steps 8]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
LLAMA3_8B_PARAMS = 8.03e9
STATE_BYTES = 16


def rank_main(out_file: str, argv: list[str]) -> int:
    """One rank: asft's CLI, then this process's peak RSS into ``out_file.<rank>``."""
    from asft.cli import main

    code = main(argv)
    rank = os.environ.get("RANK", "0")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    Path(f"{out_file}.{rank}").write_text(json.dumps({"rank": int(rank), "peak_rss_bytes": peak}))
    return code


def run(strategy: str, model: str, steps: int, tmp: Path) -> dict:
    out = tmp / strategy
    settings = [f"model.name={model}", "model.dtype=fp32", "training.precision=fp32",
                "data.source=builtin:mixed", "data.limit=400", "data.probe_size=0",
                f"training.max_steps={steps}", "training.batch_size=4", "logging.every=1",
                "logging.progress=false", "logging.tensorboard=false", "checkpoint.every=0",
                f"distributed.strategy={strategy}"]
    argv = ["train", *[x for s in settings for x in ("--set", s)], "-o", str(out), "--overwrite"]
    code = (f"import sys; sys.path.insert(0, {str(BENCH)!r}); import sharded; "
            f"sys.exit(sharded.rank_main({str(tmp / strategy)!r} + '.rss', {argv!r}))")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node", "2", "--no-python", sys.executable, "-c", code],
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                          text=True, timeout=1200)
    if proc.returncode != 0:
        raise SystemExit(f"{strategy} failed:\n{proc.stderr[-3000:]}")
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    seconds = [r["throughput/step_s"] for r in records if r["step"] > 2 and "throughput/step_s" in r]
    ranks = [json.loads(Path(f"{tmp / strategy}.rss.{r}").read_text()) for r in (0, 1)]
    return {"strategy": strategy, "steps_timed": len(seconds),
            "s_per_step": sum(seconds) / len(seconds),
            "peak_rss_bytes": [r["peak_rss_bytes"] for r in ranks]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tiny-llama-1024x8")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--out", type=Path, default=BENCH / "results" / "sharded.json")
    args = p.parse_args()
    from report import versions

    with tempfile.TemporaryDirectory(prefix="asft-sharded-") as tmp:
        rows = [run(s, args.model, args.steps, Path(tmp)) for s in ("ddp", "fsdp")]
    gpu = {"ddp": STATE_BYTES * LLAMA3_8B_PARAMS / 2**30,
           "fsdp": STATE_BYTES * LLAMA3_8B_PARAMS / 8 / 2**30}
    out = {"model": args.model, "rows": rows, "asft": versions()["asft"],
           "llama3_8b_state_gib_per_gpu_8_gpus": {k: round(v, 1) for k, v in gpu.items()},
           "loadavg_1min_after": round(os.getloadavg()[0], 2)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
