"""Two data shapes for newer losses: a gold third response (TPO, arXiv 2405.16681) and
unpaired examples with a desirable/undesirable label (KTO, arXiv 2402.01306), from the record
through the token store to ``asft data check``."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from asft.cli import main
from asft.data import DataError, PreferencePair, load_pairs
from asft.data.formats import check_columns, detect_format
from asft.data.store import StoreBuilder, TokenizedPair, TokenStore, build_in, ids_dtype
from asft.data.tokenize import tokenize_pairs
from slow_tokenizer import Slow

U, A = "user", "assistant"


def msg(role, content):
    return {"role": role, "content": content}


def write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


@pytest.fixture(scope="module")
def tok():
    from asft.model.tiny import build_tokenizer

    return build_tokenizer()


def full_ids(tok, messages):
    """The tokenizer's own tokenization of the rendered conversation, cut after EOS."""
    text = tok.apply_chat_template(messages, tokenize=False)
    return tok(text[: text.rindex(tok.eos_token) + len(tok.eos_token)],
               add_special_tokens=False)["input_ids"]


GOLD = [
    {"prompt": "What is 12 plus 30?", "chosen": "42", "rejected": "41",
     "gold": "12 plus 30 is 42."},
    {"prompt": "Name a color.", "chosen": "Blue.", "rejected": "Seven."},
    {"prompt": "Sort 5, 2, 9.", "chosen": "2, 5, 9", "rejected": "9, 5, 2",
     "gold": [msg(A, "2, 5, 9: smallest first.")]},
]


# -- gold ---------------------------------------------------------------------------------------

def test_a_gold_column_is_read_and_tokenized_like_chosen(tok, tmp_path):
    loaded = load_pairs(write(tmp_path / "g.jsonl", GOLD))
    assert loaded.report.format == "explicit" and loaded.report.with_gold == 2
    first, second, third = loaded.pairs
    assert first.gold == [msg(A, "12 plus 30 is 42.")] and second.gold is None
    assert third.gold == [msg(A, "2, 5, 9: smallest first.")]
    result = tokenize_pairs(loaded.pairs, tok, None, None)
    assert result.report.kept == 3 and result.examples[1].gold_ids == []
    for ex, pair in zip(result.examples, loaded.pairs):
        if pair.gold is None:
            continue
        # the gold response is tokenized exactly as the same text given as chosen
        as_chosen = PreferencePair(pair.prompt, pair.gold, pair.rejected, pair.origin)
        same = tokenize_pairs([as_chosen], tok, None, None).examples[0]
        assert ex.gold_ids == same.chosen_ids and ex.prompt_ids == same.prompt_ids
        assert ex.prompt_ids + ex.gold_ids == full_ids(tok, pair.prompt + pair.gold)
        assert ex.gold_ids[-1] == tok.eos_token_id
    assert result.report.length_stats()["gold"]["max"] == max(
        len(ex.gold_ids) for ex in result.examples)
    assert sum(result.report.gold_lengths) == sum(len(ex.gold_ids) for ex in result.examples)


def test_a_gold_conversation_or_transcript_loses_the_prompt_it_repeats():
    conv = {"chosen": [msg(U, "Hi"), msg(A, "Hello!")], "rejected": [msg(U, "Hi"), msg(A, "Go.")],
            "gold": [msg(U, "Hi"), msg(A, "Hello, how can I help?")]}
    (pair,) = load_pairs([conv]).pairs
    assert pair.prompt == [msg(U, "Hi")] and pair.gold == [msg(A, "Hello, how can I help?")]
    hh = {"chosen": "\n\nHuman: Hi there\n\nAssistant: Hello!",
          "rejected": "\n\nHuman: Hi there\n\nAssistant: Go away.",
          "gold": "\n\nHuman: Hi there\n\nAssistant: Hello! How can I help?"}
    (pair,) = load_pairs([hh]).pairs
    assert pair.gold == [msg(A, "Hello! How can I help?")]
    (pair,) = load_pairs([{**hh, "gold": "Hi! What can I do?"}]).pairs
    assert pair.gold == [msg(A, "Hi! What can I do?")]


def test_a_mapped_gold_column_and_its_absence(tmp_path):
    records = [{"q": "Hi", "good": "Hello", "bad": "Go", "reference_response": "Hello there"},
               {"q": "Hi", "good": "Hey", "bad": "No"}]
    src = write(tmp_path / "m.jsonl", records)
    columns = {"prompt": "q", "chosen": "good", "rejected": "bad", "gold": "reference_response"}
    with pytest.raises(DataError) as info:
        load_pairs(src, columns=columns)
    err = info.value
    assert (err.file, err.line, err.field, err.reason) == (src, 2, "reference_response",
                                                           "missing_field")
    assert f"{src}, line 2, field 'reference_response': column mapped to 'gold' is missing" \
        in str(err)
    skipped = load_pairs(src, columns=columns, on_bad_record="skip")
    assert skipped.report.skipped == {"missing_field": 1}
    assert skipped.pairs[0].gold == [msg(A, "Hello there")]
    # not mapped: a record without gold has none
    unmapped = load_pairs(src, columns={k: v for k, v in columns.items() if k != "gold"})
    assert [p.gold for p in unmapped.pairs] == [None, None]


def test_a_bad_gold_is_a_bad_record_naming_the_field():
    base = {"prompt": "p", "chosen": "a", "rejected": "b"}
    with pytest.raises(DataError, match=r"item 1, field 'gold': expected a string"):
        load_pairs([{**base, "gold": 5}])
    with pytest.raises(DataError, match=r"field 'gold\[0\]\.role'.*assistant"):
        load_pairs([{**base, "gold": [msg(U, "q")]}], fmt="explicit")
    with pytest.raises(ValueError, match=r"columns\['gold'\] is not read by format 'ranked'"):
        load_pairs([base], fmt="ranked",
                   columns={"responses": ["chosen", "rejected"], "label": "w", "gold": "g"})
    assert load_pairs([{**base, "gold": " "}]).report.empty_responses == 1
    with pytest.raises(DataError, match="field 'gold': empty response"):
        load_pairs([{**base, "gold": " "}], empty_response="bad")


def test_gold_counts_in_the_length_limits(tok):
    pair = PreferencePair([msg(U, "q")], [msg(A, "a")], [msg(A, "b")], "t:1",
                          gold=[msg(A, "a much longer gold answer than the others")])
    full = tokenize_pairs([pair], tok, None, None).examples[0]
    p, g = len(full.prompt_ids), len(full.gold_ids)
    assert g > max(len(full.chosen_ids), len(full.rejected_ids))
    assert tokenize_pairs([pair], tok, p + g, None).report.kept == 1
    dropped = tokenize_pairs([pair], tok, p + g - 1, None)
    assert dropped.report.dropped == {"too_long": 1} and dropped.report.overlong == [p + g]
    cut = tokenize_pairs([pair], tok, p + 3, None, overflow="truncate").examples[0]
    assert cut.gold_ids == full.gold_ids[:3] and cut.chosen_ids == full.chosen_ids[:3]


# -- the store -----------------------------------------------------------------------------------

EXAMPLES = [TokenizedPair([1, 2, 3], [4, 5], [6], [7, 8, 9, 10]),
            TokenizedPair([11], [12], [13, 14]),
            TokenizedPair([15, 16], [17, 18], []),       # desirable, unpaired
            TokenizedPair([19], [], [20, 21, 22]),       # undesirable, unpaired
            TokenizedPair([23], [], [24], [25])]


def test_the_store_keeps_gold_and_empty_sides(tmp_path):
    dest = tmp_path / "s"
    with build_in(dest, ids_dtype(1000)) as builder:
        builder.append(EXAMPLES[:2], [0, 1])
        builder.append(EXAMPLES[2:], [2, 5, 6])
        builder.seal({})
    store = TokenStore.open(dest)
    assert store is not None and list(store) == EXAMPLES
    assert store.lengths.tolist() == [[3, 2, 1, 4], [1, 1, 2, 0], [2, 2, 0, 0], [1, 0, 3, 0],
                                      [1, 0, 1, 1]]
    assert store.lengths.sum(axis=1).tolist() == [10, 4, 4, 4, 3]  # tokens per pair
    assert store.header["version"] == 2 and store.lengths.sum() == len(store.ids)
    assert list(store.take([3, 0])) == [EXAMPLES[3], EXAMPLES[0]]
    memory = StoreBuilder(ids_dtype(1000))
    memory.append(EXAMPLES, [0, 1, 2, 5, 6])
    in_memory = memory.finish({})
    assert list(in_memory) == EXAMPLES and in_memory.digest() == store.digest()
    assert TokenizedPair([1], [2], [3]) == TokenizedPair([1], [2], [3], [])


def test_a_store_of_the_three_column_version_is_rebuilt_not_misread(tmp_path):
    dest = tmp_path / "s"
    with build_in(dest, ids_dtype(1000)) as builder:
        builder.append(EXAMPLES, range(5))
        builder.seal({})
    header = json.loads((dest / "header.json").read_text())
    lengths = np.fromfile(dest / "lengths.bin", dtype=np.int32).reshape(-1, 4)[:, :3]
    lengths.tofile(dest / "lengths.bin")  # a version-1 store: [N, 3] lengths
    sizes = {**header["sizes"], "lengths": lengths.nbytes}
    (dest / "header.json").write_text(json.dumps({**header, "version": 1, "sizes": sizes}))
    assert TokenStore.open(dest) is None


# -- unpaired ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("label", "desirable"), [(True, True), (False, False), (1, True),
                                                  (0, False)])
def test_an_unpaired_label_picks_the_side(label, desirable):
    rec = {"prompt": "Name a prime.", "completion": "7", "label": label}
    result = load_pairs([rec])
    (pair,) = result.pairs
    assert result.report.format == "unpaired"
    assert pair.prompt == [msg(U, "Name a prime.")]
    assert (pair.chosen, pair.rejected) == (([msg(A, "7")], []) if desirable
                                            else ([], [msg(A, "7")]))
    assert (result.report.desirable, result.report.undesirable) == (
        (1, 0) if desirable else (0, 1))


@pytest.mark.parametrize("label", ["true", "1", 2, -1, 1.0, [True], {"ok": True}])
def test_any_other_label_is_a_bad_record_naming_it(tmp_path, label):
    src = write(tmp_path / "u.jsonl", [{"prompt": "p", "completion": "a", "label": True},
                                       {"prompt": "p", "completion": "b", "label": label}])
    with pytest.raises(DataError) as info:
        load_pairs(src)
    assert (info.value.line, info.value.field, info.value.reason) == (2, "label", "wrong_type")
    assert f"{src}, line 2, field 'label': expected true or false" in str(info.value)


def test_a_missing_label_says_what_kto_needs(tmp_path):
    src = write(tmp_path / "u.jsonl", [{"prompt": "p", "completion": "a"}])
    with pytest.raises(DataError) as info:
        load_pairs(src)
    err = info.value
    assert (err.line, err.field, err.reason) == (1, "label", "missing_field")
    assert "KTO's unpaired format needs `label` (true = desirable" in str(err)
    with pytest.raises(DataError, match=r"field 'thumbs_up'.*KTO's unpaired format needs `label`"):
        load_pairs(src, columns={"label": "thumbs_up"})


def test_unpaired_detection_and_columns():
    assert detect_format({"prompt": "p", "completion": "a", "label": False}) == "unpaired"
    assert detect_format({"prompt": [msg(U, "p")], "completion": [msg(A, "a")],
                          "label": True}) == "unpaired"
    assert detect_format({"prompt": "p", "chosen": "a", "rejected": "b",
                          "completion": "c", "label": True}) == "explicit"
    rec = {"question": "Name a prime.", "response": "9", "thumbs_up": False, "system": "Be brief."}
    result = load_pairs([rec], columns={"prompt": "question", "completion": "response",
                                        "label": "thumbs_up"})
    (pair,) = result.pairs
    assert result.report.format == "unpaired"
    assert pair.prompt == [msg("system", "Be brief."), msg(U, "Name a prime.")]
    assert (pair.chosen, pair.rejected) == ([], [msg(A, "9")])
    forced = load_pairs([rec], fmt="unpaired",
                        columns={"prompt": "question", "completion": "response",
                                 "label": "thumbs_up"})
    assert forced.pairs == result.pairs
    with pytest.raises(ValueError, match=r"columns\['label'\] of format 'unpaired' is one column"):
        check_columns({"label": ["a", "b"]}, "unpaired")
    with pytest.raises(ValueError, match=r"columns\['chosen'\] is not read by format 'unpaired'"):
        check_columns({"chosen": "a"}, "unpaired")


def test_an_unpaired_conversation_and_a_completion_without_response():
    rec = {"prompt": [msg(U, "Hi")], "completion": [msg(U, "Hi"), msg(A, "Hello!")],
           "label": True}
    (pair,) = load_pairs([rec]).pairs
    assert pair.chosen == [msg(A, "Hello!")] and pair.rejected == []
    with pytest.raises(DataError, match=r"field 'completion': no response"):
        load_pairs([{**rec, "completion": []}])
    with pytest.raises(DataError, match=r"field 'completion\[0\]\.role'"):
        load_pairs([{**rec, "completion": [msg(U, "more")]}])
    assert load_pairs([{**rec, "completion": " "}]).report.empty_responses == 1


@pytest.mark.parametrize(("rec", "fmt"), [
    ({"prompt": "p", "chosen": [], "rejected": "b"}, "explicit"),
    ({"prompt": "p", "chosen": "a", "rejected": []}, "explicit"),
    ({"prompt": [msg(U, "p")], "chosen": [], "rejected": [msg(A, "b")]}, "auto"),
    ({"conversations": [msg(U, "p")], "chosen": [], "rejected": "b"}, "auto"),
])
def test_a_paired_record_with_an_empty_response_is_still_rejected(rec, fmt):
    with pytest.raises(DataError) as info:
        load_pairs([rec], fmt=fmt)
    assert info.value.reason == "no_response"
    assert info.value.field == ("chosen" if rec["chosen"] == [] else "rejected")


def test_unpaired_examples_tokenize_with_an_empty_side(tok):
    records = [{"prompt": "What is 12 plus 30?", "completion": "42", "label": True},
               {"prompt": "What is 12 plus 30?", "completion": "I cannot help.", "label": False}]
    good, bad = load_pairs(records).pairs
    result = tokenize_pairs([good, bad], tok, None, None)
    assert result.report.kept == 2 and result.report.dropped == {}
    desirable, undesirable = result.examples
    paired = tokenize_pairs([PreferencePair(good.prompt, good.chosen, bad.rejected, "t:1")],
                            tok, None, None).examples[0]
    assert desirable == TokenizedPair(paired.prompt_ids, paired.chosen_ids, [])
    assert undesirable == TokenizedPair(paired.prompt_ids, [], paired.rejected_ids)
    assert result.examples.lengths[:, 1:3].tolist() == [[len(paired.chosen_ids), 0],
                                                       [0, len(paired.rejected_ids)]]
    stats = result.report.length_stats()  # the empty sides are no responses
    assert stats["chosen"]["mean"] == len(paired.chosen_ids) and "gold" not in stats
    # the limits read the one response there is
    p, r = len(paired.prompt_ids), len(paired.rejected_ids)
    assert tokenize_pairs([bad], tok, p + r, None).report.kept == 1
    assert tokenize_pairs([bad], tok, p + r - 1, None).report.dropped == {"too_long": 1}
    cut = tokenize_pairs([bad], tok, p + 2, None, overflow="truncate").examples[0]
    assert cut.chosen_ids == [] and cut.rejected_ids == paired.rejected_ids[:2]
    nothing = tokenize_pairs([bad], tok, 4, 4, overflow="truncate")
    assert nothing.report.dropped == {"empty_response": 1}


def test_a_pair_with_no_response_at_all_is_dropped(tok):
    none = PreferencePair([msg(U, "q")], [], [], "hand:1")
    result = tokenize_pairs([none], tok, None, None)
    assert result.report.dropped == {"empty_response": 1} and result.report.kept == 0


def test_the_slow_tokenizer_path_agrees_on_gold_and_empty_sides(tok):
    pairs = [*load_pairs(GOLD).pairs,
             *load_pairs([{"prompt": "q", "completion": "yes", "label": 1},
                          {"prompt": "q", "completion": "no", "label": 0}]).pairs]
    inner = copy.deepcopy(tok)
    fast = tokenize_pairs(pairs, inner, None, None)
    slow = tokenize_pairs(pairs, Slow(inner), None, None)
    assert list(slow.examples) == list(fast.examples) and fast.report.kept == 5


def test_tokenize_cache_tells_gold_apart(tok, tmp_path):
    pair = load_pairs(GOLD[:1]).pairs[0]
    first = tokenize_pairs([pair], tok, None, None, cache_dir=tmp_path)
    other = PreferencePair(pair.prompt, pair.chosen, pair.rejected, pair.origin,
                           gold=[msg(A, "Forty-two.")])
    again = tokenize_pairs([other], tok, None, None, cache_dir=tmp_path)
    assert first.report.cache == again.report.cache == "miss"
    assert again.examples[0].gold_ids != first.examples[0].gold_ids


# -- asft data check ----------------------------------------------------------------------------

@pytest.mark.usefixtures("fresh_cache")
def test_data_check_reports_gold_and_unpaired_counts(tmp_path, tokenizer_dir, capsys):
    records = [{"prompt": "p", "chosen": "a", "rejected": "b", "reference_response": "a!"},
               {"prompt": "q", "chosen": "c", "rejected": "d", "reference_response": "c!"}]
    src = write(tmp_path / "g.jsonl", records)
    assert main(["data", "check", src, "--tokenizer", tokenizer_dir,
                 "--columns", "gold=reference_response", "--json", "-"]) == 0
    out = capsys.readouterr().out
    assert "pairs with a gold response" in out and "gold" in out
    summary = json.loads(out[out.index("{\n"):])
    assert summary["load"]["with_gold"] == 2 and summary["tokens"]["kept"] == 2
    assert summary["tokens"]["lengths"]["gold"]["max"] > 0
    unpaired = write(tmp_path / "u.jsonl", [
        {"prompt": "p", "completion": "a", "label": True},
        {"prompt": "q", "completion": "b", "label": False},
        {"prompt": "r", "completion": "c", "label": 0}])
    assert main(["data", "check", unpaired, "--tokenizer", tokenizer_dir, "--json", "-"]) == 0
    out = capsys.readouterr().out
    assert "desirable (label true)" in out and "undesirable (label false)" in out
    assert "pairs with a gold response" not in out
    load = json.loads(out[out.index("{\n"):])["load"]
    assert (load["format"], load["desirable"], load["undesirable"]) == ("unpaired", 1, 2)
    assert main(["data", "check", str(tmp_path / "u.jsonl"), "--tokenizer", "none",
                 "--columns", "label=thumbs_up"]) == 1
    assert "KTO's unpaired format needs `label`" in capsys.readouterr().err
