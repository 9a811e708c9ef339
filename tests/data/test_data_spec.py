"""One data spec for every command: ``asft train``, ``asft data check``, ``asft data prepare``
and ``asft eval`` read a file through the same ``data`` section, with the same defaults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asft.cli import main
from asft.config import ConfigError, DataConfig, load_config
from asft.data.spec import OptionError, drop_warnings, parse_columns

FAST = ["--set", "model.name=tiny-llama", "--set", "model.dtype=fp32",
        "--set", "training.precision=fp32", "--set", "training.max_steps=2",
        "--set", "training.batch_size=2", "--set", "data.probe_size=2",
        "--set", "logging.progress=false", "--set", "logging.tensorboard=false"]


def _write(path: Path, records: list) -> str:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return str(path)


def _pairs(n: int, **cols: str) -> list[dict]:
    names = {"prompt": "prompt", "chosen": "chosen", "rejected": "rejected", **cols}
    return [{names["prompt"]: f"What is {i} plus {i}?", names["chosen"]: f"It is {2 * i}.",
             names["rejected"]: f"Maybe {2 * i + 1}."} for i in range(n)]


def _check_json(argv: list[str], tmp_path: Path, capsys) -> dict:
    out = tmp_path / "check.json"
    assert main(["data", "check", *argv, "--json", str(out)]) == 0, capsys.readouterr().err
    capsys.readouterr()
    return json.loads(out.read_text())


def test_parse_columns_shorthand_and_lists():
    assert parse_columns("chosen=A,rejected=B") == {"chosen": "A", "rejected": "B"}
    assert parse_columns("responses=r1,r2,r3,label=winner") == {
        "responses": ["r1", "r2", "r3"], "label": "winner"}
    with pytest.raises(OptionError, match="expected NAME=COLUMN"):
        parse_columns("chosen")


def test_the_data_section_judges_its_keys_with_the_data_layers_rules():
    assert DataConfig(columns="chosen=A,rejected=B").columns == {"chosen": "A", "rejected": "B"}
    ranked = DataConfig(format="ranked", columns="responses=response1,response2,label=vote",
                        labels={0: "tie", 1: "response1"})
    assert ranked.labels == {"0": "tie", "1": "response1"}
    assert ranked.columns == {"responses": ["response1", "response2"], "label": "vote"}
    with pytest.raises(ConfigError, match=r"data\.labels.*format 'ranked'"):
        load_config(None, ["data.labels={0: tie}"])
    with pytest.raises(ConfigError, match=r"data\.format.*did you mean 'sharegpt'"):
        load_config(None, ["data.format=sharegtp"])
    with pytest.raises(ConfigError, match=r"data\.on_bad_record.*did you mean 'skip'"):
        load_config(None, ["data.on_bad_record=skp"])
    with pytest.raises(ConfigError, match="unknown column key"):
        load_config(None, ["data.columns=answer=x"])
    with pytest.raises(ConfigError, match="did you mean 'on_bad_record'"):
        load_config(None, ["data.on_bad_records=skip"])


def test_train_reads_mapped_columns_and_data_check_reports_the_same_pairs(tmp_path, capsys):
    src = _write(tmp_path / "pairs.jsonl", _pairs(12, chosen="A", rejected="B"))
    run = tmp_path / "run"
    code = main(["train", "--data", src, "--set", "data.columns=chosen=A,rejected=B", *FAST,
                 "-o", str(run)])
    assert code == 0, capsys.readouterr().err
    capsys.readouterr()
    report = json.loads((run / "data_report.json").read_text())
    assert report["load"]["kept"] == 12 and report["tokenize"]["kept"] == 12
    assert (run / "model" / "config.json").is_file()
    # the same file through asft data check: the same pairs kept, with the same settings
    check = _check_json([src, "--columns", "chosen=A,rejected=B", "--tokenizer", "tiny-llama"],
                        tmp_path, capsys)
    assert check["tokens"]["kept"] == report["tokenize"]["kept"]
    assert check["tokens"]["settings"] == report["tokenize"]["settings"]


def test_data_check_with_a_recipe_reads_what_train_reads(tmp_path, capsys):
    records = _pairs(30) + [{"prompt": "long " * 400, "chosen": "a", "rejected": "b"}] * 6
    src = _write(tmp_path / "pairs.jsonl", records)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"model: {{name: tiny-llama, dtype: fp32}}\ndata:\n  source: {src}\n"
                      "  max_length: 256\n  max_prompt_length: 128\n  overflow: drop\n")
    check = _check_json(["--config", str(recipe)], tmp_path, capsys)
    run = tmp_path / "run"
    assert main(["train", "--config", str(recipe), *FAST, "-o", str(run)]) == 0
    report = json.loads((run / "data_report.json").read_text())
    assert check["tokens"]["kept"] == report["tokenize"]["kept"] == 36
    assert check["tokens"]["settings"]["max_length"] == 256


def test_defaults_are_the_same_in_train_check_and_eval():
    from asft.commands.data_flags import FLAGS

    defaults = DataConfig()
    assert (defaults.max_length, defaults.max_prompt_length) == (1024, 512)
    # every flag is a shortcut for a key of the one data section, none has a default of its own
    assert {key for _, key, _, _ in FLAGS} <= set(DataConfig.__dataclass_fields__)


def test_a_warning_names_the_setting_that_keeps_the_dropped_pairs(tmp_path, capsys):
    records = _pairs(8) + [{"prompt": "p", "chosen": "word " * 300, "rejected": "no"}] * 2
    src = _write(tmp_path / "long.jsonl", records)
    assert main(["data", "check", src, "--tokenizer", "tiny-llama", "--max-length", "64",
                 "--max-prompt-length", "32"]) == 0
    out = capsys.readouterr().out
    assert "warning:" in out and "2 of 10 pairs (20%) are dropped (too_long 2)" in out
    longest = int(out.split("data.max_length: ")[1].split()[0])
    assert longest > 300
    # the suggested length keeps them all
    assert main(["data", "check", src, "--tokenizer", "tiny-llama", "--max-length", str(longest),
                 "--max-prompt-length", "32"]) == 0
    out = capsys.readouterr().out
    assert "warning:" not in out
    run = tmp_path / "run"
    assert main(["train", "--data", src, "--set", "data.max_length=64",
                 "--set", "data.max_prompt_length=32", *FAST, "-o", str(run)]) == 0
    err = capsys.readouterr().err
    assert "warning:" in err and "data.max_length:" in err
    assert json.loads((run / "data_report.json").read_text())["warnings"]


def test_drop_warning_threshold():
    from asft.data.tokenize import TokenizeReport

    spec = DataConfig()
    assert drop_warnings(TokenizeReport(pairs=10, kept=9, dropped={"too_long": 1}), spec) == []
    (text,) = drop_warnings(TokenizeReport(pairs=10, kept=8, dropped={"too_long": 2},
                                           overlong=[2000, 1500]), spec)
    assert "data.max_length: 2000 keeps the 2" in text


def test_eval_skips_a_malformed_record_and_reports_it(tmp_path, tiny_model_dir, capsys):
    src = _write(tmp_path / "eval.jsonl", [*_pairs(3), "{not json", *_pairs(2)])
    out = tmp_path / "eval"
    args = ["eval", "--model", str(tiny_model_dir), "--data", src, "--output", str(out),
            "--no-generate"]
    assert main(args) == 1
    assert f"{src}, line 4" in capsys.readouterr().err
    assert main([*args, "--on-bad-record", "skip"]) == 0
    err = capsys.readouterr().err
    assert "1 of 6 records skipped (malformed 1)" in err
    result = json.loads((out / "eval.json").read_text())
    assert result["data"]["skipped"] == {"malformed": 1} and result["pairs"] == 5


def test_data_prepare_fills_the_cache_that_train_then_reads(tmp_path, capsys):
    src = _write(tmp_path / "pairs.jsonl", _pairs(10))
    report = tmp_path / "prep.json"
    assert main(["data", "prepare", src, "--tokenizer", "tiny-llama", "--report", str(report)]) == 0
    prepared = json.loads(report.read_text())
    assert prepared["tokenize"]["kept"] == 10 and prepared["tokenize"]["cache"] == "miss"
    # tokens and the store's bytes are reported (ids are uint16 for this vocabulary)
    tokens = prepared["tokenize"]["tokens"]
    # per pair: 4 int32 lengths (prompt, chosen, rejected, gold), a start and an index
    assert tokens > 0 and prepared["tokenize"]["store_bytes"] == 2 * tokens + 10 * (16 + 8 + 8)
    assert "token store" in capsys.readouterr().err
    run = tmp_path / "run"
    assert main(["train", "--data", src, *FAST, "-o", str(run)]) == 0
    assert json.loads((run / "data_report.json").read_text())["tokenize"]["cache"] == "hit"
