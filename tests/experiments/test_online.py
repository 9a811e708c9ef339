"""Online rounds (``online:``): RSO selection exact on hand-made scores, the config's checks,
and tiny-llama runs: a run killed (SIGKILL) in a round's training or in its sampling and then
resumed equals the uninterrupted run; rounds without pairs; errors in one line."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from asft.config import ConfigError, load_config
from asft.errors import AsftError
from asft.experiments.online import train_online
from asft.experiments.pairs import scorers
from asft.experiments.pairs.items import Score
from asft.experiments.pairs.selection import rso_rng, rso_select
from tiny_reward import save_reward_model

# -- RSO selection ---------------------------------------------------------------------------


class Draws(random.Random):
    """A random stream that returns the given uniforms in order and leaves the candidates in
    sample order."""

    def __init__(self, draws):
        super().__init__(0)
        self.draws = list(draws)

    def random(self):
        return self.draws.pop(0)

    def shuffle(self, x):
        pass


def test_rso_accepts_with_probability_exp_of_the_gap_to_the_best():
    scores = [1.0, 0.0, 0.5, None]
    # round 1: M = 1; accept p = 1, e^-2 = 0.135, e^-1 = 0.368 at beta 0.5
    assert rso_select(scores, 2, 0.5, Draws([0.99, 0.2, 0.3])) == [0, 2]
    # 0.2 > e^-2 rejects sample 1, 0.4 > e^-1 rejects sample 2; round 2: M = 0.5, so sample 1
    # has p = e^-1: 0.9 rejects it, 0.2 would keep it; sample 2 is accepted outright (p = 1)
    assert rso_select(scores, 2, 0.5, Draws([0.0, 0.2, 0.4, 0.9, 0.5])) == [0, 2]
    assert rso_select(scores, 2, 0.5, Draws([0.0, 0.2, 0.4, 0.2])) == [0, 1]
    # the failure (None) is never a candidate, so asking for 4 keeps the 3 scored
    assert rso_select(scores, 4, 0.5, Draws([0.0] * 10)) == [0, 1, 2]


def test_rso_small_beta_keeps_the_best_and_large_beta_is_near_uniform():
    scores = [0.1 * i for i in range(8)]
    rng = random.Random(1)
    assert all(rso_select(scores, 2, 1e-4, rng) == [6, 7] for _ in range(50))
    kept = [i for _ in range(4000) for i in rso_select(scores, 2, 1e4, rng)]
    shares = [kept.count(i) / len(kept) for i in range(8)]
    assert max(shares) - min(shares) < 0.05  # every sample about 1/8


def test_rso_is_seeded_per_prompt_and_refuses_bad_settings():
    scores = [0.3, 0.9, 0.1, 0.5, 0.7]
    assert rso_select(scores, 3, 0.2, rso_rng(0, 7)) == rso_select(scores, 3, 0.2, rso_rng(0, 7))
    with pytest.raises(ValueError):
        rso_select(scores, 0, 0.2, rso_rng(0, 7))
    with pytest.raises(ValueError):
        rso_select(scores, 2, 0.0, rso_rng(0, 7))


# -- the config ------------------------------------------------------------------------------


@pytest.mark.parametrize("sets, message", [
    (["online.rounds=2"], "online.prompts: is needed when rounds > 0"),
    (["online.rounds=1", "online.prompts=builtin:arithmetic", "online.scorer=oracle"],
     "must be builtin, judge or reward-model:NAME"),
    (["online.rounds=1", "online.prompts=builtin:arithmetic", "online.selection=rso",
      "online.rso_accept=9"], "online.rso_accept=9: must be in [2, samples]"),
    (["online.rounds=1", "online.prompts=builtin:arithmetic", "stages=[{name: a}]"],
     "online rounds and stages do not combine"),
    (["online.rounds=1", "online.prompts=builtin:arithmetic", "online.max_pairs_per_prompt=2"],
     "online.max_pairs_per_prompt=2: applies to pairing: all"),
])
def test_config_errors_name_the_field(sets, message):
    with pytest.raises(ConfigError, match=None) as err:
        load_config(None, sets)
    assert message in str(err.value)


# -- runs ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reward(tmp_path_factory, tokenizer_dir):
    return save_reward_model(tmp_path_factory.mktemp("rm"), tokenizer_dir)


def settings(reward: str, *extra: str) -> list[str]:
    return ["model.name=tiny-llama", "model.dtype=fp32", "training.precision=fp32",
            "loss.name=dpo", "online.rounds=2", "online.prompts=builtin:arithmetic",
            "online.num_prompts=3", f"online.scorer=reward-model:{reward}",
            "online.steps_per_round=3", "online.max_new_tokens=8", "online.selection=rso",
            "online.samples=3", "training.batch_size=2", "data.probe_size=1", "logging.every=1",
            "logging.progress=false", "logging.tensorboard=false", "checkpoint.every=1", *extra]


def cli(out: Path, sets: list[str], *flags: str, faults: str | None = None):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("ASFT_FAULTS", None)
    if faults:
        env["ASFT_FAULTS"] = faults
    args = [x for s in sets for x in ("--set", s)]
    return subprocess.run([sys.executable, "-m", "asft.cli", "train", *args, "-o", str(out), *flags],
                          env=env, capture_output=True, text=True, timeout=300)


def records(out: Path) -> list[dict]:
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "time" and not k.startswith("throughput/")}
            for r in rows]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, reward):
    """The run the killed ones must equal, started the same way (one thread, a subprocess)."""
    out = tmp_path_factory.mktemp("online") / "run"
    proc = cli(out, settings(reward))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out, proc


def test_rounds_train_from_the_previous_round_and_log_their_samples(uninterrupted):
    out, proc = uninterrupted
    assert "asft train: 6 steps" in proc.stdout and (out / "model" / "model.safetensors").is_file()
    assert "round 2/2: sampling 3 answers per prompt" in proc.stderr
    rows = records(out)
    sampled = [r for r in rows if "online/pairs" in r]
    assert [(r["round"], r["step"]) for r in sampled] == [(1, 0), (2, 3)]
    assert all(r["online/samples"] == 9 and r["online/pairs"] >= 1 for r in sampled)
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3, 4, 5, 6]
    second = json.loads((out / "rounds" / "02" / "round.json").read_text())
    assert second["model"] == str(out / "rounds" / "01" / "run" / "model")
    pairs = [json.loads(x) for x in (out / "rounds" / "02" / "pairs.jsonl").read_text().splitlines()]
    assert all(p["score_chosen"] > p["score_rejected"] for p in pairs)
    final = load_file(out / "model" / "model.safetensors")
    last = load_file(out / "rounds" / "02" / "run" / "model" / "model.safetensors")
    assert all((final[k] == last[k]).all() for k in final)


@pytest.mark.slow
@pytest.mark.fault
@pytest.mark.parametrize("fault", ["train.step@5=kill", "pairs.sampled@5=kill"],
                         ids=["in-round-2-training", "in-round-2-sampling"])
def test_sigkill_mid_round_then_resume_equals_uninterrupted(uninterrupted, reward, tmp_path, fault):
    """Round 1 has 3 steps and 3 prompts: step 5 is round 2's second step (after its first
    checkpoint), the 5th prompt sampled is round 2's second."""
    out = tmp_path / "run"
    killed = cli(out, settings(reward), faults=fault)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not (out / "model").exists()
    resumed = cli(out, settings(reward), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    base, _ = uninterrupted
    assert records(out) == records(base)
    a, b = load_file(out / "model" / "model.safetensors"), load_file(base / "model" / "model.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    again = cli(out, settings(reward))
    assert again.returncode == 1 and "holds a run: continue it with --resume" in again.stderr


class Tied:
    def __init__(self, config):
        pass

    def score(self, item, responses):
        return [Score(1.0) for _ in responses]


def test_rounds_without_pairs_train_nothing_and_say_so(tmp_path, reward, monkeypatch, capsys):
    monkeypatch.setattr(scorers, "open_scorer", Tied)
    cfg = load_config(None, [*settings(reward, "online.selection=all"), f"output_dir={tmp_path / 'run'}"])
    with pytest.raises(AsftError, match="no round made a pair"):
        train_online(cfg)
    assert "round 1: no pair formed (3 prompts tied); nothing trained" in capsys.readouterr().err
    rows = records(tmp_path / "run")
    assert [(r["round"], r["online/pairs"], r["online/skipped_tie"]) for r in rows] == [(1, 0, 3), (2, 0, 3)]


def test_errors_are_one_line(tmp_path, reward, monkeypatch):
    from asft.evaluate.judge import JudgeError
    from asft.experiments.pairs import run as pairs_run

    cfg = load_config(None, [*settings(reward), f"output_dir={tmp_path / 'run'}"])
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(AsftError, match="online rounds run in one process"):
        train_online(cfg)
    monkeypatch.delenv("WORLD_SIZE")

    def down(config, show_progress=True):
        raise JudgeError("judge at http://127.0.0.1:9 failed after 6 retries:\nconnection refused")

    monkeypatch.setattr(pairs_run, "run_pairs", down)
    with pytest.raises(AsftError) as err:
        train_online(cfg)
    assert "\n" not in str(err.value) and str(err.value).startswith("online round 1: judge at")
    assert "rerun with --resume" in str(err.value)


def test_online_smoke_recipe_makes_pairs_and_a_model(tmp_path):
    """The contract: ``asft train --config recipes/online-smoke.yaml -o DIR`` leaves DIR/model,
    trained on pairs the rounds made (tiny-llama's random text earns partial credit)."""
    recipe = Path(__file__).resolve().parents[2] / "recipes" / "online-smoke.yaml"
    cfg = load_config(recipe, [f"output_dir={tmp_path / 'run'}", "logging.progress=false",
                               "logging.tensorboard=false"])
    result = train_online(cfg)
    assert (result.model_dir / "model.safetensors").is_file() and result.steps == 16
    assert all(r["online/pairs"] >= 1 for r in records(tmp_path / "run") if "online/pairs" in r)
