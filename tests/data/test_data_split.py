"""asft data split: one record file into disjoint parts by a fixed seed."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from asft.cli import main
from asft.data import DataError
from asft.data.split import parse_parts, split_file


def _file(tmp_path: Path, n: int, gz: bool = False) -> Path:
    lines = "".join(json.dumps({"prompt": f"q{i}", "chosen": f"a{i}", "rejected": f"b{i}"}) + "\n"
                    for i in range(n))
    path = tmp_path / ("pairs.jsonl.gz" if gz else "pairs.jsonl")
    path.write_bytes(gzip.compress(lines.encode()) if gz else lines.encode())
    return path


@pytest.mark.parametrize("gz", [False, True])
def test_every_record_lands_in_exactly_one_part_unchanged(tmp_path, gz):
    src = _file(tmp_path, 103, gz)
    counts = split_file(src, tmp_path / "out", {"train": 0.8, "validation": 0.1, "test": 0.1}, seed=3)
    assert counts == {"train": 82, "validation": 10, "test": 11}  # the last takes the rest
    parts = {n: (tmp_path / "out" / f"{n}.jsonl").read_text().splitlines() for n in counts}
    every = [line for lines in parts.values() for line in lines]
    original = (gzip.decompress(src.read_bytes()) if gz else src.read_bytes()).decode().splitlines()
    assert sorted(every) == sorted(original) and len(set(every)) == 103
    for lines in parts.values():  # file order inside a part
        assert lines == [x for x in original if x in set(lines)]
    manifest = json.loads((tmp_path / "out" / "split.json").read_text())
    assert manifest["seed"] == 3 and manifest["records"] == counts and len(manifest["sha256"]) == 64


def test_the_seed_decides_the_split(tmp_path):
    src = _file(tmp_path, 50)
    split_file(src, tmp_path / "a", {"train": 0.5, "test": 0.5}, seed=0)
    split_file(src, tmp_path / "b", {"train": 0.5, "test": 0.5}, seed=0)
    split_file(src, tmp_path / "c", {"train": 0.5, "test": 0.5}, seed=1)
    read = lambda d: (tmp_path / d / "test.jsonl").read_text()  # noqa: E731
    assert read("a") == read("b") != read("c")


def test_bad_input_is_named(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "q"}\n{"prompt": \n')
    with pytest.raises(DataError, match=r"bad.jsonl, line 2: not JSON"):
        split_file(bad, tmp_path / "out", {"a": 0.5, "b": 0.5}, seed=0)
    assert not (tmp_path / "out" / "a.jsonl").exists()
    csv = tmp_path / "x.csv"
    csv.write_text("a,b\n")
    with pytest.raises(DataError, match=r"reads \.jsonl and \.json"):
        split_file(csv, tmp_path / "out", {"a": 0.5, "b": 0.5}, seed=0)
    for text, message in [("train=0.8", "two or more"), ("train=0.5,test=0.6", "sum to 1"),
                          ("train=1.5,test=-0.5", r"\(0, 1\)"), ("train,test=1", "NAME=FRACTION"),
                          ("a=0.5,a=0.5", "named twice")]:
        with pytest.raises(ValueError, match=message):
            parse_parts(text)


def test_the_command_writes_parts_that_data_check_reads(tmp_path, capsys):
    src = _file(tmp_path, 20)
    assert main(["data", "split", str(src), "--parts", "train=0.75,test=0.25", "-o",
                 str(tmp_path / "parts")]) == 0
    assert "train.jsonl 15" in capsys.readouterr().out
    assert main(["data", "check", str(tmp_path / "parts" / "test.jsonl"), "--tokenizer", "none"]) == 0
    with pytest.raises(SystemExit) as exit_:  # argparse's usage error, naming the flag
        main(["data", "split", str(src), "--parts", "train=0.9", "-o", str(tmp_path / "x")])
    assert exit_.value.code == 2 and "--parts" in capsys.readouterr().err
