"""``asft eval`` end to end on a tiny random model: files, keys, checker, splits."""

from __future__ import annotations

import json

import pytest

from asft.cli import main
from asft.commands.eval import default_split
from asft.evaluate.heldout import EvalConfig, checker_for, response_text

EVAL_KEYS = {"bleu4", "rougeL", "exact_match", "pref_acc_mean", "pref_acc_sum", "logps_chosen",
             "logps_rejected", "margin", "num_samples", "pairs"}


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ASFT_CACHE", str(tmp_path / "cache"))


def test_eval_builtin_task(tmp_path, capsys):
    out = tmp_path / "ev"
    assert main(["eval", "--model", "tiny-llama", "--data", "builtin:arithmetic", "--output",
                 str(out), "--num-samples", "6", "--max-new-tokens", "4", "--batch-size", "4"]) == 0
    results = json.loads((out / "eval.json").read_text())
    assert set(results) >= EVAL_KEYS
    assert results["num_samples"] == results["pairs"] == 6
    assert results["config"]["split"] == "test"
    assert 0 <= results["exact_match"] <= 100 and 0 <= results["pref_acc_mean"] <= 100
    assert results["logps_chosen"] < 0 and results["logps_rejected"] < 0
    assert results["margin"] == pytest.approx(results["logps_chosen"] - results["logps_rejected"])
    gens = [json.loads(x) for x in (out / "generations.jsonl").read_text().splitlines()]
    assert len(gens) == 6 and all("correct" in g for g in gens)
    assert gens[0]["chosen"].startswith("Answer:")
    assert "BLEU-4" in capsys.readouterr().out


def test_eval_jsonl_file_without_checker(tmp_path):
    data = tmp_path / "pairs.jsonl"
    rows = [{"prompt": f"Say {w}.", "chosen": f"{w}!", "rejected": "No."} for w in ("hi", "yes", "ok")]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "ev"
    assert main(["eval", "--model", "tiny-llama", "--data", str(data), "--output", str(out),
                 "--max-new-tokens", "3", "--temperature", "0.7", "--no-pairwise"]) == 0
    results = json.loads((out / "eval.json").read_text())
    assert results["exact_match"] is None and "pref_acc_mean" not in results
    assert results["config"]["split"] is None and results["config"]["temperature"] == 0.7
    assert results["num_samples"] == 3


def test_eval_reports_bad_data(tmp_path, capsys):
    assert main(["eval", "--model", "tiny-llama", "--data", str(tmp_path / "missing.jsonl"),
                 "--output", str(tmp_path / "o")]) == 1
    assert "missing.jsonl" in capsys.readouterr().err


def test_helpers():
    assert default_split("builtin:mixed") == "test" and default_split("data.jsonl") is None
    assert checker_for("builtin:units") is not None and checker_for("x.jsonl") is None
    assert response_text([{"role": "assistant", "content": "a"},
                          {"role": "assistant", "content": "b"}]) == "a\n\nb"
    with pytest.raises(ValueError, match="max_prompt_length < max_length"):
        EvalConfig(max_length=8, max_prompt_length=8)
    with pytest.raises(ValueError, match="nothing to evaluate"):
        EvalConfig(generate=False, pairwise=False)
