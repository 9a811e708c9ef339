"""Run the reliability tests and count what they did: faults injected and survived, fuzz cases
run, edge cases and safety checks. The table in docs/reliability.md (and the README's
Reliability section) comes from this script.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/reliability_counts.py \\
        --json docs/reliability_counts.json --markdown

It runs ``pytest -m "fault or fuzz or edge or safety"`` (extra arguments go to pytest) with a
plugin that counts, per test:

- faults fired inside asft: each fault appends a line to ``$ASFT_FAULTS_LOG``
  (:mod:`asft.train.faults`) before it fires, so kills of child processes are counted too;
- faults made by the tests themselves (SIGKILLs from outside, a real full tmpfs, damaged
  checkpoint folders): the tests report them with ``record_property``;
- fuzz cases: the examples hypothesis actually executed (valid or failing; not the ones a
  filter rejected), from hypothesis's own run statistics; a test without hypothesis counts 1;
- edge cases and safety checks: the test cases (parametrized items) that ran.

A fault counts as survived when the test that injected it passed: every fault test checks its
invariants (complete checkpoints intact, resume from the newest, final weights equal to an
uninterrupted run) after each fault.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MARKERS = ("fault", "fuzz", "edge", "safety")
# record_property names that count as injected faults
EXTERNAL_FAULTS = ("external_sigkills", "real_enospc", "damaged_checkpoints")


class Counts:
    """pytest plugin collecting per-test outcomes, fault logs, properties and hypothesis stats."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.tests: dict[str, dict] = {}

    def _entry(self, item_or_report) -> dict:
        return self.tests.setdefault(item_or_report.nodeid, {
            "markers": [], "outcome": "not run", "faults": {}, "properties": {}, "examples": None})

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item, nextitem):
        from asft.train import faults

        entry = self._entry(item)
        entry["markers"] = sorted({m.name for m in item.iter_markers()} & set(MARKERS))
        log = self.log_dir / f"faults-{len(self.tests)}.log"
        os.environ[faults.LOG_ENV] = str(log)
        try:
            yield
        finally:
            os.environ.pop(faults.LOG_ENV, None)
            if log.exists():
                actions = Counter(line.rsplit("=", 1)[1] for line in log.read_text().splitlines() if line)
                entry["faults"] = dict(actions)

    @pytest.hookimpl(hookwrapper=True, trylast=True)
    def pytest_runtest_call(self, item):
        try:
            from hypothesis.statistics import collector
        except ImportError:
            yield
            return
        outer = collector.value
        entry = self._entry(item)

        def note(stats):
            cases = [c for key, phase in stats.items() if key.endswith("-phase")
                     for c in phase.get("test-cases", [])]
            entry["examples"] = (entry["examples"] or 0) + sum(
                c["status"] in ("valid", "interesting") for c in cases)
            if outer is not None:
                outer(stats)

        with collector.with_value(note):
            yield

    def pytest_runtest_logreport(self, report):
        entry = self._entry(report)
        if report.when == "teardown":  # every phase's report repeats the properties so far
            for name, value in report.user_properties:
                if isinstance(value, (int, float)):
                    entry["properties"][name] = entry["properties"].get(name, 0) + value
        # the call's outcome, unless setup or teardown failed (or skipped)
        if (report.when == "call" or report.outcome != "passed") and entry["outcome"] in ("not run", "passed"):
            entry["outcome"] = report.outcome


def summarize(tests: dict[str, dict]) -> dict:
    """The totals that docs/reliability.md reports."""
    marked = {k: v for k, v in tests.items() if v["markers"]}
    by_marker = {m: Counter(v["outcome"] for v in marked.values() if m in v["markers"]) for m in MARKERS}
    actions: Counter = Counter()
    survived: Counter = Counter()
    props: Counter = Counter()
    props_survived: Counter = Counter()
    for v in marked.values():
        ok = v["outcome"] == "passed"
        actions.update(v["faults"])
        props.update({k: v["properties"].get(k, 0) for k in EXTERNAL_FAULTS})
        if ok:
            survived.update(v["faults"])
            props_survived.update({k: v["properties"].get(k, 0) for k in EXTERNAL_FAULTS})
    fuzz = [v for v in marked.values() if "fuzz" in v["markers"] and v["outcome"] != "skipped"]
    injected = sum(actions.values()) + sum(props.values())
    return {
        "tests": {m: dict(c) for m, c in by_marker.items()},
        "faults": {
            "fired_inside_asft": dict(actions),
            **{k: int(props[k]) for k in EXTERNAL_FAULTS},
            "external_sigkills_inside_checkpoint_write": int(sum(
                v["properties"].get("external_sigkills_inside_checkpoint_write", 0) for v in marked.values())),
            "injected": int(injected),
            "survived": int(sum(survived.values()) + sum(props_survived.values())),
        },
        "fuzz": {
            "hypothesis_examples": int(sum(v["examples"] or 0 for v in fuzz)),
            "hypothesis_tests": sum(v["examples"] is not None for v in fuzz),
            "fixed_hostile_inputs": sum(v["examples"] is None for v in fuzz),
            "failed": sum(v["outcome"] == "failed" for v in fuzz),
        },
        "edge": {"cases": sum(v["outcome"] == "passed" for v in marked.values() if "edge" in v["markers"])},
        "safety": {"checks": sum(v["outcome"] == "passed" for v in marked.values() if "safety" in v["markers"])},
    }


def markdown(summary: dict) -> str:
    """The counts table of docs/reliability.md."""
    f, z = summary["faults"], summary["fuzz"]
    fired = f["fired_inside_asft"]
    rows = [
        ("SIGKILL at a fault point (each step of a checkpoint write, mid-step, after a step, "
         "final save, an online round's sampling)", fired.get("kill", 0)),
        ("SIGKILL from outside at a random moment", f["external_sigkills"]),
        ("... of which landed inside a checkpoint write (mid-file or mid-fsync)",
         f["external_sigkills_inside_checkpoint_write"]),
        ("Crash (exception) at a fault point", fired.get("error", 0)),
        ("SIGTERM (preemption notice)", fired.get("term", 0)),
        ("Full disk (ENOSPC) injected at a checkpoint write step or a metrics write", fired.get("enospc", 0)),
        ("Full disk, real (a small tmpfs fills up)", f["real_enospc"]),
        ("NaN loss", fired.get("nan", 0)),
        ("Damaged or partial checkpoint folder", f["damaged_checkpoints"]),
    ]
    lines = ["| Fault | Injected |", "|---|---:|"]
    lines += [f"| {name} | {n:,} |" for name, n in rows]
    lines.append(f"| **All faults: injected / survived** | **{f['injected']:,} / {f['survived']:,}** |")
    lines += ["", "| Input and safety checks | Count |", "|---|---:|",
              f"| Fuzz cases run (hypothesis examples executed, {z['hypothesis_tests']} properties) "
              f"| {z['hypothesis_examples']:,} |",
              f"| Hostile fixed inputs (deep nesting, huge fields, alias bombs, ...) | {z['fixed_hostile_inputs']} |",
              f"| Numerical edge-case tests | {summary['edge']['cases']} |",
              f"| Safety tests (trust_remote_code, safetensors only, API key) | {summary['safety']['checks']} |"]
    tests = summary["tests"]
    passed = sum(c.get("passed", 0) for c in tests.values())
    failed = sum(c.get("failed", 0) for c in tests.values())
    skipped = sum(c.get("skipped", 0) for c in tests.values())
    lines += ["", f"Tests run: {passed} passed, {failed} failed, {skipped} skipped "
              "(a test with several markers counts once per marker)."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write the counts (and per-test details) here")
    parser.add_argument("--markdown", action="store_true", help="print the counts table")
    args, pytest_args = parser.parse_known_args(argv)
    with tempfile.TemporaryDirectory(prefix="asft-faults-") as tmp:
        counts = Counts(Path(tmp))
        code = pytest.main(["-q", "-p", "no:cacheprovider", "-m", " or ".join(MARKERS),
                            str(ROOT / "tests"), *pytest_args], plugins=[counts])
    summary = summarize(counts.tests)
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "tests": counts.tests}, indent=1) + "\n")
    print(markdown(summary) if args.markdown else json.dumps(summary, indent=1))
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
