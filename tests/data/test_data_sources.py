"""Sources: every file kind, datasets folders, and each kind of bad input (message and count)."""

import gzip
import json

import pytest

from asft.data import DataError, load_pairs
from asft.data.sources import file_kind

GOOD = {"prompt": "What is 2+2?", "chosen": "4", "rejected": "5"}
GOOD2 = {"prompt": "Capital of France?", "chosen": "Paris", "rejected": "Rome"}


def write_jsonl(path, lines):
    path.write_bytes(b"".join((x if isinstance(x, bytes) else json.dumps(x).encode()) + b"\n"
                              for x in lines))
    return path


def test_jsonl_and_gz_and_blank_lines_and_bom(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_bytes(b"\xef\xbb\xbf" + json.dumps(GOOD).encode() + b"\n\n  \n" +
                  json.dumps(GOOD2).encode() + b"\r\n")
    result = load_pairs(p)
    assert [x.origin for x in result.pairs] == [f"{p}:1", f"{p}:4"]
    assert result.report.read == 2 and result.report.kept == 2
    gz = tmp_path / "d.jsonl.gz"
    gz.write_bytes(gzip.compress(p.read_bytes()))
    assert [x.chosen for x in load_pairs(gz).pairs] == [x.chosen for x in result.pairs]


def test_json_array_object_and_jsonl_in_disguise(tmp_path):
    a = tmp_path / "a.json"
    a.write_text(json.dumps([GOOD, GOOD2]))
    assert [x.origin for x in load_pairs(a).pairs] == [f"{a}:1", f"{a}:2"]
    b = tmp_path / "b.json"
    b.write_text(json.dumps({"data": [GOOD, GOOD2]}))
    assert len(load_pairs(b).pairs) == 2
    c = tmp_path / "c.json"
    c.write_text(json.dumps(GOOD) + "\n" + json.dumps(GOOD2) + "\n")
    assert len(load_pairs(c).pairs) == 2
    with pytest.raises(DataError, match=r"c\.json, line 2, field 'chosen'"):
        c.write_text(json.dumps(GOOD) + "\n" + json.dumps({"prompt": "p", "chosen": 1,
                                                           "rejected": "r"}) + "\n")
        load_pairs(c)


def test_csv_tsv_with_json_cells_and_multiline_fields(tmp_path):
    p = tmp_path / "d.csv"
    conv_c = json.dumps([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}])
    conv_r = json.dumps([{"role": "user", "content": "q"}, {"role": "assistant", "content": "b"}])
    p.write_text('prompt,chosen,rejected\n"line one\nline two","[yes]",no\n', encoding="utf-8")
    pair = load_pairs(p).pairs[0]
    assert pair.prompt[0]["content"] == "line one\nline two"
    assert pair.chosen[0]["content"] == "[yes]"  # not a list of messages: stays text
    q = tmp_path / "c.tsv"
    q.write_text("chosen\trejected\n" + conv_c + "\t" + conv_r + "\n")
    pair = load_pairs(q).pairs[0]
    assert pair.prompt == [{"role": "user", "content": "q"}]
    assert pair.origin == f"{q}:2"


def test_csv_row_errors_name_line_and_column(tmp_path):
    p = tmp_path / "d.csv"
    p.write_bytes(b"prompt,chosen,rejected\nq,a,b\nq,\xff\xfe,b\nq,a\n")
    with pytest.raises(DataError, match=r"d\.csv, line 3, field 'chosen': not valid UTF-8"):
        load_pairs(p)
    result = load_pairs(p, on_bad_record="skip")
    assert result.report.skipped == {"not_utf8": 1, "malformed": 1}
    assert "line 4: 2 values for 3 columns" in result.report.examples[1]


def test_csv_huge_field(tmp_path):
    p = tmp_path / "big.csv"
    big = "x" * 300_000  # beyond csv's default 128 KiB field limit
    p.write_text(f"prompt,chosen,rejected\nq,{big},b\n")
    assert len(load_pairs(p).pairs[0].chosen[0]["content"]) == 300_000


def test_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist([
        {"prompt": "q", "chosen": [{"role": "assistant", "content": "a"}],
         "rejected": [{"role": "assistant", "content": "b"}]}] * 3), p)
    result = load_pairs(p)
    assert len(result.pairs) == 3 and result.pairs[2].origin == f"{p}:3"
    assert result.pairs[0].chosen == [{"role": "assistant", "content": "a"}]


def test_corrupt_parquet_and_gzip_are_source_errors_even_when_skipping(tmp_path):
    p = tmp_path / "bad.parquet"
    p.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(DataError, match=r"bad\.parquet: not a readable Parquet file"):
        load_pairs(p, on_bad_record="skip")
    g = tmp_path / "bad.jsonl.gz"
    g.write_bytes(gzip.compress(json.dumps(GOOD).encode() * 50)[:40])
    with pytest.raises(DataError, match=r"bad\.jsonl\.gz, line 1: cannot read"):
        load_pairs(g, on_bad_record="skip")


def test_datasets_folder_with_splits(tmp_path):
    import datasets

    dd = datasets.DatasetDict({"train": datasets.Dataset.from_list([GOOD, GOOD2]),
                               "test": datasets.Dataset.from_list([GOOD])})
    dd.save_to_disk(tmp_path / "dd")
    assert len(load_pairs(tmp_path / "dd").pairs) == 2
    test = load_pairs(tmp_path / "dd", split="test")
    assert len(test.pairs) == 1 and test.pairs[0].origin == f"{tmp_path / 'dd'}:1"
    with pytest.raises(DataError, match="no split 'valid'; splits: train, test"):
        load_pairs(tmp_path / "dd", split="valid")
    (tmp_path / "plain").mkdir()
    with pytest.raises(DataError, match="not a folder written by datasets"):
        load_pairs(tmp_path / "plain")


def test_in_memory_dataset():
    import datasets

    assert len(load_pairs(datasets.Dataset.from_list([GOOD, GOOD2])).pairs) == 2


def test_hub_id_goes_to_load_dataset(monkeypatch):
    import datasets

    calls = []

    def fake(repo, split=None, **kw):
        calls.append((repo, split, kw))
        if repo == "org/missing":
            raise FileNotFoundError("Dataset 'org/missing' doesn't exist on the Hub")
        return datasets.Dataset.from_list([GOOD])

    monkeypatch.setattr(datasets, "load_dataset", fake)
    assert len(load_pairs("org/prefs", hub_kwargs={"name": "cfg"}).pairs) == 1
    assert len(load_pairs("hub:imdb", split="test").pairs) == 1
    assert calls == [("org/prefs", "train", {"name": "cfg"}), ("imdb", "test", {})]
    with pytest.raises(DataError, match=r"org/missing: not a local file.*FileNotFoundError"):
        load_pairs("org/missing")


def test_a_streamed_hub_set_is_read_record_by_record(monkeypatch):
    """data.streaming: datasets' streaming mode (an IterableDataset), read lazily."""
    import datasets

    from asft.data.load import PairStream

    seen = []

    def records():
        for i in range(3):
            seen.append(i)
            yield GOOD

    def fake(repo, split=None, **kw):
        assert kw == {"streaming": True}
        return datasets.IterableDataset.from_generator(records)

    monkeypatch.setattr(datasets, "load_dataset", fake)
    stream = PairStream("org/prefs", streaming=True)
    assert seen == []  # nothing read before the pairs are asked for
    assert len(list(stream)) == 3 and stream.report.kept == 3


def test_unknown_suffix_is_sniffed(tmp_path):
    p = tmp_path / "data.txt"
    write_jsonl(p, [GOOD])
    assert len(load_pairs(p).pairs) == 1
    q = tmp_path / "notes.txt"
    q.write_text("hello")
    with pytest.raises(DataError, match="unknown file type"):
        load_pairs(q)


def test_file_kind():
    from pathlib import Path

    assert file_kind(Path("a/b.JSONL.gz")) == ("jsonl", True)
    assert file_kind(Path("x.v1.parquet")) == ("parquet", False)
    assert file_kind(Path("noext")) == ("", False)


# --- the bad-input cases of the issue, each in both modes ---------------------------------

BAD_LINES = {
    "malformed JSON": (b'{"prompt": "p", "chosen": "a", ', "malformed",
                       r"line 2: malformed JSON: Expecting property name"),
    "missing field": (json.dumps({"prompt": "p", "chosen": "a"}).encode(), "missing_field",
                      r"line 2, field 'rejected': missing"),
    "wrong type": (json.dumps({"prompt": "p", "chosen": ["a"], "rejected": "b"}).encode(),
                   "wrong_type", r"line 2, field 'chosen\[0\]': expected a message object"),
    "not an object": (b"[1, 2]", "not_a_record", r"line 2: expected a JSON object, got list"),
    "identical": (json.dumps({"prompt": "p", "chosen": "a", "rejected": "a"}).encode(),
                  "identical_responses", r"line 2, field 'chosen': chosen and rejected are identical"),
    "non-UTF-8 bytes": (b'{"prompt": "p", "chosen": "\xff\xfe", "rejected": "b"}', "not_utf8",
                        r"line 2: not valid UTF-8: byte 0xff"),
    "deep nesting": (b"[" * 100_000, "malformed", r"line 2: malformed JSON: nested too deeply"),
    "huge integer": (b'{"prompt": ' + b"9" * 5000 + b"}", "malformed",
                     r"line 2: malformed JSON: Exceeds the limit"),
}


@pytest.mark.parametrize("case", list(BAD_LINES))
def test_bad_record_error_names_file_line_field(tmp_path, case):
    line, _, pattern = BAD_LINES[case]
    p = write_jsonl(tmp_path / "d.jsonl", [GOOD, line, GOOD2])
    with pytest.raises(DataError, match=pattern) as info:
        load_pairs(p)
    assert info.value.file == str(p) and info.value.line == 2
    assert str(info.value).startswith(f"{p}, line 2")


@pytest.mark.parametrize("case", list(BAD_LINES))
def test_bad_record_skip_counts_reason(tmp_path, case):
    line, reason, _ = BAD_LINES[case]
    p = write_jsonl(tmp_path / "d.jsonl", [GOOD, line, GOOD2, line])
    result = load_pairs(p, on_bad_record="skip")
    assert result.report.skipped == {reason: 2}
    assert result.report.read == 4 and result.report.kept == 2
    assert [x.origin for x in result.pairs] == [f"{p}:1", f"{p}:3"]
    assert len(result.report.examples) == 2


def test_empty_response_case(tmp_path):
    p = write_jsonl(tmp_path / "d.jsonl", [GOOD, {"prompt": "p", "chosen": "", "rejected": "b"}])
    assert load_pairs(p).report.empty_responses == 1
    with pytest.raises(DataError, match=r"line 2, field 'chosen': empty response"):
        load_pairs(p, empty_response="bad")
    assert load_pairs(p, empty_response="bad", on_bad_record="skip").report.skipped == {
        "empty_response": 1}


@pytest.mark.parametrize("name", ["e.jsonl", "e.json", "e.csv", "e.jsonl.gz"])
def test_empty_file(tmp_path, name):
    p = tmp_path / name
    p.write_bytes(gzip.compress(b"") if name.endswith(".gz") else b"  \n")
    for mode in ("error", "skip"):
        with pytest.raises(DataError, match=rf"{name}: no records: the source is empty"):
            load_pairs(p, on_bad_record=mode)


def test_nonexistent_file(tmp_path):
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(DataError, match=r"nope\.jsonl: no such file or folder") as info:
        load_pairs(missing)
    assert info.value.reason == "source" and info.value.line is None


def test_all_records_bad_in_skip_mode(tmp_path):
    p = write_jsonl(tmp_path / "d.jsonl", [b"{", b"nope"])
    with pytest.raises(DataError, match=r"no usable pairs: all 2 records were skipped \(2 malformed\)"):
        load_pairs(p, on_bad_record="skip")


def test_split_on_a_file_is_refused(tmp_path):
    p = write_jsonl(tmp_path / "d.jsonl", [GOOD])
    assert len(load_pairs(p, split="train").pairs) == 1
    with pytest.raises(DataError, match="a file has no splits"):
        load_pairs(p, split="test")


def test_api_misuse_is_value_error(tmp_path):
    with pytest.raises(ValueError, match="on_bad_record"):
        load_pairs([GOOD], on_bad_record="ignore")
    with pytest.raises(ValueError, match=r"format: .* is not one of"):
        load_pairs([GOOD], fmt="yaml")
    with pytest.raises(ValueError, match="limit: must be a positive integer"):
        load_pairs([GOOD], limit="3")
    with pytest.raises(DataError, match="cannot read data from a int"):
        load_pairs(42)


def test_data_error_pickles():
    import pickle

    err = DataError("bad", file="f.jsonl", line=3, field="chosen", reason="wrong_type")
    again = pickle.loads(pickle.dumps(err))
    assert str(again) == str(err) == "f.jsonl, line 3, field 'chosen': bad"
    assert again.reason == "wrong_type" and isinstance(again, ValueError)


def test_count_records_for_the_progress_total(tmp_path):
    import gzip

    import pyarrow as pa
    import pyarrow.parquet as pq

    from asft.data.sources import count_records

    (tmp_path / "a.jsonl").write_text('{"x": 1}\n{"x": 2}\n{"x": 3}')  # no final newline
    (tmp_path / "b.csv").write_text("prompt,chosen,rejected\np,a,b\nq,c,d\n")
    with gzip.open(tmp_path / "c.jsonl.gz", "wt") as fh:
        fh.write('{"x": 1}\n' * 5)
    pq.write_table(pa.table({"x": list(range(7))}), tmp_path / "d.parquet")
    (tmp_path / "e.json").write_text("[{}, {}]")
    assert count_records(str(tmp_path / "a.jsonl")) == 3
    assert count_records(tmp_path / "b.csv") == 2
    assert count_records(str(tmp_path / "c.jsonl.gz")) == 5
    assert count_records(str(tmp_path / "d.parquet")) == 7
    assert count_records(str(tmp_path / "e.json")) is None
    assert count_records("builtin:mixed") is None and count_records([{}]) is None
