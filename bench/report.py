"""Turn raw job results into the numbers that matter and write RESULTS.md.

Every figure comes from the JSON files of one run (``results/*.json``); nothing is typed in.
Steady state: the warm-up steps of each job are dropped, rates are timed pairs (or tokens)
over the timed steps' total wall time.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path

from flops import ModelShape, pair_flops

TARGETS = {"orpo_speed": 2.0, "orpo_memory": 0.6, "dpo_speed": 3.0}
MAIN = "asft ASFT"  # label of asft with every optimization on, gradient checkpointing as TRL
# A job kept fewer than this share of its threads busy (CPU/wall over threads): another process
# held its cores, and its times say more about the machine than about the system.
CONTENDED = 0.75
GIB = 1024 ** 3


# ---------------------------------------------------------------------------------------------
# Facts about the run


def machine_info() -> dict:
    """CPU model, logical cores and RAM of this machine (Linux /proc, else platform)."""
    cpu, ram = platform.processor() or platform.machine(), None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram = int(line.split()[1]) * 1024
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "ram_bytes": ram, "os": platform.platform()}


def versions() -> dict:
    """Versions of python, torch, transformers, TRL and asft's git commit (``+dirty`` if edited)."""
    import torch
    import transformers

    from peers import trl_version

    root = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                                  check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    commit = git("rev-parse", "--short=12", "HEAD") or "unknown"
    if git("status", "--porcelain", "--untracked-files=no", "--", "src"):
        commit += "+dirty"
    return {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "trl": trl_version() or "not installed",
            "asft": commit}


# ---------------------------------------------------------------------------------------------
# Numbers


def summarize(result: dict, workload: dict, peaks: dict[str, float]) -> dict:
    """Steady-state figures of one job from its raw result and its workload summary."""
    job = result["job"]
    summary = {"label": job["label"], "system": job["system"], "model": job["model"],
               "dtype": job["dtype"], "grad_ckpt": job["grad_ckpt"], "loss": job["loss"]}
    if "error" in result:
        return {**summary, "error": result["error"]}
    log, warm = result["log"], workload["warmup"]
    seconds = log["seconds"][warm:]
    batches = workload["lengths"][warm:]
    elapsed = sum(seconds)
    pairs = sum(len(b) for b in batches)
    tokens = sum(sum(pcr) for b in batches for pcr in b)
    scored = sum(c + r for b in batches for _, c, r in b)
    shape = ModelShape(**result["shape"])
    reference = job["system"] == "trl-dpo" or job["loss"] == "dpo"
    useful = sum(pair_flops(shape, *pcr, reference=reference) for b in batches for pcr in b)
    peak = peaks.get(job["dtype"])
    phases = {}
    if log["phases"]:
        timed = log["phases"][warm:]
        phases = {k: sum(p[k] for p in timed) / len(timed) for k in timed[0]}
    return {
        **summary,
        "steps": len(seconds),
        "s_per_step": elapsed / len(seconds),
        "s_min": min(seconds),
        "s_max": max(seconds),
        "cpu_s_per_step": sum(log["cpu_seconds"][warm:]) / len(seconds),
        "contended": sum(log["cpu_seconds"][warm:]) / elapsed < CONTENDED * result["threads"],
        "pairs_per_s": pairs / elapsed,
        "tokens_per_s": tokens / elapsed,
        "positions_per_step": sum(log["positions"][warm:]) / len(seconds),
        "real_tokens_per_step": sum(log["real_tokens"][warm:]) / len(seconds),
        "unique_tokens_per_step": tokens / len(seconds),
        "scored_per_step": scored / len(seconds),
        "useful_gflop_per_step": useful / len(seconds) / 1e9,
        "mfu": useful / elapsed / peak if peak else None,
        "peak_rss_bytes": result["peak_rss_bytes"],
        "rss_after_load_bytes": result["rss_after_load_bytes"],
        "phases": phases,
    }


def ratios(rows: list[dict]) -> dict:
    """asft vs TRL for one model and dtype: speed and memory ratios, None where a side failed."""
    by = {r["label"]: r for r in rows if "error" not in r}
    main, orpo, dpo = by.get(MAIN), by.get("TRL ORPO"), by.get("TRL DPO")
    out: dict = {}
    if main and orpo:
        out["orpo_speed"] = main["pairs_per_s"] / orpo["pairs_per_s"]
        out["orpo_memory"] = main["peak_rss_bytes"] / orpo["peak_rss_bytes"]
        out["orpo_cpu_speed"] = orpo["cpu_s_per_step"] / main["cpu_s_per_step"]
    if main and dpo:
        out["dpo_speed"] = main["pairs_per_s"] / dpo["pairs_per_s"]
        out["dpo_cpu_speed"] = dpo["cpu_s_per_step"] / main["cpu_s_per_step"]
    no_gc = by.get(MAIN + ", no grad ckpt")
    if no_gc and orpo:
        out["orpo_speed_no_gc"] = no_gc["pairs_per_s"] / orpo["pairs_per_s"]
        out["orpo_memory_no_gc"] = no_gc["peak_rss_bytes"] / orpo["peak_rss_bytes"]
    if no_gc and dpo:
        out["dpo_speed_no_gc"] = no_gc["pairs_per_s"] / dpo["pairs_per_s"]
    asft_dpo = by.get("asft DPO")
    if asft_dpo and dpo:
        out["dpo_vs_dpo_speed"] = asft_dpo["pairs_per_s"] / dpo["pairs_per_s"]
        out["dpo_vs_dpo_memory"] = asft_dpo["peak_rss_bytes"] / dpo["peak_rss_bytes"]
    return out


def met(name: str, value: float | None) -> str:
    """``yes``/``no`` for a target ratio (memory: at most; speed: at least), ``n/a`` if missing."""
    if value is None:
        return "n/a"
    ok = value <= TARGETS[name] if name == "orpo_memory" else value >= TARGETS[name]
    return "yes" if ok else "**no**"


# ---------------------------------------------------------------------------------------------
# RESULTS.md


def _f(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _gb(n: float | None) -> str:
    return "n/a" if n is None else f"{n / GIB:.2f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(r) + " |" for r in rows), ""]


def write_results(path: Path, meta: dict, summaries: list[dict], workloads: dict[str, dict],
                  peaks: dict[str, float], profiles: dict[str, dict], tokenize: dict | None,
                  supplements: list[dict] | None = None) -> None:
    """Write RESULTS.md from the run's metadata and summaries.

    ``supplements``: other runs kept in sub-folders (``{"folder", "meta", "summaries"}``),
    whose target tables are appended in a section of their own.
    """
    m, v = meta["machine"], meta["versions"]
    L: list[str] = ["# asft benchmark: ASFT step vs TRL ORPO and DPO", ""]
    L += [f"All figures below come from one run of `{meta['command']}` "
          f"({meta['mode']} mode), started {meta['started']}, {meta['wall_s'] / 60:.1f} min "
          f"of wall time; this file and `{path.parent.name}/results/*.json` were written by "
          "that run" + (" (except the section *Supplementary runs*, whose figures come from "
                        "the separate runs it names)" if supplements else "") + ".", ""]
    if meta.get("inline"):
        L += ["**Inline mode**: all jobs ran in one process, so the peak-memory figures are not "
              "per system and mean nothing here.", ""]
    L += ["## Machine and versions", ""]
    L += [f"- CPU: {m['cpu']}, {m['cores']} logical cores, {_gb(m['ram_bytes'])} GiB RAM; "
          f"{m['os']}",
          f"- torch {v['torch']}, transformers {v['transformers']}, TRL {v['trl']}, "
          f"python {v['python']}, asft commit {v['asft']}",
          f"- 1-minute load average: {meta['load_start']:.2f} at the start, "
          f"{meta['load_end']:.2f} at the end" + (
              f", {meta['load_range'][0]:.2f}-{meta['load_range'][1]:.2f} before the jobs"
              if meta.get("load_range") else "") +
          f". Above {m['cores']}, other processes competed for the cores and absolute times "
          "carry that noise; every system ran on the same pairs in the same run, one after "
          "the other.", ""]
    L += _settings(meta, workloads)
    n = meta["settings"].get("matmul_size")
    L += [f"## Matmul peak ({n} x {n} x {n}, best of repeated runs, measured in this run)", ""]
    L += _table(["dtype", "GFLOP/s"], [[d, _f(p / 1e9, 1)] for d, p in sorted(peaks.items())])
    groups: dict[tuple[str, str], list[dict]] = {}
    for s in summaries:
        groups.setdefault((s["model"], s["dtype"]), []).append(s)
    L += _targets_section(groups)
    if supplements:
        L += ["## Supplementary runs", ""]
    for sup in supplements or []:
        sm = sup["meta"]
        sub: dict[tuple[str, str], list[dict]] = {}
        for row in sup["summaries"]:
            sub.setdefault((row["model"], row["dtype"]), []).append(row)
        lo, hi = sm.get("load_range") or (sm["load_start"], sm["load_end"])
        L += [f"`{sm['command']}`, started {sm['started']}, {sm['wall_s'] / 60:.1f} min, "
              f"1-minute load average {lo:.2f}-{hi:.2f} before its jobs, asft commit "
              f"{sm['versions']['asft']}; every table and raw number of that run is in "
              f"`{sup['folder']}/RESULTS.md` and `{sup['folder']}/results/`. Its targets:", ""]
        L += _targets_section(sub)[4:]
    for (model, dtype), rows in groups.items():
        L += _group_section(model, dtype, rows, workloads.get(model), peaks.get(dtype),
                            profiles.get(f"{model}-{dtype}"))
    if tokenize:
        L += ["## Tokenization (bench/results/tokenize.json)", "",
              "Measured by `bench/tokenize_speed.py`, which `make bench` runs just before the "
              "training jobs: the SmolLM2 tokenizer on all HH-RLHF pairs, wall and CPU seconds.", ""]
        L += _table(["key", "value"], [[k, json.dumps(val)] for k, val in _flatten(tokenize)])
    path.write_text("\n".join(L).rstrip() + "\n")


def _flatten(d: dict, prefix: str = "") -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = []
    for k, val in d.items():
        if isinstance(val, dict):
            out += _flatten(val, f"{prefix}{k}.")
        else:
            out.append((f"{prefix}{k}", val))
    return out


def _settings(meta: dict, workloads: dict[str, dict]) -> list[str]:
    s = meta["settings"]
    L = ["## Settings", ""]
    for model, w in workloads.items():
        P, C, R = w["dataset_mean"]
        flat = [pcr for b in w["lengths"][w["warmup"]:] for pcr in b]
        n = max(len(flat), 1)
        Ps, Cs, Rs = (sum(x[k] for x in flat) / n for k in range(3))
        L.append(f"- **{model}**: {len(w['lengths']) - w['warmup']} timed steps after "
                 f"{w['warmup']} warm-up, batch {w['batch_size']} pairs; timed pairs average "
                 f"P/C/R = {Ps:.0f}/{Cs:.0f}/{Rs:.0f} tokens (whole file: "
                 f"{P:.0f}/{C:.0f}/{R:.0f}). Data: `{w['source']}`, {w['total_pairs']} pairs, "
                 f"{w['eligible_pairs']} fit max length {w['max_length']} untruncated "
                 f"(the draw is among those), seed {w['seed']}, tokenizer {w['tokenizer']}.")
    L += [
        f"- Threads: torch.set_num_threads({s['threads']}) in every measuring process; one "
        "process per job, so each peak RSS (ru_maxrss of that process: Python, libraries, "
        "model, optimizer state, activations) is its own.",
        "- dtype: the weights' dtype for every system; TRL additionally gets `bf16=True` "
        "(its default) in bf16 and `bf16=False` in fp32.",
        "- Optimizer: AdamW, lr 1e-6, weight decay 0, gradient norm clipped at 1.0 for "
        "everyone. TRL builds it through transformers' Trainer (`adamw_torch_fused`); asft "
        "uses its own `asft.train.optim.build_optimizer` (fused AdamW where torch has the kernel), "
        "so the `optimizer` phase below is what `asft train` pays.",
        "- `CPU s/step`: CPU time of the measuring process (all its threads) per step, and "
        "`CPU/wall` its ratio to wall time. With 2 threads on cores of its own a step keeps "
        "both busy (CPU/wall near 2). Near 1, another process held a core: the two OpenMP "
        "threads then rarely run at the same moment, each parallel region waits at its "
        "barrier for the descheduled partner (spinning, which is why CPU time grows too), "
        "and the step runs several times slower than the same work on a quiet machine. "
        "Read such rows as contended, not as the system's speed.",
        "- Gradient checkpointing: on for TRL (its default) and for the rows marked `on`; "
        "the target ratios use asft with it on, like TRL.",
        "- TRL runs its own `trainer.train()` (tokenization, collation, loss, backward, "
        "optimizer, callbacks) with sequential sampling, so step i sees batch i for every "
        "system; a callback times each step end to end, batch collation included. asft's "
        "step is collate + forward + loss + backward + clip + AdamW.",
        "- Systems: `asft ASFT` = asft.losses `asft` (lam 1) on shared-prompt rows, several "
        "pairs packed per row, chunked response-only LM head; each ablation row turns one "
        "of those off; `all off` turns all three off (the layout every peer uses). "
        "`asft DPO` = loss `dpo` with a frozen reference copy, all optimizations on. "
        "`TRL ORPO` = trl.experimental.orpo.ORPOTrainer (beta 0.1), `TRL DPO` = "
        "trl.DPOTrainer (sigmoid loss, reference copy of the policy).",
        "- tokens/s counts each pair's distinct tokens (P + C + R) once for every system, "
        "so it moves with pairs/s; `positions/step` is what each system actually computed "
        "(rows x padded length; the prompt twice in a plain layout).",
        "- MFU: useful FLOPs of the ideal layout (bench/flops.py: 6N(P+C+R) + 6hV(C+R) + "
        "causal attention with the prompt once; a reference forward adds a third for DPO) "
        "divided by time and by the matmul peak of the same dtype measured in this run.",
        "",
    ]
    return L


def _targets_section(groups: dict[tuple[str, str], list[dict]]) -> list[str]:
    L = ["## Targets: asft ASFT vs TRL", "",
         "Target: asft ASFT >= 2x TRL ORPO pairs/s and <= 0.6x its peak RSS, >= 3x TRL DPO "
         "pairs/s, in both dtypes. Gradient checkpointing on for both sides. The `CPU-time` "
         "columns give the same speed ratios from CPU seconds per step (a cross-check when "
         "other processes load the machine); the `no-GC` columns show asft without gradient "
         "checkpointing (TRL kept at its default). `uncontended` says whether the three rows "
         "the verdict rests on kept their threads busy (CPU/wall at least "
         f"{CONTENDED:g} x threads); where it says no, another process shared the cores "
         "during those rows and the verdict is not a measurement of the systems.", ""]
    rows = []
    for (model, dtype), group in groups.items():
        r = ratios(group)
        noisy = [g["label"] for g in group
                 if g["label"] in (MAIN, "TRL ORPO", "TRL DPO") and g.get("contended")]
        rows.append([model, dtype, "no: " + ", ".join(noisy) if noisy else "yes",
                     f"{_f(r.get('orpo_speed'))}x ({met('orpo_speed', r.get('orpo_speed'))})",
                     f"{_f(r.get('orpo_memory'))}x ({met('orpo_memory', r.get('orpo_memory'))})",
                     f"{_f(r.get('dpo_speed'))}x ({met('dpo_speed', r.get('dpo_speed'))})",
                     _f(r.get("orpo_cpu_speed")), _f(r.get("dpo_cpu_speed")),
                     _f(r.get("orpo_speed_no_gc")), _f(r.get("orpo_memory_no_gc")),
                     _f(r.get("dpo_speed_no_gc")),
                     _f(r.get("dpo_vs_dpo_speed"))])
    L += _table(["model", "dtype", "uncontended", "pairs/s vs ORPO (>= 2)", "peak RSS vs ORPO (<= 0.6)",
                 "pairs/s vs DPO (>= 3)", "CPU-time vs ORPO", "CPU-time vs DPO",
                 "no-GC vs ORPO speed", "no-GC vs ORPO mem",
                 "no-GC vs DPO speed", "asft DPO vs TRL DPO speed"], rows)
    return L


def _group_section(model: str, dtype: str, rows: list[dict], workload: dict | None,
                   peak: float | None, profile: dict | None) -> list[str]:
    L = [f"## {model}, {dtype}", ""]
    noisy = [r["label"] for r in rows if r.get("contended")]
    if noisy:
        L += [f"**Contended rows** (CPU/wall below {CONTENDED:g} x threads: another process "
              f"shared the cores, so their times are inflated, by up to several times): "
              f"{', '.join(noisy)}. Compare rows of this group with that in mind.", ""]
    table = []
    for r in rows:
        if "error" in r:
            table.append([r["label"], "on" if r["grad_ckpt"] else "off", "failed: " + r["error"],
                          "", "", "", "", "", "", ""])
            continue
        table.append([r["label"], "on" if r["grad_ckpt"] else "off",
                      f"{r['s_per_step']:.2f} ({r['s_min']:.2f}-{r['s_max']:.2f})",
                      _f(r["cpu_s_per_step"]), _f(r["cpu_s_per_step"] / r["s_per_step"], 1),
                      _f(r["pairs_per_s"], 3), _f(r["tokens_per_s"], 0),
                      _f(r["positions_per_step"], 0), _gb(r["peak_rss_bytes"]),
                      _f(None if r["mfu"] is None else 100 * r["mfu"], 1)])
    L += _table(["system", "grad ckpt", "s/step (min-max)", "CPU s/step", "CPU/wall", "pairs/s", "tokens/s",
                 "positions/step", "peak RSS GiB", "MFU %"], table)
    ok = {r["label"]: r for r in rows if "error" not in r}
    main = ok.get(MAIN)
    if main:
        L += _ablation(ok, main)
        L += _where_time_goes(ok, main, peak)
        L += _reading(ok, main)
    if profile and "top" in profile:
        L += [f"torch.profiler, one asft ASFT step ({profile['step_s']:.2f} s under the "
              "profiler), top operators by self CPU time:", ""]
        L += _table(["op", "calls", "self CPU s", "share %"],
                    [[f"`{e['op']}`", str(e["calls"]), _f(e["self_cpu_s"]),
                      _f(100 * e["share"], 1)] for e in profile["top"]])
    return L


def _ablation(ok: dict[str, dict], main: dict) -> list[str]:
    names = [k for k in ok if k.startswith(MAIN + ",")] + (["asft DPO"] if "asft DPO" in ok else [])
    if not names:
        return []
    L = ["Ablation (each row turns one optimization off; slowdown = its s/step over asft "
         "ASFT's):", ""]
    L += _table(["configuration", "s/step", "slowdown", "positions/step", "peak RSS GiB"],
                [[n, _f(ok[n]["s_per_step"]), f"{ok[n]['s_per_step'] / main['s_per_step']:.2f}x",
                  _f(ok[n]["positions_per_step"], 0), _gb(ok[n]["peak_rss_bytes"])] for n in names])
    return L


def _where_time_goes(ok: dict[str, dict], main: dict, peak: float | None) -> list[str]:
    labels = [k for k in ok if ok[k]["phases"]]
    phases = list(main["phases"])
    L = ["Where asft's step time goes (mean seconds per timed step, by phase; `decoder bwd` "
         "includes the recomputation under gradient checkpointing):", ""]
    L += _table(["configuration", *phases, "total"],
                [[n, *(_f(ok[n]["phases"][p]) for p in phases), _f(ok[n]["s_per_step"])]
                 for n in labels])
    if peak:
        ideal = main["useful_gflop_per_step"] * 1e9 / peak
        L += [f"Floor: the useful work of a timed step is {main['useful_gflop_per_step']:.3g} "
              f"GFLOP on average, {ideal:.2f} s at the measured matmul peak; asft ASFT takes "
              f"{main['s_per_step']:.2f} s ({main['s_per_step'] / ideal:.1f}x the floor, "
              f"MFU {100 * main['mfu']:.1f}%).", ""]
    return L


def _reading(ok: dict[str, dict], main: dict) -> list[str]:
    """Plain-language findings computed from this group's numbers."""
    ph, total = main["phases"], main["s_per_step"]
    decoder = ph["decoder fwd"] + ph["decoder bwd"]
    head = ph["head fwd + loss"] + ph["head bwd"]
    L = ["Reading these numbers:", ""]
    L.append(f"- asft ASFT computes {main['positions_per_step']:.0f} positions per step "
             f"({main['unique_tokens_per_step']:.0f} distinct tokens plus padding) and scores "
             f"the LM head at {main['scored_per_step']:.0f} of them (the response tokens). Its "
             f"step splits into decoder {100 * decoder / total:.0f}%, LM head and loss "
             f"{100 * head / total:.0f}%, optimizer {100 * ph['optimizer'] / total:.0f}%, "
             f"collation {100 * ph['collate'] / total:.0f}%.")
    for peer in ("TRL ORPO", "TRL DPO"):
        if peer in ok:
            r = ok[peer]
            L.append(f"- {_caveat(main, r)}{peer} computes {r['positions_per_step']:.0f} positions per step "
                     f"({r['positions_per_step'] / main['positions_per_step']:.1f}x asft's), "
                     f"each prompt twice, with full-vocabulary logits at every position"
                     f"{' plus a reference forward' if peer == 'TRL DPO' else ''}; it "
                     f"takes {r['s_per_step'] / total:.2f}x asft's time per step.")
    no_gc = ok.get(MAIN + ", no grad ckpt")
    if no_gc:
        L.append(f"- {_caveat(main, no_gc)}Gradient checkpointing costs asft {total - no_gc['s_per_step']:.2f} s per "
                 f"step ({100 * (total / no_gc['s_per_step'] - 1):.0f}%: the decoder forward "
                 f"runs again in the backward) and saves "
                 f"{(no_gc['peak_rss_bytes'] - main['peak_rss_bytes']) / GIB:.2f} GiB of peak RSS.")
    off = ok.get(MAIN + ", all off")
    if off:
        L.append(f"- {_caveat(main, off)}With all three optimizations off, asft takes {off['s_per_step'] / total:.2f}x "
                 f"as long and {off['peak_rss_bytes'] / main['peak_rss_bytes']:.2f}x the "
                 f"peak RSS.")
    return [*L, ""]


def _caveat(*rows: dict) -> str:
    """A marker for a statement that compares rows of which one ran contended."""
    noisy = [r["label"] for r in rows if r.get("contended")]
    return f"(contended: {', '.join(noisy)}) " if noisy else ""
