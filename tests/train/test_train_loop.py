"""The training loop on the tiny model: every loss trains, references are built only when needed
and are exact, LoRA saves a merged model, a non-finite loss stops the run cleanly."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from asft.config import load_config
from asft.losses import LOSSES
from asft.train import NonFiniteLossError, faults, reference, train
from asft.train import checkpoint as ckpt


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_every_registered_loss_trains_three_steps(loss, tiny_train_overrides, tiny_model_dir):
    # MRPO needs a second reference: the policy's own start (the same tiny model) serves
    more = ["reference.models=[tiny-llama]"] if LOSSES[loss].multi_reference else []
    cfg = load_config(None, [*tiny_train_overrides, f"loss.name={loss}", "training.max_steps=3",
                             "data.probe_size=0", "optim.lr=1e-3", *more])
    result = train(cfg)
    records = [r for r in _records(result.output_dir) if "loss" in r]
    assert [r["step"] for r in records] == [1, 2, 3]
    for r in records:
        assert math.isfinite(r["loss"]) and math.isfinite(r["grad_norm"]) and r["grad_norm"] > 0
        assert {"logps/chosen", "logps/rejected", "lr", "throughput/tokens_per_s"} <= set(r)
        assert r["logps/chosen"] < 0 and r["logps/rejected"] < 0
    before, after = _weights(tiny_model_dir), _weights(result.model_dir)
    assert before.keys() == after.keys()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert len(changed) == len(before), f"unchanged: {sorted(set(before) - set(changed))[:3]}"


def test_reference_free_loss_never_builds_a_reference(monkeypatch, tiny_train_overrides):
    calls = []

    def forbidden(*args, **kwargs):
        calls.append(args)
        raise AssertionError("a reference model was loaded for a reference-free loss")

    monkeypatch.setattr(reference, "load_reference_model", forbidden)
    for loss in ("asft", "orpo"):
        assert not LOSSES[loss].needs_reference
        cfg = load_config(None, [*tiny_train_overrides, f"loss.name={loss}", "reference.strategy=copy",
                                 "training.max_steps=1", "data.probe_size=0"])
        train(cfg, overwrite=True)
    assert calls == []
    assert not (Path(cfg.output_dir) / reference.CACHE_FILE).exists()


@pytest.mark.parametrize("strategy", ["copy", "cache", "adapter"])
def test_reference_strategies_start_at_log2_for_dpo(strategy, monkeypatch, tiny_train_overrides):
    """At step 1 the policy equals the reference, so every DPO log-ratio is 0 and the loss is
    exactly -log sigma(0) = log 2, whichever way the reference log-probs are obtained."""
    loads = []
    real = reference.load_reference_model
    monkeypatch.setattr(reference, "load_reference_model",
                        lambda *a, **k: loads.append(a) or real(*a, **k))
    extra = ["lora.enabled=true", "lora.r=4", "optim.lr=1e-2"] if strategy == "adapter" else []
    cfg = load_config(None, [*tiny_train_overrides, "loss.name=dpo", f"reference.strategy={strategy}",
                             "training.max_steps=2", "data.probe_size=0", *extra])
    result = train(cfg)
    first, second = [r for r in _records(result.output_dir) if "loss" in r]
    assert first["loss"] == pytest.approx(math.log(2), abs=1e-5)
    assert first["rewards/margin"] == pytest.approx(0.0, abs=1e-5)
    assert second["loss"] != pytest.approx(math.log(2), abs=1e-7)  # the policy moved
    assert len(loads) == (1 if strategy == "copy" else 0)
    assert (result.output_dir / reference.CACHE_FILE).exists() == (strategy == "cache")


def test_lora_run_saves_a_merged_model_that_loads(tiny_train_overrides, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    cfg = load_config(None, [*tiny_train_overrides, "lora.enabled=true", "lora.r=4",
                             "lora.target_modules=[q_proj, v_proj]", "optim.lr=1e-2",
                             "model.gradient_checkpointing=true", "logging.tensorboard=true",
                             "training.max_steps=2", "data.probe_size=0"])
    result = train(cfg)
    assert list((result.output_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert json.loads((result.model_dir / "config.json").read_text())["use_cache"] is True
    files = sorted(p.name for p in result.model_dir.iterdir())
    assert "model.safetensors" in files and "adapter_config.json" not in files
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pth", ".pkl"))]
    model = AutoModelForCausalLM.from_pretrained(result.model_dir)
    state = model.state_dict()
    assert not [k for k in state if "lora" in k]
    base = _weights(tiny_model_dir)
    changed = {k for k in base if not torch.equal(state[k], base[k])}
    assert changed and all(("q_proj" in k or "v_proj" in k) for k in changed)


@pytest.mark.fault
def test_non_finite_loss_stops_naming_the_step(monkeypatch, tiny_train_overrides):
    monkeypatch.setenv(faults.ENV, "train.loss@3=nan")
    faults.reset()
    cfg = load_config(None, [*tiny_train_overrides, "checkpoint.every=1", "data.probe_size=0"])
    with pytest.raises(NonFiniteLossError, match="non-finite loss at step 3") as info:
        train(cfg)
    faults.reset()
    out = Path(cfg.output_dir)
    assert "step-0000002" in str(info.value) and "intact" in str(info.value)
    names = [p.name for p in ckpt.candidates(out / ckpt.DIRNAME)]
    assert names == ["step-0000002", "step-0000001"]
    assert all(ckpt.verify(p) is None for p in ckpt.candidates(out / ckpt.DIRNAME))
    assert not (out / "model").exists()
    assert max(r["step"] for r in _records(out)) == 2


def test_wandb_run_is_logged_and_resumed_with_the_same_id(monkeypatch, tiny_train_overrides):
    """W&B is optional; a stand-in module records what the tracker sends."""
    import importlib.machinery
    import sys
    import types

    runs = []

    class Run:
        def __init__(self, **kwargs):
            self.kwargs, self.logged, self.finished = kwargs, [], False
            self.id = kwargs["id"] or "run-1"

        def log(self, metrics, step):
            self.logged.append(step)

        def finish(self):
            self.finished = True

    fake = types.ModuleType("wandb")
    fake.__spec__ = importlib.machinery.ModuleSpec("wandb", None)
    fake.init = lambda **kwargs: runs.append(Run(**kwargs)) or runs[-1]
    monkeypatch.setitem(sys.modules, "wandb", fake)
    cfg = load_config(None, [*tiny_train_overrides, "logging.wandb_project=asft-tests",
                             "checkpoint.every=2", "training.max_steps=2"])
    train(cfg)
    first = runs[0]
    assert first.kwargs["project"] == "asft-tests" and first.kwargs["id"] is None
    assert first.logged == [0, 1, 2] and first.finished
    assert first.kwargs["config"]["loss"]["name"] == "asft"
    cfg = load_config(None, [*tiny_train_overrides, "logging.wandb_project=asft-tests",
                             "checkpoint.every=2", "training.max_steps=4"])
    train(cfg, resume=True)
    assert runs[1].kwargs["id"] == "run-1" and runs[1].logged == [3, 4]


def test_packing_and_layout_change_speed_not_the_training(tiny_train_overrides, tmp_path, monkeypatch):
    """The four batch layouts (shared or plain, packed or not) train to the same weights: packing
    and prompt sharing only change which positions are computed, never the loss."""
    import asft.data.collate as collate_mod

    real, rows = collate_mod.collate, {}

    def counting(examples, pad_id, layout="shared", pack=False, **kw):
        batch = real(examples, pad_id, layout, pack=pack, **kw)
        rows.setdefault((layout, pack), []).append(batch["input_ids"].shape[0])
        return batch

    monkeypatch.setattr(collate_mod, "collate", counting)
    finals, losses = {}, {}
    for layout in ("shared", "plain"):
        for pack in ("true", "false"):
            cfg = load_config(None, [*tiny_train_overrides, f"data.layout={layout}", f"data.pack={pack}",
                                     "training.batch_size=4", "data.probe_size=0", "optim.lr=1e-3",
                                     f"output_dir={tmp_path / f'{layout}-{pack}'}"])
            result = train(cfg)
            finals[layout, pack] = _weights(result.model_dir)
            losses[layout, pack] = [r["loss"] for r in _records(result.output_dir) if "loss" in r]
    # packing really merged pairs (4 pairs per batch: 4 rows shared, 8 plain when not packed)
    assert max(rows["shared", False]) == 4 and max(rows["plain", False]) == 8
    assert min(rows["shared", True]) < 4 and min(rows["plain", True]) < 8
    base = finals["plain", "false"]
    for key, weights in finals.items():
        assert losses[key] == pytest.approx(losses["plain", "false"], rel=1e-5, abs=1e-6), key
        worst = max((weights[k] - base[k]).abs().max().item() for k in base)
        assert worst < 1e-5, f"{key}: weights differ by {worst:.2e}"


def test_cache_scores_only_the_pairs_the_run_reads(monkeypatch, tiny_train_overrides):
    """A 2-step DPO run scores 2 x batch pairs, not the whole file (NaN marks the rest), and
    its timing lands in summary.json."""
    scored: list[int] = []
    real = reference.score_shards
    monkeypatch.setattr(reference, "score_shards",
                        lambda *a, **k: scored.append(len(k["subset"])) or real(*a, **k))
    result = train(load_config(None, [*tiny_train_overrides, "loss.name=dpo", "reference.strategy=cache",
                                      "data.probe_size=0", "training.batch_size=2",
                                      "training.order=sequential", "training.max_steps=2"]))
    table = load_file(str(result.output_dir / reference.CACHE_FILE))["logps"]
    done = ~torch.isnan(table[:, 0])
    assert done[:4].all() and not done[4:].any() and len(table) > 4  # sequential: pairs 0-3
    assert scored == [4]
    timing = json.loads((result.output_dir / "summary.json").read_text())["timing"]
    assert {"data_s", "model_s", "reference_s", "setup_s", "first_step_at", "train_s"} <= set(timing)
    assert all(r["time"] >= timing["first_step_at"] for r in _records(result.output_dir) if r["step"])


def test_cache_is_completed_not_rebuilt(tmp_path):
    """A cache that lacks pairs a longer run needs gets only those scored; the rest are read."""
    scorer, path = _FakeScorer(), tmp_path / reference.CACHE_FILE
    cfg = load_config(None, ["logging.progress=false"])
    first = reference.build_cache(cfg, _Acc(), _examples(8), lambda ex: ex, path, scorer,
                                  lambda m: None, needed=[0, 1, 2, 3])
    assert scorer.seen == 4 and torch.isnan(first.table[4:]).all()
    again = reference.build_cache(cfg, _Acc(), _examples(8), lambda ex: ex, path, scorer,
                                  lambda m: None, needed=range(6))
    assert scorer.seen == 6 and torch.isnan(again.table[6:]).all()
    assert again.table[:6, 0].tolist() == [-1.0, -2.0, -3.0, -4.0, -5.0, -6.0]
    with pytest.raises(RuntimeError, match=r"\[7\] were not precomputed"):
        again({"input_ids": torch.zeros(1)}, [5, 7])


class _Acc:
    """The accelerate surface build_cache uses, for one process."""

    num_processes, process_index, is_main_process = 1, 0, True
    device = torch.device("cpu")

    def wait_for_everyone(self):
        pass


class _Ex:
    def __init__(self, i: int):
        self.prompt_ids, self.chosen_ids, self.rejected_ids = [1] * (i + 1), [2], [3, 3]


def _examples(n: int) -> list[_Ex]:
    return [_Ex(i) for i in range(n)]


class _FakeScorer:
    """Scores a 'batch' (a list of examples) as -len(prompt) for chosen, -2 for rejected."""

    seen = 0

    def __call__(self, batch):
        self.seen += len(batch)
        c = torch.tensor([-float(len(ex.prompt_ids)) for ex in batch])
        return torch.cat([c, torch.full_like(c, -2.0)]), torch.ones(2 * len(batch))
