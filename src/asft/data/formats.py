"""Record formats: adapters from what users have on disk to prompt/chosen/rejected messages.

Each adapter takes one record (a dict, as read by :mod:`asft.data.sources`) and returns
``(prompt, chosen, rejected)`` message lists, or raises :class:`DataError` naming the field.

Formats (``fmt`` names):

``explicit``
    ``prompt``, ``chosen``, ``rejected``: strings (the prompt becomes one user message, each
    response one assistant message), or message lists (TRL's conversational layout, where the
    responses hold only the new turns). An empty prompt string means no prompt.
``conversational``
    UltraFeedback-binarized style: ``chosen`` and ``rejected`` are whole conversations as
    ``{role, content}`` lists sharing a prefix; optional ``prompt`` (string or messages) and
    ``score_chosen`` / ``score_rejected`` (read by nobody here). Without a ``prompt`` the prompt
    is the longest shared prefix after which both continue with an assistant message.
    LLaMA-Factory's ``chosen_messages`` / ``rejected_messages`` are read where ``chosen`` /
    ``rejected`` are absent.
``hh``
    Anthropic HH-RLHF: ``chosen`` and ``rejected`` are whole transcripts
    ``"\\n\\nHuman: ...\\n\\nAssistant: ..."``. The prompt is their longest common prefix ending in
    ``"\\n\\nAssistant:"``; both parts are split into messages at each ``"\\n\\nHuman:"`` /
    ``"\\n\\nAssistant:"`` marker, contents stripped, so that the model's own chat template applies.
``sharegpt``
    ``conversations``: a list of ``{from, value}`` (``human``/``gpt``/``system``) and ``chosen``
    / ``rejected`` as one ``{from, value}`` object, a list of them, or a string.
``ranked``, ``rated``
    Two or more responses with a verdict (labels, votes, scores; UltraFeedback's raw ratings),
    turned into one pair by :mod:`asft.data.ranked`. Never detected, except ``rated`` for a
    record with a ``completions`` list of objects and no ``chosen``.
``unpaired``
    KTO's data (arXiv 2402.01306; TRL's unpaired preference layout): ``prompt``, one
    ``completion`` (string or messages) and a ``label``, JSON ``true`` / ``false`` (or ``1`` /
    ``0``): true = desirable. The completion becomes ``chosen`` (desirable, ``rejected == []``)
    or ``rejected`` (undesirable, ``chosen == []``): the only format with an empty side.
    Detected for a record with a ``completion`` and no ``chosen``.

The paired formats (``explicit``, ``conversational``, ``hh``, ``sharegpt``) also read an
optional third response, ``gold`` (TPO's reference answer, arXiv 2405.16681), in the shapes
``chosen`` takes in ``explicit``: a string, a message, or a list of messages; a whole
conversation (or, for ``hh``, a transcript) that repeats the prompt has it stripped
(:func:`gold_reader`).

A message content is a string or a list of typed parts, ``{"type": "text", "text": ...}``
(OpenAI, transformers) or ``{"type": "text", "value": ...}`` (LLaMA-Factory), joined; any other
part (an image) is a ``wrong_type`` error.

Any format also reads an optional ``system`` string, put first in the prompt. Other column
names are mapped onto these with ``columns={"prompt": "question", ...}`` (see
:func:`apply_columns`). Roles are normalised: ``human``/``prompter`` -> ``user``,
``gpt``/``bot``/``model`` -> ``assistant``, ``function``/``observation``/``ipython`` -> ``tool``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping

from asft.data.errors import DataError
from asft.data.records import Message

FORMATS = ("explicit", "conversational", "hh", "sharegpt", "ranked", "rated", "unpaired")
# The keys of ``columns``: standard name -> the source's column name(s).
PAIR_KEYS = ("prompt", "chosen", "rejected", "conversations", "system", "gold")
RANKED_KEYS = ("prompt", "system", "responses", "label", "scores")
RATED_KEYS = ("prompt", "system", "completions", "response", "rating")
UNPAIRED_KEYS = ("prompt", "system", "completion", "label")
COLUMN_KEYS = (*PAIR_KEYS, "responses", "label", "scores", "completions", "response", "rating",
               "completion")
LIST_KEYS = ("responses", "label", "scores")  # the keys whose value may be a list of columns
# The keys apply_columns renames in a record; the others are read by the ranked/rated adapters
# (which read ``label`` where it is: apply_columns never sees their records).
_RENAMED = (*PAIR_KEYS, "completions", "completion", "label")
# The formats whose records may hold a gold response (a third one, TPO's).
GOLD_FORMATS = ("explicit", "conversational", "hh", "sharegpt")
# What a missing mapped column is needed for, where the bare "missing" would puzzle.
_NEEDED_FOR = {"label": "KTO's unpaired format needs `label` (true = desirable)"}

ROLES = {
    "user": "user", "human": "user", "prompter": "user",
    "assistant": "assistant", "gpt": "assistant", "bot": "assistant", "model": "assistant",
    "chatgpt": "assistant",
    "system": "system",
    "tool": "tool", "function": "tool", "observation": "tool", "ipython": "tool",
}

HH_ASSISTANT = "\n\nAssistant:"
_HH_MARKER = re.compile(r"(?:^|\n\n)(Human|Assistant):")
_HH_ROLES = {"Human": "user", "Assistant": "assistant"}

Adapter = Callable[[Mapping], tuple[list[Message], list[Message], list[Message]]]
# (record, the prompt its adapter read) -> the gold response, or None when it has none.
GoldReader = Callable[[Mapping, list[Message]], list[Message] | None]


def _kind(value: object) -> str:
    if value is None:
        return "null"
    return {dict: "object", list: "list", str: "string"}.get(type(value), type(value).__name__)


def _short(key: object) -> str:
    text = repr(key)
    return text if len(text) <= 40 else text[:37] + "..."


def wrong_type(field: str, expected: str, value: object) -> DataError:
    """A ``wrong_type`` error: ``expected <expected>, got <kind of value>``."""
    return DataError(f"expected {expected}, got {_kind(value)}", field=field, reason="wrong_type")


def present_fields(record: Mapping) -> str:
    """The first field names of ``record``, for a message about one that is missing."""
    present = ", ".join(_short(k) for k in list(record)[:12]) or "none"
    return present + (", ..." if len(record) > 12 else "")


def require(record: Mapping, name: str, field: str | None = None) -> object:
    """``record[name]``, or a ``missing_field`` error (on ``field``, by default ``name``)
    listing the fields that are there."""
    value = record.get(name)
    if value is None:
        raise DataError(f"missing (fields present: {present_fields(record)})",
                        field=field or name, reason="missing_field")
    return value


def missing_column(key: str, source: str, record: Mapping) -> DataError:
    """The error for a record without the column ``source`` that ``columns`` maps to ``key``
    (named as the field: it is the user's column)."""
    needed = f": {_NEEDED_FOR[key]}" if key in _NEEDED_FOR else ""
    return DataError(f"column mapped to {key!r} is missing (fields present: "
                     f"{present_fields(record)}){needed}", field=source, reason="missing_field")


def _part_text(part: object, field: str) -> str:
    if not isinstance(part, Mapping):
        raise wrong_type(field, "a content part object", part)
    if part.get("type") != "text":
        raise DataError(f"a content part of type {_short(part.get('type'))}: only text parts "
                        "are supported", field=field, reason="wrong_type")
    key = "text" if "text" in part else "value"
    if not isinstance(part.get(key), str):
        raise wrong_type(f"{field}.{key}", "a string", part.get(key))
    return part[key]


def content_text(value: object, field: str) -> str:
    """A message content: a string, or typed text parts ``[{"type": "text", "text": ..}]``
    (OpenAI, transformers) or ``[{"type": "text", "value": ..}]`` (LLaMA-Factory), joined."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value:
        return "".join(_part_text(p, f"{field}[{i}]") for i, p in enumerate(value))
    raise wrong_type(field, "a string or a list of text parts", value)


def to_message(value: object, field: str) -> Message:
    """One ``{role, content}`` (or ShareGPT ``{from, value}``) object as a normalised message."""
    if not isinstance(value, Mapping):
        raise wrong_type(field, "a message object with role and content", value)
    role_key = "role" if "role" in value else "from"
    content_key = "content" if "content" in value else "value"
    role = value.get(role_key)
    if role is None:
        raise DataError("message has no 'role' (or 'from')", field=field, reason="missing_field")
    if not isinstance(role, str):
        raise wrong_type(f"{field}.{role_key}", "a string", role)
    norm = ROLES.get(role.strip().lower())
    if norm is None:
        known = ", ".join(sorted(set(ROLES)))
        raise DataError(f"unknown role {_short(role)} (known: {known})", field=f"{field}.{role_key}",
                        reason="wrong_type")
    content = value.get(content_key)
    if content is None:
        raise DataError("message has no 'content' (or 'value')", field=field,
                        reason="missing_field")
    return {"role": norm, "content": content_text(content, f"{field}.{content_key}")}


def to_messages(value: object, field: str) -> list[Message]:
    """A list of message objects."""
    if not isinstance(value, list):
        raise wrong_type(field, "a list of messages", value)
    return [to_message(m, f"{field}[{i}]") for i, m in enumerate(value)]


def prompt_messages(value: object, field: str) -> list[Message]:
    if isinstance(value, str):
        return [{"role": "user", "content": value}] if value else []
    if isinstance(value, Mapping):
        return [to_message(value, field)]
    if isinstance(value, list):
        return to_messages(value, field)
    raise wrong_type(field, "a string or a list of messages", value)


def response_messages(value: object, field: str) -> list[Message]:
    if isinstance(value, str):
        return [{"role": "assistant", "content": value}]
    if isinstance(value, Mapping):
        return [to_message(value, field)]
    if isinstance(value, list):
        return to_messages(value, field)
    raise wrong_type(field, "a string or a list of messages", value)


def system_messages(record: Mapping, name: str = "system") -> list[Message]:
    """The record's optional system prompt (column ``name``) as a list of 0 or 1 message."""
    value = record.get(name)
    if value is None or value == "":
        return []
    if not isinstance(value, str):
        raise wrong_type(name, "a string", value)
    return [{"role": "system", "content": value}]


def check_response(messages: list[Message], field: str) -> None:
    """A response is at least one message and starts with the assistant."""
    if not messages:
        raise DataError("no response after the prompt", field=field, reason="no_response")
    if messages[0]["role"] != "assistant":
        raise DataError(f"a response must start with an assistant message, got role "
                        f"{messages[0]['role']!r}", field=f"{field}[0].role",
                        reason="no_shared_prompt")


def _same(a: Message, b: Message) -> bool:
    return a["role"] == b["role"] and a["content"].strip() == b["content"].strip()


def _starts_with(conv: list[Message], prefix: list[Message]) -> bool:
    return len(conv) >= len(prefix) and all(_same(a, b) for a, b in zip(conv, prefix))


def split_shared(chosen: list[Message], rejected: list[Message],
                 ) -> tuple[list[Message], list[Message], list[Message]]:
    """Prompt = the longest shared message prefix after which both continue as the assistant."""
    n = 0
    while n < min(len(chosen), len(rejected)) and chosen[n] == rejected[n]:
        n += 1
    if n == len(chosen) == len(rejected):
        raise DataError("chosen and rejected are identical", field="chosen",
                        reason="identical_responses")
    for name, conv in (("chosen", chosen), ("rejected", rejected)):
        if n == len(conv):
            raise DataError(f"no response after the {n} message(s) shared with the other "
                            "response", field=name, reason="no_response")
    k = n
    while k > 0 and not (chosen[k]["role"] == rejected[k]["role"] == "assistant"):
        k -= 1
    if chosen[k]["role"] != "assistant" or rejected[k]["role"] != "assistant":
        raise DataError("chosen and rejected share no prompt followed by an assistant message",
                        field="chosen", reason="no_shared_prompt")
    return chosen[:k], chosen[k:], rejected[k:]


def with_prompt(prompt: list[Message], chosen: list[Message], rejected: list[Message],
                ) -> tuple[list[Message], list[Message], list[Message]]:
    """Responses given with an explicit prompt: strip the prompt where they repeat it."""
    c_rep, r_rep = _starts_with(chosen, prompt), _starts_with(rejected, prompt)
    if prompt and c_rep != r_rep:
        which, other = ("chosen", "rejected") if c_rep else ("rejected", "chosen")
        raise DataError(f"{which} repeats the prompt but {other} does not", field=other,
                        reason="no_shared_prompt")
    if prompt and c_rep:
        chosen, rejected = chosen[len(prompt):], rejected[len(prompt):]
    return prompt, chosen, rejected


def explicit(record: Mapping):
    """``prompt`` + ``chosen`` + ``rejected`` (strings or message lists)."""
    prompt = prompt_messages(require(record, "prompt"), "prompt")
    chosen = response_messages(require(record, "chosen"), "chosen")
    rejected = response_messages(require(record, "rejected"), "rejected")
    prompt, chosen, rejected = with_prompt(prompt, chosen, rejected)
    return system_messages(record) + prompt, chosen, rejected


def _llama_factory_name(record: Mapping, name: str) -> str:
    """``name``, or LLaMA-Factory's ``<name>_messages`` where only that one is there."""
    alt = f"{name}_messages"
    return alt if record.get(name) is None and record.get(alt) is not None else name


def conversational(record: Mapping):
    """``chosen`` / ``rejected`` (or ``chosen_messages`` / ``rejected_messages``) whole
    conversations, optional ``prompt``."""
    c_name, r_name = _llama_factory_name(record, "chosen"), _llama_factory_name(record, "rejected")
    chosen = to_messages(require(record, c_name), c_name)
    rejected = to_messages(require(record, r_name), r_name)
    if record.get("prompt") is not None:
        prompt = prompt_messages(record["prompt"], "prompt")
        prompt, chosen, rejected = with_prompt(prompt, chosen, rejected)
    else:
        prompt, chosen, rejected = split_shared(chosen, rejected)
    return system_messages(record) + prompt, chosen, rejected


def common_prefix_len(a: str, b: str) -> int:
    """Length of the longest common prefix, by bisection on C-level slice comparisons."""
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def hh_messages(text: str) -> list[Message]:
    """An HH transcript as messages; text before the first marker becomes a system message."""
    parts = _HH_MARKER.split(text)
    head = parts[0].strip()
    messages = [{"role": "system", "content": head}] if head else []
    for role, content in zip(parts[1::2], parts[2::2]):
        messages.append({"role": _HH_ROLES[role], "content": content.strip()})
    return messages


def hh_split(chosen: str, rejected: str) -> tuple[str, str, str]:
    """(prompt text ending in ``"\\n\\nAssistant:"``, chosen rest, rejected rest) of a transcript pair."""
    n = common_prefix_len(chosen, rejected)
    cut = chosen.rfind(HH_ASSISTANT, 0, n)
    if cut < 0:
        raise DataError("chosen and rejected share no prefix ending in '\\n\\nAssistant:' "
                        "(not an HH-RLHF transcript pair?)", field="chosen",
                        reason="no_shared_prompt")
    end = cut + len(HH_ASSISTANT)
    return chosen[:end], chosen[end:], rejected[end:]


def hh(record: Mapping):
    """HH-RLHF transcripts with an implicit prompt."""
    chosen = require(record, "chosen")
    rejected = require(record, "rejected")
    for name, value in (("chosen", chosen), ("rejected", rejected)):
        if not isinstance(value, str):
            raise wrong_type(name, "a transcript string", value)
    if chosen == rejected:
        raise DataError("chosen and rejected are identical", field="chosen",
                        reason="identical_responses")
    prompt_text, chosen_rest, rejected_rest = hh_split(chosen, rejected)
    prompt = hh_messages(prompt_text[: -len(HH_ASSISTANT)])
    return (system_messages(record) + prompt, hh_messages(HH_ASSISTANT + chosen_rest),
            hh_messages(HH_ASSISTANT + rejected_rest))


def sharegpt(record: Mapping):
    """``conversations`` prompt plus ``chosen`` / ``rejected`` from/value objects."""
    prompt = to_messages(require(record, "conversations"), "conversations")
    chosen = response_messages(require(record, "chosen"), "chosen")
    rejected = response_messages(require(record, "rejected"), "rejected")
    return system_messages(record) + prompt, chosen, rejected


def unpaired_label(record: Mapping) -> bool:
    """An unpaired example's ``label``: JSON true / false, or the integers 1 / 0 (true =
    desirable). Anything else (text, other numbers) is a ``wrong_type`` error rather than a
    guess at what the data meant."""
    value = record.get("label")
    if value is None:
        raise DataError("missing: KTO's unpaired format needs `label` (true = desirable, false "
                        f"= undesirable) (fields present: {present_fields(record)})",
                        field="label", reason="missing_field")
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise DataError(f"expected true or false (or 1 or 0), got {_kind(value)} {_short(value)}",
                    field="label", reason="wrong_type")


def unpaired(record: Mapping):
    """KTO's ``prompt`` + ``completion`` + ``label``: the completion is ``chosen`` when the label
    is true (desirable), ``rejected`` when false; the other side is ``[]``."""
    prompt = prompt_messages(require(record, "prompt"), "prompt")
    completion = response_messages(require(record, "completion"), "completion")
    if prompt and _starts_with(completion, prompt):  # a whole conversation repeats the prompt
        completion = completion[len(prompt):]
    # checked here, on its own name: validate_pair skips the empty side of an unpaired pair
    check_response(completion, "completion")
    desirable = unpaired_label(record)
    chosen, rejected = (completion, []) if desirable else ([], completion)
    return system_messages(record) + prompt, chosen, rejected


ADAPTERS: dict[str, Adapter] = {
    "explicit": explicit, "conversational": conversational, "hh": hh, "sharegpt": sharegpt,
    "unpaired": unpaired,
}


def gold_messages(value: object, prompt: list[Message], transcript: bool = False,
                  ) -> list[Message]:
    """A gold response as messages: a string (one assistant message), a message or a list of
    them, or with ``transcript`` an HH transcript string; where it is a whole conversation that
    repeats ``prompt`` (with or without its leading system messages), the prompt is cut off."""
    if transcript and isinstance(value, str) and _HH_MARKER.search(value):
        messages = hh_messages(value)
    else:
        messages = response_messages(value, "gold")
    k = 0
    while k < len(prompt) and prompt[k]["role"] == "system":
        k += 1
    for head in (prompt, prompt[k:]):
        if head and _starts_with(messages, head):
            return messages[len(head):]
    return messages


def gold_reader(fmt: str, columns: Mapping) -> GoldReader | None:
    """The reader of the optional gold response of format ``fmt``'s records (column
    ``columns["gold"]``, default ``gold``), or None for a format that has none. A record without
    the column gives None, unless ``columns`` maps ``gold``: then it is a ``missing_field``
    error naming the column."""
    if fmt not in GOLD_FORMATS:
        return None
    name = columns.get("gold", "gold")

    def read(record: Mapping, prompt: list[Message]) -> list[Message] | None:
        value = record.get(name)
        if value is None:
            if "gold" in columns:
                raise missing_column("gold", name, record)
            return None
        return gold_messages(value, prompt, transcript=fmt == "hh")

    return read


def detect_format(record: Mapping) -> str:
    """The format of ``record``, from its field names and the type of ``chosen``."""
    if record.get("conversations") is not None:
        return "sharegpt"
    if record.get("chosen") is None:
        if record.get("completion") is not None:  # KTO's prompt / completion / label
            return "unpaired"
        completions = record.get("completions")
        if isinstance(completions, list) and completions and all(
                isinstance(c, Mapping) for c in completions):
            return "rated"
        if all(isinstance(record.get(f"{n}_messages"), list) for n in ("chosen", "rejected")):
            return "conversational"
    chosen = require(record, "chosen")
    require(record, "rejected")
    if isinstance(chosen, list):
        return "conversational"
    if isinstance(chosen, str):
        return "explicit" if record.get("prompt") is not None else "hh"
    raise wrong_type("chosen", "a string or a list of messages", chosen)


def apply_columns(record: Mapping, columns: Mapping[str, str | list[str]]) -> dict:
    """``record`` with the user's columns renamed to the standard names of ``columns``' keys.

    Only the top-level record keys (:data:`PAIR_KEYS`, ``completions``, and the ``completion``
    and ``label`` of ``unpaired``) are renamed; the ranked keys (``responses``, ``label``,
    ``scores``) and the per-completion keys of ``rated`` (``response``, ``rating``) are read
    where they are by :mod:`asft.data.ranked`.
    """
    out = dict(record)
    for key, source in columns.items():
        if key not in _RENAMED or not isinstance(source, str):  # a list: ranked's votes
            continue
        if source not in record or record[source] is None:
            raise missing_column(key, source, record)
        out[key] = record[source]
    return out


def suggest(word: object, choices: tuple[str, ...]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or an empty string."""
    close = difflib.get_close_matches(str(word), choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def format_column_keys(fmt: str) -> tuple[str, ...]:
    """The ``columns`` keys that format ``fmt`` (or ``"auto"``) reads."""
    if fmt == "ranked":
        return RANKED_KEYS
    if fmt == "rated":
        return RATED_KEYS
    if fmt == "unpaired":
        return UNPAIRED_KEYS
    if fmt == "auto":  # detection may pick rated or unpaired
        return (*PAIR_KEYS, "completions", "response", "rating", "completion", "label")
    return PAIR_KEYS


def _check_value(key: str, source: object) -> None:
    names = source if key in LIST_KEYS and isinstance(source, list) else [source]
    if key in ("responses", "scores") and not isinstance(source, list):
        raise ValueError(f"columns[{key!r}] must be a list of column names, got {_kind(source)}")
    if not names or not all(isinstance(n, str) and n for n in names):
        kind = "a non-empty column name" + (" or a list of them" if key in LIST_KEYS else "")
        raise ValueError(f"columns[{key!r}] must be {kind}, got {source!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"columns[{key!r}] names a column twice: {source!r}")


def _check_ranked(columns: Mapping) -> None:
    responses = columns.get("responses")
    if responses is None:
        raise ValueError("format 'ranked' needs columns['responses']: the list of response "
                         "columns, e.g. ['response_0', 'response_1']")
    if ("label" in columns) == ("scores" in columns):
        raise ValueError("format 'ranked' needs exactly one of columns['label'] (a label "
                         "column, or a list of vote columns) and columns['scores'] (one score "
                         "column per response), got " + ("both" if "label" in columns else "neither"))
    if "scores" in columns and len(columns["scores"]) != len(responses):
        raise ValueError(f"columns['scores'] must name one column per response: "
                         f"{len(columns['scores'])} for {len(responses)} responses")


def check_columns(columns: Mapping[str, str | list[str]] | None,
                  fmt: str | None = None) -> dict[str, str | list[str]]:
    """Validate a column mapping (API misuse raises ValueError, not DataError).

    Values are column names; ``responses`` and ``scores`` take a list of them and ``label`` one
    or a list (votes). With ``fmt`` (a format or ``"auto"``) the keys must be ones that format
    reads, and ``ranked`` needs ``responses`` (at least two) and exactly one of ``label`` and
    ``scores``.
    """
    if columns is None:
        columns = {}
    if not isinstance(columns, Mapping):
        raise ValueError(f"columns must be a mapping like {{'prompt': 'question'}}, got {_kind(columns)}")
    bad = [k for k in columns if k not in COLUMN_KEYS]
    if bad:
        raise ValueError(f"unknown column key(s) {', '.join(map(repr, bad))}"
                         f"{suggest(bad[0], COLUMN_KEYS)}; valid: {', '.join(COLUMN_KEYS)}")
    for key, source in columns.items():
        _check_value(key, source)
    if "responses" in columns and len(columns["responses"]) < 2:
        raise ValueError(f"columns['responses'] must name at least 2 response columns, got "
                         f"{columns['responses']!r}")
    if fmt is not None:
        keys = format_column_keys(fmt)
        for key in columns:
            if key not in keys:
                hint = " (use fmt='ranked')" if key in LIST_KEYS else ""
                raise ValueError(f"columns[{key!r}] is not read by format {fmt!r}{hint}; it "
                                 f"reads: {', '.join(keys)}")
        if fmt == "ranked":
            _check_ranked(columns)
        if fmt in ("auto", "unpaired") and isinstance(columns.get("label"), list):
            raise ValueError(f"columns['label'] of format {fmt!r} is one column (true = "
                             "desirable), not a list; vote columns are read by fmt='ranked'")
    return dict(columns)
