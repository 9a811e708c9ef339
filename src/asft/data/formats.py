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
``hh``
    Anthropic HH-RLHF: ``chosen`` and ``rejected`` are whole transcripts
    ``"\\n\\nHuman: ...\\n\\nAssistant: ..."``. The prompt is their longest common prefix ending in
    ``"\\n\\nAssistant:"``; both parts are split into messages at each ``"\\n\\nHuman:"`` /
    ``"\\n\\nAssistant:"`` marker, contents stripped, so that the model's own chat template applies.
``sharegpt``
    ``conversations``: a list of ``{from, value}`` (``human``/``gpt``/``system``) and ``chosen``
    / ``rejected`` as one ``{from, value}`` object, a list of them, or a string.

Any format also reads an optional ``system`` string, put first in the prompt. Other column
names are mapped onto these with ``columns={"prompt": "question", ...}`` (see
:func:`apply_columns`). Roles are normalised: ``human``/``prompter`` -> ``user``,
``gpt``/``bot``/``model`` -> ``assistant``, ``function``/``observation``/``ipython`` -> ``tool``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from asft.data.errors import DataError
from asft.data.records import Message

FORMATS = ("explicit", "conversational", "hh", "sharegpt")
COLUMN_KEYS = ("prompt", "chosen", "rejected", "conversations", "system")

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


def _kind(value: object) -> str:
    if value is None:
        return "null"
    return {dict: "object", list: "list", str: "string"}.get(type(value), type(value).__name__)


def _short(key: object) -> str:
    text = repr(key)
    return text if len(text) <= 40 else text[:37] + "..."


def _wrong(field: str, expected: str, value: object) -> DataError:
    return DataError(f"expected {expected}, got {_kind(value)}", field=field, reason="wrong_type")


def require(record: Mapping, name: str) -> object:
    """``record[name]``, or a ``missing_field`` error listing the fields that are there."""
    value = record.get(name)
    if value is None:
        present = ", ".join(_short(k) for k in list(record)[:12]) or "none"
        more = ", ..." if len(record) > 12 else ""
        raise DataError(f"missing (fields present: {present}{more})", field=name,
                        reason="missing_field")
    return value


def _text(value: object, field: str) -> str:
    """A message content: a string, or OpenAI-style text parts ``[{"type": "text", "text": ..}]``."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(
            isinstance(p, Mapping) and p.get("type") == "text" and isinstance(p.get("text"), str)
            for p in value):
        return "".join(p["text"] for p in value)
    raise _wrong(field, "a string", value)


def to_message(value: object, field: str) -> Message:
    """One ``{role, content}`` (or ShareGPT ``{from, value}``) object as a normalised message."""
    if not isinstance(value, Mapping):
        raise _wrong(field, "a message object with role and content", value)
    role_key = "role" if "role" in value else "from"
    content_key = "content" if "content" in value else "value"
    role = value.get(role_key)
    if role is None:
        raise DataError("message has no 'role' (or 'from')", field=field, reason="missing_field")
    if not isinstance(role, str):
        raise _wrong(f"{field}.{role_key}", "a string", role)
    norm = ROLES.get(role.strip().lower())
    if norm is None:
        known = ", ".join(sorted(set(ROLES)))
        raise DataError(f"unknown role {_short(role)} (known: {known})", field=f"{field}.{role_key}",
                        reason="wrong_type")
    content = value.get(content_key)
    if content is None:
        raise DataError("message has no 'content' (or 'value')", field=field,
                        reason="missing_field")
    return {"role": norm, "content": _text(content, f"{field}.{content_key}")}


def to_messages(value: object, field: str) -> list[Message]:
    """A list of message objects."""
    if not isinstance(value, list):
        raise _wrong(field, "a list of messages", value)
    return [to_message(m, f"{field}[{i}]") for i, m in enumerate(value)]


def _prompt_messages(value: object, field: str) -> list[Message]:
    if isinstance(value, str):
        return [{"role": "user", "content": value}] if value else []
    if isinstance(value, Mapping):
        return [to_message(value, field)]
    if isinstance(value, list):
        return to_messages(value, field)
    raise _wrong(field, "a string or a list of messages", value)


def _response_messages(value: object, field: str) -> list[Message]:
    if isinstance(value, str):
        return [{"role": "assistant", "content": value}]
    if isinstance(value, Mapping):
        return [to_message(value, field)]
    if isinstance(value, list):
        return to_messages(value, field)
    raise _wrong(field, "a string or a list of messages", value)


def _system(record: Mapping) -> list[Message]:
    value = record.get("system")
    if value is None or value == "":
        return []
    if not isinstance(value, str):
        raise _wrong("system", "a string", value)
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


def _with_prompt(prompt: list[Message], chosen: list[Message], rejected: list[Message],
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
    prompt = _prompt_messages(require(record, "prompt"), "prompt")
    chosen = _response_messages(require(record, "chosen"), "chosen")
    rejected = _response_messages(require(record, "rejected"), "rejected")
    prompt, chosen, rejected = _with_prompt(prompt, chosen, rejected)
    return _system(record) + prompt, chosen, rejected


def conversational(record: Mapping):
    """``chosen`` / ``rejected`` whole conversations, optional ``prompt``."""
    chosen = to_messages(require(record, "chosen"), "chosen")
    rejected = to_messages(require(record, "rejected"), "rejected")
    if record.get("prompt") is not None:
        prompt = _prompt_messages(record["prompt"], "prompt")
        prompt, chosen, rejected = _with_prompt(prompt, chosen, rejected)
    else:
        prompt, chosen, rejected = split_shared(chosen, rejected)
    return _system(record) + prompt, chosen, rejected


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
            raise _wrong(name, "a transcript string", value)
    if chosen == rejected:
        raise DataError("chosen and rejected are identical", field="chosen",
                        reason="identical_responses")
    prompt_text, chosen_rest, rejected_rest = hh_split(chosen, rejected)
    prompt = hh_messages(prompt_text[: -len(HH_ASSISTANT)])
    return (_system(record) + prompt, hh_messages(HH_ASSISTANT + chosen_rest),
            hh_messages(HH_ASSISTANT + rejected_rest))


def sharegpt(record: Mapping):
    """``conversations`` prompt plus ``chosen`` / ``rejected`` from/value objects."""
    prompt = to_messages(require(record, "conversations"), "conversations")
    chosen = _response_messages(require(record, "chosen"), "chosen")
    rejected = _response_messages(require(record, "rejected"), "rejected")
    return _system(record) + prompt, chosen, rejected


ADAPTERS: dict[str, Adapter] = {
    "explicit": explicit, "conversational": conversational, "hh": hh, "sharegpt": sharegpt,
}


def detect_format(record: Mapping) -> str:
    """The format of ``record``, from its field names and the type of ``chosen``."""
    if record.get("conversations") is not None:
        return "sharegpt"
    chosen = require(record, "chosen")
    require(record, "rejected")
    if isinstance(chosen, list):
        return "conversational"
    if isinstance(chosen, str):
        return "explicit" if record.get("prompt") is not None else "hh"
    raise _wrong("chosen", "a string or a list of messages", chosen)


def apply_columns(record: Mapping, columns: Mapping[str, str]) -> dict:
    """``record`` with the user's columns renamed to the standard names of ``columns``' keys."""
    out = dict(record)
    for key, source in columns.items():
        if source not in record or record[source] is None:
            present = ", ".join(_short(k) for k in list(record)[:12]) or "none"
            raise DataError(f"column mapped to {key!r} is missing (fields present: {present})",
                            field=source, reason="missing_field")
        out[key] = record[source]
    return out


def check_columns(columns: Mapping[str, str] | None) -> dict[str, str]:
    """Validate a column mapping (API misuse raises ValueError, not DataError)."""
    if columns is None:
        return {}
    if not isinstance(columns, Mapping):
        raise ValueError(f"columns must be a mapping like {{'prompt': 'question'}}, got {_kind(columns)}")
    bad = [k for k in columns if k not in COLUMN_KEYS]
    if bad:
        raise ValueError(f"unknown column key(s) {', '.join(map(repr, bad))}; "
                         f"valid: {', '.join(COLUMN_KEYS)}")
    for key, source in columns.items():
        if not isinstance(source, str) or not source:
            raise ValueError(f"columns[{key!r}] must be a non-empty column name")
    return dict(columns)
