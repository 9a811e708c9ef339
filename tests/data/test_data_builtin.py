"""The built-in task: deterministic, disjoint splits, correct chosen answers, a strict checker."""

import re

import pytest

from asft.data import DataError, load_pairs
from asft.data.builtin import (
    DEFAULT_SOURCE,
    TASKS,
    check_answer,
    extract_answer,
    parse_source,
    problems,
    records,
    split_of,
)


def solve(prompt: str) -> str:
    """An independent solver for every generated prompt form."""
    nums = [int(x) for x in re.findall(r"\d+", prompt)]
    if prompt.startswith("Sort"):
        return ", ".join(map(str, sorted(nums)))
    if " + " in prompt or "more" in prompt:
        return str(nums[0] + nums[1])
    if " - " in prompt or "gives away" in prompt:
        return str(nums[0] - nums[1])
    if "times" in prompt or "bags" in prompt:
        return str(nums[0] * nums[1])
    factors = {"meters kilometers": 1000, "centimeters meters": 100, "grams kilograms": 1000,
               "milliliters liters": 1000, "minutes hours": 60, "seconds minutes": 60,
               "hours days": 24, "days weeks": 7, "months years": 12, "cents dollars": 100}
    m = re.match(r"How many (\w+) are in (\d+) (\w+)\?", prompt)
    want, n, have = m.group(1), int(m.group(2)), m.group(3).rstrip("s") + "s"
    if f"{want} {have}" in factors:
        return str(n * factors[f"{want} {have}"])
    return str(n // factors[f"{have} {want}"])


@pytest.mark.parametrize("task", list(TASKS))
def test_chosen_is_correct_and_rejected_is_not(task):
    for rec in records(task, "train", n=2000, seed=1):
        expected = solve(rec["prompt"])
        assert rec["chosen"] == f"Answer: {expected}"
        assert check_answer(rec["chosen"], expected)
        assert not check_answer(rec["rejected"], expected), rec


def test_sorting_inputs_are_never_already_sorted():
    for p in problems("sorting", "train", n=500):
        nums = [int(x) for x in re.findall(r"\d+", p.prompt)]
        assert nums != sorted(nums)


def test_deterministic_and_seeded():
    assert records("mixed", "train", n=50, seed=3) == records("mixed", "train", n=50, seed=3)
    assert records("mixed", "train", n=50, seed=3) != records("mixed", "train", n=50, seed=4)


def test_splits_are_disjoint_and_sized():
    train = problems("mixed", "train")
    test = problems("mixed", "test")
    assert (len(train), len(test)) == (2000, 200)
    assert not {p.prompt for p in train} & {p.prompt for p in test}
    assert all(split_of(p.prompt) == "test" for p in test)
    assert len({p.prompt for p in train}) == len(train)


def test_responses_are_short():
    from asft.model.tiny import build_tokenizer

    tok = build_tokenizer()
    for rec in records("mixed", "train", n=200):
        assert len(tok(rec["chosen"], add_special_tokens=False)["input_ids"]) <= 20
        assert len(rec["chosen"]) <= 40


def test_source_strings():
    assert parse_source("builtin:arithmetic:test?n=5&seed=2") == ("arithmetic", "test", 5, 2)
    assert parse_source("builtin:units", split="test") == ("units", "test", None, 0)
    result = load_pairs("builtin:sorting:test?n=7")
    assert len(result.pairs) == 7 and result.report.format == "explicit"
    assert result.pairs[0].origin == "builtin:sorting:test:1"
    assert len(load_pairs(DEFAULT_SOURCE, limit=3).pairs) == 3
    for bad, msg in [("builtin:poetry", "unknown built-in task"), ("builtin:units:dev", "unknown split"),
                     ("builtin:units?n=x", "integers"), ("builtin:units?size=3", "unknown parameter"),
                     ("builtin:units:test", None)]:
        if msg is None:
            with pytest.raises(DataError, match="contradicts"):
                load_pairs(bad, split="train")
        else:
            with pytest.raises(DataError, match=msg):
                load_pairs(bad)


def test_impossible_size_fails_instead_of_spinning():
    with pytest.raises(ValueError, match="fewer than"):
        problems("units", "test", n=5000)


@pytest.mark.parametrize(("response", "expected", "ok"), [
    ("Answer: 42", "42", True),
    ("Answer: 42.", "42", True),
    ("answer:42\nbecause 40 + 2", "42", True),
    ("The answer is 42.", "42", True),
    ("42", "Answer: 42", True),
    ("Answer: 41", "42", False),
    ("40 + 2 = 42", "42", False),
    ("I'm not sure, sorry.", "42", False),
    ("", "42", False),
    ("Answer: 7, 19, 42", "7, 19, 42", True),
    ("Answer: 19, 7, 42", "7, 19, 42", False),
    ("Answer: 7, 19", "7, 19, 42", False),
    ("Answer: " + "9" * 5000, "42", False),
])
def test_check_answer(response, expected, ok):
    assert check_answer(response, expected) is ok


def test_check_answer_against_a_pair():
    pair = load_pairs("builtin:arithmetic:test?n=1").pairs[0]
    assert check_answer(pair.chosen[0]["content"], pair)
    assert extract_answer("nothing here") is None
