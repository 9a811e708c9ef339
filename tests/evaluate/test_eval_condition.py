"""``asft eval --condition-score S``: every held-out prompt is conditioned on S exactly as
``asft data relabel`` conditions training pairs (arXiv 2410.08067), for generation and for
log-prob scoring alike."""

from __future__ import annotations

import json

import pytest

from asft.cli import main
from asft.data import PreferencePair
from asft.data.condition import DEFAULT_TEMPLATE, Condition


def test_condition_changes_the_prompt_exactly_as_the_template_says():
    pair = PreferencePair([{"role": "user", "content": "Q?"}],
                          [{"role": "assistant", "content": "A"}],
                          [{"role": "assistant", "content": "B"}], "f:1")
    got = Condition(10).pair(pair)
    assert got.prompt == [{"role": "system",
                           "content": DEFAULT_TEMPLATE.format(score="10", max="10")},
                          {"role": "user", "content": "Q?"}]
    assert (got.chosen, got.rejected, got.origin) == (pair.chosen, pair.rejected, "f:1")
    assert pair.prompt == [{"role": "user", "content": "Q?"}]
    with_system = PreferencePair([{"role": "system", "content": "Be brief."}, *pair.prompt],
                                 pair.chosen, pair.rejected, "f:2")
    assert Condition(4.5, "Aim for {score}/{max}.", 5).pair(with_system).prompt[0] == {
        "role": "system", "content": "Be brief.\n\nAim for 4.5/5."}


def test_eval_generates_and_scores_under_the_condition(tmp_path):
    data = tmp_path / "pairs.jsonl"
    rows = [{"prompt": f"Say {w}.", "chosen": f"{w}!", "rejected": "No."} for w in ("hi", "yes")]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "ev"
    assert main(["eval", "--model", "tiny-llama", "--data", str(data), "--output", str(out),
                 "--max-new-tokens", "2", "--condition-score", "10",
                 "--condition-template", "Score {score} of {max}.",
                 "--condition-max-score", "10"]) == 0
    results = json.loads((out / "eval.json").read_text())
    assert results["config"]["condition"] == {"score": 10.0, "template": "Score {score} of {max}.",
                                              "max_score": 10.0}
    assert results["pairs"] == 2  # the conditioned pairs were scored too
    gens = [json.loads(x) for x in (out / "generations.jsonl").read_text().splitlines()]
    assert [g["prompt"] for g in gens] == [
        [{"role": "system", "content": "Score 10 of 10."}, {"role": "user", "content": f"Say {w}."}]
        for w in ("hi", "yes")]


@pytest.mark.parametrize(("flags", "message"), [
    (["--condition-template", "{score}"], "need --condition-score"),
    (["--condition-score", "10", "--condition-template", "no score"], "does not name {score}"),
    (["--condition-score", "nan"], "must be a finite number"),
])
def test_bad_condition_flags_are_refused(tmp_path, capsys, flags, message):
    assert main(["eval", "--model", "tiny-llama", "--data", "builtin:units?n=2",
                 "--output", str(tmp_path / "o"), *flags]) == 1
    assert message in capsys.readouterr().err


def test_eval_refuses_unpaired_examples_in_one_line(tmp_path, capsys):
    """KTO's unpaired examples have one side: BLEU and preference accuracy need both."""
    data = tmp_path / "kto.jsonl"
    data.write_text('{"prompt": "a", "completion": "b", "label": true}\n'
                    '{"prompt": "c", "completion": "d", "label": false}\n')
    assert main(["eval", "--model", "tiny-llama", "--data", str(data), "--output", str(tmp_path / "e")]) == 1
    assert "2 of 2 examples are unpaired" in capsys.readouterr().err
