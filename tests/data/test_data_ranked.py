"""Formats ``ranked`` and ``rated``: labels, votes, scores and ratings turned into pairs; ties
skipped and counted; bad labels and bad options named."""

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from asft.data import DataError, load_pairs
from asft.data.errors import REASONS, Skipped
from asft.data.formats import COLUMN_KEYS, FORMATS

ROOT = Path(__file__).resolve().parents[2]
U = "user"
A = "assistant"


def msg(role, content):
    return {"role": role, "content": content}


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


# PandaLM's human-annotated test set: three annotators, 0 = tie, 1 / 2 = response1 / response2.
PANDALM = {"columns": {"prompt": "instruction", "responses": ["response1", "response2"],
                       "label": ["annotator1", "annotator2", "annotator3"]},
           "labels": {"0": "tie", "1": "response1", "2": "response2"}}


def pandalm(votes, i=0):
    return {"motivation_app": "Grammarly", "cmp_key": f"key{i}", "input": "",
            "instruction": f"Fix the grammar {i}.", "response1": f"first {i}",
            "response2": f"second {i}", **dict(zip(("annotator1", "annotator2", "annotator3"), votes))}


def test_pandalm_majority_of_three_votes_wins():
    result = load_pairs([pandalm((2, 2, 1)), pandalm((1, 1, 0), 1)], fmt="ranked", **PANDALM)
    first, second = result.pairs
    assert first.prompt == [msg(U, "Fix the grammar 0.")]
    assert (first.chosen, first.rejected) == ([msg(A, "second 0")], [msg(A, "first 0")])
    # Two of three votes (the third a tie vote) are a majority of the votes cast.
    assert (second.chosen, second.rejected) == ([msg(A, "first 1")], [msg(A, "second 1")])
    assert result.report.format == "ranked" and result.report.skipped == {}


@pytest.mark.parametrize("votes", [(1, 0, 2), (0, 0, 1), (1, 0, 0), (0, 0, 0)])
def test_pandalm_without_a_majority_is_a_tie_skipped_even_under_error(votes):
    result = load_pairs([pandalm(votes), pandalm((2, 2, 2), 1)], fmt="ranked",
                        on_bad_record="error", **PANDALM)
    assert [p.origin for p in result.pairs] == ["<records>:2"]
    assert result.report.skipped == {"tie": 1}
    assert result.report.read == 2 and result.report.kept == 1
    assert result.report.examples and "item 1, field 'annotator1'" in result.report.examples[0]
    summary = result.report.to_dict()
    assert summary["format"] == "ranked" and summary["skipped"] == {"tie": 1}


def test_a_file_of_ties_has_no_usable_pairs(tmp_path):
    path = write_jsonl(tmp_path / "ties.jsonl", [pandalm((0, 0, 1)), pandalm((1, 2, 0))])
    with pytest.raises(DataError, match=r"no usable pairs: all 2 records were skipped \(2 tie\)"):
        load_pairs(path, fmt="ranked", **PANDALM)


def pku(better, i=0):
    return {"prompt": f"How do I pick a lock {i}?", "response_0": f"I can't help with that {i}.",
            "response_1": f"Use a tension wrench {i}.", "is_response_0_safe": True,
            "is_response_1_safe": False, "better_response_id": better, "safer_response_id": 0}


def test_pku_saferlhf_index_label():
    cols = {"responses": ["response_0", "response_1"], "label": "better_response_id"}
    result = load_pairs([pku(1), pku(0, 1)], fmt="ranked", columns=cols)
    first, second = result.pairs
    assert first.prompt == [msg(U, "How do I pick a lock 0?")]
    assert (first.chosen, first.rejected) == ([msg(A, "Use a tension wrench 0.")],
                                              [msg(A, "I can't help with that 0.")])
    assert second.chosen == [msg(A, "I can't help with that 1.")]
    # The safety label instead of the helpfulness one flips the first pair.
    safer = load_pairs([pku(1)], fmt="ranked", columns={**cols, "label": "safer_response_id"})
    assert safer.pairs[0].chosen == first.rejected


def test_index_label_as_csv_text_and_column_name_label(tmp_path):
    path = tmp_path / "pku.csv"
    path.write_text("prompt,response_0,response_1,better_response_id\nq,a,b,1\nq2,c,d,0\n")
    cols = {"responses": ["response_0", "response_1"], "label": "better_response_id"}
    pairs = load_pairs(path, fmt="ranked", columns=cols).pairs
    assert [p.chosen[0]["content"] for p in pairs] == ["b", "c"]
    named = [{"prompt": "q", "response_0": "a", "response_1": "b", "better": "response_1"}]
    pair = load_pairs(named, fmt="ranked", columns={**cols, "label": "better"}).pairs[0]
    assert (pair.chosen, pair.rejected) == ([msg(A, "b")], [msg(A, "a")])


ARENA = {"columns": {"responses": ["conversation_a", "conversation_b"], "label": "winner"},
         "labels": {"model_a": "conversation_a", "model_b": "conversation_b", "tie": "tie",
                    "tie (bothbad)": "tie"}}


def arena(winner, i=0):
    a = [msg(U, f"Hi {i}"), msg(A, "Hello from A"), msg(U, "Tell a joke"), msg(A, "A's joke")]
    b = [msg(U, f"Hi {i}"), msg(A, "Hello from B"), msg(U, "Tell a joke"), msg(A, "B's joke")]
    return {"question_id": f"q{i}", "model_a": "vicuna-13b", "model_b": "koala-13b",
            "winner": winner, "judge": "arena_user_1", "conversation_a": a,
            "conversation_b": b, "turn": 2, "anony": True, "language": "English"}


def test_chatbot_arena_winner_with_labels_map_and_implicit_prompt():
    records = [arena("model_b"), arena("tie", 1), arena("tie (bothbad)", 2), arena("model_a", 3)]
    result = load_pairs(records, fmt="ranked", **ARENA)
    assert result.report.skipped == {"tie": 2}
    b_wins, a_wins = result.pairs
    assert b_wins.prompt == [msg(U, "Hi 0")]  # the shared prefix
    assert b_wins.chosen == [msg(A, "Hello from B"), msg(U, "Tell a joke"), msg(A, "B's joke")]
    assert b_wins.rejected[0] == msg(A, "Hello from A")
    assert a_wins.chosen[-1] == msg(A, "A's joke") and a_wins.origin == "<records>:4"


def test_bad_label_value_names_file_line_and_field(tmp_path):
    path = write_jsonl(tmp_path / "arena.jsonl", [arena("model_a"), arena("model_c", 1)])
    with pytest.raises(DataError) as info:
        load_pairs(path, fmt="ranked", **ARENA)
    err = info.value
    assert (err.file, err.line, err.field, err.reason) == (str(path), 2, "winner", "wrong_type")
    assert str(err).startswith(f"{path}, line 2, field 'winner': label 'model_c' is not one of")
    assert "'model_a', 'model_b', 'tie', 'tie (bothbad)'" in str(err)
    skipped = load_pairs(path, fmt="ranked", on_bad_record="skip", **ARENA)
    assert skipped.report.skipped == {"wrong_type": 1} and len(skipped.pairs) == 1


@pytest.mark.parametrize("label", [2, -1, "response_2", 0.5, [0]])
def test_default_labels_accept_only_indexes_and_response_columns(label):
    rec = {"prompt": "q", "response_0": "a", "response_1": "b", "label": label}
    with pytest.raises(DataError, match=r"field 'label': label .* is not one of the accepted "
                                        r"values: '0', '1', 'response_0', 'response_1'"):
        load_pairs([rec], fmt="ranked",
                   columns={"responses": ["response_0", "response_1"], "label": "label"})


def test_string_responses_without_a_prompt_column_are_named():
    rec = {"response_0": "a", "response_1": "b", "label": 0}
    with pytest.raises(DataError, match="field 'prompt': no prompt column") as info:
        load_pairs([rec], fmt="ranked",
                   columns={"responses": ["response_0", "response_1"], "label": "label"})
    assert info.value.reason == "missing_field"


def test_shared_prefix_errors_name_the_response_columns():
    rec = {"a": [msg(U, "q"), msg(A, "x")], "b": [msg(U, "q")], "w": "a"}
    with pytest.raises(DataError, match="field 'b': no response") as info:
        load_pairs([rec], fmt="ranked", columns={"responses": ["a", "b"], "label": "w"})
    assert info.value.reason == "no_response"


SCORED = {"responses": ["response_a", "response_b", "response_c"],
          "scores": ["score_a", "score_b", "score_c"]}


def helpsteer(scores, i=0):
    return {"prompt": f"Summarize {i}.", "response_a": "short", "response_b": "long",
            "response_c": "wrong", **dict(zip(("score_a", "score_b", "score_c"), scores))}


def test_scores_highest_chosen_lowest_rejected_equal_top_is_a_tie():
    records = [helpsteer((3.5, 4, 1)), helpsteer(("2", 1, "3.25"), 1), helpsteer((4, 2, 4), 2)]
    result = load_pairs(records, fmt="ranked", columns={"prompt": "prompt", **SCORED})
    first, second = result.pairs
    assert (first.chosen, first.rejected) == ([msg(A, "long")], [msg(A, "wrong")])
    assert (second.chosen, second.rejected) == ([msg(A, "wrong")], [msg(A, "long")])
    assert result.report.skipped == {"tie": 1}
    assert "field 'score_a': equal top scores" in result.report.examples[0]


def test_a_score_that_is_not_a_number_is_named():
    with pytest.raises(DataError, match="item 1, field 'score_b': score 'high' is not a number"):
        load_pairs([helpsteer((1, "high", 2))], fmt="ranked", columns=SCORED)


def test_labels_with_more_than_two_responses_reject_the_first_loser():
    rec = {"prompt": "q", "r0": "a", "r1": "b", "r2": "c", "best": 1}
    pair = load_pairs([rec], fmt="ranked",
                      columns={"responses": ["r0", "r1", "r2"], "label": "best"}).pairs[0]
    assert (pair.chosen, pair.rejected) == ([msg(A, "b")], [msg(A, "a")])


def completion(response, score, **fine):
    annotations = {k: {"Rating": v, "Rationale": "..."} for k, v in fine.items()}
    return {"model": "m", "principle": "helpfulness", "custom_system_prompt": "",
            "response": response, "overall_score": score, "annotations": annotations,
            "critique": "ok", "fine-grained_score": 3.0}


def ultrafeedback(scores, i=0, **fine):
    completions = [completion(f"answer {i}.{k}", s, **{name: v[k] for name, v in fine.items()})
                   for k, s in enumerate(scores)]
    return {"source": "evol_instruct", "instruction": f"Question {i}?",
            "models": ["m"] * len(scores), "completions": completions,
            "correct_answers": ["None"], "incorrect_answers": ["None"]}


def test_ultrafeedback_raw_is_detected_as_rated_worst_binarization():
    result = load_pairs([ultrafeedback((6.5, 8, 2, 8), 0)], binarize="worst")
    pair = result.pairs[0]
    assert result.report.format == "rated"
    assert pair.prompt == [msg(U, "Question 0?")]
    assert pair.chosen == [msg(A, "answer 0.1")]  # the first of the two rated 8
    assert pair.rejected == [msg(A, "answer 0.2")]


def rejected_texts(records, **kw):
    return [p.rejected[0]["content"] for p in load_pairs(records, fmt="rated", **kw).pairs]


def test_random_binarization_is_seeded_and_always_strictly_lower():
    records = [ultrafeedback((9, 7, 5, 3, 1), i) for i in range(30)]
    same = rejected_texts(records, seed=3)
    assert rejected_texts(records, seed=3) == same
    assert all(text.rsplit(".", 1)[1] in "1234" for text in same)  # never the 9 (index 0)
    assert len(set(same)) > 1  # the draw varies between records
    assert any(rejected_texts(records, seed=s) != same for s in (0, 1, 2, 4))
    # ... and does not depend on where a record stands in the file
    assert rejected_texts(records[::-1], seed=3) == same[::-1]


def test_random_binarization_does_not_depend_on_the_hash_seed():
    code = ("from asft.data import load_pairs\n"
            "from tests.data.test_data_ranked import rejected_texts, ultrafeedback\n"
            "print(rejected_texts([ultrafeedback((9, 7, 5, 3, 1), i) for i in range(12)]))\n")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True, cwd=ROOT, env={**os.environ, "PYTHONHASHSEED": h}).stdout
            for h in ("1", "2")}
    records = [ultrafeedback((9, 7, 5, 3, 1), i) for i in range(12)]
    assert outs == {f"{rejected_texts(records)}\n"}


def test_rated_all_equal_is_a_tie_and_na_ratings_are_left_out():
    records = [
        ultrafeedback((7, 7, 7), 0, helpfulness=["5", "5", 5]),
        # helpfulness ratings: the "N/A" completion is left out, the best of the rest chosen
        ultrafeedback((1, 1, 1), 1, helpfulness=["N/A", "3", "5"]),
        ultrafeedback((1, 1, 1), 2, helpfulness=["N/A", "N/A", "5"]),
    ]
    with pytest.raises(DataError, match=r"no usable pairs: all 2 records were skipped \(2 tie\)"):
        load_pairs(records[:1] * 2, fmt="rated")
    result = load_pairs(records, fmt="rated", binarize="worst",
                        columns={"rating": "annotations.helpfulness.Rating"})
    (pair,) = result.pairs
    assert (pair.chosen, pair.rejected) == ([msg(A, "answer 1.2")], [msg(A, "answer 1.1")])
    assert result.report.skipped == {"tie": 1, "too_few_rated": 1}


@pytest.mark.parametrize(("change", "field", "reason"), [
    ({"response": None}, "completions[1].response", "missing_field"),
    ({"response": 5}, "completions[1].response", "wrong_type"),
    ({"overall_score": None}, "completions[1].overall_score", "missing_field"),
    ({"overall_score": [4]}, "completions[1].overall_score", "wrong_type"),
    ({"response": [{"type": "image", "image": "x.png"}]}, "completions[1].response[0]",
     "wrong_type"),
])
def test_rated_bad_completion_is_named(change, field, reason):
    rec = ultrafeedback((8, 5, 2))
    rec["completions"][1].update(change)
    with pytest.raises(DataError) as info:
        load_pairs([rec], fmt="rated")
    assert (info.value.line, info.value.field, info.value.reason) == (1, field, reason)


def test_rated_column_mapping():
    rec = {"question": "Q", "outputs": [{"text": "good", "score": "9"}, {"text": "bad", "score": 2}]}
    cols = {"prompt": "question", "completions": "outputs", "response": "text", "rating": "score"}
    result = load_pairs([rec], columns=cols)  # detected as rated through the mapped completions
    assert result.report.format == "rated"
    assert (result.pairs[0].chosen, result.pairs[0].rejected) == ([msg(A, "good")],
                                                                  [msg(A, "bad")])


@pytest.mark.parametrize(("kw", "match"), [
    ({"columns": {"respones": ["a", "b"], "label": "w"}}, r"did you mean 'responses'\?"),
    ({"columns": {"responses": ["a"], "label": "w"}}, "at least 2 response columns"),
    ({"columns": {"responses": "a", "label": "w"}}, "must be a list of column names"),
    ({"columns": {"responses": ["a", "a"], "label": "w"}}, "names a column twice"),
    ({"columns": {"responses": ["a", "b"]}}, "exactly one of .* got neither"),
    ({"columns": {"responses": ["a", "b"], "label": "w", "scores": ["x", "y"]}}, "got both"),
    ({"columns": {"responses": ["a", "b"], "scores": ["x"]}}, "one column per response"),
    ({"columns": {"responses": ["a", "b"], "label": "w"}, "labels": {"1": "c"}},
     r"labels\['1'\] = 'c' is not a response column \(a, b\)"),
    ({"columns": {"responses": ["a", "b"], "label": "w"}, "labels": {"1": "2"}},
     "index below 2"),
    ({"columns": {"responses": ["a", "b"], "label": "w", "prompt": ["p"]}},
     r"columns\['prompt'\] must be a non-empty column name,"),
    ({"columns": {"responses": ["a", "b"], "label": "w", "chosen": "c"}},
     r"columns\['chosen'\] is not read by format 'ranked'"),
    ({"columns": {"responses": ["a", "b"], "label": "w"}, "binarize": "best"}, "binarize"),
])
def test_bad_ranked_options_are_value_errors(kw, match):
    with pytest.raises(ValueError, match=match) as info:
        load_pairs([{"a": 1}], fmt="ranked", **kw)
    assert not isinstance(info.value, DataError)


@pytest.mark.parametrize(("kw", "match"), [
    ({"columns": {"responses": ["a", "b"], "label": "w"}}, r"use fmt='ranked'"),
    ({"labels": {"0": "tie"}}, "labels: map the label values of format 'ranked'"),
    ({"binarize": "median"}, r"binarize: 'median' is not one of 'random', 'worst'"),
    ({"system": 3}, "system: must be a string"),
    ({"seed": "x"}, "seed: must be an integer"),
])
def test_ranked_options_outside_ranked_are_value_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        load_pairs([{"a": 1}], **kw)


def test_formats_and_keys_are_listed():
    assert {"ranked", "rated"} <= set(FORMATS)
    assert {"responses", "label", "scores", "completions", "response", "rating"} <= set(COLUMN_KEYS)
    assert {"tie", "too_few_rated"} <= set(REASONS)


def test_skipped_keeps_its_class_when_located_and_pickled():
    err = Skipped("no preference", field="w", reason="tie").located("f.jsonl", 3, "line")
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is Skipped and str(again) == "f.jsonl, line 3, field 'w': no preference"
