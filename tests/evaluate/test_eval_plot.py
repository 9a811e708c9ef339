"""``asft plot``: run folders in, labels from config.yaml, probe keys preferred, PNG out."""

from __future__ import annotations

import json

import pytest

from asft.cli import main
from asft.evaluate.dynamics import load_run, run_label


def _run(path, loss, hparams, records, torn=False):
    path.mkdir(parents=True)
    hp = "".join(f"    {k}: {v}\n" for k, v in hparams.items())
    (path / "config.yaml").write_text(f"seed: 1\nloss:\n  name: {loss}\n  hparams:\n{hp}")
    text = "".join(json.dumps(r) + "\n" for r in records)
    (path / "metrics.jsonl").write_text(text + ('{"step": 9, "lo' if torn else ""))
    return path


def _records(chosen, rejected, probe=True):
    out = []
    for step, (c, r) in enumerate(zip(chosen, rejected)):
        out.append({"step": step * 5, "loss": 1.0, "logps/chosen": c - 1, "logps/rejected": r - 1})
        if probe:
            out.append({"step": step * 5, "probe/logps/chosen": c, "probe/logps/rejected": r})
    return out


def test_labels_from_config(tmp_path):
    a = _run(tmp_path / "a", "asft", {"lam": 1.0, "beta": 0.1, "sft_weight": 0.0}, _records([-2], [-2]))
    assert run_label(a) == "asft:beta=0.1,sft_weight=0"
    b = _run(tmp_path / "b", "dpo", {"beta": 0.1}, _records([-2], [-2]))
    assert run_label(b) == "dpo"
    (tmp_path / "c").mkdir()
    assert run_label(tmp_path / "c") == "c"


def test_probe_keys_preferred_and_torn_line_skipped(tmp_path):
    d = _run(tmp_path / "r", "asft", {}, _records([-2.0, -1.5, -1.0], [-2.0, -2.5, -3.0]), torn=True)
    curves = load_run(d)
    assert curves.source == "probe"
    assert curves.series["chosen"] == ([0, 5, 10], [-2.0, -1.5, -1.0])
    e = _run(tmp_path / "t", "sft", {}, _records([-2.0, -1.0], [-2.0, -1.5], probe=False))
    curves = load_run(e)
    assert curves.source == "train"
    assert curves.series["rejected"] == ([0, 5], [-3.0, -2.5])


def test_plot_command(tmp_path, capsys):
    a = _run(tmp_path / "asft-run", "asft", {}, _records([-2.0, -1.5, -1.0], [-2.0, -2.5, -3.0]))
    b = _run(tmp_path / "dpo-run", "dpo", {}, _records([-2.0, -2.2, -2.6], [-2.0, -2.9, -3.9]))
    c = _run(tmp_path / "dpo-run2", "dpo", {}, _records([-2.0, -2.1], [-2.0, -2.4]))
    out = tmp_path / "fig" / "dyn.png"
    assert main(["plot", str(a), str(b), str(c), "--output", str(out)]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"
    text = capsys.readouterr().out
    assert "asft: probe keys, steps 0-10, chosen -2.000 -> -1.000" in text
    assert "dpo (dpo-run2)" in text


@pytest.mark.parametrize(("setup", "message"), [("missing", "no metrics.jsonl"), ("empty", "no records with")])
def test_plot_command_errors(tmp_path, capsys, setup, message):
    d = tmp_path / "r"
    d.mkdir()
    if setup == "empty":
        (d / "metrics.jsonl").write_text('{"step": 0, "loss": 1}\n')
    assert main(["plot", str(d), "--output", str(tmp_path / "x.png")]) == 1
    assert message in capsys.readouterr().err
