"""``asft pairs``: pair construction on hand-made scores (ties, caps, order), the builtin
scorer's partial scores, the run end to end (fixed texts for exact pairs; tiny-llama for
counts, format and reproducible sampling), resume after an interruption giving the very same
file, refused settings and sources, and ``asft data check`` reading the output back."""

from __future__ import annotations

import json
import math

import pytest

from asft.cli import main
from asft.data import load_pairs
from asft.experiments.pairs import sampling, scorers
from asft.experiments.pairs.builtin_score import BuiltinScorer, builtin_score
from asft.experiments.pairs.items import PromptItem
from asft.experiments.pairs.pairing import make_pairs

SOURCE = "builtin:arithmetic"


# -- pair construction ---------------------------------------------------------------------

def test_best_worst_is_the_highest_against_the_lowest():
    result = make_pairs([0.2, 1.0, 0.0, 0.5], ["a", "b", "c", "d"])
    assert result.pairs == ((1, 2),) and result.skipped is None
    # equal best (and equal worst) scores: the first of each, in sample order
    assert make_pairs([1.0, 0.0, 1.0, 0.0], ["a", "b", "c", "d"]).pairs == ((0, 1),)


@pytest.mark.parametrize("scores, texts, reason", [
    ([0.5, 0.5, 0.5], ["a", "b", "c"], "tie"),
    ([0.5, None, 0.5], ["a", "b", "c"], "tie"),            # failures do not break a tie
    ([None, 1.0, None], ["a", "b", "c"], "too_few_scored"),
    ([math.nan, 1.0], ["a", "b"], "too_few_scored"),       # NaN is no score
    ([1.0, 0.0], ["same", "same"], "identical"),
])
def test_prompts_without_a_pair_say_why(scores, texts, reason):
    for mode in ("best-worst", "all"):
        assert make_pairs(scores, texts, mode) == make_pairs(scores, texts, mode)
        result = make_pairs(scores, texts, mode)
        assert result.pairs == () and result.skipped == reason


def test_identical_texts_never_pair_and_best_worst_takes_the_next_gap():
    # the largest gap (0 vs 2) joins two identical texts: the next gap (0.5) wins, lower i first
    assert make_pairs([1.0, 0.5, 0.0], ["x", "y", "x"]).pairs == ((0, 1),)


def test_all_orders_by_gap_then_index_and_caps():
    scores, texts = [0.0, 1.0, 0.5, 0.25], ["a", "b", "c", "d"]
    every = ((1, 0), (1, 3), (1, 2), (2, 0), (2, 3), (3, 0))
    assert make_pairs(scores, texts, "all").pairs == every
    assert make_pairs(scores, texts, "all", max_pairs=2).pairs == every[:2]
    assert make_pairs(scores, texts, "all", max_pairs=100).pairs == every
    assert make_pairs(scores, texts, "best-worst", max_pairs=5).pairs == every[:1]


def test_all_never_repeats_a_pair_of_texts_nor_pairs_a_tie():
    # samples 0 and 2 are the same answer with the same score: one pair against sample 1
    assert make_pairs([1.0, 0.0, 1.0], ["a", "b", "a"], "all").pairs == ((0, 1),)
    # 0 and 2 tie: never a pair between them
    assert make_pairs([1.0, 0.0, 1.0], ["a", "b", "c"], "all").pairs == ((0, 1), (2, 1))


def test_make_pairs_refuses_bad_input():
    with pytest.raises(ValueError, match="2 scores for 3 samples"):
        make_pairs([1.0, 0.0], ["a", "b", "c"])
    with pytest.raises(ValueError, match="unknown pairing mode"):
        make_pairs([1.0, 0.0], ["a", "b"], "some")


# -- the builtin scorer --------------------------------------------------------------------

def test_builtin_score_values():
    assert builtin_score("Answer: 42", "42") == 1.0
    assert builtin_score("The sum is 42.\nsome more", "42") == 1.0   # first line, no Answer:
    assert builtin_score("Answer: 41", "42") == pytest.approx(0.5 * 42 / 43)
    assert builtin_score("Answer: 4", "42") == pytest.approx(0.5 / (1 + 38 / 42))
    assert builtin_score("Answer: 3", "0") == pytest.approx(0.5 / (1 + 3))   # |e| < 1: absolute
    assert builtin_score("Answer: -2", "2") == pytest.approx(0.5 / (1 + 4 / 2))
    assert builtin_score("I do not know.", "42") == 0.0
    assert builtin_score("", "42") == 0.0
    assert builtin_score("Answer: 42, 43", "42") == pytest.approx(0.25)        # extra number
    assert builtin_score("Answer: 7, 19", "7, 19, 42") == pytest.approx(0.5 * 2 / 3)  # missing
    assert builtin_score("Answer: 7, 42, 19", "7, 19, 42") == pytest.approx(
        0.5 / 3 * (1 + 1 / (1 + 23 / 19) + 1 / (1 + 23 / 42)))
    assert builtin_score("Answer: " + "9" * 300, "1") == 0.0 + 0.5 / (1 + (10 ** 300 - 2))
    with pytest.raises(ValueError, match="holds no integer"):
        builtin_score("Answer: 1", "many")


@pytest.mark.parametrize("response", ["Answer: 43", "Answer: 41", "Answer: 42, 42", "Answer: 0",
                                      "Answer: -42", "42 42", "Answer: 420"])
def test_every_wrong_answer_scores_under_a_half(response):
    assert 0 <= builtin_score(response, "42") < 0.5


def test_builtin_scorer_scores_against_the_reference():
    item = PromptItem(0, [{"role": "user", "content": "What is 40 + 2?"}], "42", "x:1")
    assert [s.value for s in BuiltinScorer().score(item, ["Answer: 42", "no"])] == [1.0, 0.0]


# -- end to end ----------------------------------------------------------------------------

def fixed_texts(item: PromptItem) -> list[str]:
    """Four answers with known builtin scores: exact, off by one, none, exact again; prompt 2
    (index 1) gets four answers without a number (a tie at 0)."""
    if item.index == 1:
        return ["no idea", "dunno", "no idea", "maybe"]
    return [f"Answer: {item.reference}", f"Answer: {int(item.reference) + 1}", "no idea",
            f"Answer: {item.reference}"]


@pytest.fixture
def fixed_generation(monkeypatch):
    """The policy replaced by :func:`fixed_texts`; the list of prompts it was asked for."""
    asked: list[int] = []

    def generator(config):
        def generate(item):
            asked.append(item.index)
            return fixed_texts(item)[:config.samples]
        return generate

    monkeypatch.setattr(sampling, "model_generator", generator)
    return asked


def argv(out, *extra, source=SOURCE, prompts=3, samples=4):
    return ["pairs", "--model", "tiny-llama", "--prompts", source, "--num-prompts", str(prompts),
            "--samples", str(samples), "-o", str(out), "--no-progress", *extra]


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_pairs_end_to_end_exact(tmp_path, fixed_generation, capsys, tokenizer_dir):
    from asft.data.builtin import problems

    out = tmp_path / "pairs.jsonl"
    assert main(argv(out)) == 0
    printed = capsys.readouterr().out
    expected = []
    for i, p in enumerate(problems("arithmetic", "train", 3)):
        if i != 1:
            expected.append({"prompt": [{"role": "user", "content": p.prompt}],
                             "chosen": f"Answer: {p.answer}", "rejected": "no idea",
                             "score_chosen": 1.0, "score_rejected": 0.0})
    assert read(out) == expected
    for text in ("3 prompts x 4 samples = 12 samples", "pairs written      2 (best-worst)",
                 "prompts skipped    1 (1 all scores tied)", "scoring failures   0 of 12"):
        assert text in printed
    # the explicit format reads it back as written
    pairs = load_pairs(str(out)).pairs
    assert [p.prompt for p in pairs] == [r["prompt"] for r in expected]
    assert [p.chosen for p in pairs] == [[{"role": "assistant", "content": r["chosen"]}]
                                         for r in expected]
    assert main(["data", "check", str(out), "--tokenizer", tokenizer_dir]) == 0

    # --pairs all re-pairs the saved samples and scores: nothing sampled again
    asked = len(fixed_generation)
    assert main(argv(out, "--pairs", "all", "--max-pairs-per-prompt", "2")) == 0
    assert len(fixed_generation) == asked
    records = read(out)
    answer = int(expected[0]["chosen"].split()[-1])
    # prompt 1: (exact, none) gap 1, then (exact, off by one) gap 1 - p; the second exact answer
    # repeats the first's texts and is left out
    assert [(r["chosen"], r["rejected"], r["score_rejected"]) for r in records[:2]] == [
        (f"Answer: {answer}", "no idea", 0.0),
        (f"Answer: {answer}", f"Answer: {answer + 1}", pytest.approx(0.5 / (1 + 1 / answer)))]
    assert len(records) == 4 and "sampled now        0 prompts" in capsys.readouterr().out


def test_no_pair_is_an_error_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sampling, "model_generator", lambda config: lambda item: ["x", "y"])
    out = tmp_path / "pairs.jsonl"
    assert main(argv(out, samples=2)) == 1
    assert "no pair formed" in capsys.readouterr().err and not out.exists()


def test_tiny_llama_samples_counts_format_and_seed(tmp_path, tokenizer_dir):
    runs = {}
    for name, seed in (("a", "0"), ("b", "0"), ("c", "1")):
        out = tmp_path / name / "pairs.jsonl"
        assert main(argv(out, "--max-new-tokens", "8", "--seed", seed, prompts=4, samples=3)) == 0
        samples = read(tmp_path / name / "pairs.jsonl.samples.jsonl")
        assert samples[0]["settings"]["samples"] == 3 and len(samples) == 1 + 4
        assert all(len(r["samples"]) == 3 and all(isinstance(t, str) for t in r["samples"])
                   for r in samples[1:])
        assert [r["index"] for r in samples[1:]] == [0, 1, 2, 3]
        for record in read(out):
            assert set(record) == {"prompt", "chosen", "rejected", "score_chosen", "score_rejected"}
            assert record["score_chosen"] > record["score_rejected"]
            assert record["chosen"] != record["rejected"]
        runs[name] = [r["samples"] for r in samples[1:]]
    assert runs["a"] == runs["b"] and runs["a"] != runs["c"]
    assert main(["data", "check", str(tmp_path / "a" / "pairs.jsonl"),
                 "--tokenizer", tokenizer_dir]) == 0


# -- resume --------------------------------------------------------------------------------

def test_resume_with_more_prompts_matches_one_run(tmp_path):
    """Each prompt's samples are seeded on their own: 2 prompts then 5 is 5 at once."""
    flags = ("--max-new-tokens", "8", "--pairs", "all")
    whole, parts = tmp_path / "whole" / "p.jsonl", tmp_path / "parts" / "p.jsonl"
    assert main(argv(whole, *flags, prompts=5, samples=3)) == 0
    main(argv(parts, *flags, prompts=2, samples=3))  # may or may not pair: not the point
    assert main(argv(parts, *flags, prompts=5, samples=3)) == 0
    assert parts.read_bytes() == whole.read_bytes()
    for suffix in (".samples.jsonl", ".scores.jsonl"):
        assert (parts.parent / ("p.jsonl" + suffix)).read_bytes() == \
            (whole.parent / ("p.jsonl" + suffix)).read_bytes()


@pytest.mark.parametrize("phase", ["sampling", "scoring"])
def test_interrupted_run_resumes_to_the_same_file(tmp_path, monkeypatch, phase):
    """Ctrl-C on the third prompt of a phase, then the same command: the file an uninterrupted
    run writes, and only the missing prompts redone."""
    flags = ("--max-new-tokens", "8", "--pairs", "all")
    whole, resumed = tmp_path / "whole" / "p.jsonl", tmp_path / "resumed" / "p.jsonl"
    assert main(argv(whole, *flags, prompts=5, samples=3)) == 0

    calls: list[int] = []
    real_generator, real_scorer = sampling.model_generator, scorers.open_scorer

    def interrupt_third(fn):
        def wrapped(item, responses=None):
            calls.append(item.index)
            if len(calls) == 3:
                raise KeyboardInterrupt
            return fn(item) if responses is None else fn(item, responses)
        return wrapped

    if phase == "sampling":
        monkeypatch.setattr(sampling, "model_generator",
                            lambda config: interrupt_third(real_generator(config)))
    else:
        class Interrupting:
            def __init__(self, config):
                self.score = interrupt_third(real_scorer(config).score)
        monkeypatch.setattr(scorers, "open_scorer", Interrupting)
    assert main(argv(resumed, *flags, prompts=5, samples=3)) == 130
    assert not resumed.exists()
    side = resumed.parent / f"p.jsonl.{'samples' if phase == 'sampling' else 'scores'}.jsonl"
    assert len(read(side)) == 1 + 2   # settings line + the two prompts done

    monkeypatch.setattr(sampling, "model_generator", real_generator)
    monkeypatch.setattr(scorers, "open_scorer", real_scorer)
    assert main(argv(resumed, *flags, prompts=5, samples=3)) == 0
    assert resumed.read_bytes() == whole.read_bytes()


def test_other_settings_in_the_same_place_are_refused(tmp_path, fixed_generation, capsys):
    out = tmp_path / "p.jsonl"
    assert main(argv(out)) == 0
    capsys.readouterr()
    assert main(argv(out, "--temperature", "0.5")) == 1
    err = capsys.readouterr().err
    assert "made with other settings (temperature: 0.8 there, 0.5 now)" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert main(argv(out, "--scorer", "judge", "--judge-model", "j")) == 1
    assert "scores.jsonl was made with other settings (scorer: 'builtin' there, 'judge' now" \
        in capsys.readouterr().err


# -- prompt files --------------------------------------------------------------------------

def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def test_prompts_from_a_file(tmp_path, fixed_generation, tokenizer_dir):
    src = write_jsonl(tmp_path / "prompts.jsonl", [
        {"prompt": "What is 2 + 2?", "answer": 4},
        {"prompt": [{"role": "user", "content": "What is 3 + 3?"}], "answer": "6"},
        {"prompt": "What is 5 + 5?", "system": "Be brief.", "answer": "10"},
    ])
    out = tmp_path / "pairs.jsonl"
    assert main(argv(out, source=src, prompts=10)) == 0
    records = read(out)
    assert [r["prompt"] for r in records] == [
        [{"role": "user", "content": "What is 2 + 2?"}],
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 5 + 5?"}],
    ]   # the second prompt (index 1) ties
    assert [r["chosen"] for r in records] == ["Answer: 4", "Answer: 10"]
    assert [p.prompt for p in load_pairs(str(out)).pairs] == [r["prompt"] for r in records]
    assert main(["data", "check", str(out), "--tokenizer", tokenizer_dir]) == 0


@pytest.mark.parametrize("records, message", [
    ([{"prompt": "a", "answer": 1}, {"question": "b"}], "prompts.jsonl, line 2, field 'prompt'"),
    ([{"prompt": "a", "answer": 1}, {"prompt": "b"}],
     "prompts.jsonl:2: --scorer builtin needs each prompt's expected answer"),
    ([{"prompt": "a", "answer": "many"}], "field 'answer': 'many' holds no integer"),
    ([{"prompt": "a", "answer": True}], "line 1, field 'answer': expected a string or an integer"),
    ([{"prompt": [{"role": "assistant", "content": "hi"}], "answer": 1}],
     "line 1, field 'prompt': a prompt must end with a user message"),
])
def test_bad_prompt_files_are_one_line_errors(tmp_path, fixed_generation, capsys, records, message):
    src = write_jsonl(tmp_path / "prompts.jsonl", records)
    assert main(argv(tmp_path / "p.jsonl", source=src)) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert fixed_generation == []   # refused before any sampling


def test_a_changed_source_is_refused(tmp_path, fixed_generation, capsys):
    path = tmp_path / "prompts.jsonl"
    write_jsonl(path, [{"prompt": "What is 2 + 2?", "answer": 4}])
    out = tmp_path / "p.jsonl"
    assert main(argv(out, source=str(path))) == 0
    write_jsonl(path, [{"prompt": "What is 2 + 3?", "answer": 5}])
    assert main(argv(out, source=str(path))) == 1
    assert "the record of prompt 1 (" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (("--samples", "1"), "--samples must be >= 2"),
    (("--temperature", "0"), "--temperature must be > 0"),
    (("--max-pairs-per-prompt", "2"), "--max-pairs-per-prompt applies to --pairs all"),
    (("--scorer", "oracle"), "--scorer must be one of builtin, judge, reward-model:NAME"),
    (("--top-p", "0"), "--top-p must be in (0, 1]"),
    (("--judge-parallel", "0"), "--judge-parallel must be >= 1"),
    (("--selection", "rso", "--rso-accept", "5"), "--rso-accept must be in [2, --samples]"),
    (("--selection", "rso", "--rso-beta", "0"), "--rso-beta must be > 0"),
    (("--prompts", "builtin:nosuch"), "unknown built-in task 'nosuch'"),
])
def test_bad_flags_are_one_line_errors(tmp_path, capsys, extra, message):
    assert main([*argv(tmp_path / "p.jsonl"), *extra]) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_rso_selection_pairs_only_the_samples_it_keeps(tmp_path, fixed_generation, capsys):
    """Scores per prompt 1, 1 - p, 0, 1 (exact, off by one, none, exact). A tiny beta keeps the
    best samples: two exact answers (identical texts) and, at the next round, the off-by-one
    one; the pair is exact against off by one, never against "no idea" as without RSO."""
    out = tmp_path / "pairs.jsonl"
    assert main(argv(out, "--selection", "rso", "--rso-beta", "1e-6", "--rso-accept", "3")) == 0
    assert "(best-worst, rso beta 1e-06)" in capsys.readouterr().out
    records = read(out)
    assert len(records) == 2
    assert all(r["rejected"].startswith("Answer: ") and r["score_rejected"] > 0 for r in records)
    # a huge beta keeps near-uniform draws: over prompts, "no idea" is kept somewhere
    wide = tmp_path / "wide.jsonl"
    assert main(argv(wide, "--selection", "rso", "--rso-beta", "1e6", "--rso-accept", "2",
                     "--pairs", "all", prompts=12)) == 0
    assert any(r["rejected"] == "no idea" for r in read(wide))
