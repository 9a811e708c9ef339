"""Online (on-policy) training: ``online.rounds`` rounds of sample -> score -> pair -> train.

Round r samples ``online.samples`` answers to each prompt of ``online.prompts`` with the
policy as round r-1 left it (round 1: ``model.name``), scores and pairs them exactly as
``asft pairs`` does (:func:`asft.experiments.pairs.run.run_pairs`, sampling seed
``seed + r``), then trains ``online.steps_per_round`` steps on those pairs with the run's loss,
an ordinary run of :func:`asft.train.loop.train` (fresh optimizer and schedule; a reference
model, for losses with one, is the round's starting policy, as in iterative DPO). Every round
answers the same prompts, as Iterative Reasoning Preference Optimization (arXiv 2404.19733)
does with its training questions. A round whose samples make no pair trains nothing; the next
one samples again from the same policy.

The run folder::

    config.yaml      the whole config
    metrics.jsonl    per round: one record of its samples (``online/*``: prompts, samples,
                     pairs, ties and other skips, scoring failures, mean score, and for the
                     builtin scorer ``online/accuracy``, the share of exactly right answers),
                     then its training records; each record has ``round`` and ``round_step``,
                     ``step`` counts on across rounds (a round's sample record has the step
                     the round starts from)
    model/           the last trained round's model (hard links: no second copy on disk)
    summary.json     the whole run
    rounds/01/       pairs.jsonl (+ its samples and scores side files), round.json (what the
                     sampling did), run/ (the round's training run: checkpoints, metrics)

``--resume`` skips finished rounds, resumes an unfinished round's sampling and scoring from
its side files (prompt by prompt) and its training from the newest checkpoint: a resumed run
equals an uninterrupted one. One process only: the rounds' sampling is not sharded.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from asft import atomic
from asft.config import Config, OnlineConfig
from asft.errors import AsftError
from asft.experiments.pairs.config import JudgeOptions, PairsConfig
from asft.train import faults
from asft.train.loop import TrainResult
from asft.train.loop import train as train_one
from asft.train.rundir import SUMMARY_FILE, default_output_dir
from asft.train.stages import (
    combined_result,
    finished_result,
    link_model,
    merge_metrics,
    prepare_folder,
)

ROUNDS_DIR = "rounds"
ROUND_FILE = "round.json"


def round_dir(out: Path, r: int) -> Path:
    """``out/rounds/01`` for round 1."""
    return out / ROUNDS_DIR / f"{r:02d}"


def pairs_config(cfg: Config, r: int, model: str, out: Path) -> PairsConfig:
    """What round ``r`` samples and scores with the policy ``model``: ``asft pairs`` settings."""
    o = cfg.online
    return PairsConfig(
        model=model, prompts=str(o.prompts), output=round_dir(out, r) / "pairs.jsonl",
        samples=o.samples, scorer=o.scorer, pairing=o.pairing,
        max_pairs_per_prompt=o.max_pairs_per_prompt if o.pairing == "all" else None,
        selection=o.selection, rso_beta=o.rso_beta, rso_accept=o.rso_accept,
        num_prompts=o.num_prompts, temperature=o.temperature, top_p=o.top_p,
        max_new_tokens=o.max_new_tokens, seed=cfg.seed + r, batch_size=o.batch_size,
        dtype=cfg.model.dtype,
        judge=JudgeOptions(base_url=o.judge_base_url, model=o.judge_model,
                           api_key_env=o.judge_api_key_env))


def round_config(cfg: Config, r: int, model: str, out: Path) -> Config:
    """The training run of round ``r``: the run's settings, from ``model``, on the round's
    pairs (read as they are: the run's format, columns and limits are for its own data), for
    ``steps_per_round`` steps, into ``rounds/NN/run``, never pushed by itself."""
    where = round_dir(out, r)
    data = dataclasses.replace(cfg.data, source=str(where / "pairs.jsonl"), format="auto",
                               columns={}, split=None, limit=None, streaming=False, labels={})
    return dataclasses.replace(
        cfg, output_dir=str(where / "run"), online=OnlineConfig(), stages=[], data=data,
        model=dataclasses.replace(cfg.model, name=model),
        training=dataclasses.replace(cfg.training, max_steps=cfg.online.steps_per_round),
        hub=dataclasses.replace(cfg.hub, repo_id=None))


def sample_record(summary: Any) -> dict[str, Any]:
    """The ``online/*`` metrics of one round's samples (from its
    :class:`~asft.experiments.pairs.run.Summary`)."""
    record = {"online/prompts": summary.prompts, "online/samples": summary.samples,
              "online/pairs": summary.pairs, "online/failures": summary.failures,
              "online/score_mean": summary.score_mean}
    for reason in ("tie", "identical", "too_few_scored"):
        record[f"online/skipped_{reason}"] = summary.skipped.get(reason, 0)
    if summary.solved is not None:
        record["online/accuracy"] = summary.solved / max(1, summary.samples)
    return record


def _sample(cfg: Config, r: int, model: str, out: Path, show: bool) -> dict[str, Any]:
    """Round ``r``'s sampling, scoring and pairing (resumed from its side files), its record
    written to ``round.json`` last, so that a round with that file has its pairs."""
    from asft.data.errors import DataError
    from asft.evaluate.judge import JudgeError
    from asft.experiments.pairs.run import run_pairs, side_paths

    config = pairs_config(cfg, r, model, out)
    try:
        summary = run_pairs(config, show_progress=show)
    except (DataError, JudgeError) as err:
        text = " ".join(str(err).split())
        raise AsftError(f"online round {r}: {text}; what was sampled and scored is kept in "
                        f"{side_paths(config.output)[0].parent}: rerun with --resume") from None
    record = {"round": r, "model": model, "time": round(time.time(), 3), **sample_record(summary)}
    atomic.write_json(round_dir(out, r) / ROUND_FILE, record)
    faults.hit("online.sampled")
    return record


def _sample_row(sampled: dict[str, Any]) -> dict[str, Any]:
    """A round's sample record in metrics.jsonl: its time and ``online/*`` fields."""
    return {"time": sampled["time"], **{k: v for k, v in sampled.items() if k.startswith("online/")}}


def _say(text: str) -> None:
    print(f"asft online: {text}", file=sys.stderr, flush=True)


def _one_round(cfg: Config, r: int, model: str, out: Path, resume: bool,
               console: Any) -> tuple[dict, TrainResult | None]:
    """Round ``r`` from ``model``: its sample record and its training result (None: no pair)."""
    where = round_dir(out, r)
    done = where / ROUND_FILE
    sampled = json.loads(done.read_text()) if done.is_file() else None
    if sampled is None:
        _say(f"round {r}/{cfg.online.rounds}: sampling {cfg.online.samples} answers per prompt "
             f"with {model}")
        sampled = _sample(cfg, r, model, out, cfg.logging.progress)
    if not sampled["online/pairs"]:
        _say(f"round {r}: no pair formed ({sampled['online/skipped_tie']} prompts tied); "
             "nothing trained this round")
        return sampled, None
    result = finished_result(where / "run")
    if result is None:
        _say(f"round {r}: {sampled['online/pairs']} pairs; training "
             f"{cfg.online.steps_per_round} steps")
        result = train_one(round_config(cfg, r, model, out),
                           resume=resume and (where / "run").exists(), console=console)
    return sampled, result


def train_online(config: Config, *, resume: bool = False, overwrite: bool = False,
                 console: Any = None) -> TrainResult:
    """Train ``config`` in ``online.rounds`` on-policy rounds (module docstring)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise AsftError("online rounds run in one process (their sampling is not sharded); "
                        "start asft train without torchrun")
    out = Path(config.output_dir) if config.output_dir else default_output_dir(config)
    cfg = dataclasses.replace(config, output_dir=str(out))
    prepare_folder(out, cfg, resume, overwrite, parts=ROUNDS_DIR)
    model, rounds = cfg.model.name, []
    for r in range(1, cfg.online.rounds + 1):
        sampled, result = _one_round(cfg, r, model, out, resume, console)
        rounds.append((sampled, result))
        if result is not None and result.model_dir is not None:
            model = str(result.model_dir)
        merge_metrics(out, "round", [(s["round"], [_sample_row(s)], res) for s, res in rounds])
    trained = [res for _, res in rounds if res is not None]
    if not trained:
        raise AsftError(f"no round made a pair ({cfg.online.rounds} rounds), so nothing was "
                        f"trained; see {out / ROUNDS_DIR}/*/round.json (more online.samples, a "
                        "higher online.temperature or another online.scorer may help)")
    return _finish(out, trained)


def _finish(out: Path, trained: list[TrainResult]) -> TrainResult:
    """Link the last trained round's model to ``out/model`` and write the run's summary (its
    probe numbers are the last round's, before and after it trained: each round holds out
    its own probe pairs, so earlier rounds' are other pairs)."""
    last = trained[-1]
    assert last.model_dir is not None
    link_model(last.model_dir, out / "model")
    result = combined_result(out, trained, probe_first=last.probe_first)
    atomic.write_json(out / SUMMARY_FILE, result.to_dict())
    return result
