"""MT-Bench: question loading, FastChat's grading prompts and rating rule, the judge client's
retries and key hygiene, FastChat's per-category sampling temperatures with reproducible
seeds, and ``asft mt-bench`` end to end against a judge served on 127.0.0.1 by the test,
including resume after an interruption."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from asft.cli import main
from asft.evaluate import mt_bench as mb
from asft.evaluate.judge import JudgeClient, JudgeError
from fake_judge import JudgeServer, chat_reply

SECRET = "sk-test-DO-NOT-LEAK-1234567890"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "mt_bench"

QUESTIONS = [
    {"question_id": 81, "category": "writing",
     "turns": ["Write a haiku about rain.", "Now make it rhyme."]},
    {"question_id": 111, "category": "math",
     "turns": ["What is 7 times 8?", "And 7 times 9?"]},
    {"question_id": 121, "category": "coding",
     "turns": ["Write a Python function that adds two numbers.", "Add type hints."]},
]
REFERENCES = [
    {"question_id": 111, "choices": [{"index": 0, "turns": ["56", "63"]}]},
    {"question_id": 121, "choices": [{"index": 0, "turns": ["def add(a, b): ...", "typed"]}]},
]


class Judge(JudgeServer):
    """A fake OpenAI-compatible judge. Ratings: 8 for a first turn, 6 for a second turn, and
    ``[3]`` (FastChat's backup format) whenever a reference answer is shown.

    ``fail_first``: how many requests get HTTP 503 before any succeeds (transient errors).
    ``abort_after``: after this many successful replies every request gets HTTP 400.
    """

    def __init__(self, fail_first: int = 0, abort_after: int | None = None):
        self.fail_first, self.abort_after = fail_first, abort_after
        self.served: list[dict] = []
        self.failures = 0
        self.auth: set[str | None] = set()
        self.lock = threading.Lock()
        super().__init__(self._respond)

    def _respond(self, headers, body):
        with self.lock:
            self.auth.add(headers.get("Authorization"))
            if self.failures < self.fail_first:
                self.failures += 1
                return 503, {"error": "overloaded"}
            if self.abort_after is not None and len(self.served) >= self.abort_after:
                return 400, {"error": "stop"}
            self.served.append(body)
        system, user = body["messages"][0]["content"], body["messages"][1]["content"]
        if "Reference" in user:
            return 200, chat_reply("Close to the reference. Rating: [3]")
        if "second user question" in system:
            return 200, chat_reply("Fine follow-up. Rating: [[6]]")
        return 200, chat_reply("Good answer. Rating: [[8]]")


@pytest.fixture
def judge_factory():
    judges = []

    def make(**kwargs) -> Judge:
        judges.append(Judge(**kwargs))
        return judges[-1]

    yield make
    for j in judges:
        j.close()


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.setenv("ASFT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TEST_JUDGE_KEY", SECRET)
    q = tmp_path / "question.jsonl"
    q.write_text("".join(json.dumps(r) + "\n" for r in QUESTIONS))
    ref = tmp_path / "ref.jsonl"
    ref.write_text("".join(json.dumps(r) + "\n" for r in REFERENCES))
    return q, ref


def _argv(files, out, judge, *extra):
    q, ref = files
    return ["mt-bench", "--model", "tiny-llama", "--output", str(out), "--questions", str(q),
            "--reference-answers", str(ref), "--judge-base-url", judge.url,
            "--judge-model", "fake-judge", "--judge-api-key-env", "TEST_JUDGE_KEY",
            "--max-new-tokens", "4", "--batch-size", "2", "--judge-backoff", "0.01", *extra]


def test_parse_rating_follows_fastchat():
    assert mb.parse_rating("Rating: [[7]]") == 7
    assert mb.parse_rating("[[8.5]] and later [3]") == 8.5
    assert mb.parse_rating("no double brackets, Rating: [4]") == 4
    assert mb.parse_rating("I refuse to rate this.") == -1


def test_prompt_choice_and_reference_fields():
    prompts = mb.load_judge_prompts()
    math = mb.Question(111, "math", ("Q1?", "Q2?"))
    writing = mb.Question(81, "writing", ("W1?", "W2?"))
    assert [mb.prompt_name(q.category, t) for q in (writing, math) for t in (1, 2)] == [
        "single-v1", "single-v1-multi-turn", "single-math-v1", "single-math-v1-multi-turn"]
    name, system, user = mb.judge_messages(prompts, math, ["A1", "A2"], 2, ["R1", "R2"])
    assert name == "single-math-v1-multi-turn"
    assert "focus on the assistant's answer to the second question" in system
    for piece in ("### User:\nQ1?", "### Reference answer:\nR2", "### Assistant A:\nA2"):
        assert piece in user
    _, system, user = mb.judge_messages(prompts, writing, ["A {x} 1"], 1)
    assert system == "You are a helpful assistant."
    assert "[Question]\nW1?" in user and "A {x} 1" in user
    with pytest.raises(ValueError, match=r"question 111 \(math\) needs a reference"):
        mb.judge_messages(prompts, math, ["A1"], 1)


def test_default_model_id():
    from asft.commands.mt_bench import default_model_id

    assert default_model_id("runs/asft-1/model/") == "asft-1"
    assert default_model_id("HuggingFaceTB/SmolLM2-135M-Instruct") == "SmolLM2-135M-Instruct"
    assert default_model_id("tiny-llama") == "tiny-llama"


def test_mt_bench_rejects_bad_options(files, tmp_path, judge_factory, capsys):
    judge = judge_factory()
    assert main(_argv(files, tmp_path / "o", judge, "--max-new-tokens", "0")) == 1
    assert "max_new_tokens must be >= 1" in capsys.readouterr().err
    assert main(_argv(files, tmp_path / "o", judge, "--judge-parallel", "0")) == 1
    assert "--judge-parallel must be >= 1" in capsys.readouterr().err
    for bad in ("hot", "-1", "nan", "inf"):
        assert main(_argv(files, tmp_path / "o", judge, "--temperature", bad)) == 1
        err = capsys.readouterr().err
        assert f"--temperature must be 'fastchat' or a number >= 0 (0 = greedy), got '{bad}'" in err
        assert "Traceback" not in err
    assert not judge.served
    assert not (tmp_path / "o" / "answers.jsonl").exists()


def test_load_questions_reports_file_and_line(tmp_path):
    bad = tmp_path / "q.jsonl"
    bad.write_text(json.dumps(QUESTIONS[0]) + "\n" + json.dumps({"question_id": 2, "turns": ["x"]}) + "\n")
    with pytest.raises(ValueError, match=r"q.jsonl:2: missing field 'category'"):
        mb.load_questions(bad)
    bad.write_text(json.dumps(QUESTIONS[0]) + "\n{oops\n")
    with pytest.raises(ValueError, match=r"q.jsonl:2: invalid JSON"):
        mb.load_questions(bad)


def test_judge_client_retries_then_gives_up_without_leaking_key(judge_factory, monkeypatch):
    monkeypatch.setenv("TEST_JUDGE_KEY", SECRET)
    sleeps: list[float] = []
    flaky = judge_factory(fail_first=2)
    client = JudgeClient(flaky.url, "m", "TEST_JUDGE_KEY", backoff=0.5, sleep=sleeps.append)
    assert "[[8]]" in client.complete("sys", "user")
    assert sleeps == [0.5, 1.0] and flaky.auth == {f"Bearer {SECRET}"}
    assert SECRET not in repr(client)

    down = judge_factory(fail_first=100)
    client = JudgeClient(down.url, "m", "TEST_JUDGE_KEY", max_retries=2, sleep=sleeps.append)
    with pytest.raises(JudgeError, match="failed 3 times; last error: HTTP 503") as info:
        client.complete("sys", "user")
    assert down.failures == 3 and SECRET not in str(info.value)

    refusing = judge_factory(abort_after=0)
    client = JudgeClient(refusing.url + "/chat/completions", "m", "TEST_JUDGE_KEY", sleep=sleeps.append)
    with pytest.raises(JudgeError, match="HTTP 400"):
        client.complete("sys", "user")
    assert client.url.endswith("/v1/chat/completions")


def test_mt_bench_end_to_end(files, tmp_path, judge_factory, capsys):
    judge = judge_factory(fail_first=1)
    out = tmp_path / "run"
    assert main(_argv(files, out, judge, "--judge-parallel", "3")) == 0
    assert judge.failures == 1 and len(judge.served) == 6
    assert judge.auth == {f"Bearer {SECRET}"}
    assert {b["model"] for b in judge.served} == {"fake-judge"}
    scores = json.loads((out / "scores.json").read_text())
    assert scores["categories"] == {"coding": 3.0, "math": 3.0, "writing": 7.0}
    assert scores["turn1"] == pytest.approx((8 + 3 + 3) / 3)
    assert scores["turn2"] == pytest.approx((6 + 3 + 3) / 3)
    assert scores["overall"] == pytest.approx(26 / 6)
    answers = [json.loads(x) for x in (out / "answers.jsonl").read_text().splitlines()]
    assert sorted(a["question_id"] for a in answers) == [81, 111, 121]
    assert all(len(a["choices"][0]["turns"]) == 2 for a in answers)
    # FastChat's temperatures by default: writing sampled at 0.7, math and coding greedy
    assert {a["question_id"]: a["temperature"] for a in answers} == {81: 0.7, 111: 0.0, 121: 0.0}
    assert scores["temperature"] == "fastchat"
    judgments = [json.loads(x) for x in (out / "judgments.jsonl").read_text().splitlines()]
    assert sorted((j["question_id"], j["turn"]) for j in judgments) == [
        (81, 1), (81, 2), (111, 1), (111, 2), (121, 1), (121, 2)]
    math_turn2 = next(j for j in judgments if j["question_id"] == 111 and j["turn"] == 2)
    assert math_turn2["judge"] == ["fake-judge", "single-math-v1-multi-turn"]
    assert "### Reference answer:\n63" in math_turn2["user_prompt"]
    captured = capsys.readouterr()
    assert "overall" in captured.out
    for f in out.iterdir():
        assert SECRET not in f.read_text()
    assert SECRET not in captured.out + captured.err


def test_mt_bench_resumes_without_paying_twice(files, tmp_path, judge_factory, monkeypatch, capsys):
    out = tmp_path / "run"
    first = judge_factory(abort_after=2)
    assert main(_argv(files, out, first, "--judge-parallel", "1")) == 1
    err = capsys.readouterr().err
    assert "2 of 6 judgments saved" in err and "rerun the same command" in err
    assert SECRET not in err

    # The rerun must neither load the model nor regenerate answers, and only judge the rest.
    from asft.commands import mt_bench as command

    def no_model(args):
        raise AssertionError("answers were regenerated")

    monkeypatch.setattr(command, "_generator", no_model)
    second = judge_factory()
    assert main(_argv(files, out, second, "--judge-parallel", "2")) == 0
    assert len(second.served) == 4
    prompts = [b["messages"][1]["content"] for b in first.served + second.served]
    assert len(set(prompts)) == 6
    assert json.loads((out / "scores.json").read_text())["judgments"] == 6


def _fake_generate(calls: list):
    """A generate(batch) that records (temperature, question numbers, seed) per call and
    replies with the seed mixed in, as a sampler would."""

    def generate(batch):
        calls.append((batch.temperature, [int(c[-1]["content"][1:-1]) for c in batch], batch.seed))
        return [f"reply to {c[-1]['content']} ({batch.seed % 1000})" for c in batch]

    return generate


def test_fastchat_temperature_table():
    assert mb.FASTCHAT_TEMPERATURES == {
        "writing": 0.7, "roleplay": 0.7, "extraction": 0.0, "math": 0.0, "coding": 0.0,
        "reasoning": 0.0, "stem": 0.1, "humanities": 0.1, "arena-hard-200": 0.0}
    assert mb.answer_temperature("writing") == 0.7
    assert mb.answer_temperature("math") == 0.0
    assert mb.answer_temperature("humanities") == 0.1
    assert mb.answer_temperature("no-such-category") == 0.7  # FastChat's fallback
    assert mb.answer_temperature("writing", 0.0) == 0.0  # one number overrides the table
    assert mb.answer_temperature("math", 0.4) == 0.4


def test_answers_grouped_by_category_temperature(tmp_path):
    questions = [mb.Question(0, "writing", ("q0a", "q0b")), mb.Question(1, "math", ("q1a", "q1b")),
                 mb.Question(2, "poetry", ("q2a",)), mb.Question(3, "stem", ("q3a", "q3b"))]
    calls: list = []
    answers = mb.answer_questions(_fake_generate(calls), questions,
                                  mb.JsonlLog(tmp_path / "a.jsonl"), "m", chunk=4, seed=7)
    # one batch per temperature and turn; the unknown category is sampled like writing
    assert [(t, ids) for t, ids, _ in calls] == [
        (0.7, [0, 2]), (0.7, [0]), (0.0, [1]), (0.0, [1]), (0.1, [3]), (0.1, [3])]
    assert len({seed for *_, seed in calls}) == 6  # no two batches share a random stream
    records = [json.loads(x) for x in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert [r["question_id"] for r in records] == [0, 1, 2, 3]  # question order kept
    assert [r["temperature"] for r in records] == [0.7, 0.0, 0.7, 0.1]
    assert [len(answers[i]) for i in range(4)] == [2, 2, 1, 2]

    # the same seed reproduces every batch's seed; another seed changes them
    again: list = []
    mb.answer_questions(_fake_generate(again), questions, mb.JsonlLog(tmp_path / "b.jsonl"),
                        "m", chunk=4, seed=7)
    assert again == calls
    other: list = []
    mb.answer_questions(_fake_generate(other), questions, mb.JsonlLog(tmp_path / "c.jsonl"),
                        "m", chunk=4, seed=8)
    assert [c[:2] for c in other] == [c[:2] for c in calls]
    assert not {c[2] for c in other} & {c[2] for c in calls}

    # one number overrides the table: a single batch per turn
    fixed: list = []
    mb.answer_questions(_fake_generate(fixed), questions, mb.JsonlLog(tmp_path / "d.jsonl"),
                        "m", chunk=4, temperature=0.3)
    assert [(t, ids) for t, ids, _ in fixed] == [(0.3, [0, 1, 2, 3]), (0.3, [0, 1, 3])]
    records = [json.loads(x) for x in (tmp_path / "d.jsonl").read_text().splitlines()]
    assert {r["temperature"] for r in records} == {0.3}


def test_answers_resume_after_crash_mid_generation(tmp_path):
    categories = ["writing", "writing", "math", "writing", "math"]
    questions = [mb.Question(i, c, (f"<{i}>", f"<{i}>")) for i, c in enumerate(categories)]
    log_path = tmp_path / "answers.jsonl"
    calls: list = []
    fake = _fake_generate(calls)
    crash_at = [5]

    def generate(batch):
        if len(calls) + 1 == crash_at[0]:
            raise RuntimeError("killed")
        return fake(batch)

    with pytest.raises(RuntimeError, match="killed"):
        mb.answer_questions(generate, questions, mb.JsonlLog(log_path), "m", chunk=2)
    # chunk [0, 1] was written; of chunk [2, 3], math question 2 was answered but not written
    assert [ids for _, ids, _ in calls] == [[0, 1], [0, 1], [2], [2]]
    # Simulate a crash in the middle of writing a line.
    with log_path.open("a") as f:
        f.write('{"question_id": 2, "cho')
    first = calls[:]
    calls.clear()
    crash_at[0] = 0
    answers = mb.answer_questions(generate, questions, mb.JsonlLog(log_path), "m", chunk=2)
    # only the missing questions, grouped by temperature: 2 (math), 3 (writing), then 4 (math)
    assert [(t, ids) for t, ids, _ in calls] == [
        (0.0, [2]), (0.0, [2]), (0.7, [3]), (0.7, [3]), (0.0, [4]), (0.0, [4])]
    assert calls[:2] == first[2:]  # question 2 is resampled with the same seeds
    assert answers[3][0].startswith("reply to <3>")
    records = [json.loads(x) for x in log_path.read_text().splitlines()]
    assert [r["question_id"] for r in records] == [0, 1, 2, 3, 4]
    assert [r["temperature"] for r in records] == [0.7, 0.7, 0.0, 0.7, 0.0]


def test_mt_bench_answers_reproducible_with_seed(files, tmp_path, judge_factory):
    """The real model: the same seed gives the same answers; another seed changes only the
    sampled (writing) answer, never the greedy math and coding ones; a number overrides all."""
    judge = judge_factory()

    def answers(name, *extra):
        out = tmp_path / name
        assert main(_argv(files, out, judge, "--no-judge", "--max-new-tokens", "12", *extra)) == 0
        records = [json.loads(x) for x in (out / "answers.jsonl").read_text().splitlines()]
        return {r["question_id"]: (r["temperature"], r["choices"][0]["turns"]) for r in records}

    first, again = answers("a", "--seed", "3"), answers("b", "--seed", "3")
    assert first == again
    other = answers("c", "--seed", "4")
    assert other[111] == first[111] and other[121] == first[121]
    assert other[81][1] != first[81][1]
    fixed = answers("d", "--temperature", "0")
    assert {t for t, _ in fixed.values()} == {0.0}
    assert fixed[111] == first[111] and fixed[81][1] != first[81][1]
    assert not judge.served


@pytest.mark.shared
def test_fastchat_files_match_builtin_prompts():
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent (FastChat's MT-Bench data lives beside the repo)")
    questions = mb.load_questions(SHARED / "question.jsonl")
    assert len(questions) == 80 and all(len(q.turns) == 2 for q in questions)
    refs = mb.load_reference_answers(SHARED / "reference_answer_gpt-4.jsonl")
    needing = [q.question_id for q in questions if q.category in mb.NEED_REF_CATEGORIES]
    assert len(needing) == 30 and set(needing) <= set(refs)
    from_file = mb.load_judge_prompts(SHARED / "judge_prompts.jsonl")
    for name, prompt in mb.load_judge_prompts().items():
        assert from_file[name] == prompt


def test_answers_sample_like_fastchat(files, tmp_path, judge_factory, monkeypatch):
    """Each generate call gets its batch's temperature and seed, and FastChat's implicit
    top-k of 50 (transformers' default, which FastChat never overrides)."""
    import asft.evaluate.generation as generation

    real, seen = generation.generate_responses, []

    def spy(model, tokenizer, conversations, config=None, **kw):
        seen.append(config)
        return real(model, tokenizer, conversations, config, **kw)

    monkeypatch.setattr(generation, "generate_responses", spy)
    assert main(_argv(files, tmp_path / "run", judge_factory(), "--no-judge")) == 0
    assert seen and {c.top_k for c in seen} == {mb.FASTCHAT_TOP_K} == {50}
    assert {c.temperature for c in seen} == {0.7, 0.0}
    assert len({c.seed for c in seen}) == len(seen)  # one seed per call, derived from its questions


def test_condition_score_conditions_every_turn(files, tmp_path, judge_factory, monkeypatch):
    """``--condition-score 10`` (arXiv 2410.08067): every conversation the model answers starts
    with the relabel template's system message; the saved history stays plain."""
    import asft.evaluate.generation as generation

    real, seen = generation.generate_responses, []

    def spy(model, tokenizer, conversations, config=None, **kw):
        seen.extend(conversations)
        return real(model, tokenizer, conversations, config, **kw)

    monkeypatch.setattr(generation, "generate_responses", spy)
    out = tmp_path / "run"
    assert main(_argv(files, out, judge_factory(), "--no-judge", "--condition-score", "10",
                      "--condition-template", "Aim for {score}/{max}.")) == 0
    assert len(seen) == 6  # 3 questions, 2 turns
    assert all(c[0] == {"role": "system", "content": "Aim for 10/10."} for c in seen)
    assert all(m["role"] != "system" for c in seen for m in c[1:])
    assert sorted(len(c) for c in seen) == [2, 2, 2, 4, 4, 4]  # turn 2 carries turn 1's reply
