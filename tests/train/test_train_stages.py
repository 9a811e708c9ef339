"""Staged runs (``stages:``): the two-stage beta-ASFT pipeline in one folder, each stage from
the previous one's model, resumable inside a stage, and config errors that name the stage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from asft.config import ConfigError, load_config

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "smoke-two-stage.yaml"


def _train(out: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "asft.cli", "train", "--config", str(RECIPE), "--set",
         "logging.progress=false", "--set", "logging.tensorboard=false", "-o", str(out), *extra],
        env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=300)


def _records(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


@pytest.fixture(scope="module")
def full(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("stages") / "full"
    proc = _train(out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_two_stages_train_one_after_another_in_one_folder(full):
    sft, align = full / "stages" / "01-sft", full / "stages" / "02-align"
    second = load_config(align / "config.yaml")
    assert second.model.name == str(sft / "model")  # stage 2 starts from stage 1's model
    assert second.loss.name == "asft" and second.loss.hparams["sft_weight"] == 0.0
    assert second.loss.hparams["beta"] == 0.2 and second.optim.lr == 2e-4
    assert load_config(sft / "config.yaml").loss.name == "sft"
    records = _records(full / "metrics.jsonl")
    assert [(r["stage"], r["stage_step"], r["step"]) for r in records if "loss" in r] == [
        ("sft", 2, 2), ("sft", 4, 4), ("align", 2, 6), ("align", 4, 8)]
    assert {r["stage"] for r in records if "probe/accuracy" in r} == {"sft", "align"}
    assert "terms/sft" in next(r for r in records if r["stage"] == "sft" and "loss" in r)
    # the final model is the last stage's, linked, not copied
    final, last = full / "model" / "model.safetensors", align / "model" / "model.safetensors"
    assert os.path.samefile(final, last) or final.read_bytes() == last.read_bytes()
    a, b = load_file(sft / "model" / "model.safetensors"), load_file(final)
    assert any(not torch.equal(a[k], b[k]) for k in a)  # the second stage trained
    summary = json.loads((full / "summary.json").read_text())
    assert summary["steps"] == 8 and summary["model_dir"] == str(full / "model")
    assert "stages:" in (full / "config.yaml").read_text()


def test_killed_inside_the_second_stage_resumes_to_the_same_model(full, tmp_path):
    out = tmp_path / "run"
    # the 7th optimizer step of this process is step 3 of stage 2 (checkpoint at its step 2)
    killed = _train(out, env={"ASFT_FAULTS": "train.step@7=kill"})
    assert killed.returncode != 0
    assert (out / "stages" / "01-sft" / "summary.json").is_file()
    again = _train(out)
    assert again.returncode != 0 and "--resume" in again.stderr  # never mixed into silently
    resumed = _train(out, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stderr and "(step 2)" in resumed.stderr
    a = load_file(full / "model" / "model.safetensors")
    b = load_file(out / "model" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    strip = [{k: v for k, v in r.items() if k != "time" and not k.startswith("throughput/")}
             for r in _records(full / "metrics.jsonl") + _records(out / "metrics.jsonl")]
    assert strip[:len(strip) // 2] == strip[len(strip) // 2:]


@pytest.mark.parametrize("stages, field", [
    ('[{name: a, loss: sft}, {name: a, loss: dpo}]', "stages[1].name"),
    ('[{name: a, loss: sftt}]', "stages[0].loss"),
    ('[{name: a, loss: asft, hparams: {beta: -1}}]', "stages[0].hparams.beta"),
    ('[{name: "../x"}]', "stages[0].name"),
    ('[{name: a, lr: 0}]', "stages[0].lr"),
])
def test_a_bad_stage_is_named_before_anything_loads(stages, field, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(f"stages: {stages}\n")
    with pytest.raises(ConfigError, match=field.replace("[", r"\[").replace("]", r"\]")):
        load_config(path)


def test_the_model_card_of_a_staged_run_names_each_stage(full):
    from asft.train.publish import card

    text = card(full, "me/two-stage")
    assert "trained with the **sft** then **asft** loss" in text
    assert "## Stage 1: sft (lr 0.001, 4 steps)" in text
    assert "## Stage 2: align (lr 0.0002, 4 steps)" in text and "`sft_weight` | 0" in text
    assert "2409.10571" in text and "training pairs" in text  # the data report came along


@pytest.mark.slow
def test_stages_run_in_one_process_group_under_torchrun(tmp_path):
    """Two processes, sharded (fsdp): the second stage trains in the process group the first
    one used (it is ended once, after the last stage)."""
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "asft.cli", "train", "--config", str(RECIPE), "--set", "logging.progress=false",
         "--set", "distributed.strategy=fsdp", "-o", str(out)],
        env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((out / "summary.json").read_text())["steps"] == 8
    assert [r["stage"] for r in _records(out / "metrics.jsonl") if "loss" in r] == ["sft"] * 2 + ["align"] * 2
