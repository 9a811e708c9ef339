"""PNG figures: loss gradients across likelihoods, and log-likelihood dynamics during training.

matplotlib runs on the Agg backend (no display needed); figures are closed after saving.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from asft.evaluate.gradients import GradientRow


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_gradients(rows: Sequence[GradientRow], path: str | Path, fixed: float) -> Path:
    """Two panels: dL/ds_w as P(y_w) sweeps (P(y_l) = ``fixed``), and dL/ds_l as P(y_l)
    sweeps (P(y_w) = ``fixed``); one line per method. Returns ``path``."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    methods = list(dict.fromkeys(r.method for r in rows))
    panels = (
        ("chosen", "p_chosen", "grad_chosen", "P(chosen)",
         f"dL/ds(chosen), P(rejected) = {fixed:g}"),
        ("rejected", "p_rejected", "grad_rejected", "P(rejected)",
         f"dL/ds(rejected), P(chosen) = {fixed:g}"),
    )
    for ax, (varied, x_key, y_key, xlabel, title) in zip(axes, panels):
        for method in methods:
            pts = [r for r in rows if r.method == method and r.varied == varied]
            ax.plot([getattr(r, x_key) for r in pts], [getattr(r, y_key) for r in pts],
                    label=method, linewidth=1.8)
        ax.set_xlabel(f"{xlabel} = exp(s), one-token response")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].axhline(0, color="black", linewidth=0.6)
    axes[0].set_ylabel("gradient (< 0: descent raises s)")
    # The rejected-side push spans orders of magnitude (ASFT's grows like P / (1 - P)).
    if all(r.grad_rejected > 0 for r in rows if r.varied == "rejected"):
        axes[1].set_yscale("log")
    else:
        axes[1].axhline(0, color="black", linewidth=0.6)
        axes[1].set_yscale("symlog", linthresh=1e-2)
    axes[0].legend(fontsize=8)
    fig.suptitle("Loss gradients w.r.t. sequence log-likelihood (autograd)", fontsize=11)
    return _save(fig, path)


def plot_dynamics(runs: Sequence[tuple[str, dict[str, tuple[list[int], list[float]]]]],
                  path: str | Path, title: str = "") -> Path:
    """Three panels against the optimizer step: mean chosen log-likelihood, mean rejected
    log-likelihood, and their margin; one line per run.

    ``runs`` holds ``(label, series)`` with ``series["chosen"]`` and ``series["rejected"]``
    as ``(steps, values)`` in nats per token. Returns ``path``.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    # Line styles differ too: methods that train alike (SFT and one-stage ASFT) overlap.
    styles = ("-", "--", ":", "-.")
    for n, (label, series) in enumerate(runs):
        style = {"color": colors[n % len(colors)], "linestyle": styles[n % len(styles)], "marker": "."}
        steps_w, chosen = series["chosen"]
        steps_l, rejected = series["rejected"]
        axes[0].plot(steps_w, chosen, label=label, **style)
        axes[1].plot(steps_l, rejected, label=label, **style)
        at = dict(zip(steps_l, rejected))
        margin = [(s, c - at[s]) for s, c in zip(steps_w, chosen) if s in at]
        axes[2].plot([s for s, _ in margin], [m for _, m in margin], label=label, **style)
    titles = ("chosen: mean log-prob per token", "rejected: mean log-prob per token",
              "margin: chosen - rejected")
    for ax, panel_title in zip(axes, titles):
        ax.set_title(panel_title, fontsize=10)
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("nats per token")
    axes[2].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:
    """Lay out ``fig``, write it as PNG to ``path`` (creating folders), close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
