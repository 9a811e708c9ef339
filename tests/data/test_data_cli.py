"""``asft data check``: the summary on good data, the exit code and message on bad data."""

import json

import pytest

from asft.cli import main

# a fresh asft cache per test: token stores and converted models never leak between tests
pytestmark = pytest.mark.usefixtures("fresh_cache")


def write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def test_check_prints_the_summary(tmp_path, tokenizer_dir, capsys):
    out_json = tmp_path / "summary.json"
    code = main(["data", "check", "builtin:mixed:test?n=40", "--tokenizer", tokenizer_dir,
                 "--max-length", "64", "--max-prompt-length", "48", "--json", str(out_json)])
    out = capsys.readouterr().out
    assert code == 0
    for text in ("records read", "pairs kept", "boundary mismatches", "p90", "chat template"):
        assert text in out
    summary = json.loads(out_json.read_text())
    assert summary["load"]["read"] == 40 and summary["tokens"]["pairs"] == 40
    assert summary["tokens"]["kept"] + sum(summary["tokens"]["dropped"].values()) == 40
    assert summary["tokens"]["cache"] == "miss"
    # Second run: served from the cache under $ASFT_CACHE.
    assert main(["data", "check", "builtin:mixed:test?n=40", "--tokenizer", tokenizer_dir,
                 "--max-length", "64", "--max-prompt-length", "48", "--json", str(out_json)]) == 0
    assert json.loads(out_json.read_text())["tokens"]["cache"] == "hit"


def test_bad_record_exits_non_zero_with_location(tmp_path, tokenizer_dir, capsys):
    src = write(tmp_path / "d.jsonl", [{"prompt": "p", "chosen": "a", "rejected": "b"},
                                       {"prompt": "p", "chosen": 5, "rejected": "b"}])
    assert main(["data", "check", src, "--tokenizer", tokenizer_dir]) == 1
    err = capsys.readouterr().err
    assert f"{src}, line 2, field 'chosen': expected a string" in err
    assert "Traceback" not in err
    assert main(["data", "check", src, "--tokenizer", "none", "--on-bad-record", "skip"]) == 0
    out = capsys.readouterr().out
    assert "skipped: wrong_type" in out and "tokens per pair" not in out


def test_missing_source_and_bad_options(tmp_path, capsys):
    assert main(["data", "check", str(tmp_path / "nope.jsonl"), "--tokenizer", "none"]) == 1
    assert "no such file or folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["data", "check", "x.jsonl", "--columns", "prompt"])
    assert main(["data", "check", "builtin:units?n=3", "--tokenizer", "none",
                 "--columns", "answer=prompt"]) == 1
    assert "unknown column key" in capsys.readouterr().err
