"""The pieces under the training loop: data order, schedule, metric window and files, output
folder rules, the CLI summary."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from asft.commands.train import overrides_from_args, summary
from asft.config import Config, load_config
from asft.errors import AsftError
from asft.train import TrainResult
from asft.train.optim import build_optimizer, lr_lambda
from asft.train.rundir import config_differences, plan
from asft.train.sampling import DataOrder, balanced_shard, epoch_permutation
from asft.train.tracking import Window, read_metrics, truncate_metrics


def test_sequential_order_reads_the_file_in_order_every_epoch():
    order = DataOrder(num_pairs=10, batch_size=2, num_processes=1, grad_accum=2, seed=3, shuffle=False)
    assert [order.global_indices(s) for s in range(3)] == [[0, 1, 2, 3], [4, 5, 6, 7], [0, 1, 2, 3]]
    assert order.indices_of_steps(1, 2) == [4, 5, 6, 7]
    shuffled = DataOrder(num_pairs=10, batch_size=2, num_processes=1, grad_accum=2, seed=3)
    assert shuffled.indices_of_steps(0, 2) == sorted(shuffled.global_indices(0) + shuffled.global_indices(1))
    assert shuffled.indices_of_steps(0, 10**9) == list(range(10))  # bounded by the data


def test_data_order_is_a_function_of_seed_and_epoch():
    order = DataOrder(num_pairs=10, batch_size=2, num_processes=1, grad_accum=2, seed=3)
    assert order.global_batch == 4 and order.steps_per_epoch == 2
    epoch0 = order.global_indices(0) + order.global_indices(1)
    assert len(set(epoch0)) == 8  # no repeats within an epoch; the last 2 pairs are dropped
    assert order.global_indices(2) != order.global_indices(0)  # a new permutation per epoch
    assert order.global_indices(2) == epoch_permutation(3, 1, 10)[:4].tolist()
    assert DataOrder(10, 2, 1, 2, seed=3).global_indices(1) == order.global_indices(1)


def test_one_process_with_accumulation_sees_the_micro_batches_of_two_processes():
    one = DataOrder(num_pairs=50, batch_size=3, num_processes=1, grad_accum=2, seed=0)
    two = DataOrder(num_pairs=50, batch_size=3, num_processes=2, grad_accum=1, seed=0)
    for step in range(one.steps_per_epoch + 2):
        assert [one.micro_indices(step, m, 0) for m in range(2)] == [
            two.micro_indices(step, 0, r) for r in range(2)]


def test_data_order_needs_one_global_batch():
    with pytest.raises(ValueError, match="fewer than one global batch of 8"):
        DataOrder(num_pairs=7, batch_size=2, num_processes=2, grad_accum=2, seed=0)


@pytest.mark.parametrize("n,world", [(0, 2), (5, 1), (5, 2), (7, 3), (2, 4)])
def test_balanced_shard_gives_equal_counts_and_covers_each_item_once(n, world):
    shards = [balanced_shard(n, r, world) for r in range(world)]
    assert len({len(s) for s in shards}) == 1
    counted = sorted(i for s in shards for i, counts in s if counts)
    assert counted == list(range(n))


def test_schedules():
    lin, cos, const = (lr_lambda(s, warmup=2, total=10) for s in ("linear", "cosine", "constant"))
    assert [round(lin(s), 4) for s in (0, 1, 2, 6, 10)] == [0.3333, 0.6667, 1.0, 0.5, 0.0]
    assert cos(2) == 1.0 and cos(6) == pytest.approx(0.5) and cos(10) == pytest.approx(0.0)
    assert const(1) == pytest.approx(2 / 3) and const(9) == 1.0


def test_optimizer_skips_decay_on_vectors_and_frozen_weights():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 2))
    model[2].requires_grad_(False)
    opt = build_optimizer(model, load_config(None, ["optim.weight_decay=0.1"]))
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and [p.shape for p in decay["params"]] == [(4, 4)]
    assert no_decay["weight_decay"] == 0.0 and len(no_decay["params"]) == 3


def test_window_means_over_pairs_and_steps():
    class One:
        num_processes = 1

    w = Window(torch.device("cpu"))
    metrics = {"pairs/scorable": torch.ones(2), "logps/chosen": torch.tensor([-1.0, -2.0]),
               "logps/rejected": torch.tensor([-3.0, -1.0]), "terms/sft": torch.tensor([1.0, 2.0])}
    w.add_micro(torch.tensor([0.5, 1.5]), metrics, num_tokens=30)
    w.add_micro(torch.tensor([1.0, 1.0]), metrics, num_tokens=30)
    w.add_step(grad_norm=2.0, lr=1e-3, seconds=1.0)
    w.add_step(grad_norm=4.0, lr=3e-3, seconds=1.0)
    out = w.flush(One())
    assert out["loss"] == 1.0 and out["logps/chosen"] == -1.5 and out["logps/rejected"] == -2.0
    assert out["logps/margin"] == 0.5 and out["logps/accuracy"] == 0.5
    assert out["grad_norm"] == 3.0 and out["lr"] == pytest.approx(2e-3)
    assert out["throughput/tokens_per_s"] == 30.0 and out["throughput/pairs_per_s"] == 2.0
    assert w.sums == {} and w.steps == 0


def test_metrics_file_survives_a_torn_line_and_truncates_on_resume(tmp_path: Path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"step": s, "loss": 1.0 / (s + 1)}) + "\n" for s in range(5))
                    + '{"step": 5, "lo')
    assert [r["step"] for r in read_metrics(path)] == [0, 1, 2, 3, 4]
    truncate_metrics(path, 2)
    assert [r["step"] for r in read_metrics(path)] == [0, 1, 2]


def test_output_folder_rules(tmp_path: Path):
    cfg = Config(output_dir=str(tmp_path))
    assert plan(cfg, tmp_path, resume=False, overwrite=False) == (None, [])
    (tmp_path / "metrics.jsonl").write_text("")
    with pytest.raises(AsftError, match="already holds a run"):
        plan(cfg, tmp_path, resume=False, overwrite=False)
    with pytest.raises(AsftError, match="contradict"):
        plan(cfg, tmp_path, resume=True, overwrite=True)
    _, notes = plan(cfg, tmp_path, resume=True, overwrite=False)
    assert "starting from step 0" in notes[0]
    (tmp_path / "summary.json").write_text("{}")
    with pytest.raises(AsftError, match="finished run without checkpoints"):
        plan(cfg, tmp_path, resume=True, overwrite=False)
    _, notes = plan(cfg, tmp_path, resume=False, overwrite=True)
    assert "removed" in notes[0] and not (tmp_path / "metrics.jsonl").exists()


def test_resumable_changes_are_limited():
    old = load_config(None, ["output_dir=a"])
    new = load_config(None, ["output_dir=b", "training.max_steps=500", "logging.every=1",
                             "checkpoint.keep_last=9", "optim.lr=1e-6", "loss.hparams.lam=0.5",
                             "hub.repo_id=me/model"])  # publishing is not training
    diffs = config_differences(old, new)
    assert [d.split(":")[0] for d in diffs] == ["loss.hparams", "optim.lr"]


def test_cli_flags_override_set_and_summary_reports_changes(tmp_path: Path):
    from asft.cli import build_parser

    args = build_parser().parse_args(["train", "--set", "loss.name=dpo", "--loss", "orpo",
                                      "--max-steps", "3", "-o", "x"])
    cfg = load_config(None, overrides_from_args(args))
    assert cfg.loss.name == "orpo" and cfg.training.max_steps == 3 and cfg.output_dir == "x"
    result = TrainResult(output_dir=tmp_path, model_dir=tmp_path / "model",
                         metrics_path=tmp_path / "metrics.jsonl", config_path=tmp_path / "c.yaml",
                         steps=3, pairs_seen=12, loss_first=2.0, loss_last=1.5,
                         probe_first={"probe/logps/chosen": -2.0, "probe/logps/rejected": -2.5},
                         probe_last={"probe/logps/chosen": -1.5, "probe/logps/rejected": -2.75})
    text = summary(result)
    assert "2.0000 -> 1.5000" in text and "+0.5000 nats/token" in text and "-0.2500" in text
    assert str(tmp_path / "model") in text
    assert not math.isnan(result.to_dict()["loss_last"])
