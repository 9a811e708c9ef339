"""SOURCE for ``asft pairs``, read by the data layer: the prompts to sample answers for.

- ``builtin:<task>[:<split>][?n=..&seed=..]``: the built-in task's problems
  (:func:`asft.data.builtin.problems`), each prompt one user message, its expected answer the
  reference of the ``builtin`` scorer.
- anything else :func:`asft.data.sources.open_source` reads (JSON Lines, JSON, CSV, Parquet,
  a datasets folder, a hub id): records with a ``prompt`` (a string or a message list, as the
  explicit format reads it, :func:`asft.data.formats.prompt_messages`), an optional ``system``
  string and an optional ``answer`` (the expected answer, a string or an integer).

Problems raise :class:`~asft.data.DataError` naming the file, the line and the field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from asft.data import builtin
from asft.data.errors import DataError
from asft.data.formats import prompt_messages, require, system_messages, wrong_type
from asft.data.sources import open_source
from asft.experiments.pairs.items import Message, PromptItem

_SURROGATE = re.compile("[\ud800-\udfff]")


def _builtin_prompts(source: str, limit: int | None) -> list[PromptItem]:
    try:
        task, split, n, seed = builtin.parse_source(source)
        # problems(task, split, k) is the first k of problems(task, split, n) for k <= n, so
        # asking for `limit` alone gives the same prompts, without generating the rest.
        found = builtin.problems(task, split, n if n is not None else limit, seed)
    except ValueError as err:
        raise DataError(str(err), file=source) from None
    name = f"builtin:{task}:{split}"
    return [PromptItem(i, [{"role": "user", "content": p.prompt}], p.answer, f"{name}:{i + 1}")
            for i, p in enumerate(found[:limit])]


def _reference(record: Mapping) -> str | None:
    value = record.get("answer")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise wrong_type("answer", "a string or an integer", value)
    return str(value)


def record_prompt(record: Mapping) -> tuple[list[Message], str | None]:
    """(messages, reference) of one record; DataError naming the field when it has none."""
    messages = system_messages(record) + prompt_messages(require(record, "prompt"), "prompt")
    if not messages or messages[-1]["role"] != "user":
        raise DataError("a prompt must end with a user message (the model answers it)",
                        field="prompt", reason="wrong_type")
    if any(_SURROGATE.search(m["content"]) for m in messages):
        raise DataError("text with a lone surrogate code point (not valid Unicode)",
                        field="prompt", reason="wrong_type")
    return messages, _reference(record)


def read_prompts(source: str, limit: int | None = None) -> list[PromptItem]:
    """The first ``limit`` (None: all) prompts of ``source`` (see the module docstring)."""
    if source.startswith("builtin:"):
        items = _builtin_prompts(source, limit)
    else:
        opened = open_source(source)
        items = []
        for raw in opened.records:
            if limit is not None and len(items) >= limit:
                break
            try:
                if raw.error is not None:
                    raise raw.error
                messages, reference = record_prompt(raw.data)
            except DataError as err:
                raise err.located(opened.name, raw.index, raw.unit or opened.unit) from None
            items.append(PromptItem(len(items), messages, reference, f"{opened.name}:{raw.index}"))
    if not items:
        raise DataError("no prompts: the source is empty", file=source)
    return items
