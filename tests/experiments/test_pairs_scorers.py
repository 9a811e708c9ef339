"""``asft pairs`` scorers other than the builtin one: the LLM judge (against a judge served on
127.0.0.1: ratings, a reply without one counted as a failure, a judge that is down or replies
malformed reported in one line, resume after it fails) and a reward model (a tiny random
sequence-classification model saved on disk: scores, padding, the run end to end)."""

from __future__ import annotations

import json
import threading

import pytest

from asft.cli import main
from asft.experiments.pairs import sampling
from asft.experiments.pairs.items import PromptItem
from fake_judge import JudgeServer, chat_reply
from tiny_reward import save_reward_model

SECRET = "sk-test-DO-NOT-LEAK-pairs-0987654321"
TEXTS = ["a good answer", "a bad answer", "a mute answer", "a meh answer"]
RATINGS = {"good": "Well done. Rating: [[9]]", "bad": "Wrong. Rating: [[2]]",
           "meh": "So-so. [5]", "mute": "I would rather not rate this."}


class Judge(JudgeServer):
    """Rates by the word in the answer (:data:`RATINGS`). ``status``/``payload`` given: every
    request gets that instead; ``fail_after``: HTTP 400 once that many replies were served."""

    def __init__(self, status: int = 200, payload=None, fail_after: int | None = None):
        self.status, self.payload, self.fail_after = status, payload, fail_after
        self.served: list[str] = []
        self.auth: set[str | None] = set()
        self.lock = threading.Lock()
        super().__init__(self._respond)

    def _respond(self, headers, body):
        with self.lock:
            self.auth.add(headers.get("Authorization"))
            if self.payload is not None or self.status != 200:
                return self.status, self.payload or {"error": "down"}
            if self.fail_after is not None and len(self.served) >= self.fail_after:
                return 400, {"error": "quota"}
            user = body["messages"][-1]["content"]
            self.served.append(user)
        answer = user.split("[The Start of Assistant's Answer]\n")[1]
        return 200, chat_reply(next(v for k, v in RATINGS.items() if k in answer))


@pytest.fixture
def judges():
    made = []

    def make(**kwargs) -> Judge:
        made.append(Judge(**kwargs))
        return made[-1]

    yield make
    for judge in made:
        judge.close()


@pytest.fixture
def fixed_texts(monkeypatch):
    monkeypatch.setenv("TEST_JUDGE_KEY", SECRET)
    monkeypatch.setattr(sampling, "model_generator",
                        lambda config: lambda item: TEXTS[:config.samples])


def argv(out, *extra, prompts=3):
    return ["pairs", "--model", "tiny-llama", "--prompts", "builtin:arithmetic", "--num-prompts",
            str(prompts), "--samples", "4", "-o", str(out), "--no-progress", *extra]


def judge_argv(out, judge, *extra, prompts=3):
    return argv(out, "--scorer", "judge", "--judge-base-url", judge.url, "--judge-model", "fake",
                "--judge-api-key-env", "TEST_JUDGE_KEY", "--judge-backoff", "0.01", *extra,
                prompts=prompts)


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


# -- judge ---------------------------------------------------------------------------------

def test_judge_scores_and_counts_unrated_replies(tmp_path, judges, fixed_texts, capsys):
    judge = judges()
    out = tmp_path / "p.jsonl"
    assert main(judge_argv(out, judge, "--pairs", "all")) == 0
    printed = capsys.readouterr().out
    # 9 > 5 > 2, the mute answer unscored: 3 pairs per prompt, largest gaps first
    expected = [("a good answer", "a bad answer", 9.0, 2.0), ("a good answer", "a meh answer", 9.0, 5.0),
                ("a meh answer", "a bad answer", 5.0, 2.0)]
    assert [(r["chosen"], r["rejected"], r["score_chosen"], r["score_rejected"])
            for r in read(out)] == expected * 3
    assert "scoring failures   3 of 12 samples" in printed
    scores = read(tmp_path / "p.jsonl.scores.jsonl")
    assert scores[0] == {"settings": {"scorer": "judge", "judge_model": "fake"}}
    assert scores[1]["scores"] == [9.0, 2.0, None, 5.0]
    assert scores[1]["notes"][2] == RATINGS["mute"]
    # builtin prompts carry their answer: the judge grades against it as the reference
    assert len(judge.served) == 12 and all("[The Start of Reference Answer]" in u
                                           for u in judge.served)
    assert judge.auth == {f"Bearer {SECRET}"}


def test_judge_without_a_reference_uses_the_plain_prompt():
    from asft.experiments.pairs.judge_score import JudgeScorer

    seen = []
    scorer = JudgeScorer(lambda system, user: seen.append(user) or "[[7]]", parallel=2)
    item = PromptItem(0, [{"role": "system", "content": "Be kind."},
                          {"role": "user", "content": "Hi?"}], None, "x:1")
    assert [s.value for s in scorer.score(item, ["hello", "hey"])] == [7.0, 7.0]
    assert "Reference" not in seen[0] and "System: Be kind.\n\nUser: Hi?" in seen[0]


@pytest.mark.parametrize("kwargs, message", [
    ({"status": 503}, "failed 2 times; last error: HTTP 503"),
    ({"payload": {"choices": []}}, "failed 2 times; last error: malformed reply"),
    ({"status": 401}, "HTTP 401"),
])
def test_a_failing_judge_is_one_line(tmp_path, judges, fixed_texts, capsys, kwargs, message):
    out = tmp_path / "p.jsonl"
    assert main(judge_argv(out, judges(**kwargs), "--judge-retries", "1")) == 1
    err = capsys.readouterr().err
    assert message in err and "rerun the same command to resume" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and SECRET not in err
    assert not out.exists()


def test_resume_after_the_judge_fails(tmp_path, judges, fixed_texts):
    whole, resumed = tmp_path / "whole.jsonl", tmp_path / "resumed.jsonl"
    assert main(judge_argv(whole, judges())) == 0
    assert main(judge_argv(resumed, judges(fail_after=6), "--judge-parallel", "1")) == 1
    assert len(read(tmp_path / "resumed.jsonl.scores.jsonl")) == 1 + 1   # prompt 1 saved
    second = judges()
    assert main(judge_argv(resumed, second)) == 0
    assert len(second.served) == 8   # prompts 2 and 3 only
    assert resumed.read_bytes() == whole.read_bytes()


# -- reward model --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def reward_model(tmp_path_factory, tokenizer_dir):
    return save_reward_model(tmp_path_factory.mktemp("rm"), tokenizer_dir)


def test_reward_model_scores_alone_or_padded_the_same(reward_model):
    from asft.experiments.pairs.reward_model import RewardModelScorer

    item = PromptItem(0, [{"role": "user", "content": "What is 2 + 2?"}], None, "x:1")
    responses = ["4", "The answer is four, as two plus two is four.", "I cannot say."]
    batched = [s.value for s in RewardModelScorer(reward_model, batch_size=8).score(item, responses)]
    alone = [s.value for s in RewardModelScorer(reward_model, batch_size=1).score(item, responses)]
    assert batched == pytest.approx(alone, abs=1e-5)
    assert len(set(batched)) == 3


def test_reward_model_run_end_to_end(tmp_path, reward_model, fixed_texts, tokenizer_dir):
    out = tmp_path / "p.jsonl"
    assert main(argv(out, "--scorer", f"reward-model:{reward_model}")) == 0
    records = read(out)
    assert len(records) == 3 and all(r["score_chosen"] > r["score_rejected"] for r in records)
    settings = read(tmp_path / "p.jsonl.scores.jsonl")[0]["settings"]
    assert settings == {"scorer": "reward-model", "reward_model": reward_model, "dtype": "fp32"}
    assert main(["data", "check", str(out), "--tokenizer", tokenizer_dir]) == 0


def test_reward_model_errors_are_one_line(tmp_path, tokenizer_dir, fixed_texts, capsys):
    two = save_reward_model(tmp_path / "two", tokenizer_dir, num_labels=2)
    assert main(argv(tmp_path / "a.jsonl", "--scorer", f"reward-model:{two}")) == 1
    assert "it has 2 labels; a reward model has one" in capsys.readouterr().err
    # the scores file holds only the failed scorer's settings: another scorer may start over
    assert main(argv(tmp_path / "a.jsonl")) == 1   # TEXTS hold no number: all tie at 0
    assert "scored now         3 prompts" in capsys.readouterr().out
    assert read(tmp_path / "a.jsonl.scores.jsonl")[0]["settings"]["scorer"] == "builtin"
    assert main(argv(tmp_path / "b.jsonl", "--scorer", f"reward-model:{tmp_path / 'none'}")) == 1
    err = capsys.readouterr().err
    assert "reward-model:" in err and "no such folder" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "b.jsonl.samples.jsonl").exists()
    broken = tmp_path / "broken"
    broken.mkdir()
    assert main(argv(tmp_path / "c.jsonl", "--scorer", f"reward-model:{broken}")) == 1
    err = capsys.readouterr().err
    assert "cannot load it" in err and len(err.strip().splitlines()) == 1
