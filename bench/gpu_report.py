"""The GPU benchmark's rows (bench/gpu.py) and its section of RESULTS.md.

Rates are steady state over the timed steps, per step the whole loop turn: for ``asft train``
the gap between consecutive metrics.jsonl records (the step, its host reads, the logging),
for TRL the gap between consecutive ``on_step_end`` callbacks after a CUDA synchronize. On a
GPU asft's own ``throughput/step_s`` stops its clock before the optimizer's kernels finish,
so the loop turn is the figure comparable with TRL's (both are kept in gpu.json).
"""

from __future__ import annotations

from flops import ModelShape, pair_flops
from report import GIB, _f, _table, summarize

# The rows, in the order they run: (label, system, loss, attention kernel).
SYSTEMS = [
    ("asft ASFT, sdpa", "asft-cli", "asft", "sdpa"),
    ("asft ASFT, flex_attention", "asft-cli", "asft", "flex_attention"),
    ("asft ASFT, flash_attention_2", "asft-cli", "asft", "flash_attention_2"),
    ("asft DPO, sdpa", "asft-cli", "dpo", "sdpa"),
    ("asft DPO, flex_attention", "asft-cli", "dpo", "flex_attention"),
    ("TRL ORPO", "trl-orpo", "asft", None),
    ("TRL DPO", "trl-dpo", "asft", None),
]
# Dense bf16 tensor-core peak of the H100 SXM and the H200 (same chip, same clocks), from
# NVIDIA's data sheets (1,979 TFLOP/s is the 2:4-sparse figure): MFU's second denominator.
NOMINAL_PEAK = 989e12
NOMINAL_NAME = "989 TFLOP/s (H100/H200 SXM dense bf16)"
COMMAND = "bash scripts/gpu_bench.sh"
HEADER = ["system", "attention", "weights", "timed steps", "s/step (min-max)", "pairs/s",
          "tokens/s", "peak GPU GiB", "MFU % of measured bf16 peak",
          f"MFU % of {NOMINAL_NAME}", "start-up s"]


def gpu_row(result: dict, workload: dict, peak: float | None) -> dict:
    """One row: :func:`report.summarize`'s figures, with the rates recomputed over each
    step's whole loop turn, peak GPU memory, and MFU against both peaks."""
    job = result["job"]
    row = summarize(result, workload, {"bf16": peak} if peak else {})
    row["attn"] = job.get("attn") or "sdpa (transformers' default)"
    if "error" in row:
        return row
    warm, start = row["warmup"], row["first_timed_batch"]
    turns = result.get("turn_seconds")
    seconds = turns[warm:] if turns else row["seconds"]
    batches = workload["lengths"][start:start + len(seconds)]
    elapsed, n = sum(seconds), len(seconds)
    reference = job["system"] == "trl-dpo"  # asft train precomputes DPO's reference
    shape = ModelShape(**result["shape"])
    useful = sum(pair_flops(shape, *pcr, reference=reference) for b in batches for pcr in b)
    row.update(
        step_s_own=row["s_per_step"], seconds=seconds, s_per_step=elapsed / n,
        s_min=min(seconds), s_max=max(seconds),
        pairs_per_s=sum(len(b) for b in batches) / elapsed,
        tokens_per_s=sum(sum(pcr) for b in batches for pcr in b) / elapsed,
        useful_flops_per_s=useful / elapsed,
        mfu=useful / elapsed / peak if peak else None,
        mfu_nominal=useful / elapsed / NOMINAL_PEAK,
        peak_gpu_bytes=result.get("peak_gpu_bytes"),
    )
    return row


def _cells(r: dict) -> list[str]:
    if "error" in r:
        err = " / ".join(r["error"].splitlines())[:300].replace("|", "\\|")
        why = err if err.startswith("not installable") else "failed: " + err
        return [why, *[""] * (len(HEADER) - 4)]
    gpu = r.get("peak_gpu_bytes")
    return [f"{r['steps']} (+{r['warmup']} warm-up)",
            f"{r['s_per_step']:.3f} ({r['s_min']:.3f}-{r['s_max']:.3f})",
            _f(r["pairs_per_s"], 1), _f(r["tokens_per_s"], 0),
            "n/a" if gpu is None else f"{gpu / GIB:.2f}",
            _f(None if r["mfu"] is None else 100 * r["mfu"], 1),
            _f(100 * r["mfu_nominal"], 1), _f(r.get("startup_s"), 1)]


def gpu_section(gpu: dict | None) -> list[str]:
    """The section "GPU (bench/results/gpu.json)": the measured rows, or where none were
    measured a plain statement of it, the command that measures them and the empty table."""
    L = ["## GPU (bench/results/gpu.json)", ""]
    if gpu is None:
        L += ["**Not measured.** No GPU was available to the sessions that built this "
              "benchmark, so none of the rows below has a figure. On a machine with one CUDA "
              f"GPU (H100 or H200), `{COMMAND}` runs `bench/gpu.py`: SmolLM2-135M in bf16 "
              "(asft's fp32 weights under bf16 autocast; TRL's bf16 weights with `bf16=True`), "
              "3 warm-up and 20 timed steps of 8 pairs at max length 512 on the same HH-RLHF "
              "batches for every row, then writes bench/results/gpu.json and this section with "
              "pairs/s, peak GPU memory and MFU against the bf16 matmul peak it measures and "
              f"against {NOMINAL_NAME}. flash_attention_2 runs only where `import flash_attn` "
              "works; otherwise its row says why not. `python bench/gpu.py --dry-run` runs the "
              "same pipeline on a CPU (tiny-llama, sdpa, 2 steps): a check that it works up to "
              "the device, whose figures mean nothing and are not kept here. On a machine "
              "that reaches no network and has no copy of the weights (the GPU lent to this "
              "project's sessions), `bash scripts/device_prepare.sh` packs the wheels, the data "
              "and SmolLM2's config beforehand and `bash scripts/device_run.sh` runs this bench "
              "there on SmolLM2-135M's architecture with random weights (`--random-weights`; "
              "the section then says so), after the kernel check (scripts/gpu_check_kernels.py) "
              "and before the sharded check.", ""]
        return L + _table(HEADER, [[label, attn or "sdpa (transformers' default)",
                                    "bf16" if system.startswith("trl") else "fp32",
                                    "not measured", *[""] * (len(HEADER) - 4)]
                                   for label, system, _, attn in SYSTEMS])
    m, s = gpu["meta"], gpu["meta"]["settings"]
    peak = gpu.get("peak_flops")
    if not m.get("complete", True):
        L += [f"**Incomplete run:** it was stopped (killed, e.g. at the device's time limit) "
              f"after {len(gpu['rows'])} of its {m.get('rows_planned', '?')} rows; only the "
              "rows below finished.", ""]
    model = s["model"] + (f" with random weights (its config and tokenizer, transformers' "
                          f"initialization, seed {s['seed']}: the machine had no copy of the "
                          f"weights; speed and memory do not depend on their values)"
                          if s.get("random_weights") else "")
    L += [f"Measured by `{m['command']}`, started {m['started']}, {m['wall_s'] / 60:.1f} min, "
          f"asft commit {m['versions']['asft']}, torch {m['versions']['torch']}, TRL "
          f"{m['versions']['trl']}; device: {m['device']}. {model}, "
          f"{s['steps']} timed steps after {s['warmup']} warm-up, {s['batch_size']} pairs a step, "
          f"max length {s['max_length']}, gradient checkpointing "
          f"{'on' if s['grad_ckpt'] else 'off'}, the same batches for every row. bf16 matmul "
          f"peak measured in this run ({s['matmul_size']}^3): "
          f"{'n/a' if peak is None else f'{peak / 1e12:.3g} TFLOP/s'}. s/step: each step's "
          "whole loop turn (asft train: between metrics records; TRL: between `on_step_end` "
          "callbacks, after a CUDA synchronize). Peak GPU memory: "
          "`torch.cuda.max_memory_allocated()` in the process that trained (asft train under "
          "bench/peak_child.py). MFU: useful FLOPs (bench/flops.py) over time and peak.", ""]
    return L + _table(HEADER, [[r["label"], r["attn"], r["weights"], *_cells(r)]
                               for r in gpu["rows"]])
