"""Publishing a finished run: its final model and a model card, to the Hugging Face Hub.

The card is written from what the run folder records (:mod:`asft.train.rundir`): the
resolved ``config.yaml``, ``data_report.json``, ``summary.json`` and the last probe record of
``metrics.jsonl``, so that ``asft train --push-to-hub`` and a later ``asft push RUN_DIR``
publish the same card. The upload itself is :func:`asft.model.hub.push`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from asft.config import HubConfig, load_config
from asft.errors import AsftError
from asft.model.card import RunFacts, model_card
from asft.model.hub import push
from asft.train.rundir import DATA_REPORT, MODEL_DIR, SUMMARY_FILE
from asft.train.tracking import METRICS_FILE, read_metrics


def run_facts(out: Path) -> RunFacts:
    """What the run in ``out`` measured: steps, pairs, data counts, first and last loss and
    probe metrics (the last probe record of ``metrics.jsonl``)."""
    summary, data = _json(out / SUMMARY_FILE), _json(out / DATA_REPORT)
    records = read_metrics(out / METRICS_FILE)
    probes = [r for r in records if "probe/logps/chosen" in r]
    losses = [r["loss"] for r in records if r.get("loss") is not None]

    def probe(record: dict[str, Any] | None) -> dict[str, float]:
        return {k: v for k, v in (record or {}).items() if k.startswith("probe/")}

    steps = int(summary.get("steps") or max((r["step"] for r in records), default=0))
    return RunFacts(steps=steps, pairs_seen=int(summary.get("pairs_seen") or 0), data=data,
                    loss_first=losses[0] if losses else None,
                    loss_last=losses[-1] if losses else None,
                    probe_first=probe(probes[0] if probes else None),
                    probe_last=probe(probes[-1] if probes else None),
                    probe_step=probes[-1]["step"] if probes else None)


def card(out: Path, repo_id: str | None = None) -> str:
    """The model card of the run in ``out`` (:func:`asft.model.card.model_card`)."""
    cfg = load_config(out / "config.yaml")
    return model_card(cfg, run_facts(out), repo_id)


def publish(out: Path, hub: HubConfig) -> str:
    """Push the final model of the run in ``out`` with its card to ``hub.repo_id``; the
    repository's URL. Errors say the model is safe on disk and how to push it again."""
    folder = out / MODEL_DIR
    if not (folder / "config.json").is_file() and not (folder / "adapter_config.json").is_file():
        raise AsftError(f"{out} holds no final model ({folder} is missing or incomplete); "
                        "only a finished run can be pushed")
    again = f"asft push {out} --repo {hub.repo_id}" + (f" --endpoint {hub.endpoint}"
                                                       if hub.endpoint else "")
    return push(folder, hub, card(out, hub.repo_id), again=again)


def _json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}
