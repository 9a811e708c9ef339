"""Data at scale: peak RSS and start-up of a 2-step tiny-model ``asft train`` on N pairs.

For each N (default 2,000, 100,000 and 1,000,000) the script writes N synthetic
conversational pairs as JSON Lines (seeded word salad: a user turn of 8-24 words, responses of
3-12), then runs ``asft train --model tiny-llama --data FILE --max-steps 2`` twice on one cache
folder: *cold* (reads the file record by record and tokenizes it into the token store) and
*warm* (finds the store by the file's digest and maps it). Each run is measured from a
process of its own, so its peak RSS (``ru_maxrss`` of ``asft train`` and of the tokenizing
workers it forks, the largest of them) is its own. Start-up: the spawn to summary.json's
``timing.first_step_at``.

Targets (issue 15): the warm run on 100,000 pairs peaks at most 150 MB above the run on
2,000 pairs (Python lists of ids cost ~450 MB more before the store), and the warm start-up on
1,000,000 pairs is under 5 s.

Usage: python bench/data_scale.py [--sizes 2000,100000,1000000] [--out bench/results/data-scale.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ASFT = Path(sys.executable).parent / "asft"
TARGETS = {"rss_100k_over_2k_mb": 150.0, "warm_startup_1m_s": 5.0}
_TEXT = ("the a of to and in is it you that he was for on are with as his they be at one have "
          "this from or had by word but what some we can out other were all there when up use "
          "your how said an each she which do their time if will way about many then them write "
          "would like so these her long make thing see him two has look more day could go come "
          "did number sound no most people my over know water than call first who may down side "
          "been now find any new work part take get place made live where after back little only "
          "round man year came show every good me give our under name very through just form "
          "sentence great think say help low line differ turn cause much mean before move right "
          "boy old too same tell does set three want air well also play small end put home read "
          "hand port large spell add even land here must big high such follow act why ask men")
_WORDS = _TEXT.split()


def write_pairs(path: Path, n: int, seed: int = 0) -> None:
    """``n`` synthetic pairs (prompt, chosen, rejected as messages), one JSON object a line."""
    rng = random.Random(seed)

    def text(lo: int, hi: int) -> str:
        return " ".join(rng.choices(_WORDS, k=rng.randint(lo, hi)))

    with path.open("w") as f:
        for _ in range(n):
            f.write(json.dumps({
                "prompt": [{"role": "user", "content": text(8, 24) + "?"}],
                "chosen": [{"role": "assistant", "content": text(3, 12) + "."}],
                "rejected": [{"role": "assistant", "content": text(3, 12) + "!"}],
            }) + "\n")


def one_run(data: Path, out: Path, cache: Path) -> dict:
    """Run ``asft train`` in a child; returns its timing and the peak RSS of it and its
    children (this function runs in a process of its own: see :func:`measure`)."""
    cmd = [str(ASFT), "train", "--model", "tiny-llama", "--data", str(data), "--max-steps", "2",
           "--output-dir", str(out), "--overwrite", "--set", "checkpoint.every=0",
           "--set", "logging.progress=false", "--set", "logging.tensorboard=false"]
    env = dict(os.environ, ASFT_CACHE=str(cache), OMP_NUM_THREADS="2")
    spawned = time.time()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"asft train failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    summary = json.loads((out / "summary.json").read_text())
    report = json.loads((out / "data_report.json").read_text())["tokenize"]
    return {"startup_s": summary["timing"]["first_step_at"] - spawned,
            "data_s": summary["timing"]["data_s"], "elapsed_s": time.time() - spawned,
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
            "cache": report["cache"], "pairs_kept": report["kept"], "tokens": report["tokens"],
            "store_bytes": report["store_bytes"]}


def measure(data: Path, out: Path, cache: Path) -> dict:
    """:func:`one_run` in a fresh Python process (RUSAGE_CHILDREN keeps a process's maximum
    over all its children, so each measurement needs a parent of its own)."""
    code = (f"import json, sys; sys.path.insert(0, {str(BENCH)!r}); import data_scale as d; "
            f"from pathlib import Path; print(json.dumps(d.one_run(Path({str(data)!r}), "
            f"Path({str(out)!r}), Path({str(cache)!r}))))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="2000,100000,1000000")
    p.add_argument("--out", type=Path, default=BENCH / "results" / "data-scale.json")
    args = p.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="asft-data-scale-") as tmp:
        tmp = Path(tmp)
        cache = tmp / "cache"
        write_pairs(tmp / "warmup.jsonl", 64, seed=1)
        measure(tmp / "warmup.jsonl", tmp / "run", cache)  # builds the tiny model once
        for n in sizes:
            data = tmp / f"pairs-{n}.jsonl"
            t0 = time.perf_counter()
            write_pairs(data, n)
            row = {"pairs": n, "file_bytes": data.stat().st_size,
                   "write_s": round(time.perf_counter() - t0, 2)}
            for phase in ("cold", "warm"):
                row[phase] = measure(data, tmp / "run", cache)
                print(f"{n} pairs, {phase}: {json.dumps(row[phase])}", flush=True)
            rows.append(row)
            data.unlink()
    by = {r["pairs"]: r for r in rows}
    checks = {}
    if 2000 in by and 100000 in by:
        extra = (by[100000]["warm"]["peak_rss_bytes"] - by[2000]["warm"]["peak_rss_bytes"]) / 1e6
        checks["rss_100k_over_2k_mb"] = {"value": round(extra, 1),
                                         "met": extra <= TARGETS["rss_100k_over_2k_mb"]}
    if 1000000 in by:
        startup = by[1000000]["warm"]["startup_s"]
        checks["warm_startup_1m_s"] = {"value": round(startup, 2),
                                       "met": startup < TARGETS["warm_startup_1m_s"]}
    from report import versions

    out = {"rows": rows, "targets": TARGETS, "checks": checks, "cpus": os.cpu_count(),
           "asft": versions()["asft"],
           "loadavg_1min_after": round(os.getloadavg()[0], 2)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(checks, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
