"""asft as users run it: a real ``asft train`` process on the workload's pairs, timed.

The worker writes the job's batches (warm-up first, in order) to a JSONL file of TRL's
conversational records, then runs the venv's ``asft train`` as its only child with the
benchmark's settings (:func:`cli_command`): sequential order and no held-out probe, so step i
reads exactly batch i; one metrics record per step; TRL's optimizer settings. Everything a
user's run does is in the process: interpreter start, imports, config, data reading and
tokenization, model load, the reference precompute (DPO), the steps, TensorBoard, the
progress bar and the final save.

What is read back, and from where:

- per-step seconds: ``throughput/step_s`` of each metrics.jsonl record (``logging.every=1``:
  that step's own time, batch collation included, logging excluded), and the step's whole
  loop turn: the ``time`` of its record minus that of the record before (the first step: minus
  ``timing.first_step_at``), which adds everything ``asft train`` does between two steps
  (the window's reduction, metrics.jsonl, TensorBoard, the progress bar);
- per-step tokens: ``tokens_per_s x step_s``, checked against the workload's P + C + R of
  the same batch, so a run that trained other pairs fails instead of being reported;
- start-up: summary.json's ``timing.first_step_at`` minus the Unix time just before the spawn;
  the end of training: the ``time`` of the last metrics record;
- peak RSS: ``RUSAGE_CHILDREN`` of the worker once the child has exited (it is the only one);
- peak GPU memory (bench/gpu.py's jobs, ``job.device`` set): asft train reports none, so the
  child runs as ``python bench/peak_child.py PEAK.json train ...``, which calls asft's CLI in
  the same way the ``asft`` script does and writes ``torch.cuda.max_memory_allocated()`` at exit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from itertools import pairwise
from pathlib import Path

from jobs import Job, StepLog, peak_child_rss_bytes
from workload import BenchPair

ASFT = Path(sys.executable).parent / "asft"
PEAK_CHILD = Path(__file__).resolve().parent / "peak_child.py"
LOG_TAIL = 25  # lines of the child's output quoted in an error


def write_pairs(batches: list[list[BenchPair]], path: Path) -> None:
    """The batches' pairs, in order, as ``{"prompt", "chosen", "rejected"}`` message records."""
    with path.open("w", encoding="utf-8") as f:
        for batch in batches:
            for p in batch:
                f.write(json.dumps({"prompt": p.prompt, "chosen": p.chosen,
                                    "rejected": p.rejected}, ensure_ascii=False) + "\n")


def cli_command(job: Job, model: str, data: Path, out: Path, steps: int, batch_size: int,
                max_length: int) -> list[str]:
    """The ``asft train`` command line of ``job``; logging.tensorboard/progress stay as users
    have them (on)."""
    precision = {"fp32": "fp32", "bf16": "bf16-mixed"}[job.dtype]
    settings = {
        "training.order": "sequential", "training.batch_size": batch_size,
        "training.precision": precision, "model.dtype": job.weights,
        "model.gradient_checkpointing": str(job.grad_ckpt).lower(),
        "data.max_length": max_length,
        # eligible pairs have P <= max_length - 3, so this never cuts a prompt
        "data.max_prompt_length": max_length - 1,
        "data.probe_size": 0, "logging.every": 1, "checkpoint.every": 0,
        "optim.lr": job.lr, "optim.weight_decay": 0, "optim.max_grad_norm": 1.0,
        "optim.warmup_ratio": 0, "seed": job.seed,
    }
    if job.attn:
        settings["model.attn_implementation"] = job.attn
    cmd = [str(ASFT), "train", "--model", model, "--data", str(data), "--loss", job.loss,
           "--max-steps", str(steps), "--output-dir", str(out), "--overwrite"]
    for key, value in settings.items():
        cmd += ["--set", f"{key}={value}"]
    return cmd


def _child_env(job: Job, folder: Path) -> dict[str, str]:
    """The child's environment: the job's threads, and a fresh token cache (the run pays for
    tokenizing its data, as a first run does) next to the shared converted models."""
    from asft.model.load import cache_root

    models = cache_root() / "models"
    models.mkdir(parents=True, exist_ok=True)
    cache = folder / "cache"
    cache.mkdir()
    (cache / "models").symlink_to(models.resolve(), target_is_directory=True)
    return dict(os.environ, OMP_NUM_THREADS=str(job.threads), MKL_NUM_THREADS=str(job.threads),
                TOKENIZERS_PARALLELISM="false", ASFT_CACHE=str(cache))


def _model_arg(job: Job, folder: Path) -> str:
    """What ``--model`` gets: the name, or for the random ``small`` model a saved folder."""
    from asft.model.load import resolve_model

    if job.model != "small":
        resolve_model(job.model)  # convert the packaged model now, not in the child's start-up
        return job.model
    from jobs import load_model

    model, tokenizer = load_model(job)
    model.save_pretrained(folder / "small")
    tokenizer.save_pretrained(folder / "small")
    return str(folder / "small")


def step_records(metrics: Path) -> list[dict]:
    """The training records (step >= 1) of a metrics.jsonl, in order."""
    records = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    return [r for r in records if r["step"] >= 1 and "throughput/step_s" in r]


def loop_turns(records: list[dict], first_step_at: float) -> list[float]:
    """Wall seconds of each step's whole loop turn (step, logging and all), from the ``time``
    stamps of consecutive metrics records (1 ms resolution)."""
    stamps = [first_step_at] + [r["time"] for r in records]
    return [b - a for a, b in pairwise(stamps)]


def check_tokens(records: list[dict], batches: list[list[BenchPair]],
                 plain_ok: bool = False) -> list[int]:
    """Per-step token counts of ``records``; raises unless they are the batches' P + C + R.

    ``plain_ok``: also accept 2P + C + R, the count of the plain layout (the prompt in both
    rows), which asft falls back to under flash_attention_2 (no 4D mask for a shared prompt).
    """
    tokens = [round(r["throughput/tokens_per_s"] * r["throughput/step_s"]) for r in records]
    expected = [sum(sum(p.lengths) for p in b) for b in batches]
    plain = [sum(sum(p.lengths) + p.lengths[0] for p in b) for b in batches]
    if tokens != expected and not (plain_ok and tokens == plain):
        raise RuntimeError(f"asft train did not train the workload's pairs: tokens per step "
                           f"{tokens}, the workload's batches have {expected}")
    return tokens


def _tail(log: Path) -> str:
    lines = log.read_text(errors="replace").splitlines() if log.is_file() else []
    return "\n".join(lines[-LOG_TAIL:]) or "(no output)"


def run_cli(job: Job, batches: list[list[BenchPair]], max_length: int) -> dict:
    """Run ``asft train`` on ``batches`` (one step each); returns the result's fields."""
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        folder = Path(tmp)
        data, out, log = folder / "pairs.jsonl", folder / "run", folder / "asft-train.log"
        write_pairs(batches, data)
        cmd = cli_command(job, _model_arg(job, folder), data, out, len(batches), len(batches[0]),
                          max_length)
        peak = folder / "peak.json"
        if job.device is not None:  # bench/gpu.py: the same CLI, with its GPU peak recorded
            cmd = [sys.executable, str(PEAK_CHILD), str(peak), *cmd[1:]]
        env = _child_env(job, folder)
        usage0 = os.times()
        with log.open("w") as f:
            spawned_at = time.time()
            proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                                  env=env, check=False)
            exited_at = time.time()
        usage1 = os.times()
        if proc.returncode != 0:
            raise RuntimeError(f"asft train exited {proc.returncode}; last lines of its output:\n"
                               + _tail(log))
        records = step_records(out / "metrics.jsonl")
        if len(records) != len(batches):
            raise RuntimeError(f"asft train logged {len(records)} steps for {len(batches)} batches; "
                               f"its output ends:\n{_tail(log)}")
        tokens = check_tokens(records, batches, plain_ok=job.attn == "flash_attention_2")
        summary = json.loads((out / "summary.json").read_text())
        gpu = json.loads(peak.read_text()) if peak.is_file() else {}
    seconds = [r["throughput/step_s"] for r in records]
    return {
        "turn_seconds": loop_turns(records, summary["timing"]["first_step_at"]),
        "log": StepLog(seconds=seconds, real_tokens=tokens),
        "command": cmd,
        "spawned_at": spawned_at,
        "first_step_at": summary["timing"]["first_step_at"],
        "last_step_at": records[-1]["time"],
        "exited_at": exited_at,
        "timing": summary["timing"],
        "cli_elapsed_s": summary["elapsed_s"],
        "pairs_trained": summary["pairs_seen"],
        # the whole child, start-up and save included: no per-step CPU time exists for it
        "child_cpu_s": (usage1.children_user + usage1.children_system
                        - usage0.children_user - usage0.children_system),
        "peak_rss_bytes": peak_child_rss_bytes(),
        **gpu,  # peak_gpu_bytes, where bench/peak_child.py ran the child
    }
