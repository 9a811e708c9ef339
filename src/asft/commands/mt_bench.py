"""``asft mt-bench``: answer the MT-Bench questions with a model, grade them with an LLM judge.

Answers are sampled at FastChat's temperature for each question's category (writing and
roleplay 0.7, stem and humanities 0.1, the rest greedy), as the paper's MT-Bench numbers are;
``--temperature T`` uses one temperature for every question instead (0 = greedy).

Files in ``--output``: ``answers.jsonl`` and ``judgments.jsonl`` (FastChat's formats,
appended as they arrive; a rerun resumes from them) and ``scores.json``.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from asft import atomic
from asft.commands import condition_flags, judge_flags
from asft.errors import AsftError
from asft.model.load import ATTN_IMPLEMENTATIONS


def register(sub: argparse._SubParsersAction) -> None:
    from asft.evaluate.mt_bench import QUESTIONS_URL, REFERENCE_ANSWERS_URL

    p = sub.add_parser(
        "mt-bench", help="answer MT-Bench with a model and grade it with an LLM judge",
        description="Answer the MT-Bench questions (two turns each) with the model's chat "
        "template, then grade every turn with an OpenAI-compatible judge using FastChat's "
        "single-answer prompts (with GPT-4 reference answers for math, reasoning, coding). "
        "Answers are sampled at FastChat's per-category temperatures unless --temperature "
        "gives one number. "
        "Rerunning the same command resumes: nothing already answered or judged is redone.",
    )
    p.add_argument("--model", required=True, help="model folder, hub id or short name")
    p.add_argument("--output", required=True, type=Path, help="folder for answers, judgments, scores")
    p.add_argument("--model-id", help="name recorded in the answer files (default: the model's "
                   "folder name, or the run's for runs/<run>/model)")
    p.add_argument("--questions", default=QUESTIONS_URL,
                   help="question.jsonl path or URL (default: FastChat's, pinned commit)")
    p.add_argument("--reference-answers", default=REFERENCE_ANSWERS_URL,
                   help="reference answers for math/reasoning/coding, path or URL (default: FastChat's GPT-4)")
    p.add_argument("--judge-prompts", help="FastChat judge_prompts.jsonl (default: built-in copy)")
    p.add_argument("--limit", type=int, help="answer only the first N questions (smoke runs)")
    judge_flags.add(p)
    p.add_argument("--no-judge", action="store_true", help="only generate the answers")
    p.add_argument("--max-new-tokens", type=int, default=1024, help="per turn (FastChat: 1024)")
    p.add_argument("--temperature", default="fastchat", metavar="fastchat|T",
                   help="'fastchat' (default): FastChat's temperature per category (writing, "
                   "roleplay 0.7; stem, humanities 0.1; math, coding, reasoning, extraction 0 = "
                   "greedy; others 0.7); a number T >= 0: T for every question")
    p.add_argument("--batch-size", type=int, default=8, help="questions generated together")
    p.add_argument("--dtype", default="fp32", help="fp32, bf16 or fp16")
    p.add_argument("--attn-implementation", default="auto",
                   choices=ATTN_IMPLEMENTATIONS,
                   help="attention kernel (default auto: sdpa); flash_attention_2 scores pairs on "
                        "the plain layout")
    p.add_argument("--seed", type=int, default=0,
                   help="sampling seed; the same seed gives the same answers (default: 0)")
    condition_flags.add(p)
    p.set_defaults(func=run)


def default_model_id(model: str) -> str:
    """The model's folder name, or the run's for a trainer output (``runs/<run>/model``)."""
    path = Path(model.rstrip("/"))
    return path.parent.name if path.name == "model" and path.parent.name else path.name


def parse_temperature(value: str) -> float | None:
    """``--temperature``: None for ``fastchat`` (FastChat's per-category table), else a finite
    number >= 0 (0 = greedy) for every question; AsftError for anything else."""
    if value.strip().lower() == "fastchat":
        return None
    try:
        temperature = float(value)
    except ValueError:
        temperature = math.nan
    if not 0 <= temperature < math.inf:
        raise AsftError(f"--temperature must be 'fastchat' or a number >= 0 (0 = greedy), "
                        f"got {value!r}")
    return temperature + 0.0  # -0 recorded as 0


def _load_references(args, questions) -> dict[int, tuple[str, ...]]:
    from asft.evaluate.mt_bench import NEED_REF_CATEGORIES, load_reference_answers

    needing = [q for q in questions if q.category in NEED_REF_CATEGORIES]
    if not needing:
        return {}
    try:
        refs = load_reference_answers(args.reference_answers)
    except (OSError, ValueError) as err:
        if all(q.reference for q in needing):
            print(f"asft mt-bench: {err}; using the questions' own reference fields",
                  file=sys.stderr)
            return {}
        raise AsftError(f"{err}\npass --reference-answers PATH (FastChat's "
                        "reference_answer/gpt-4.jsonl)") from None
    missing = [q.question_id for q in needing if q.question_id not in refs and not q.reference]
    if missing:
        raise AsftError(f"{args.reference_answers}: no reference answer for question(s) "
                        f"{', '.join(map(str, missing))}")
    return refs


def _generator(args):
    """``generate(batch)`` for :func:`asft.evaluate.mt_bench.answer_questions`: the model's
    replies, sampled at the batch's temperature after seeding torch with its seed, each
    conversation conditioned on ``--condition-score`` when given."""
    from dataclasses import replace

    import torch

    from asft.evaluate.generation import GenerationConfig, generate_responses
    from asft.model.load import load_model, load_tokenizer

    tokenizer = load_tokenizer(args.model)
    model = load_model(args.model, dtype=args.dtype, attn_implementation=args.attn_implementation)
    if torch.cuda.is_available():
        model = model.cuda()
    from asft.evaluate.mt_bench import FASTCHAT_TOP_K

    config = GenerationConfig(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                              top_k=FASTCHAT_TOP_K)
    condition = condition_flags.condition(args)

    def generate(batch):
        # conditioned afresh each turn: the history keeps the plain questions and answers
        conversations = [condition.prompt(c) for c in batch] if condition else batch
        return generate_responses(model, tokenizer, conversations,
                                  replace(config, temperature=batch.temperature, seed=batch.seed))

    return generate


def run(args: argparse.Namespace) -> int:
    from asft.evaluate import mt_bench as mb

    temperature = _check_args(args)
    condition = condition_flags.condition(args)
    questions, prompts = _load_inputs(args)
    judge, references = _judge_client(args, questions)
    args.output.mkdir(parents=True, exist_ok=True)
    model_id = args.model_id or default_model_id(args.model)
    answer_log = mb.JsonlLog(args.output / "answers.jsonl")
    judgment_log = mb.JsonlLog(args.output / "judgments.jsonl")
    try:  # what a previous run saved, read back before any work
        done = set(mb.read_answers(answer_log))
        judged = len(mb.read_judgments(judgment_log))
    except ValueError as err:
        raise AsftError(f"{err}\nfix or delete that file: a rerun resumes from it") from None
    answers = _answer(args, questions, answer_log, done, model_id, temperature)
    print(f"answers: {answer_log.path}")
    if judge is None:
        return 0
    judgments = _judge(args, judge, prompts, questions, answers, references, judgment_log,
                       judged, model_id, answer_log.path)
    scores = mb.summarize(questions, judgments)
    scores.update(model_id=model_id, judge_model=args.judge_model,
                  temperature="fastchat" if temperature is None else temperature,
                  condition=condition.to_dict() if condition else None)
    atomic.write_json(args.output / "scores.json", scores)
    _print_scores(scores, f"MT-Bench: {model_id} (judge {args.judge_model})")
    print(f"scores: {args.output / 'scores.json'}")
    return 0


def _check_args(args: argparse.Namespace) -> float | None:
    """The sampling temperature (None: FastChat's per category), after checking the flags."""
    from asft.evaluate.generation import GenerationConfig

    if args.limit is not None and args.limit < 1:
        raise AsftError(f"--limit must be >= 1, got {args.limit}")
    if args.judge_parallel < 1:
        raise AsftError(f"--judge-parallel must be >= 1, got {args.judge_parallel}")
    temperature = parse_temperature(args.temperature)
    try:
        GenerationConfig(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    except ValueError as err:
        raise AsftError(str(err)) from None
    return temperature


def _load_inputs(args: argparse.Namespace):
    """(questions, judge prompts), the questions cut to ``--limit``."""
    from asft.evaluate import mt_bench as mb

    try:
        questions = mb.load_questions(args.questions)
        prompts = mb.load_judge_prompts(args.judge_prompts)
    except OSError as err:
        raise AsftError(f"{err}\npass --questions PATH (FastChat's question.jsonl)") from None
    except ValueError as err:
        raise AsftError(str(err)) from None
    return (questions[: args.limit] if args.limit else questions), prompts


def _judge_client(args: argparse.Namespace, questions):
    """(judge client or None with --no-judge, reference answers by question id)."""
    from asft.evaluate.judge import JudgeClient

    if args.no_judge:
        return None, {}
    references = _load_references(args, questions)
    try:
        judge = JudgeClient(args.judge_base_url, args.judge_model, args.judge_api_key_env,
                            timeout=args.judge_timeout, max_retries=args.judge_retries,
                            backoff=args.judge_backoff)
    except ValueError as err:
        raise AsftError(str(err)) from None
    if not judge.has_key:
        print(f"asft mt-bench: ${args.judge_api_key_env} is not set; calling the judge "
              "without an API key", file=sys.stderr)
    return judge, references


def _answer(args, questions, answer_log, done, model_id, temperature):
    """The model's answers to every question; only those not in ``done`` are generated."""
    from asft.evaluate import mt_bench as mb
    from asft.progress import progress_bar

    todo = sum(q.question_id not in done for q in questions)
    generate = _generator(args) if todo else None
    with progress_bar() as bar:
        task = bar.add_task("answering", total=todo)
        return mb.answer_questions(generate, questions, answer_log, model_id,
                                   chunk=args.batch_size, on_done=lambda n: bar.advance(task, n),
                                   temperature=temperature, seed=args.seed)


def _judge(args, judge, prompts, questions, answers, references, judgment_log, judged,
           model_id, answers_path):
    """The judge's verdicts on every answer turn; those already in ``judgment_log`` are kept."""
    from asft.evaluate import mt_bench as mb
    from asft.evaluate.judge import JudgeError
    from asft.progress import progress_bar

    expected = sum(min(len(q.turns), 2) for q in questions)
    with progress_bar() as bar:
        task = bar.add_task("judging", total=expected, completed=judged)
        try:
            return mb.judge_answers(
                judge.complete, args.judge_model, model_id, prompts, questions, answers,
                references, judgment_log, parallel=args.judge_parallel,
                on_done=lambda n: bar.advance(task, n),
            )
        except ValueError as err:  # an answer read back from answers.jsonl that cannot be judged
            raise AsftError(f"{err} (in {answers_path})") from None
        except JudgeError as err:
            saved = len(judgment_log.records())
            raise AsftError(f"{err}\n{saved} of {expected} judgments saved in "
                            f"{judgment_log.path}; rerun the same command to resume") from None


def _print_scores(scores: dict, title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("category")
    table.add_column("score", justify="right")
    fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    for cat, value in scores["categories"].items():
        table.add_row(cat, fmt(value))
    for key in ("turn1", "turn2", "overall"):
        table.add_row(key, fmt(scores[key]), style="bold" if key == "overall" else None)
    Console().print(table)
    if scores["unparsed"]:
        print(f"{scores['unparsed']} judgment(s) had no [[rating]] and are left out", file=sys.stderr)
