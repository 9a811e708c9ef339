"""The Markdown report of ``asft compare``: one row per method, the base model first.

Changes in log-likelihood are measured on the held-out evaluation pairs: the trained
model's mean per-token log-prob of the chosen (rejected) responses minus the base model's,
in nats per token. A positive change in chosen and a negative change in rejected is what
every preference method aims at; the ASFT paper (arXiv 2409.10571) reports that DPO tends to
lower both.

Rows with several seeds show ``mean ± half-width`` of the 95% t-interval over seeds, and
``†`` on a score whose interval lies wholly below the interval of the best method in its
column (a conservative rule: intervals that overlap may still differ). With learning rates
chosen on validation pairs, a section lists each method's validation criterion per rate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from asft.evaluate.methods import number_text
from asft.experiments.intervals import disjoint

#: Higher-is-better columns whose differences from the column's best are marked.
MARKED = ("bleu4", "rougeL", "exact_match", "pref_acc_mean", "pref_acc_sum")
SIGNIFICANT = "†"


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
        run_dir: the training output folder, relative to the report (of the first seed).
        error: why the method failed, when it did (the row then shows the error).
        lr: the learning rate the reported runs trained with (the chosen one when there was
            a grid); None for the base model and for results of earlier versions.
        lr_grid: the learning rates the method was tried at (one: no choice was made).
        seeds: the training seeds of the reported runs; ``metrics`` is their mean.
        ci95: metric -> [low, high], the 95% t-interval of the mean over ``seeds``; empty
            with one seed.
        per_seed: each seed's metrics, in the order of ``seeds``.
        validation: learning rate (as written in folder names) -> the validation criterion
            of its selection run (None: it diverged or has no value); for the base model,
            ``untrained`` -> its own value. Empty when no learning rate was chosen.
    """

    label: str
    metrics: dict = field(default_factory=dict)
    train_s: float = 0.0
    eval_s: float = 0.0
    peak_memory_bytes: int | None = None
    run_dir: str = ""
    error: str = ""
    lr: float | None = None
    lr_grid: list[float] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    ci95: dict[str, list[float]] = field(default_factory=dict)
    per_seed: list[dict] = field(default_factory=list)
    validation: dict[str, float | None] = field(default_factory=dict)


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


def below_best(results: Sequence[MethodResult], base: MethodResult | None) -> dict[str, set[str]]:
    """Label -> the :data:`MARKED` metrics on which its 95% interval lies wholly below the
    interval of the column's best trained method (highest mean). Rows without an interval
    (one seed, the base model) are neither marked nor compared."""
    marks: dict[str, set[str]] = {}
    for key in MARKED:
        rows = [r for r in results if r is not base and not r.error
                and r.metrics.get(key) is not None and key in r.ci95]
        if len(rows) < 2:
            continue
        best = max(rows, key=lambda r: r.metrics[key])
        for r in rows:
            if r is not best and disjoint(r.ci95[key], best.ci95[key]):
                marks.setdefault(r.label, set()).add(key)
    return marks


def _cell(r: MethodResult, key: str, spec: str, marks: dict[str, set[str]],
          signed: bool = False, offset: float | None = None) -> str:
    """``value`` or ``mean ± half-width`` (and ``†``); ``offset`` is subtracted (a Δ column:
    the base model is one evaluation, so the interval is the row's own)."""
    value = r.metrics.get(key)
    if offset is not None or signed:
        value = None if value is None or offset is None else value - offset
    text = _fmt(value, spec, signed)
    ci = r.ci95.get(key)
    if ci is not None and value is not None:
        text += " ± " + _fmt((ci[1] - ci[0]) / 2, spec)
    if key in marks.get(r.label, ()):
        text += " " + SIGNIFICANT
    return text


def _observations(results: Sequence[MethodResult], base: MethodResult | None,
                  marks: dict[str, set[str]]) -> list[str]:
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
            below = [r.label for r in trained if key in marks.get(r.label, ())]
            if below:
                lines[-1] += (f" Below it beyond the 95% intervals: {', '.join(below)}; the "
                              "others' intervals overlap its own.")
    return lines


def _row(r: MethodResult, base: MethodResult | None, marks: dict[str, set[str]]) -> str:
    if r.error:
        return f"| {r.label} | failed: {r.error.splitlines()[0][:120]} |" + " |" * 8
    trained = r is not base
    w, ln = ((base.metrics.get(k) if base is not None and trained else None)
             for k in ("logps_chosen", "logps_rejected"))
    return (f"| {r.label} | {_cell(r, 'bleu4', '.2f', marks)} | {_cell(r, 'rougeL', '.2f', marks)} "
            f"| {_cell(r, 'exact_match', '.1f', marks)} "
            f"| {_cell(r, 'pref_acc_mean', '.1f', marks)} / {_cell(r, 'pref_acc_sum', '.1f', marks)} "
            f"| {_cell(r, 'logps_chosen', '.4f', marks, True, w)} "
            f"| {_cell(r, 'logps_rejected', '.4f', marks, True, ln)} "
            f"| {_duration(r.train_s) if trained else '-'} | {_duration(r.eval_s)} "
            f"| {_memory(r.peak_memory_bytes)} |")


def _interval_note(results: Sequence[MethodResult]) -> list[str]:
    """How to read ``±`` and ``†``, when some row has intervals."""
    counts = sorted({len(r.seeds) for r in results if r.ci95})
    if not counts:
        return []
    n = "/".join(str(c) for c in counts)
    return ["", f"Trained methods: mean over n = {n} seeds ± the half-width of its 95% "
            "t-interval over seeds (t quantile with n - 1 degrees of freedom x standard deviation "
            "/ sqrt(n)); the interval measures training randomness on these fixed test pairs, not "
            "the sampling of the pairs. The base model is evaluated once: greedy decoding and "
            f"scoring do not depend on the seed. {SIGNIFICANT} marks a score whose interval lies "
            "wholly below the interval of the column's best method (a conservative rule: "
            "overlapping intervals do not show that there is no difference)."]


def _lr(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:  # a hand-edited key: shown nowhere rather than failing the report
        return None


def _selection(results: Sequence[MethodResult]) -> list[str]:
    """The validation criterion of each method at each learning rate, the chosen one in bold."""
    rows = [r for r in results if r.label != "base" and len(r.lr_grid) > 1]
    if not rows:
        return []
    grid = sorted({v for r in rows for v in r.lr_grid})
    lines = ["", "## Learning-rate selection", "",
             "Validation criterion of each method's selection run at each learning rate "
             "(bold: chosen; -: not in its grid, or the run diverged).", "",
             "| method | " + " | ".join(f"lr {number_text(v)}" for v in grid) + " |",
             "|---|" + "---:|" * len(grid)]
    for r in rows:
        values = {_lr(k): v for k, v in r.validation.items()}
        cells = [_fmt(values.get(v), ".2f") for v in grid]
        cells = [f"**{c}**" if v == r.lr and c != "-" else c for v, c in zip(grid, cells)]
        lines.append(f"| {r.label} | " + " | ".join(cells) + " |")
    base = next((r for r in results if r.label == "base"), None)
    if base is not None and base.validation:
        lines += ["", f"Untrained base model: {_fmt(next(iter(base.validation.values())), '.2f')}."]
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
    marks = below_best(results, base)
    lines += ["", "| method | BLEU-4 | ROUGE-L | exact match % | pref. acc. % (mean / sum) "
              "| Δ chosen logp | Δ rejected logp | train time | eval time | peak memory |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [_row(r, base, marks) for r in results]
    lines += _interval_note(results)
    if base is not None:
        lines += ["", f"Base model on the held-out pairs: chosen {_fmt(base.metrics.get('logps_chosen'), '.4f')}"
                  f", rejected {_fmt(base.metrics.get('logps_rejected'), '.4f')} nats per token. "
                  "Δ columns are each trained model's change from these values; BLEU-4 and "
                  "ROUGE-L compare greedy answers with the chosen responses (0-100)."]
    obs = _observations(results, base, marks)
    if obs:
        lines += ["", "## What the numbers show", "", *obs]
    lines += _selection(results)
    if plot:
        lines += ["", "## Likelihood dynamics during training", "",
                  "Mean per-token log-likelihood of the held-out probe pairs, logged during training.",
                  "", f"![likelihood dynamics]({plot})"]
    if command:
        lines += ["", "## Reproduce", "", "```bash", command, "```"]
    return "\n".join(lines) + "\n"
