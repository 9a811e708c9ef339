"""The loss table of docs/losses.md and README.md, generated from :data:`asft.losses.LOSSES`.

Each of those files holds the table between the :data:`BEGIN` and :data:`END` markers.
``asft losses --markdown`` prints the table, ``--write FILE ...`` replaces it in place, and
tests/test_losses_docs.py fails when a committed copy differs from the registry.
"""

from __future__ import annotations

from asft.losses.base import LOSSES, LossSpec

BEGIN = "<!-- losses:begin (generated: asft losses --markdown --write FILE) -->"
END = "<!-- losses:end -->"
COLUMNS = ("name", "per-pair loss", "hyperparameters (defaults)", "reference model", "arXiv", "summary")


def _arxiv(arxiv_id: str) -> str:
    return f"[{arxiv_id}](https://arxiv.org/abs/{arxiv_id})"


def _cell(text: str) -> str:
    # A bare "|" would end the cell early.
    return text.replace("|", "\\|")


def _row(spec: LossSpec) -> list[str]:
    hparams = ", ".join(f"`{k}` = {v:g}" for k, v in spec.defaults.items()) or "none"
    papers = [p for p in (spec.paper, *spec.related) if p]
    return [
        f"`{spec.name}`",
        spec.formula or "-",
        hparams,
        "yes" if spec.needs_reference else "no",
        ", ".join(map(_arxiv, papers)) or "-",
        spec.summary or "-",
    ]


def markdown_table() -> str:
    """One Markdown table row per registered loss, in registry order; ends with a newline."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for spec in LOSSES.values():
        lines.append("| " + " | ".join(map(_cell, _row(spec))) + " |")
    return "\n".join(lines) + "\n"


def splice(text: str, source: str = "<text>") -> str:
    """``text`` with everything between its BEGIN and END marker lines replaced by
    :func:`markdown_table` (blank lines around it, so that Markdown sees a table).

    Raises:
        ValueError: ``text`` (named ``source`` in the message) lacks exactly one BEGIN line
            followed by one END line.
    """
    lines = text.splitlines(keepends=True)
    begins = [i for i, line in enumerate(lines) if line.strip() == BEGIN]
    ends = [i for i, line in enumerate(lines) if line.strip() == END]
    if len(begins) != 1 or len(ends) != 1 or begins[0] > ends[0]:
        raise ValueError(f"{source}: expected one line {BEGIN!r} and, after it, one line {END!r}")
    head, tail = lines[: begins[0] + 1], lines[ends[0]:]
    return "".join(head) + "\n" + markdown_table() + "\n" + "".join(tail)
