"""The built-in task: generated preference pairs with a checkable answer, for the default run.

Source strings: ``builtin:<task>[:<split>][?n=<pairs>&seed=<seed>]``, e.g. ``builtin:mixed``,
``builtin:arithmetic:test``, ``builtin:units?n=500&seed=3``. Tasks:

    arithmetic  sums and differences of numbers up to 99, small products, one-step word problems
    units       conversions between units with integer factors (km/m, h/min, kg/g, ...), both ways
    sorting     sort 3 to 5 distinct numbers below 100 (never given in order) in ascending order
    mixed       all of the above (the default run's data: ``DEFAULT_SOURCE``)

Every prompt is one short user message; the chosen response is always ``"Answer: <answer>"``
(3 to 20 tokens), which a 135M instruct model learns within minutes on a CPU. The rejected
response is, by a seeded draw: the same format with a plausible wrong answer (60%), an
unhelpful refusal (20%), or a hedged ramble containing a wrong answer (20%).

Splits are disjoint by construction: a problem belongs to ``test`` when the CRC-32 of its prompt
is divisible by 10, else to ``train``, whatever ``n`` and ``seed`` are. Each split is generated
from its own seeded stream, so a split is the same list for the same (task, n, seed).

:func:`check_answer` is the exact-match test used by the evaluation: the integers stated in the
answer (after ``Answer:``, else on the first non-empty line) must equal the expected ones, in
order.
"""

from __future__ import annotations

import random
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl

from asft.data.errors import DataError

SPLITS = ("train", "test")
DEFAULT_SIZES = {"train": 2000, "test": 200}
DEFAULT_SEED = 0
DEFAULT_SOURCE = "builtin:mixed"
_MAX_PAIRS = 1_000_000
_MAX_MISSES = 20_000  # consecutive duplicates that mean the task has run out of problems


@dataclass(frozen=True)
class Problem:
    """One generated problem: the question, its answer, and a plausible wrong answer."""

    prompt: str
    answer: str
    wrong: str


def _near_miss(rng: random.Random, x: int) -> int:
    """A wrong answer of the kind a careless solver gives: off by 1, 2 or 10."""
    options = [x + d for d in (-10, -2, -1, 1, 2, 10) if x + d >= 0]
    return rng.choice(options)


def _add(rng: random.Random) -> Problem:
    a, b = rng.randint(2, 99), rng.randint(2, 99)
    return Problem(f"What is {a} + {b}?", str(a + b), str(_near_miss(rng, a + b)))


def _sub(rng: random.Random) -> Problem:
    a = rng.randint(10, 99)
    b = rng.randint(1, a)
    return Problem(f"What is {a} - {b}?", str(a - b), str(rng.choice([a + b, _near_miss(rng, a - b)])))


def _mul(rng: random.Random) -> Problem:
    a, b = rng.randint(2, 12), rng.randint(2, 12)
    wrong = rng.choice([a + b, a * (b + 1), _near_miss(rng, a * b)])
    return Problem(f"What is {a} times {b}?", str(a * b), str(wrong if wrong != a * b else wrong + 1))


_NAMES = ("Sam", "Ana", "Li", "Omar", "Maya", "Ben", "Zoe", "Ravi", "Lena", "Tom")
_ITEMS = ("apples", "books", "coins", "stickers", "marbles", "pencils", "cards", "shells")


def _word(rng: random.Random) -> Problem:
    name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
    kind = rng.randrange(3)
    if kind == 0:
        a, b = rng.randint(2, 50), rng.randint(2, 50)
        prompt = f"{name} has {a} {item} and gets {b} more. How many {item} does {name} have now?"
        answer, wrong = a + b, rng.choice([abs(a - b), _near_miss(rng, a + b)])
    elif kind == 1:
        a = rng.randint(5, 60)
        b = rng.randint(1, a - 1)
        prompt = f"{name} has {a} {item} and gives away {b}. How many {item} are left?"
        answer, wrong = a - b, rng.choice([a + b, _near_miss(rng, a - b)])
    else:
        a, b = rng.randint(2, 9), rng.randint(2, 9)
        prompt = f"{name} buys {a} bags with {b} {item} in each. How many {item} is that in total?"
        answer, wrong = a * b, rng.choice([a + b, _near_miss(rng, a * b)])
    if wrong == answer:
        wrong = answer + 1
    return Problem(prompt, str(answer), str(wrong))


_UNITS = (
    ("kilometers", "meters", 1000), ("meters", "centimeters", 100), ("kilograms", "grams", 1000),
    ("liters", "milliliters", 1000), ("hours", "minutes", 60), ("minutes", "seconds", 60),
    ("days", "hours", 24), ("weeks", "days", 7), ("years", "months", 12), ("dollars", "cents", 100),
)


def _unit_name(plural: str, n: int) -> str:
    return plural[:-1] if n == 1 else plural


def _units(rng: random.Random) -> Problem:
    big, small, factor = rng.choice(_UNITS)
    n = rng.randint(1, 200)
    wrong_factor = rng.choice([f for f in (10, 12, 24, 60, 100, 1000) if f != factor])
    if rng.random() < 0.5:
        return Problem(f"How many {small} are in {n} {_unit_name(big, n)}?", str(n * factor),
                       str(n * wrong_factor))
    return Problem(f"How many {big} are in {n * factor} {small}?", str(n),
                   str(rng.choice([n * factor * factor, n + 1, n * wrong_factor])))


def _sorting(rng: random.Random) -> Problem:
    nums = rng.sample(range(1, 100), rng.randint(3, 5))
    ordered = sorted(nums)
    if nums == ordered:  # an already sorted list asks nothing: rotate it
        nums = nums[1:] + nums[:1]
    wrongs = [sorted(nums, reverse=True), ordered[:-1], nums]
    i = rng.randrange(len(ordered) - 1)
    wrongs.append([*ordered[:i], ordered[i + 1], ordered[i], *ordered[i + 2:]])

    def show(xs):
        return ", ".join(map(str, xs))

    return Problem(f"Sort these numbers from smallest to largest: {show(nums)}.", show(ordered),
                   show(rng.choice(wrongs)))


Family = Callable[[random.Random], Problem]
TASKS: dict[str, tuple[tuple[Family, int], ...]] = {
    "arithmetic": ((_add, 3), (_sub, 2), (_mul, 2), (_word, 3)),
    "units": ((_units, 1),),
    "sorting": ((_sorting, 1),),
    "mixed": ((_add, 2), (_sub, 1), (_mul, 1), (_word, 2), (_units, 2), (_sorting, 2)),
}

_REFUSALS = (
    "I'm not sure, sorry.",
    "I can't help with that.",
    "You should work that out yourself.",
    "That is a hard question. Try a calculator.",
)


def split_of(prompt: str) -> str:
    """``test`` or ``train``: fixed by the prompt text alone, so the splits never overlap."""
    return "test" if zlib.crc32(prompt.encode()) % 10 == 0 else "train"


def problems(task: str = "mixed", split: str = "train", n: int | None = None,
             seed: int = DEFAULT_SEED) -> list[Problem]:
    """``n`` distinct problems of ``task`` in ``split`` (default sizes: train 2000, test 200)."""
    if task not in TASKS:
        raise ValueError(f"unknown built-in task {task!r}; tasks: {', '.join(TASKS)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; splits: {', '.join(SPLITS)}")
    n = DEFAULT_SIZES[split] if n is None else n
    if not 0 < n <= _MAX_PAIRS:
        raise ValueError(f"n must be between 1 and {_MAX_PAIRS}, got {n}")
    families, weights = zip(*TASKS[task])
    rng = random.Random(f"asft-builtin:{task}:{split}:{seed}")
    seen: set[str] = set()
    out: list[Problem] = []
    # Bounded: a task with fewer distinct problems than asked stops with an error, never spins.
    misses = 0
    for _ in range(50 * n + 1000):
        problem = rng.choices(families, weights)[0](rng)
        if problem.prompt in seen or split_of(problem.prompt) != split:
            misses += 1
            if misses > _MAX_MISSES:
                break
            continue
        misses = 0
        seen.add(problem.prompt)
        out.append(problem)
        if len(out) == n:
            return out
    raise ValueError(f"task {task!r} has fewer than {n} distinct {split} problems "
                     f"(found {len(out)}); ask for fewer")


def to_record(problem: Problem, rng: random.Random) -> dict[str, str]:
    """The preference record of a problem: chosen correct, rejected wrong or unhelpful."""
    style = rng.random()
    if style < 0.6:
        rejected = f"Answer: {problem.wrong}"
    elif style < 0.8:
        rejected = rng.choice(_REFUSALS)
    else:
        rejected = f"Hmm, let me think. Maybe it is {problem.wrong}, or something close to that."
    return {"prompt": problem.prompt, "chosen": f"Answer: {problem.answer}", "rejected": rejected}


def records(task: str = "mixed", split: str = "train", n: int | None = None,
            seed: int = DEFAULT_SEED) -> list[dict[str, str]]:
    """Explicit-format records (``prompt``, ``chosen``, ``rejected``) of the task."""
    rng = random.Random(f"asft-builtin-style:{task}:{split}:{seed}")
    return [to_record(p, rng) for p in problems(task, split, n, seed)]


def parse_source(source: str, split: str | None = None) -> tuple[str, str, int | None, int]:
    """(task, split, n, seed) of ``builtin:<task>[:<split>][?n=..&seed=..]``."""
    spec, _, query = source.removeprefix("builtin:").partition("?")
    task, _, spec_split = spec.partition(":")
    task = task or "mixed"
    if spec_split and split and spec_split != split:
        raise ValueError(f"split {split!r} contradicts the source's split {spec_split!r}")
    split = spec_split or split or "train"
    params = dict(parse_qsl(query, keep_blank_values=True))
    unknown = set(params) - {"n", "seed"}
    if unknown:
        raise ValueError(f"unknown parameter(s) {', '.join(sorted(unknown))}; valid: n, seed")
    try:
        n = int(params["n"]) if "n" in params else None
        seed = int(params.get("seed", DEFAULT_SEED))
    except ValueError:
        raise ValueError("n and seed must be integers") from None
    return task, split, n, seed


def open_builtin(source: str, split: str | None = None) -> tuple[str, list[dict[str, str]]]:
    """(display name ``builtin:<task>:<split>``, records) for a builtin source string."""
    try:
        task, split, n, seed = parse_source(source, split)
        return f"builtin:{task}:{split}", records(task, split, n, seed)
    except ValueError as err:
        raise DataError(str(err), file=source) from None


_ANSWER = re.compile(r"answer\s*:(.*)", re.IGNORECASE)
_INT = re.compile(r"-?\d{1,300}")  # bounded: int() refuses longer digit strings


def extract_answer(text: str) -> list[int] | None:
    """The integers of the answer in ``text``: after the last ``Answer:`` on its line, else on
    the first non-empty line; None when there are none."""
    found = _ANSWER.findall(text)
    line = found[-1] if found else next((ln for ln in text.splitlines() if ln.strip()), "")
    numbers = [int(x) for x in _INT.findall(line)]
    return numbers or None


def check_answer(response: str, reference) -> bool:
    """Exact match of a model's ``response`` with ``reference``: the expected answer
    (``"42"``, ``"7, 19, 42"``), a chosen response (``"Answer: 42"``) or a
    :class:`~asft.data.PreferencePair` of a built-in task (its chosen response is the answer)."""
    if hasattr(reference, "chosen"):
        reference = reference.chosen[-1]["content"]
    expected = extract_answer(str(reference))
    return expected is not None and extract_answer(response) == expected
