"""Fuzzing every data reader (hypothesis): arbitrary bytes, wrong types, deep nesting, huge fields.

The contract under test: a reader returns a result or raises ``DataError`` naming the place;
never another exception from inside a library, never a hang (each example has a deadline).
Where a result comes back, its pairs satisfy the PreferencePair invariants, and tokenizing
arbitrary text keeps the exact-boundary guarantee.
"""

import gzip
import io
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asft.data import DataError, LoadResult, load_pairs
from asft.data.formats import ROLES
from asft.data.tokenize import tokenize_pairs

pytestmark = pytest.mark.fuzz

FUZZ = settings(max_examples=150, deadline=3000, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
ROLE_VALUES = set(ROLES.values())
KEYS = ["prompt", "chosen", "rejected", "conversations", "system", "role", "content", "from",
        "value", "score_chosen", "question", "text", "type"]

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8),
                                                                inner, max_size=5),
    max_leaves=25,
)
message = st.fixed_dictionaries({}, optional={
    "role": st.sampled_from([*ROLES, "wizard", ""]) | json_scalars,
    "content": st.text(max_size=40) | json_values,
    "from": st.sampled_from(["human", "gpt"]),
    "value": st.text(max_size=20),
})
field_value = (st.text(max_size=60) | st.lists(message, max_size=4) | message | json_values)
records = st.lists(
    st.dictionaries(st.sampled_from(KEYS), field_value, max_size=6)
    | st.fixed_dictionaries({"prompt": field_value, "chosen": field_value, "rejected": field_value}),
    min_size=1, max_size=5)


def check_outcome(call):
    """Run a loader; a result must hold valid pairs, an error must be a located DataError."""
    for mode in ("error", "skip"):
        try:
            result = call(mode)
        except DataError as err:
            assert str(err) and err.reason
            continue
        assert isinstance(result, LoadResult) and result.pairs
        assert result.report.kept + result.report.num_skipped == result.report.read
        for p in result.pairs:
            for msgs in (p.prompt, p.chosen, p.rejected):
                assert all(set(m) == {"role", "content"} and isinstance(m["content"], str)
                           and m["role"] in ROLE_VALUES for m in msgs)
            assert p.chosen and p.rejected
            assert p.chosen[0]["role"] == p.rejected[0]["role"] == "assistant"


@FUZZ
@given(records)
def test_records_in_memory(recs):
    check_outcome(lambda mode: load_pairs(recs, on_bad_record=mode))


@FUZZ
@given(records, st.sampled_from(["auto", "explicit", "conversational", "hh", "sharegpt"]))
def test_records_through_jsonl_and_forced_formats(recs, fmt):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "d.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in recs))
        check_outcome(lambda mode: load_pairs(path, fmt=fmt, on_bad_record=mode))


SUFFIXES = ["d.jsonl", "d.json", "d.csv", "d.tsv", "d.jsonl.gz", "d.parquet", "d.dat"]


@FUZZ
@given(st.binary(max_size=2000), st.sampled_from(SUFFIXES), st.booleans())
def test_arbitrary_bytes_in_every_file_kind(data, name, compress):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(gzip.compress(data) if compress and name.endswith(".gz") else data)
        check_outcome(lambda mode: load_pairs(path, on_bad_record=mode))


@FUZZ
@given(st.lists(st.lists(st.text(max_size=30), min_size=1, max_size=4), min_size=1, max_size=6),
       st.sampled_from([",", "\t"]))
def test_csv_of_arbitrary_cells(rows, delimiter):
    import csv

    buf = io.StringIO()
    csv.writer(buf, delimiter=delimiter).writerows([["prompt", "chosen", "rejected"], *rows])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("d.csv" if delimiter == "," else "d.tsv")
        path.write_text(buf.getvalue(), encoding="utf-8", errors="surrogatepass")
        check_outcome(lambda mode: load_pairs(path, on_bad_record=mode))


transcript = st.lists(st.tuples(st.sampled_from(["Human", "Assistant", "Human:", "System"]),
                                st.text(max_size=20)), max_size=5).map(
    lambda turns: "".join(f"\n\n{r}: {t}" for r, t in turns))


@FUZZ
@given(transcript, transcript, transcript)
def test_hh_transcripts(shared, tail_c, tail_r):
    rec = {"chosen": shared + tail_c, "rejected": shared + tail_r}
    check_outcome(lambda mode: load_pairs([rec], fmt="hh", on_bad_record=mode))


@FUZZ
@given(st.lists(st.fixed_dictionaries({"prompt": json_values, "chosen": json_values,
                                       "rejected": json_values}), min_size=1, max_size=4))
def test_parquet_with_arbitrary_column_types(recs):
    import pyarrow as pa
    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "d.parquet"
        try:
            pq.write_table(pa.Table.from_pylist(recs), path)
        except (pa.ArrowException, ValueError, TypeError, OverflowError):
            return  # not representable in Parquet: nothing to read back
        check_outcome(lambda mode: load_pairs(path, on_bad_record=mode))


@settings(max_examples=40, deadline=5000, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(["state.json", "dataset_info.json", "dataset_dict.json",
                                        "data-00000-of-00001.arrow"]),
                       st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()),
                       min_size=1))
def test_datasets_folder_of_garbage(files):
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in files.items():
            (Path(tmp) / name).write_bytes(data)
        check_outcome(lambda mode: load_pairs(tmp, on_bad_record=mode))


@FUZZ
@given(st.text(st.sampled_from("abcdefghimnorstuxy:?&=0123456789-_ "), max_size=30),
       st.sampled_from([None, "train", "test", "dev"]))
def test_builtin_source_strings(spec, split):
    check_outcome(lambda mode: load_pairs(f"builtin:{spec}", split=split, on_bad_record=mode,
                                          limit=20))


@pytest.mark.parametrize(("name", "payload"), [
    ("deep.json", b"[" * 200_000 + b"]" * 200_000),
    ("deep.jsonl", b'{"prompt": ' + b"[" * 200_000 + b"]" * 200_000 + b"}\n"),
    ("deep.csv", b"prompt,chosen,rejected\n" + b"[" * 100_000 + b",a,b\n"),
    ("deep2.jsonl", json.dumps({"prompt": "p", "chosen": [[[[[[[[["x"]]]]]]]]], "rejected": "r"}).encode()),
])
def test_deep_nesting(tmp_path, name, payload):
    path = tmp_path / name
    path.write_bytes(payload)
    check_outcome(lambda mode: load_pairs(path, on_bad_record=mode))


def test_huge_fields(tmp_path):
    big = "word " * 2_000_000  # 10 MB in one field
    path = tmp_path / "huge.jsonl"
    path.write_text(json.dumps({"prompt": big, "chosen": "a", "rejected": big}) + "\n")
    pair = load_pairs(path).pairs[0]
    assert len(pair.prompt[0]["content"]) == len(big)
    many_keys = {f"k{i}": i for i in range(100_000)} | {"prompt": "p", "chosen": "a", "rejected": "b"}
    path.write_text(json.dumps(many_keys))
    assert load_pairs(path).pairs[0].chosen[0]["content"] == "a"


@pytest.fixture(scope="module")
def tok():
    from asft.model.tiny import build_tokenizer

    return build_tokenizer()


text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)


@settings(max_examples=100, deadline=3000, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(st.tuples(text, text, text), min_size=1, max_size=4))
def test_tokenization_of_arbitrary_text_is_exact(tok, triples):
    """Whatever the text (control characters, combining marks, special-token strings), either a
    pair is dropped with a reason or prompt + response is the tokenizer's own tokenization."""
    recs = [{"prompt": p, "chosen": c + "<|im_end|>" * (i % 2), "rejected": r + "x"}
            for i, (p, c, r) in enumerate(triples)]
    try:
        pairs = load_pairs(recs, on_bad_record="skip").pairs
    except DataError:
        return
    result = tokenize_pairs(pairs, tok, None, None)
    assert result.report.kept + result.report.num_dropped == len(pairs)
    for ex, i in zip(result.examples, result.indices):
        p = pairs[i]
        for resp, ids in ((p.chosen, ex.chosen_ids), (p.rejected, ex.rejected_ids)):
            full = tok.apply_chat_template(p.prompt + resp, tokenize=False)
            full = full[: full.rindex(tok.eos_token) + len(tok.eos_token)]
            assert ex.prompt_ids + ids == tok(full, add_special_tokens=False)["input_ids"]
            assert ids[-1] == tok.eos_token_id and ex.prompt_ids
