"""Write docs/online-builtin/report.md and results.json from the runs of scripts/online_builtin.sh.

    python scripts/online_report.py RUNS OUT

Exact match is the share of the held-out problems the greedy answer solves (asft eval's
``correct`` per generation), with a 95% t-interval over problems; the per-round numbers are the
``online/*`` records each online run wrote to its metrics.jsonl (its own samples, at
temperature 0.8, on the 16 training prompts).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from asft.experiments.intervals import mean_interval

METHODS = {"base": "base model (SmolLM2-135M-Instruct)", "online-asft": "online ASFT (3 rounds)",
           "online-dpo": "online DPO (3 rounds)", "static-asft": "static ASFT (round-1 pairs, 24 steps)"}


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def exact(runs: Path, method: str) -> dict:
    verdicts = [float(g["correct"]) * 100 for g in lines(runs / f"eval-{method}" / "generations.jsonl")]
    mean, half = mean_interval(verdicts)
    return {"exact_match": mean, "ci95": half, "n": len(verdicts)}


def rounds(runs: Path, method: str) -> list[dict]:
    path = runs / method / "metrics.jsonl"
    if not method.startswith("online"):
        return []
    return [{"round": r["round"], "sample_accuracy": r.get("online/accuracy"),
             "score_mean": r["online/score_mean"], "pairs": r["online/pairs"],
             "ties": r["online/skipped_tie"]} for r in lines(path) if "online/pairs" in r]


def main(runs: Path, out: Path) -> None:
    results = {}
    for method in METHODS:
        row = {"label": METHODS[method], **exact(runs, method), "rounds": rounds(runs, method)}
        summary = runs / method / "summary.json"
        if summary.is_file():
            s = json.loads(summary.read_text())
            row.update(steps=s["steps"], pairs_seen=s["pairs_seen"])
        results[method] = row
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    table = ["| method | exact match % (64 test problems, greedy) | ± 95% | training steps |",
             "|---|---|---|---|"]
    for r in results.values():
        table.append(f"| {r['label']} | {r['exact_match']:.1f} | {r['ci95'] or 0:.1f} | "
                     f"{r.get('steps', 0)} |")
    per_round = ["| method | round | samples correct % | mean verifier score | pairs | prompts tied |",
                 "|---|---|---|---|---|---|"]
    for r in results.values():
        for x in r["rounds"]:
            per_round.append(f"| {r['label']} | {x['round']} | {100 * x['sample_accuracy']:.1f} | "
                             f"{x['score_mean']:.3f} | {x['pairs']} | {x['ties']} |")
    text = (out / "report.md").read_text() if (out / "report.md").is_file() else ""
    head = text.split("<!-- tables -->")[0] if "<!-- tables -->" in text else "# On-policy pairs on the built-in arithmetic task\n\n"
    tail = text.split("<!-- /tables -->")[1] if "<!-- /tables -->" in text else "\n"
    body = ("<!-- tables -->\n## Held-out exact match\n\n" + "\n".join(table)
            + "\n\n## The rounds' own samples (16 training prompts x 4 samples, temperature 0.8)\n\n"
            + "\n".join(per_round) + "\n\n![likelihood dynamics](dynamics.png)\n<!-- /tables -->")
    (out / "report.md").write_text(head + body + tail)
    print((out / "report.md").read_text())


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
