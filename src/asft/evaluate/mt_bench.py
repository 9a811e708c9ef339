"""MT-Bench (Zheng et al., arXiv 2306.05685): answer 80 two-turn questions, grade each turn
with an LLM judge on a 1-10 scale, report per-category and overall means.

Grading follows FastChat's single-answer mode (``fastchat/llm_judge/gen_judgment.py``):
turn 1 with ``single-v1``, turn 2 with ``single-v1-multi-turn``; questions in the
math, reasoning and coding categories use the ``single-math-v1`` variants, which show the
judge GPT-4's reference answer. The rating is the number in ``[[n]]`` (``[n]`` as a
fallback); a judgment without one scores -1 and, as in FastChat, is left out of the means.

Answers are sampled as FastChat's ``gen_model_answer.py`` samples them: with a temperature per
category (:data:`FASTCHAT_TEMPERATURES`; 0 is greedy), unless one temperature is given for all.

Answers and judgments are appended to JSONL files as they arrive. A rerun reads them back
and only does what is missing, so an interrupted run never pays twice for a judgment.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from asft import atomic
from asft.evaluate.judge_prompts import SINGLE_PROMPTS, JudgePrompt

FASTCHAT_COMMIT = "0e6d3e4beaab66f4d3f93db72541a4abab8af28d"
_FASTCHAT_DATA = (
    f"https://raw.githubusercontent.com/lm-sys/FastChat/{FASTCHAT_COMMIT}/fastchat/llm_judge/data"
)
QUESTIONS_URL = f"{_FASTCHAT_DATA}/mt_bench/question.jsonl"
REFERENCE_ANSWERS_URL = f"{_FASTCHAT_DATA}/mt_bench/reference_answer/gpt-4.jsonl"
NEED_REF_CATEGORIES = frozenset({"math", "reasoning", "coding"})

# Sampling temperature per category, FastChat's ``temperature_config`` (defined in
# fastchat/llm_judge/common.py, applied in fastchat/llm_judge/gen_model_answer.py, which the
# paper's MT-Bench numbers follow). A category it does not list is sampled at 0.7, as there;
# 0 means greedy (FastChat: ``do_sample=False`` below 1e-4).
FASTCHAT_TEMPERATURES: dict[str, float] = {
    "writing": 0.7, "roleplay": 0.7, "extraction": 0.0, "math": 0.0, "coding": 0.0,
    "reasoning": 0.0, "stem": 0.1, "humanities": 0.1, "arena-hard-200": 0.0,
}
FASTCHAT_DEFAULT_TEMPERATURE = 0.7
# FastChat passes only do_sample and temperature to model.generate, so transformers' default
# top-k of 50 (and top-p 1) applies whenever it samples.
FASTCHAT_TOP_K = 50

_RATING = re.compile(r"\[\[(\d+\.?\d*)\]\]")
_RATING_BACKUP = re.compile(r"\[(\d+\.?\d*)\]")


@dataclass(frozen=True)
class Question:
    """One MT-Bench question: ``turns`` are the user's messages, in order."""

    question_id: int
    category: str
    turns: tuple[str, ...]
    reference: tuple[str, ...] | None = None


def _is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def read_jsonl(source: str | Path, timeout: float = 60.0) -> list[tuple[str, dict]]:
    """``(where, record)`` for each non-blank line of a JSONL file or http(s) URL.

    ``where`` is ``source:line`` for error messages. Raises ValueError on bad JSON or a
    record that is not an object, OSError when the file or URL cannot be read.
    """
    source = str(source)
    if _is_url(source):
        try:
            with urllib.request.urlopen(source, timeout=timeout) as response:
                data = response.read()
        except OSError as err:
            raise OSError(f"could not download {source}: {err}") from None
    else:
        data = Path(source).read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{source}: not UTF-8 text (byte {err.start})") from None
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{source}:{n}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{where}: invalid JSON ({err.msg})") from None
        except (ValueError, RecursionError) as err:  # a 5000-digit number, deep nesting
            raise ValueError(f"{where}: unreadable JSON ({type(err).__name__})") from None
        if not isinstance(record, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
        out.append((where, record))
    return out


def _strings(value, where: str, field: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{where}: field {field!r} must be a non-empty list of strings")
    return tuple(value)


def load_questions(source: str | Path = QUESTIONS_URL) -> list[Question]:
    """Questions from FastChat's ``question.jsonl`` format (a path or URL), in file order."""
    questions, seen = [], set()
    for where, rec in read_jsonl(source):
        for key in ("question_id", "category", "turns"):
            if key not in rec:
                raise ValueError(f"{where}: missing field {key!r}")
        qid = rec["question_id"]
        if not isinstance(qid, int) or isinstance(qid, bool):
            raise ValueError(f"{where}: field 'question_id' must be an integer")
        if qid in seen:
            raise ValueError(f"{where}: duplicate question_id {qid}")
        seen.add(qid)
        if not isinstance(rec["category"], str):
            raise ValueError(f"{where}: field 'category' must be a string")
        ref = rec.get("reference")
        questions.append(Question(
            qid, rec["category"], _strings(rec["turns"], where, "turns"),
            _strings(ref, where, "reference") if ref is not None else None,
        ))
    if not questions:
        raise ValueError(f"{source}: no questions")
    return questions


def load_reference_answers(source: str | Path = REFERENCE_ANSWERS_URL) -> dict[int, tuple[str, ...]]:
    """``question_id -> reference turns`` from a FastChat model-answer file (path or URL)."""
    refs = {}
    for where, rec in read_jsonl(source):
        qid, turns = _answer(rec, where)
        refs[qid] = turns
    return refs


def _answer(rec: dict, where: str) -> tuple[int, tuple[str, ...]]:
    """(question id, turns) of a record in FastChat's model-answer format."""
    try:
        qid, turns = int(rec["question_id"]), rec["choices"][0]["turns"]
    except (KeyError, IndexError, TypeError, ValueError, OverflowError):
        raise ValueError(f"{where}: expected fields question_id and choices[0].turns") from None
    return qid, _strings(turns, where, "choices[0].turns")


# The template fields each built-in prompt is filled with (see judge_messages).
_TEMPLATE_FIELDS = {
    "single-v1": ("question", "answer"),
    "single-math-v1": ("question", "answer", "ref_answer_1"),
    "single-v1-multi-turn": ("question_1", "answer_1", "question_2", "answer_2"),
    "single-math-v1-multi-turn": ("question_1", "answer_1", "question_2", "answer_2",
                                  "ref_answer_1", "ref_answer_2"),
}


def load_judge_prompts(source: str | Path | None = None) -> dict[str, JudgePrompt]:
    """Single-answer prompts by name: FastChat's built in, or read from a ``judge_prompts.jsonl``."""
    if source is None:
        return dict(SINGLE_PROMPTS)
    prompts = {}
    for where, rec in read_jsonl(source):
        fields = ("name", "system_prompt", "prompt_template", "output_format")
        for key in fields:
            if not isinstance(rec.get(key), str):
                raise ValueError(f"{where}: field {key!r} must be a string")
        prompt = JudgePrompt(*(rec[key] for key in fields))
        try:
            prompt.prompt_template.format(**dict.fromkeys(_TEMPLATE_FIELDS.get(prompt.name, ()), ""))
        except (KeyError, IndexError, ValueError, AttributeError, TypeError) as err:
            if prompt.name in _TEMPLATE_FIELDS:
                raise ValueError(f"{where}: prompt_template of {prompt.name!r} cannot be filled "
                                 f"({type(err).__name__}: {err}); its fields are "
                                 f"{', '.join(_TEMPLATE_FIELDS[prompt.name])}") from None
        prompts[prompt.name] = prompt
    missing = sorted(set(SINGLE_PROMPTS) - set(prompts))
    if missing:
        raise ValueError(f"{source}: lacks judge prompt(s) {', '.join(missing)}")
    return prompts


def parse_rating(judgment: str) -> float:
    """The judge's rating: the number in ``[[n]]``, else in ``[n]``, else -1 (FastChat's rule)."""
    match = _RATING.search(judgment) or _RATING_BACKUP.search(judgment)
    return float(match.group(1)) if match else -1.0


def prompt_name(category: str, turn: int) -> str:
    """The FastChat prompt that grades ``turn`` (1 or 2) of a question in ``category``."""
    base = "single-math-v1" if category in NEED_REF_CATEGORIES else "single-v1"
    return base if turn == 1 else base + "-multi-turn"


def judge_messages(
    prompts: dict[str, JudgePrompt],
    question: Question,
    answer: Sequence[str],
    turn: int,
    reference: Sequence[str] | None = None,
) -> tuple[str, str, str]:
    """``(prompt name, system message, user message)`` for grading ``turn`` of ``answer``.

    ``reference`` is required for math, reasoning and coding questions.
    """
    name = prompt_name(question.category, turn)
    prompt = prompts[name]
    if len(answer) < turn:
        raise ValueError(f"question {question.question_id}: the answer has {len(answer)} "
                         f"turn(s), so turn {turn} cannot be judged")
    fields = {}
    if question.category in NEED_REF_CATEGORIES:
        if reference is None:
            raise ValueError(
                f"question {question.question_id} ({question.category}) needs a reference answer"
            )
        fields["ref_answer_1"] = reference[0]
        if turn == 2:
            fields["ref_answer_2"] = reference[1]
    if turn == 1:
        user = prompt.prompt_template.format(question=question.turns[0], answer=answer[0], **fields)
    else:
        user = prompt.prompt_template.format(
            question_1=question.turns[0], answer_1=answer[0],
            question_2=question.turns[1], answer_2=answer[1], **fields,
        )
    return name, prompt.system_prompt, user


class JsonlLog:
    """An append-only JSONL file, safe to append to from several threads.

    On open, a last line cut short by a crash (no trailing newline) is dropped, so the next
    append starts on a clean line.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            data = self.path.read_bytes()
            if data and not data.endswith(b"\n"):
                atomic.write_bytes(self.path, data[: data.rfind(b"\n") + 1])

    def records(self) -> list[dict]:
        """Every record written so far, in order."""
        return [r for _, r in self.entries()]

    def entries(self) -> list[tuple[str, dict]]:
        """``(file:line, record)`` for every record written so far, in order."""
        if not self.path.exists():
            return []
        return read_jsonl(self.path)

    def append(self, record: dict) -> None:
        """Write one record and flush it to disk before returning."""
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with self._lock, self.path.open("a", encoding="utf-8") as f:
            f.write(line)
            f.flush()


def read_answers(log: JsonlLog) -> dict[int, list[str]]:
    """The answers saved in ``log`` by question id; ValueError naming the line of a bad one."""
    return {qid: list(turns) for qid, turns in (_answer(r, where) for where, r in log.entries())}


def read_judgments(log: JsonlLog) -> list[dict]:
    """The judgments saved in ``log``; ValueError naming the line of a record that lacks an
    integer question_id, a turn of 1 or 2, or a numeric score."""
    out = []
    for where, rec in log.entries():
        qid, turn, score = rec.get("question_id"), rec.get("turn"), rec.get("score")
        if (not isinstance(qid, int) or isinstance(qid, bool) or turn not in (1, 2)
                or isinstance(score, bool) or not isinstance(score, (int, float))):
            raise ValueError(f"{where}: not a judgment record (expected an integer question_id, "
                             "turn 1 or 2 and a numeric score)")
        out.append(rec)
    return out


def reference_for(question: Question, references: dict[int, Sequence[str]]) -> tuple[str, ...] | None:
    """The reference turns the judge sees: the reference-answer file's, else the question's own."""
    if question.question_id in references:
        return tuple(references[question.question_id])
    return question.reference


def answer_temperature(category: str, temperature: float | None = None) -> float:
    """The temperature a question of ``category`` is answered at: ``temperature`` when given
    (one for every question), else FastChat's for the category (0.7 for one it does not list)."""
    if temperature is not None:
        return temperature
    return FASTCHAT_TEMPERATURES.get(category, FASTCHAT_DEFAULT_TEMPERATURE)


def batch_seed(seed: int, question_ids: Sequence[int], turn: int) -> int:
    """The torch seed for one generate call: fixed by the run's ``seed``, the questions in the
    call and the turn, so a rerun samples the same answers without batches sharing a stream."""
    key = json.dumps([seed, list(question_ids), turn]).encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") >> 1  # < 2**63


class Batch(list):
    """The conversations of one generate call (a list of message lists) and the ``temperature``
    and ``seed`` they are sampled with. A list, so a generator that samples one way for every
    call can treat it as plain conversations."""

    def __init__(self, conversations: Iterable[list[dict]], temperature: float, seed: int):
        super().__init__(conversations)
        self.temperature, self.seed = temperature, seed


def _answer_group(generate, group: list[Question], temperature: float,
                  seed: int) -> dict[int, list[str]]:
    """Every turn of ``group``'s questions, generated together at ``temperature``."""
    history: list[list[dict]] = [[] for _ in group]
    replies: dict[int, list[str]] = {q.question_id: [] for q in group}
    for turn in range(max(len(q.turns) for q in group)):
        active = [i for i, q in enumerate(group) if turn < len(q.turns)]
        for i in active:
            history[i].append({"role": "user", "content": group[i].turns[turn]})
        ids = [group[i].question_id for i in active]
        outs = generate(Batch([history[i] for i in active], temperature,
                              batch_seed(seed, ids, turn + 1)))
        for i, out in zip(active, outs):
            history[i].append({"role": "assistant", "content": out})
            replies[group[i].question_id].append(out)
    return replies


def answer_questions(
    generate: Callable[[Batch], list[str]],
    questions: Sequence[Question],
    log: JsonlLog,
    model_id: str,
    chunk: int = 8,
    on_done: Callable[[int], None] | None = None,
    temperature: float | None = None,
    seed: int = 0,
) -> dict[int, list[str]]:
    """Answer every question not yet in ``log``; return all answers by question id.

    ``generate`` maps a :class:`Batch` of conversations to the model's replies, sampling at
    the batch's temperature after seeding torch with its seed. Questions go in chunks of
    ``chunk``; a chunk's questions are grouped by :func:`answer_temperature` (``temperature``
    None: FastChat's per category), and each group generates all first turns, then all second
    turns with the model's own first reply in the history, seeded by :func:`batch_seed`.
    A finished chunk is appended to ``log`` in question order, in FastChat's answer format plus
    the ``temperature`` used. A rerun of the same chunks samples the same answers; a resumed
    run only generates what ``log`` lacks (its chunks, hence seeds, may differ).
    """
    answers = read_answers(log)
    todo = [q for q in questions if q.question_id not in answers]
    for start in range(0, len(todo), chunk):
        batch = todo[start:start + chunk]
        temps = {q.question_id: answer_temperature(q.category, temperature) for q in batch}
        groups: dict[float, list[Question]] = {}
        for q in batch:
            groups.setdefault(temps[q.question_id], []).append(q)
        replies: dict[int, list[str]] = {}
        for temp, group in groups.items():
            replies.update(_answer_group(generate, group, temp, seed))
        for q in batch:
            log.append({
                "question_id": q.question_id, "answer_id": f"{model_id}:{q.question_id}",
                "model_id": model_id, "choices": [{"index": 0, "turns": replies[q.question_id]}],
                "tstamp": time.time(), "temperature": temps[q.question_id],
            })
            answers[q.question_id] = replies[q.question_id]
        if on_done is not None:
            on_done(len(batch))
    return answers


def judge_answers(
    complete: Callable[[str, str], str],
    judge_model: str,
    model_id: str,
    prompts: dict[str, JudgePrompt],
    questions: Sequence[Question],
    answers: dict[int, Sequence[str]],
    references: dict[int, Sequence[str]],
    log: JsonlLog,
    parallel: int = 1,
    on_done: Callable[[int], None] | None = None,
) -> list[dict]:
    """Grade every (question, turn) not yet in ``log``; return all judgments.

    ``complete(system, user)`` returns the judge's reply. Each judgment is appended to
    ``log`` as soon as it arrives (FastChat's single-judgment fields plus ``category``).
    With ``parallel > 1`` that many requests are in flight at once. The first error stops
    the run after in-flight requests finish; what was judged stays in ``log``.
    """
    done = {(r["question_id"], r["turn"]) for r in read_judgments(log)}
    jobs = []
    for q in questions:
        for turn in range(1, min(len(q.turns), 2) + 1):
            if (q.question_id, turn) not in done:
                ref = reference_for(q, references) if q.category in NEED_REF_CATEGORIES else None
                jobs.append((q, turn, judge_messages(prompts, q, answers[q.question_id], turn, ref)))

    def grade(job) -> dict:
        q, turn, (name, system, user) = job
        judgment = complete(system, user)
        record = {
            "question_id": q.question_id, "category": q.category, "model": model_id,
            "judge": [judge_model, name], "user_prompt": user, "judgment": judgment,
            "score": parse_rating(judgment), "turn": turn, "tstamp": time.time(),
        }
        log.append(record)
        return record

    if parallel <= 1:
        for job in jobs:
            grade(job)
            if on_done is not None:
                on_done(1)
    else:
        with ThreadPoolExecutor(parallel) as pool:
            futures = [pool.submit(grade, job) for job in jobs]
            try:
                for fut in as_completed(futures):
                    fut.result()
                    if on_done is not None:
                        on_done(1)
            except BaseException:
                for fut in futures:
                    fut.cancel()
                raise
    return read_judgments(log)


def _mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return sum(values) / len(values) if values else None


def summarize(questions: Sequence[Question], judgments: Sequence[dict]) -> dict:
    """MT-Bench scores from judgments: ``overall``, ``turn1``, ``turn2`` and ``categories``
    (mean rating per category over both turns), plus counts. Ratings of -1 (no rating
    found) are excluded, as FastChat's ``show_result.py`` does, and counted in ``unparsed``.
    """
    category = {q.question_id: q.category for q in questions}
    scored = [j for j in judgments if int(j["question_id"]) in category]
    valid = [j for j in scored if j["score"] != -1]
    cats = sorted({category[int(j["question_id"])] for j in valid})
    return {
        "overall": _mean(j["score"] for j in valid),
        "turn1": _mean(j["score"] for j in valid if int(j["turn"]) == 1),
        "turn2": _mean(j["score"] for j in valid if int(j["turn"]) == 2),
        "categories": {
            c: _mean(j["score"] for j in valid if category[int(j["question_id"])] == c)
            for c in cats
        },
        "judgments": len(scored),
        "unparsed": len(scored) - len(valid),
        "questions": len(questions),
    }
