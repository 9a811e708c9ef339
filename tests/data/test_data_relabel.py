"""``asft data relabel``: reward-augmented pairs (arXiv 2410.08067). Each pair is written
conditioned on its chosen score, and inverted conditioned on its rejected score; ties get no
inverse; bad scores are located like any bad record; the output is written whole or not at
all, and ``asft data check`` reads it."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from asft.cli import main
from asft.data import DataError, load_pairs
from asft.data.condition import (
    DEFAULT_TEMPLATE,
    Condition,
    check_template,
    condition_prompt,
    condition_text,
    format_score,
)
from asft.data.relabel import default_max_score, read_scores

# a fresh asft cache per test: token stores and converted models never leak between tests
pytestmark = pytest.mark.usefixtures("fresh_cache")


def write(path: Path, records: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def sys(text: str) -> dict:
    return {"role": "system", "content": text}


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def bot(text: str) -> dict:
    return {"role": "assistant", "content": text}


# A plain pair, a tie (6.5 = 6.5), and a chat-format pair with its own system message and
# scores as text (as a CSV cell holds them).
THREE = [
    {"prompt": "Name a prime.", "chosen": "7", "rejected": "9",
     "score_chosen": 8, "score_rejected": 3},
    {"prompt": "Say hi.", "chosen": "Hi!", "rejected": "Bye.",
     "score_chosen": 6.5, "score_rejected": 6.5},
    {"prompt": [sys("Be brief."), user("Name a color.")], "chosen": [bot("Blue.")],
     "rejected": [bot("Seven.")], "score_chosen": "9", "score_rejected": 2.5},
]


def goal(score: str) -> str:
    """The default template filled in by hand, for a 1-10 scale."""
    return ("You are an assistant that generates responses for the instruction while implicitly "
            "achieving the following target scores (on a scale of 1-10, where 1 is lowest and "
            f"10 is highest):\nOverall score: {score}.")


def test_relabel_writes_each_pair_and_its_inverse_exactly(tmp_path, capsys):
    src = write(tmp_path / "three.jsonl", THREE)
    out = tmp_path / "out" / "ra.jsonl"
    assert main(["data", "relabel", src, "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"3 pairs from {src} -> 5 pairs in {out}" in printed
    assert "(3 conditioned on the chosen score, 2 inverse, scale max 10)" in printed
    assert "ties: 1 of 3 pairs have equal scores" in printed
    got = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert got == [
        {"prompt": [sys(goal("8")), user("Name a prime.")], "chosen": [bot("7")],
         "rejected": [bot("9")], "score_chosen": 8, "score_rejected": 3, "inverse": False,
         "origin": f"{src}:1"},
        {"prompt": [sys(goal("3")), user("Name a prime.")], "chosen": [bot("9")],
         "rejected": [bot("7")], "score_chosen": 3, "score_rejected": 8, "inverse": True,
         "origin": f"{src}:1"},
        # the tie: the pair only, no inverse
        {"prompt": [sys(goal("6.5")), user("Say hi.")], "chosen": [bot("Hi!")],
         "rejected": [bot("Bye.")], "score_chosen": 6.5, "score_rejected": 6.5,
         "inverse": False, "origin": f"{src}:2"},
        # the chat record's own system message stays first, the goal after a blank line
        {"prompt": [sys("Be brief.\n\n" + goal("9")), user("Name a color.")],
         "chosen": [bot("Blue.")], "rejected": [bot("Seven.")], "score_chosen": 9,
         "score_rejected": 2.5, "inverse": False, "origin": f"{src}:3"},
        {"prompt": [sys("Be brief.\n\n" + goal("2.5")), user("Name a color.")],
         "chosen": [bot("Seven.")], "rejected": [bot("Blue.")], "score_chosen": 2.5,
         "score_rejected": 9, "inverse": True, "origin": f"{src}:3"},
    ]


def test_data_check_accepts_the_output(tmp_path, tokenizer_dir, capsys):
    out = tmp_path / "ra.jsonl"
    assert main(["data", "relabel", write(tmp_path / "three.jsonl", THREE), "-o", str(out)]) == 0
    summary = tmp_path / "summary.json"
    assert main(["data", "check", str(out), "--tokenizer", tokenizer_dir,
                 "--json", str(summary)]) == 0, capsys.readouterr().err
    report = json.loads(summary.read_text())
    assert report["load"]["read"] == report["load"]["kept"] == 5
    assert report["tokens"]["kept"] == 5
    # read back, the pairs are the ones written: the goal in the prompt, the responses as given
    pairs = load_pairs(str(out)).pairs
    assert [p.prompt[0]["content"] for p in pairs][:2] == [goal("8"), goal("3")]
    assert [p.chosen[0]["content"] for p in pairs] == ["7", "9", "Hi!", "Blue.", "Seven."]


@pytest.mark.parametrize(("record", "field", "message"), [
    ({"score_rejected": 3}, "score_chosen", "missing"),
    ({"score_chosen": "N/A", "score_rejected": 3}, "score_chosen", "score 'N/A' is not a number"),
    ({"score_chosen": 8, "score_rejected": [3]}, "score_rejected", "expected a number, got list"),
    ({"score_chosen": 8, "score_rejected": "nan"}, "score_rejected", "score 'nan' is not a number"),
])
def test_a_bad_score_is_one_line_naming_file_line_and_field(tmp_path, capsys, record, field,
                                                            message):
    rows = [THREE[0], {"prompt": "p", "chosen": "a", "rejected": "b", **record}]
    src = write(tmp_path / "bad.jsonl", rows)
    out = tmp_path / "ra.jsonl"
    assert main(["data", "relabel", src, "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"{src}, line 2, field '{field}': {message}" in err
    assert not out.exists()


def test_skipping_bad_scores_is_counted_and_reported(tmp_path, capsys):
    rows = [THREE[0], {"prompt": "p", "chosen": "a", "rejected": "b", "score_chosen": "N/A",
                       "score_rejected": 3}, {"prompt": "q", "chosen": "a", "rejected": "b"}]
    src = write(tmp_path / "bad.jsonl", rows)
    out = tmp_path / "ra.jsonl"
    assert main(["data", "relabel", src, "-o", str(out), "--on-bad-record", "skip"]) == 0
    printed = capsys.readouterr().out
    assert "1 pairs from" in printed and "-> 2 pairs" in printed
    assert "skipped: 2 of 3 records (" in printed
    assert "missing_field 1" in printed and "wrong_type 1" in printed
    assert f"first: {src}, line 2, field 'score_chosen'" in printed
    assert len(out.read_text().splitlines()) == 2


def test_other_score_columns_template_and_scale(tmp_path, capsys):
    rows = [{"prompt": "Q", "chosen": "good", "rejected": "bad", "rw": 4, "rl": 1.5}]
    src = write(tmp_path / "helpsteer.jsonl", rows)
    out = tmp_path / "ra.jsonl"
    assert main(["data", "relabel", src, "--scores", "rw,rl", "-o", str(out),
                 "--template", "Quality {score} of {max}; {{braces}} kept", "--max-score", "5"]) == 0
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["prompt"][0] for r in got] == [sys("Quality 4 of 5; {braces} kept"),
                                             sys("Quality 1.5 of 5; {braces} kept")]
    assert [(r["score_chosen"], r["score_rejected"]) for r in got] == [(4, 1.5), (1.5, 4)]
    # a scale above 10 defaults to the largest score in the data, and says so
    rows[0].update(rw=40, rl=15)
    write(tmp_path / "helpsteer.jsonl", rows)
    capsys.readouterr()
    assert main(["data", "relabel", src, "--scores", "rw,rl", "-o", str(out)]) == 0
    assert "scale max 40" in capsys.readouterr().out
    assert "1-40" in json.loads(out.read_text().splitlines()[0])["prompt"][0]["content"]


def test_bad_options_are_refused_before_reading(tmp_path, capsys):
    src = write(tmp_path / "three.jsonl", THREE)
    out = str(tmp_path / "ra.jsonl")
    assert main(["data", "relabel", src, "-o", out, "--template", "Be {good}"]) == 1
    assert "may name only {score}, {max}" in capsys.readouterr().err
    assert main(["data", "relabel", src, "-o", out, "--template", "Be good"]) == 1
    assert "does not name {score}" in capsys.readouterr().err
    assert main(["data", "relabel", src, "-o", out, "--max-score", "0"]) == 1
    assert "max score must be > 0" in capsys.readouterr().err
    assert main(["data", "relabel", src, "-o", out, "--format", "ranked",
                 "--columns", "responses=chosen,rejected,scores=score_chosen,score_rejected"]) == 1
    assert "format 'ranked' has no chosen and rejected score columns" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["data", "relabel", src, "-o", out, "--scores", "only_one"])
    assert not Path(out).exists()


def test_a_failed_write_leaves_the_old_file_and_no_partial_one(tmp_path, monkeypatch):
    from asft.data import relabel

    src = write(tmp_path / "three.jsonl", THREE)
    out = tmp_path / "out" / "ra.jsonl"
    out.parent.mkdir()
    out.write_text("the previous output\n")
    real, calls = relabel.relabel_pair, []

    def fail_on_third(*args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # killed mid-write, after 3 records went to the temp file
        return real(*args)

    monkeypatch.setattr(relabel, "relabel_pair", fail_on_third)
    assert main(["data", "relabel", src, "-o", str(out)]) == 130
    assert out.read_text() == "the previous output\n"
    assert [p.name for p in out.parent.iterdir()] == ["ra.jsonl"]  # no temporary file left
    # a bad record stops the command before anything is written
    bad = write(tmp_path / "bad.jsonl", [THREE[0], {"prompt": "p", "chosen": "a", "rejected": "b"}])
    assert main(["data", "relabel", bad, "-o", str(out)]) == 1
    assert out.read_text() == "the previous output\n"
    assert [p.name for p in out.parent.iterdir()] == ["ra.jsonl"]


def ultrafeedback_rows() -> list[dict]:
    """Records in ``HuggingFaceH4/ultrafeedback_binarized``'s layout: a prompt string, whole
    conversations as chosen and rejected, the same as ``messages``, and 1-10 scores."""
    rows = []
    for i, (good, bad, r_w, r_l) in enumerate([("Paris.", "Rome.", 9.0, 2.0),
                                               ("Four.", "Five.", 7.5, 7.5),
                                               ("Blue.", "Loud.", 6.0, 1.0)]):
        prompt = f"Question {i}?"
        chosen, rejected = [user(prompt), bot(good)], [user(prompt), bot(bad)]
        rows.append({"prompt": prompt, "prompt_id": f"id{i}", "chosen": chosen,
                     "rejected": rejected, "messages": chosen,
                     "score_chosen": r_w, "score_rejected": r_l})
    return rows


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl.gz"])
def test_ultrafeedback_layout_works_out_of_the_box(tmp_path, capsys, suffix):
    rows = ultrafeedback_rows()
    src = tmp_path / f"train_prefs{suffix}"
    if suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), src)
    else:
        with gzip.open(src, "wt", encoding="utf-8") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in rows)
    out = tmp_path / "ra.jsonl"
    assert main(["data", "relabel", str(src), "-o", str(out)]) == 0
    assert "3 pairs from" in capsys.readouterr().out
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(got) == 5 and [r["inverse"] for r in got] == [False, True, False, False, True]
    # the prompt the conversations repeat is stripped, then conditioned
    assert got[0]["prompt"] == [sys(goal("9")), user("Question 0?")]
    assert got[1]["chosen"] == [bot("Rome.")] and got[1]["prompt"][0] == sys(goal("2"))
    assert load_pairs(str(out)).report.kept == 5


def test_condition_prompt_inserts_or_extends_the_system_message():
    plain = [user("Q")]
    assert condition_prompt(plain, 10) == [sys(goal("10")), user("Q")]
    assert plain == [user("Q")]  # not changed in place
    assert condition_prompt([sys("S"), user("Q")], 7.25, "g={score}/{max}", 8) == [
        sys("S\n\ng=7.25/8"), user("Q")]
    assert condition_prompt([sys(""), user("Q")], 1, "g={score}") == [sys("g=1"), user("Q")]
    assert condition_prompt([], 3, "g={score}") == [sys("g=3")]
    assert condition_text(9.0) == goal("9") and DEFAULT_TEMPLATE.format(score=9, max=10) == goal("9")
    assert [format_score(x) for x in (8, 8.0, 7.5, -1.0)] == ["8", "8", "7.5", "-1"]


def test_condition_checks_its_values():
    for bad in ("{}", "{0}", "{score", "{score.x}", "no field", "{score} {other}"):
        with pytest.raises(ValueError):
            check_template(bad)
    check_template("{score:>3} of {max}")
    with pytest.raises(ValueError, match="finite"):
        Condition(float("inf"))
    with pytest.raises(ValueError, match="> 0"):
        Condition(10, max_score=0)
    c = Condition(10, "g={score}")
    assert c.to_dict() == {"score": 10, "template": "g={score}", "max_score": 10.0}


def test_read_scores_and_default_scale():
    assert read_scores({"score_chosen": "8", "score_rejected": 2}) == (8.0, 2.0)
    assert read_scores({"a": 1, "b": 0.5}, ("a", "b")) == (1.0, 0.5)
    with pytest.raises(DataError) as info:
        read_scores({"score_chosen": 1, "score_rejected": "inf"})
    assert info.value.field == "score_rejected" and info.value.reason == "wrong_type"
    with pytest.raises(DataError) as info:
        read_scores({"score_chosen": True, "score_rejected": 1})
    assert info.value.field == "score_chosen"
    assert default_max_score([(9, 1), (10, 3)]) == 10
    assert default_max_score([(4, 1)]) == 10
    assert default_max_score([(37.5, 1), (12, 3)]) == 37.5
    assert default_max_score([]) == 10
