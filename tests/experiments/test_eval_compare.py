"""The comparison report (hand-made numbers) and ``asft compare`` on a tiny model: each method
trained through the trainer's API in its own process, evaluated, reported; reruns resume."""

from __future__ import annotations

import json

import pytest

from asft.cli import main
from asft.experiments.report import MethodResult, deltas, render_report


def test_report_rows_deltas_and_observations():
    base = MethodResult("base", {"logps_chosen": -2.0, "logps_rejected": -2.5, "bleu4": 1.0,
                                 "rougeL": 10.0, "exact_match": 5.0, "pref_acc_mean": 50.0,
                                 "pref_acc_sum": 40.0}, eval_s=12)
    dpo = MethodResult("dpo", {"logps_chosen": -2.25, "logps_rejected": -3.0, "pref_acc_mean": 70.0,
                               "exact_match": 4.0}, train_s=125, eval_s=10,
                       peak_memory_bytes=3 * 2**30)
    asft = MethodResult("asft:beta=0.1,sft_weight=0", {"logps_chosen": -1.5, "logps_rejected": -2.75,
                                                       "pref_acc_mean": 80.0, "exact_match": 9.0},
                        train_s=59)
    broken = MethodResult("orpo", error="RuntimeError: boom\ntraceback...")
    assert deltas(dpo, base) == (-0.25, -0.5)
    text = render_report([base, dpo, asft, broken], "T", {"model": "m"}, "dynamics.png", "asft compare")
    assert "| dpo | - | - | 4.0 | 70.0 / - | -0.2500 | -0.5000 | 2m05s | 10s | 3.00 GiB |" in text
    assert "| asft:beta=0.1,sft_weight=0 | - | - | 9.0 | 80.0 / - | +0.5000 | -0.2500 | 59s |" in text
    assert "| orpo | failed: RuntimeError: boom |" in text
    assert "rose under asft:beta=0.1,sft_weight=0 and fell under dpo" in text
    assert "Highest preference accuracy (mean log-prob): asft:beta=0.1,sft_weight=0 (80.0%; base 50.0%)" in text
    tie = MethodResult("sft", {"logps_chosen": -1.0, "logps_rejected": -1.0, "exact_match": 9.0})
    assert "Highest exact match: asft:beta=0.1,sft_weight=0, sft (9.0%; base 5.0%)" in render_report(
        [base, asft, tie], "T", {})
    assert "![likelihood dynamics](dynamics.png)" in text and "- model: m" in text


@pytest.mark.slow
def test_compare_tiny_end_to_end_and_resume(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ASFT_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "cmp"
    argv = ["compare", "--methods", "asft:beta=0.1,sft_weight=0", "--output", str(out),
            "--model", "tiny-llama", "--max-steps", "2",
            "--set", "logging.probe_every=1", "--set", "data.limit=40", "--set", "logging.tensorboard=false",
            "--eval-samples", "4", "--max-new-tokens", "3"]
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert [r["label"] for r in results] == ["base", "asft:beta=0.1,sft_weight=0"]
    assert all(not r["error"] for r in results)
    base, method = results
    assert base["train_s"] == 0 and method["train_s"] > 0
    assert all(r["peak_memory_bytes"] > 50 * 2**20 and r["metrics"]["pairs"] == 4 for r in results)
    run_dir = out / method["run_dir"]
    assert run_dir == out / "runs" / "asft-beta0.1-sft_weight0"
    assert (run_dir / "model" / "config.json").is_file()
    config = (run_dir / "config.yaml").read_text()
    assert "max_steps: 2" in config and "sft_weight: 0" in config
    report = (out / "report.md").read_text()
    assert "| asft:beta=0.1,sft_weight=0 |" in report and "![likelihood dynamics](dynamics.png)" in report
    assert (out / "dynamics.png").read_bytes()[:4] == b"\x89PNG"
    capsys.readouterr()

    # Same command again: nothing is retrained or re-evaluated.
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert err.count("done before") == 2 and "training" not in err
    # Other settings in the same folder are refused.
    assert main([*argv[:-2], "--max-new-tokens", "5"]) == 1
    assert "holds a comparison with other settings (max_new_tokens)" in capsys.readouterr().err


def test_training_config_reads_only_what_the_budget_uses(tmp_path):
    from asft.evaluate.methods import MethodSpec
    from asft.experiments.compare import CompareSettings, training_config

    settings = CompareSettings([MethodSpec("dpo")], tmp_path, overrides=[
        "training.max_steps=3", "training.batch_size=2", "training.grad_accum=2"])
    cfg = training_config(settings, MethodSpec("dpo", {"beta": 0.2}))
    assert cfg.data.limit == 3 * 2 * 2 + 16
    assert (cfg.loss.name, cfg.loss.hparams["beta"]) == ("dpo", 0.2)
    assert cfg.output_dir == str(tmp_path / "runs" / "dpo-beta0.2")
    settings.overrides.append("data.limit=100")
    assert training_config(settings, None).data.limit == 100


def test_compare_validates_before_running(tmp_path, capsys):
    assert main(["compare", "--methods", "asft,beta=1", "--output", str(tmp_path)]) == 1
    assert "write asft:beta=1" in capsys.readouterr().err
    assert main(["compare", "--methods", "sft", "--set", "training.max_steps=0",
                 "--output", str(tmp_path)]) == 1
    assert "max_steps" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_a_staged_method_splits_the_budget_between_its_stages(tmp_path, monkeypatch, capsys):
    """``sft>asft:...`` (two-stage beta-ASFT) is one method: its config has two stages that
    share the step budget, its run folder the stages and one model, and the report a row."""
    from asft.evaluate.methods import MethodSpec, parse_methods
    from asft.experiments.compare import CompareSettings, training_config

    (staged,) = parse_methods("sft>asft:beta=0.2,sft_weight=0", lr=True, stages=True)
    assert (staged.before, staged.name, staged.label) == (("sft",), "asft", "sft>asft:beta=0.2,sft_weight=0")
    with pytest.raises(ValueError, match="staged methods"):
        parse_methods("sft>asft")  # asft gradients has no stages
    with pytest.raises(ValueError, match="sftt"):
        parse_methods("sftt>asft", stages=True)
    settings = CompareSettings([staged], tmp_path, overrides=["training.max_steps=5"])
    cfg = training_config(settings, staged)
    assert [(s.name, s.loss, s.max_steps) for s in cfg.stages] == [("sft", "sft", 2), ("asft", "asft", 3)]
    assert cfg.stages[1].hparams == {"beta": 0.2, "sft_weight": 0.0}
    assert training_config(settings, MethodSpec("asft")).stages == []

    monkeypatch.setenv("ASFT_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "cmp"
    assert main(["compare", "--methods", "sft>asft:beta=0.2,sft_weight=0", "--output", str(out),
                 "--model", "tiny-llama", "--max-steps", "4", "--set", "data.limit=40",
                 "--set", "logging.tensorboard=false", "--eval-samples", "4",
                 "--max-new-tokens", "3", "--no-isolate"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert [r["label"] for r in results] == ["base", "sft>asft:beta=0.2,sft_weight=0"]
    assert not results[1]["error"]
    run = out / results[1]["run_dir"]
    assert sorted(p.name for p in (run / "stages").iterdir()) == ["01-sft", "02-asft"]
    assert (run / "model" / "config.json").is_file()
    assert {r["stage"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())} == {"sft", "asft"}


def test_compare_runs_the_losses_with_a_third_response(tmp_path, monkeypatch):
    """KTO and TPO are methods like the others: trained, evaluated and reported."""
    monkeypatch.setenv("ASFT_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "cmp"
    assert main(["compare", "--methods", "kto:desirable_weight=1.33; tpo:alpha=1", "--output", str(out),
                 "--model", "tiny-llama", "--max-steps", "2", "--set", "data.limit=40",
                 "--set", "logging.tensorboard=false", "--eval-samples", "4",
                 "--max-new-tokens", "3", "--no-isolate"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert [r["label"] for r in results] == ["base", "kto:desirable_weight=1.33", "tpo:alpha=1"]
    assert all(not r["error"] and r["metrics"]["pairs"] == 4 for r in results)
    report = (out / "report.md").read_text()
    assert "| kto:desirable_weight=1.33 |" in report and "| tpo:alpha=1 |" in report
