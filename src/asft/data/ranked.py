"""Ranked and rated records: several responses and a verdict, turned into one preference pair.

``ranked`` (:func:`ranked_adapter`; only with ``fmt="ranked"``)
    Two or more response columns (``columns["responses"]``) and exactly one of

    - ``columns["label"]``: one label column, or a list of them (votes, one per annotator). By
      default a label is a 0-based index into ``responses`` (an int, or its text as CSV gives
      it) or the name of one of the response columns; ``labels`` maps label values (as text:
      ``"0"``, ``"model_a"``, ``"tie (bothbad)"``) to a response column, an index as text, or
      ``"tie"`` instead. The winner is the response voted for by more than half of all votes
      cast (tie votes count as cast); otherwise the record is a tie. The rejected response is
      the first other response in column order.
    - ``columns["scores"]``: one score column per response; the highest score is chosen, the
      lowest (the first of equal lowest) rejected; equal top scores are a tie.

    The prompt is ``columns["prompt"]`` (default ``prompt``; a string or messages, stripped
    from responses that repeat it). Without one, the responses must be whole conversations
    (Chatbot Arena's ``conversation_a`` / ``conversation_b``) and the prompt is their shared
    prefix.

``rated`` (:func:`rated_adapter`; detected for a ``completions`` list of objects)
    UltraFeedback's raw layout: a prompt (``instruction``) and ``completions``, each with a
    ``response`` text and a rating (``overall_score``; a dotted key such as
    ``annotations.helpfulness.Rating`` reads a nested one). Binarized as
    ``HuggingFaceH4/ultrafeedback_binarized``: chosen = the highest-rated completion (the first
    of equal best), rejected = a random one of those rated strictly lower (``binarize="random"``,
    drawn with a generator seeded by ``seed`` and the SHA-256 of the prompt text, so the same
    in any file order and process) or the lowest-rated (``"worst"``). A rating that is not a
    number (``"N/A"``) leaves its completion out.

Ties are not bad data: they raise :class:`~asft.data.errors.Skipped` (reason ``tie``, or
``too_few_rated`` when fewer than two completions are rated), which ``load_pairs`` always
skips and counts.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import Counter
from collections.abc import Mapping, Sequence

from asft.data.errors import DataError, Skipped
from asft.data.formats import (
    Adapter,
    content_text,
    prompt_messages,
    require,
    response_messages,
    split_shared,
    system_messages,
    to_messages,
    with_prompt,
    wrong_type,
)
from asft.data.records import Message

BINARIZE = ("random", "worst")
TIE = "tie"


def label_text(value: object) -> str | None:
    """A label value (or a key of ``labels``) as text: ``1`` and ``1.0`` -> ``"1"``,
    ``True`` -> ``"true"``, strings stripped; None for lists, objects and fractions."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str):
        return value.strip()
    return None


def label_table(responses: Sequence[str], labels: Mapping | None) -> dict[str, int | None]:
    """Label text -> response index, or None for a tie (ValueError for a bad ``labels``)."""
    if not labels:
        table: dict[str, int | None] = {str(i): i for i in range(len(responses))}
        table.update({name: i for i, name in enumerate(responses)})
        return table
    if not isinstance(labels, Mapping):
        raise ValueError(f"labels must be a mapping like {{'0': 'tie', '1': "
                         f"{responses[0]!r}}}, got {type(labels).__name__}")
    table = {}
    for key, target in labels.items():
        key_text, target_text = label_text(key), label_text(target)
        if key_text is None:
            raise ValueError(f"labels keys must be label values (text or integers), got {key!r}")
        if target_text in responses:
            table[key_text] = responses.index(target_text)
        elif target_text == TIE:
            table[key_text] = None
        elif target_text is not None and target_text.isdigit() and int(target_text) < len(responses):
            table[key_text] = int(target_text)
        else:
            raise ValueError(f"labels[{key!r}] = {target!r} is not a response column "
                             f"({', '.join(responses)}), a 0-based index below {len(responses)} "
                             f"or {TIE!r}")
    return table


def _vote(record: Mapping, column: str, table: Mapping[str, int | None]) -> int | None:
    value = require(record, column)
    text = label_text(value)
    if text is None or text not in table:
        accepted = ", ".join(repr(k) for k in table)
        raise DataError(f"label {value!r} is not one of the accepted values: {accepted}",
                        field=column, reason="wrong_type")
    return table[text]


def _by_votes(record: Mapping, columns: Sequence[str], table: Mapping[str, int | None],
              n: int) -> tuple[int, int]:
    votes = [_vote(record, c, table) for c in columns]
    counts = Counter(v for v in votes if v is not None)
    best, count = counts.most_common(1)[0] if counts else (None, 0)
    if best is None or 2 * count <= len(votes):
        cast = ", ".join(repr(record[c]) for c in columns)
        what = f"a tie label ({cast})" if len(votes) == 1 else f"no majority in the votes {cast}"
        raise Skipped(f"{what}: no preference", field=columns[0], reason="tie")
    return best, next(i for i in range(n) if i != best)


def to_number(value: object, field: str) -> float | None:
    """A rating or score: a number or numeric text; None for other text (``"N/A"``) and NaN."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise wrong_type(field, "a number", value)
    try:
        number = float(value)
    except ValueError:
        return None
    return None if math.isnan(number) else number


def _by_scores(record: Mapping, columns: Sequence[str]) -> tuple[int, int]:
    scores = []
    for column in columns:
        score = to_number(require(record, column), column)
        if score is None:
            raise DataError(f"score {record[column]!r} is not a number", field=column,
                            reason="wrong_type")
        scores.append(score)
    top = max(scores)
    if scores.count(top) > 1:
        raise Skipped(f"equal top scores {scores}: no preference", field=columns[0], reason="tie")
    return scores.index(top), scores.index(min(scores))


def _renamed(err: DataError, names: Mapping[str, str]) -> DataError:
    """``err`` with a field ``chosen...`` / ``rejected...`` renamed to the source column."""
    for std, column in names.items():
        if err.field == std or (err.field or "").startswith(f"{std}["):
            return type(err)(err.message, field=column + err.field[len(std):], reason=err.reason)
    return err


def _ranked_messages(record: Mapping, win: str, lose: str, prompt_col: str, prompt_given: bool,
                     ) -> tuple[list[Message], list[Message], list[Message]]:
    chosen, rejected = require(record, win), require(record, lose)
    if prompt_given or record.get(prompt_col) is not None:
        prompt = prompt_messages(require(record, prompt_col), prompt_col)
        return with_prompt(prompt, response_messages(chosen, win), response_messages(rejected, lose))
    if not (isinstance(chosen, list) and isinstance(rejected, list)):
        raise DataError("no prompt column, and the responses are not whole conversations to "
                        "take the shared prompt from: map one with columns['prompt']",
                        field=prompt_col, reason="missing_field")
    return split_shared(to_messages(chosen, win), to_messages(rejected, lose))


def ranked_adapter(columns: Mapping, labels: Mapping | None = None) -> Adapter:
    """The adapter of format ``ranked`` for ``columns`` (checked by ``check_columns``)."""
    responses = list(columns["responses"])
    prompt_col = columns.get("prompt", "prompt")
    system_col = columns.get("system", "system")
    if "scores" in columns and labels:
        raise ValueError("labels map label values; with columns['scores'] there are none")
    scores = columns.get("scores")
    votes = columns.get("label")
    votes = [votes] if isinstance(votes, str) else votes
    table = None if scores else label_table(responses, labels)

    def adapter(record: Mapping):
        if scores:
            win, lose = _by_scores(record, scores)
        else:
            win, lose = _by_votes(record, votes, table, len(responses))
        try:
            prompt, chosen, rejected = _ranked_messages(
                record, responses[win], responses[lose], prompt_col, "prompt" in columns)
        except DataError as err:
            raise _renamed(err, {"chosen": responses[win], "rejected": responses[lose]}) from None
        return system_messages(record, system_col) + prompt, chosen, rejected

    return adapter


def _lookup(item: Mapping, key: str) -> object:
    """``item[key]``, or the nested value of a dotted ``key`` such as ``a.b.c``."""
    if key in item:
        return item[key]
    value: object = item
    for part in key.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def _rated_completions(record: Mapping, column: str, response_key: str, rating_key: str,
                       ) -> list[tuple[float, str]]:
    """(rating, text) of each completion with a numeric rating, in order."""
    completions = require(record, column)
    if not isinstance(completions, list):
        raise wrong_type(column, "a list of completion objects", completions)
    rated = []
    for i, item in enumerate(completions):
        field = f"{column}[{i}]"
        if not isinstance(item, Mapping):
            raise wrong_type(field, "a completion object", item)
        text = content_text(require(item, response_key, f"{field}.{response_key}"),
                            f"{field}.{response_key}")
        rating = _lookup(item, rating_key)
        if rating is None:
            raise DataError("no rating", field=f"{field}.{rating_key}", reason="missing_field")
        number = to_number(rating, f"{field}.{rating_key}")
        if number is not None:
            rated.append((number, text))
    return rated


def draw_seed(seed: int, prompt: list[Message]) -> str:
    """The seed of one record's draw: ``seed`` and the SHA-256 of its prompt text."""
    text = "\n".join(m["content"] for m in prompt)
    return f"{seed}:{hashlib.sha256(text.encode('utf-8', 'surrogatepass')).hexdigest()}"


def rated_adapter(columns: Mapping, binarize: str = "random", seed: int = 0) -> Adapter:
    """The adapter of format ``rated`` for ``columns`` (defaults: prompt ``instruction``,
    completions ``completions``, response ``response``, rating ``overall_score``);
    ``binarize`` is one of :data:`BINARIZE` (checked by :func:`asft.data.load.check_options`)."""
    prompt_col = columns.get("prompt", "instruction")
    completions_col = columns.get("completions", "completions")
    response_key = columns.get("response", "response")
    rating_key = columns.get("rating", "overall_score")
    system_col = columns.get("system", "system")

    def adapter(record: Mapping):
        prompt = prompt_messages(require(record, prompt_col), prompt_col)
        rated = _rated_completions(record, completions_col, response_key, rating_key)
        if len(rated) < 2:
            raise Skipped(f"{len(rated)} completion(s) with a numeric rating: no preference",
                          field=completions_col, reason="too_few_rated")
        best = max(r for r, _ in rated)
        lower = [c for c in rated if c[0] < best]
        if not lower:
            raise Skipped(f"all {len(rated)} rated completions are rated {best:g}: no preference",
                          field=completions_col, reason="tie")
        chosen = next(text for r, text in rated if r == best)
        if binarize == "worst":
            rejected = min(lower, key=lambda c: c[0])[1]
        else:
            rejected = random.Random(draw_seed(seed, prompt)).choice(lower)[1]
        return (system_messages(record, system_col) + prompt,
                [{"role": "assistant", "content": chosen}],
                [{"role": "assistant", "content": rejected}])

    return adapter
