"""Record formats: each adapter on realistic records, detection, column mapping, bad fields."""

import pytest

from asft.data import DataError, load_pairs
from asft.data.formats import (
    common_prefix_len,
    detect_format,
    hh_messages,
    hh_split,
)

U = "user"
A = "assistant"


def msg(role, content):
    return {"role": role, "content": content}


def one(records, **kw):
    result = load_pairs(records, **kw)
    assert len(result.pairs) == 1
    return result.pairs[0], result.report


def test_explicit_strings():
    pair, report = one([{"prompt": "What is 2+2?", "chosen": "4", "rejected": "5"}])
    assert report.format == "explicit"
    assert pair.prompt == [msg(U, "What is 2+2?")]
    assert pair.chosen == [msg(A, "4")]
    assert pair.rejected == [msg(A, "5")]
    assert pair.origin == "<records>:1"


def test_explicit_empty_prompt_and_system_field():
    pair, _ = one([{"prompt": "", "chosen": "a", "rejected": "b"}])
    assert pair.prompt == []
    pair, _ = one([{"system": "Be brief.", "prompt": "Hi", "chosen": "a", "rejected": "b"}])
    assert pair.prompt == [msg("system", "Be brief."), msg(U, "Hi")]


def test_explicit_with_message_lists_trl_style():
    rec = {"prompt": [msg(U, "Hi")], "chosen": [msg(A, "Hello!")], "rejected": [msg(A, "Go away.")]}
    pair, report = one([rec])
    assert report.format == "conversational"  # detected from the lists; explicit reads it alike
    assert one([rec], fmt="explicit")[0] == pair
    assert (pair.prompt, pair.chosen, pair.rejected) == ([msg(U, "Hi")], [msg(A, "Hello!")],
                                                         [msg(A, "Go away.")])


def test_ultrafeedback_binarized_strips_the_repeated_prompt():
    rec = {
        "prompt": "Name a color.",
        "chosen": [msg(U, "Name a color."), msg(A, "Blue.")],
        "rejected": [msg(U, "Name a color."), msg(A, "Seven.")],
        "score_chosen": 8.0, "score_rejected": 2.5,
    }
    pair, report = one([rec])
    assert report.format == "conversational"
    assert pair.prompt == [msg(U, "Name a color.")]
    assert pair.chosen == [msg(A, "Blue.")]
    assert pair.rejected == [msg(A, "Seven.")]


def test_conversational_without_prompt_uses_shared_prefix():
    shared = [msg("system", "S"), msg(U, "q1"), msg(A, "a1"), msg(U, "q2")]
    rec = {"chosen": [*shared, msg(A, "good")], "rejected": [*shared, msg(A, "bad")]}
    pair, _ = one([rec])
    assert pair.prompt == shared
    assert pair.chosen == [msg(A, "good")]


def test_conversational_divergence_at_a_user_turn_backs_up_to_an_assistant_turn():
    rec = {"chosen": [msg(U, "q"), msg(A, "a"), msg(U, "x"), msg(A, "y")],
           "rejected": [msg(U, "q"), msg(A, "a"), msg(U, "z"), msg(A, "w")]}
    pair, _ = one([rec])
    assert pair.prompt == [msg(U, "q")]
    assert pair.chosen[0] == msg(A, "a") and len(pair.chosen) == 3


def test_hh_transcript_multi_turn():
    c = "\n\nHuman: Hi there\n\nAssistant: Hello!\n\nHuman: Tell me a joke\n\nAssistant: Why did..."
    r = "\n\nHuman: Hi there\n\nAssistant: Hello!\n\nHuman: Tell me a joke\n\nAssistant: No."
    pair, report = one([{"chosen": c, "rejected": r}])
    assert report.format == "hh"
    assert pair.prompt == [msg(U, "Hi there"), msg(A, "Hello!"), msg(U, "Tell me a joke")]
    assert pair.chosen == [msg(A, "Why did...")]
    assert pair.rejected == [msg(A, "No.")]


def test_hh_split_uses_the_last_assistant_marker_inside_the_common_prefix():
    # Both answers start with "I" - the common prefix runs past the marker.
    c = "\n\nHuman: q\n\nAssistant: I agree"
    r = "\n\nHuman: q\n\nAssistant: I disagree"
    prompt, rest_c, rest_r = hh_split(c, r)
    assert prompt == "\n\nHuman: q\n\nAssistant:"
    assert (rest_c, rest_r) == (" I agree", " I disagree")


def test_hh_response_with_later_turns_becomes_several_messages():
    c = "\n\nHuman: q\n\nAssistant: a\n\nHuman: more?\n\nAssistant: b"
    r = "\n\nHuman: q\n\nAssistant: other"
    pair, _ = one([{"chosen": c, "rejected": r}])
    assert pair.chosen == [msg(A, "a"), msg(U, "more?"), msg(A, "b")]


def test_hh_markers_need_a_blank_line_and_leading_text_is_a_system_message():
    assert hh_messages("Be nice.\n\nHuman: say  Human: hi") == [
        msg("system", "Be nice."), msg(U, "say  Human: hi")]


def test_hh_without_shared_assistant_marker_is_named():
    with pytest.raises(DataError, match=r"line|item 1, field 'chosen': .*Assistant") as info:
        load_pairs([{"chosen": "\n\nHuman: a", "rejected": "\n\nHuman: b"}])
    assert info.value.reason == "no_shared_prompt"


def test_sharegpt():
    rec = {"conversations": [{"from": "system", "value": "S"}, {"from": "human", "value": "Q"}],
           "chosen": {"from": "gpt", "value": "good"},
           "rejected": {"from": "gpt", "value": "bad"}}
    pair, report = one([rec])
    assert report.format == "sharegpt"
    assert pair.prompt == [msg("system", "S"), msg(U, "Q")]
    assert pair.chosen == [msg(A, "good")]


def test_column_mapping():
    rec = {"question": "Q?", "good": "yes", "bad": "no", "extra": 1}
    pair, _ = one([rec], columns={"prompt": "question", "chosen": "good", "rejected": "bad"})
    assert pair.prompt == [msg(U, "Q?")] and pair.chosen == [msg(A, "yes")]


def test_column_mapping_missing_column_names_it():
    with pytest.raises(DataError, match=r"item 1, field 'good': column mapped to 'chosen'"):
        load_pairs([{"question": "Q", "bad": "n"}],
                   columns={"prompt": "question", "chosen": "good", "rejected": "bad"})


def test_bad_column_mapping_is_an_api_error():
    with pytest.raises(ValueError, match="unknown column key"):
        load_pairs([{"a": 1}], columns={"answer": "a"})


def test_forced_format_overrides_detection():
    # A prompt-less pair of plain strings is HH by detection; forcing "explicit" asks for a prompt.
    with pytest.raises(DataError, match="field 'prompt': missing"):
        load_pairs([{"chosen": "a", "rejected": "b"}], fmt="explicit")


def test_openai_text_parts_and_role_aliases():
    rec = {"chosen": [{"role": "Human", "content": [{"type": "text", "text": "q"}]},
                      {"role": "GPT", "content": "a"}],
           "rejected": [{"role": "user", "content": "q"}, {"role": "bot", "content": "b"}]}
    pair, _ = one([rec])
    assert pair.prompt == [msg(U, "q")] and pair.chosen == [msg(A, "a")]


@pytest.mark.parametrize(("record", "field", "reason"), [
    ({"chosen": 3, "rejected": "x"}, "chosen", "wrong_type"),
    ({"prompt": "p", "chosen": "x", "rejected": 7}, "rejected", "wrong_type"),
    ({"prompt": "p", "chosen": "x"}, "rejected", "missing_field"),
    ({"prompt": "p", "chosen": None, "rejected": "x"}, "chosen", "missing_field"),
    ({"chosen": [{"role": "user"}], "rejected": []}, "chosen[0]", "missing_field"),
    ({"chosen": [{"role": "wizard", "content": "x"}], "rejected": []}, "chosen[0].role",
     "wrong_type"),
    ({"chosen": [{"role": "user", "content": {"a": 1}}], "rejected": []}, "chosen[0].content",
     "wrong_type"),
    ({"chosen": ["hi"], "rejected": []}, "chosen[0]", "wrong_type"),
    ({"prompt": "p", "chosen": [msg(U, "x")], "rejected": [msg(A, "y")]}, "chosen[0].role",
     "no_shared_prompt"),
    ({"chosen": [msg(U, "q"), msg(A, "a")], "rejected": [msg(U, "q")]}, "rejected", "no_response"),
    ({"system": 5, "prompt": "p", "chosen": "a", "rejected": "b"}, "system", "wrong_type"),
    ({"conversations": "nope", "chosen": "a", "rejected": "b"}, "conversations", "wrong_type"),
])
def test_bad_fields_are_named(record, field, reason):
    with pytest.raises(DataError) as info:
        load_pairs([record])
    err = info.value
    assert (err.file, err.line, err.field, err.reason) == ("<records>", 1, field, reason)
    assert f"field {field!r}" in str(err)


def test_identical_responses_are_rejected_even_when_only_whitespace_differs():
    with pytest.raises(DataError, match="identical") as info:
        load_pairs([{"prompt": "p", "chosen": "same ", "rejected": "same"}])
    assert info.value.reason == "identical_responses"


def test_empty_response_kept_and_counted_by_default_or_bad_on_request():
    records = [{"prompt": "p", "chosen": " ", "rejected": "no"},
               {"prompt": "p", "chosen": "yes", "rejected": "no"}]
    result = load_pairs(records)
    assert result.report.empty_responses == 1 and len(result.pairs) == 2
    with pytest.raises(DataError, match="item 1, field 'chosen': empty response"):
        load_pairs(records, empty_response="bad")
    result = load_pairs(records, empty_response="bad", on_bad_record="skip")
    assert result.report.skipped == {"empty_response": 1} and len(result.pairs) == 1


def test_lone_surrogate_is_not_utf8():
    with pytest.raises(DataError, match="lone surrogate") as info:
        load_pairs([{"prompt": "p", "chosen": "a\ud800", "rejected": "b"}])
    assert info.value.field == "chosen[0].content" and info.value.reason == "not_utf8"


def test_detect_format():
    assert detect_format({"conversations": [], "chosen": {}, "rejected": {}}) == "sharegpt"
    assert detect_format({"chosen": [], "rejected": []}) == "conversational"
    assert detect_format({"prompt": "p", "chosen": "", "rejected": ""}) == "explicit"
    assert detect_format({"chosen": "", "rejected": ""}) == "hh"
    with pytest.raises(DataError, match="fields present: 'a', 'b'"):
        detect_format({"a": 1, "b": 2})


@pytest.mark.parametrize(("a", "b"), [("", ""), ("abc", "abd"), ("abc", "abc"), ("ab", "abc"),
                                      ("x" * 1000 + "y", "x" * 1000 + "z")])
def test_common_prefix_len(a, b):
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    assert common_prefix_len(a, b) == n


def test_limit_stops_early():
    records = [{"prompt": "p", "chosen": f"a{i}", "rejected": "b"} for i in range(10)]
    assert len(load_pairs(records, limit=3).pairs) == 3


def test_llama_factory_typed_parts_with_value():
    rec = {"conversations": [{"from": "human", "value": [{"type": "text", "value": "Describe "},
                                                         {"type": "text", "value": "it."}]}],
           "chosen": {"from": "gpt", "value": [{"type": "text", "value": "Round."}]},
           "rejected": {"from": "gpt", "value": "Square."}}
    pair, report = one([rec])
    assert report.format == "sharegpt"
    assert pair.prompt == [msg(U, "Describe it.")] and pair.chosen == [msg(A, "Round.")]


@pytest.mark.parametrize(("part", "field", "match"), [
    ({"type": "image", "image": "cat.png"}, "chosen[0].content[1]", "only text parts"),
    ({"type": "image_url", "image_url": {"url": "x"}}, "chosen[0].content[1]", "only text parts"),
    ({"type": "text", "value": 3}, "chosen[0].content[1].value", "expected a string"),
    ("plain", "chosen[0].content[1]", "a content part object"),
])
def test_non_text_content_parts_are_named(part, field, match):
    content = [{"type": "text", "text": "look:"}, part]
    rec = {"chosen": [{"role": "user", "content": content}, msg(A, "a")],
           "rejected": [msg(U, "q"), msg(A, "b")]}
    with pytest.raises(DataError, match=match) as info:
        load_pairs([rec])
    assert (info.value.field, info.value.reason) == (field, "wrong_type")


def test_llama_factory_chosen_messages_are_detected_as_conversational():
    shared = [{"from": "human", "value": "Pick a number."}]
    rec = {"chosen_messages": [*shared, {"from": "gpt", "value": "7"}],
           "rejected_messages": [*shared, {"from": "gpt", "value": "banana"}]}
    pair, report = one([rec])
    assert report.format == "conversational"
    assert pair.prompt == [msg(U, "Pick a number.")]
    assert (pair.chosen, pair.rejected) == ([msg(A, "7")], [msg(A, "banana")])
    assert detect_format(rec) == "conversational"
    with pytest.raises(DataError, match=r"field 'rejected_messages\[1\]\.from': unknown role"):
        load_pairs([{**rec, "rejected_messages": [*shared, {"from": "wizard", "value": "x"}]}])


def test_chosen_messages_under_any_column_names():
    rec = {"c": [msg(U, "q"), msg(A, "yes")], "r": [msg(U, "q"), msg(A, "no")]}
    pair, _ = one([rec], columns={"chosen": "c", "rejected": "r"})
    assert pair.prompt == [msg(U, "q")] and pair.rejected == [msg(A, "no")]


def test_default_system_prompt_only_where_the_prompt_has_none():
    records = [{"prompt": "Hi", "chosen": "a", "rejected": "b"},
               {"system": "Be terse.", "prompt": "Hi", "chosen": "a", "rejected": "b"},
               {"prompt": [msg("system", "Own."), msg(U, "Hi")], "chosen": "a", "rejected": "b"}]
    pairs = load_pairs(records, fmt="explicit", system="Be kind.").pairs
    assert [p.prompt for p in pairs] == [
        [msg("system", "Be kind."), msg(U, "Hi")],
        [msg("system", "Be terse."), msg(U, "Hi")],
        [msg("system", "Own."), msg(U, "Hi")]]
    assert load_pairs(records[:1]).pairs[0].prompt == [msg(U, "Hi")]


def test_unknown_column_key_suggests_the_closest():
    with pytest.raises(ValueError, match=r"unknown column key\(s\) 'promt' \(did you mean 'prompt'\?\)"):
        load_pairs([{"a": 1}], columns={"promt": "a"})


def test_detect_rated():
    assert detect_format({"instruction": "q", "completions": [{"response": "a"}]}) == "rated"
    assert detect_format({"prompt": "q", "completions": [{}], "chosen": "a",
                          "rejected": "b"}) == "explicit"
