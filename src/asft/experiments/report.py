"""The Markdown report of ``asft compare``: one row per method, the base model first.

Changes in log-likelihood are measured on the held-out evaluation pairs: the trained
model's mean per-token log-prob of the chosen (rejected) responses minus the base model's,
in nats per token. A positive change in chosen and a negative change in rejected is what
every preference method aims at; the ASFT paper (arXiv 2409.10571) reports that DPO tends to
lower both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class MethodResult:
    """The outcome of one method in a comparison.

    Attributes:
        label: the method spec (``asft:beta=0.1,sft_weight=0``) or ``base`` for the
            untrained model.
        metrics: the evaluation results (:mod:`asft.evaluate.heldout` keys).
        train_s: wall time of training in seconds (0 for the base model).
        eval_s: wall time of evaluation in seconds.
        peak_memory_bytes: peak resident memory of the process (CPU) or peak allocated GPU
            memory, in bytes; None when unknown.
        run_dir: the training output folder, relative to the report.
        error: why the method failed, when it did (the row then shows the error).
    """

    label: str
    metrics: dict = field(default_factory=dict)
    train_s: float = 0.0
    eval_s: float = 0.0
    peak_memory_bytes: int | None = None
    run_dir: str = ""
    error: str = ""


def _fmt(value, spec: str, signed: bool = False) -> str:
    if value is None:
        return "-"
    return format(value, ("+" if signed else "") + spec)


def _duration(seconds: float) -> str:
    minutes, sec = divmod(round(seconds), 60)
    return f"{minutes}m{sec:02d}s" if minutes else f"{sec}s"


def _memory(nbytes: int | None) -> str:
    return "-" if nbytes is None else f"{nbytes / 2**30:.2f} GiB"


def deltas(result: MethodResult, base: MethodResult | None) -> tuple[float | None, float | None]:
    """Change in held-out chosen and rejected log-prob per token versus ``base``."""
    if base is None or result.error:
        return None, None
    out = []
    for key in ("logps_chosen", "logps_rejected"):
        a, b = result.metrics.get(key), base.metrics.get(key)
        out.append(None if a is None or b is None else a - b)
    return out[0], out[1]


def _observations(results: Sequence[MethodResult], base: MethodResult | None) -> list[str]:
    """Sentences computed from the numbers: which methods moved which likelihood which way."""
    trained = [r for r in results if r is not base and not r.error]
    if base is None or not trained:
        return []
    lines = []
    for side in ("chosen", "rejected"):
        idx = 0 if side == "chosen" else 1
        up = [r.label for r in trained if (deltas(r, base)[idx] or 0) > 0]
        down = [r.label for r in trained if (deltas(r, base)[idx] or 0) < 0]
        lines.append(f"- Held-out {side} log-likelihood rose under {', '.join(up) or 'no method'}"
                     f" and fell under {', '.join(down) or 'no method'}.")
    for key, name in (("pref_acc_mean", "preference accuracy (mean log-prob)"),
                      ("exact_match", "exact match")):
        values = {r.label: r.metrics[key] for r in trained if r.metrics.get(key) is not None}
        if values:
            top = max(values.values())
            leaders = [label for label, v in values.items() if v == top]
            lines.append(f"- Highest {name}: {', '.join(leaders)} ({_fmt(top, '.1f')}%; base "
                         f"{_fmt(base.metrics.get(key), '.1f')}%).")
    return lines


def render_report(
    results: Sequence[MethodResult],
    title: str,
    settings: dict[str, object],
    plot: str | None = None,
    command: str | None = None,
) -> str:
    """The report as Markdown. ``results`` may start with the base model (label ``base``);
    ``settings`` are listed as given; ``plot`` is the dynamics PNG's path relative to the
    report; ``command`` is the command line that reproduces the comparison."""
    base = next((r for r in results if r.label == "base"), None)
    lines = [f"# {title}", ""]
    lines += [f"- {k}: {v}" for k, v in settings.items()]
    lines += ["", "| method | BLEU-4 | ROUGE-L | exact match % | pref. acc. % (mean / sum) "
              "| Δ chosen logp | Δ rejected logp | train time | eval time | peak memory |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        if r.error:
            lines.append(f"| {r.label} | failed: {r.error.splitlines()[0][:120]} |"
                         + " |" * 8)
            continue
        m = r.metrics
        d_w, d_l = deltas(r, base) if r is not base else (None, None)
        lines.append(
            f"| {r.label} | {_fmt(m.get('bleu4'), '.2f')} | {_fmt(m.get('rougeL'), '.2f')} "
            f"| {_fmt(m.get('exact_match'), '.1f')} "
            f"| {_fmt(m.get('pref_acc_mean'), '.1f')} / {_fmt(m.get('pref_acc_sum'), '.1f')} "
            f"| {_fmt(d_w, '.4f', True)} | {_fmt(d_l, '.4f', True)} "
            f"| {_duration(r.train_s) if r is not base else '-'} | {_duration(r.eval_s)} "
            f"| {_memory(r.peak_memory_bytes)} |"
        )
    if base is not None:
        lines += ["", f"Base model on the held-out pairs: chosen {_fmt(base.metrics.get('logps_chosen'), '.4f')}"
                  f", rejected {_fmt(base.metrics.get('logps_rejected'), '.4f')} nats per token. "
                  "Δ columns are each trained model's change from these values; BLEU-4 and "
                  "ROUGE-L compare greedy answers with the chosen responses (0-100)."]
    obs = _observations(results, base)
    if obs:
        lines += ["", "## What the numbers show", "", *obs]
    if plot:
        lines += ["", "## Likelihood dynamics during training", "",
                  "Mean per-token log-likelihood of the held-out probe pairs, logged during training.",
                  "", f"![likelihood dynamics]({plot})"]
    if command:
        lines += ["", "## Reproduce", "", "```bash", command, "```"]
    return "\n".join(lines) + "\n"
