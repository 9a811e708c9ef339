"""Typed, documented config dataclasses: the machinery under :mod:`asft.config`.

A config section is a dataclass deriving from :class:`Section`, each field followed by its
docstring. :func:`build` makes one from a plain mapping, checking every key and type (nested
mappings become nested sections); ``Section.__post_init__`` repeats the type checks for objects
built in Python and then runs the section's ``validate``. Errors are :class:`FieldError` naming
the dotted field; :func:`parse_yaml` gives the line of every key, so that the loader can say
``file:line: field: problem``. PyYAML is fed only bounded input (size and nesting checked, alias
bombs never expanded), so any bytes give a result or a :class:`ConfigError`.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import inspect
import itertools
import math
import reprlib
import textwrap
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, Literal, Union

import yaml

from asft.errors import AsftError

# A YAML file or override value larger than this is refused before parsing: a config is a
# few kilobytes, and PyYAML's time and memory grow without bound on adversarial input.
MAX_CONFIG_BYTES = 1 << 20
# Deeper nesting than this cannot be a config; refusing it keeps PyYAML's recursive
# composer away from Python's recursion limit.
MAX_NESTING = 32


class ConfigError(AsftError, ValueError):
    """A configuration problem, reported to the user without a traceback."""


class FieldError(ValueError):
    """A validation failure of one field; the loader prefixes it with the field's file:line."""

    def __init__(self, field_name: str, message: str):
        field_name = _clip(field_name, 120)
        message = _clip(message, 600)
        super().__init__(f"{field_name}: {message}")
        self.field_name = field_name
        self.message = message


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def suggest(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or an empty string."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class Section:
    """Base of every config dataclass: coerces nested dicts, checks types, then ``validate``."""

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for f in dataclasses.fields(self):
            setattr(self, f.name, _coerce(getattr(self, f.name), hints[f.name], f.name))
        try:
            self.validate()
        except FieldError:
            raise
        except ValueError as err:
            raise FieldError(type(self).__name__, str(err)) from None

    def validate(self) -> None:
        """Range and consistency checks; raise :class:`FieldError` naming the field."""

    @classmethod
    def field_choices(cls) -> dict[str, list[str]]:
        """Field name -> the values it accepts, for fields whose choices only a registry knows
        (a docstring would have to copy them); :func:`field_docs` appends them to the docs."""
        return {}


def require(cond: bool, name: str, message: str) -> None:
    if not cond:
        raise FieldError(name, message)


# ---------------------------------------------------------------------------------------------
# Typed conversion


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return f"a mapping of names to {_type_name(typing.get_args(tp)[1])}"
    if dataclasses.is_dataclass(tp):
        return "a mapping (section)"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(tp, str(tp))


_REPR = reprlib.Repr()  # keyword arguments need Python 3.12
_REPR.maxlevel, _REPR.maxdict, _REPR.maxlist, _REPR.maxtuple, _REPR.maxset = 2, 4, 4, 4, 4
_REPR.maxstring, _REPR.maxother, _REPR.maxlong = 40, 40, 40


def _show(value: Any) -> str:
    """A short repr: bounded even for huge or self-similar values (YAML alias bombs)."""
    return _REPR.repr(value)


def _coerce(value: Any, tp: Any, name: str) -> Any:
    """``value`` checked against (and, for nested sections and float fields, converted to) ``tp``."""
    origin = typing.get_origin(tp)
    bad = FieldError(name, f"expected {_type_name(tp)}, got {type(value).__name__} {_show(value)}")
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise bad
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, name)
            except FieldError:
                continue
        raise bad
    if origin is Literal:
        choices = typing.get_args(tp)
        if isinstance(value, str) and value in choices:
            return value
        raise FieldError(name, f"{_show(value)} is not one of {', '.join(map(repr, choices))}"
                               f"{suggest(value, choices) if isinstance(value, str) else ''}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise bad
    if tp is float:
        # PyYAML reads 1e-5 (no dot) as a string; accept any string that is a plain number.
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise bad from None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise FieldError(name, f"must be a finite number, got {value}")
            return float(value)
        raise bad
    if tp is str:
        if isinstance(value, str):
            return value
        raise bad
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise bad
        (item,) = typing.get_args(tp)
        return [_coerce(v, item, f"{name}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise bad
        _, item = typing.get_args(tp)
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise FieldError(name, f"keys must be strings, got {_show(k)}")
            out[k] = _coerce(v, item, f"{name}.{k}")
        return out
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if isinstance(value, Mapping):
            return build(tp, value, name)
        raise bad
    raise TypeError(f"config field {name} has an unsupported type {tp!r}")


def build(cls: type, data: Mapping[str, Any], prefix: str = "") -> Any:
    """An instance of config dataclass ``cls`` from a mapping; errors name the dotted field."""
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if not isinstance(key, str) or key not in names:
            where = f"{prefix}." if prefix else ""
            raise FieldError(f"{where}{key}", f"unknown key{suggest(key, names)}; valid keys "
                                              f"{'of ' + prefix if prefix else 'at the top level'}: "
                                              f"{', '.join(names)}")
    try:
        return cls(**data)
    except FieldError as err:
        if prefix:
            raise FieldError(f"{prefix}.{err.field_name}", err.message) from None
        raise


def from_dict(cls: type, data: Mapping[str, Any]) -> Any:
    """A validated ``cls`` from a plain nested mapping; ConfigError naming the field."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"a config must be a mapping of sections, got {type(data).__name__}")
    try:
        return build(cls, data)
    except FieldError as err:
        raise ConfigError(f"{err.field_name}: {err.message}") from None


def to_dict(cfg: Any) -> dict[str, Any]:
    """The config as plain nested dicts, lists and scalars (what YAML holds)."""
    return dataclasses.asdict(cfg)


# ---------------------------------------------------------------------------------------------
# YAML


def _check_depth(node: yaml.Node, source: str) -> None:
    # Each node is visited once: YAML aliases make the tree a DAG whose paths can be
    # exponentially many ("billion laughs"), and each node's depth only needs checking once.
    stack = [(node, 1)]
    seen: set[int] = set()
    while stack:
        n, depth = stack.pop()
        if id(n) in seen:
            continue
        seen.add(id(n))
        if depth > MAX_NESTING:
            raise ConfigError(f"{source}:{n.start_mark.line + 1}: nesting deeper than "
                              f"{MAX_NESTING} levels; a config has at most 3")
        if isinstance(n, yaml.MappingNode):
            stack.extend((c, depth + 1) for pair in n.value for c in pair)
        elif isinstance(n, yaml.SequenceNode):
            stack.extend((c, depth + 1) for c in n.value)


def _key_lines(node: yaml.Node) -> dict[str, int]:
    """Dotted key path -> 1-based line of that key in the YAML source (aliases not followed)."""
    lines: dict[str, int] = {}
    stack: list[tuple[yaml.Node, str]] = [(node, "")]
    seen: set[int] = set()
    while stack:
        n, prefix = stack.pop()
        if id(n) in seen or not isinstance(n, yaml.MappingNode):
            continue
        seen.add(id(n))
        for key, value in n.value:
            if isinstance(key, yaml.ScalarNode):
                path = f"{prefix}{key.value}"
                lines.setdefault(path, key.start_mark.line + 1)
                stack.append((value, path + "."))
    return lines


def line_of(field_name: str, lines: Mapping[str, int]) -> int | None:
    """The line of ``field_name`` or of its nearest enclosing key present in the file."""
    parts = field_name.replace("[", ".").split(".")
    while parts:
        line = lines.get(".".join(parts))
        if line is not None:
            return line
        parts.pop()
    return None


def parse_yaml(text: str | bytes, source: str = "<config>") -> tuple[dict[str, Any], dict[str, int]]:
    """The mapping in a YAML document and the line of every key; ConfigError on bad input."""
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{source}: {len(text)} bytes; a config file is at most {MAX_CONFIG_BYTES}")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ConfigError(f"{source}: not UTF-8 text (byte {err.start})") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is None:
            return {}, {}
        _check_depth(node, source)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{source}:{mark.line + 1}" if mark else source
        raise ConfigError(f"{where}: invalid YAML: {err.problem or err.context}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: invalid YAML: {_clip(str(err), 300)}") from None
    except RecursionError:
        raise ConfigError(f"{source}: nesting too deep") from None
    except (ValueError, TypeError, OverflowError) as err:
        # values PyYAML parses but Python cannot hold: a 5000-digit integer, February 30th
        raise ConfigError(f"{source}: invalid YAML value: {_clip(str(err), 300)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a config must be a mapping of sections "
                          f"(model:, data:, loss:, ...), got {type(data).__name__}")
    return data, _key_lines(node)


def set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {dotted}: {'.'.join(parts[: i + 1])} is not a section")
        node = child
    node[parts[-1]] = value


def parse_override(item: str) -> tuple[str, Any]:
    """``"optim.lr=1e-5"`` -> ``("optim.lr", 1e-5)``; the value is read as a YAML scalar or list."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not p for p in key.split(".")):
        raise ConfigError(f"override {item!r}: expected KEY=VALUE with a dotted key, "
                          "e.g. --set optim.lr=1e-5")
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"override {key}: value too long")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except (yaml.YAMLError, RecursionError, ValueError, TypeError, OverflowError):
        value = raw  # not YAML: taken as a plain string, which the field's type check judges
    return key, value


# ---------------------------------------------------------------------------------------------
# Field documentation and the resolved YAML


def field_docs(cls: type) -> dict[str, str]:
    """Field name -> the docstring written under it in the class body (dedented, one line),
    followed by the field's :meth:`Section.field_choices`, if any."""
    source = textwrap.dedent(inspect.getsource(cls))
    body = ast.parse(source).body[0].body
    docs: dict[str, str] = {}
    for stmt, nxt in itertools.pairwise(body):
        if (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
                and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)):
            docs[stmt.target.id] = " ".join(nxt.value.value.split())
    choices = cls.field_choices() if issubclass(cls, Section) else {}
    for name, values in choices.items():
        docs[name] = f"{docs.get(name, '')} One of: {', '.join(values)}.".lstrip()
    return docs


def dump_value(value: Any) -> str:
    if isinstance(value, list):  # a list of sections (stages) as a flow list of mappings
        value = [dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v for v in value]
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6, sort_keys=False).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def to_yaml(obj: Any, header: str = "") -> str:
    """A config object as YAML with every field's docstring as a comment above it."""
    out = [header] if header else []

    def emit(node: Any, indent: str) -> None:
        docs = field_docs(type(node))
        for f in dataclasses.fields(node):
            value = getattr(node, f.name)
            for line in _wrap(docs.get(f.name, ""), 96 - len(indent)):
                out.append(f"{indent}# {line}")
            if dataclasses.is_dataclass(value):
                out.append(f"{indent}{f.name}:")
                emit(value, indent + "  ")
            else:
                out.append(f"{indent}{f.name}: {dump_value(value)}")

    emit(obj, "")
    return "\n".join(out) + "\n"


def describe(cls: type) -> str:
    """Every field of every section of ``cls`` with its type, default and docstring."""
    lines: list[str] = []

    def walk(node: type, prefix: str) -> None:
        hints = _hints(node)
        docs = field_docs(node)
        default = node()
        for f in dataclasses.fields(node):
            tp = hints[f.name]
            if dataclasses.is_dataclass(tp):
                lines.append(f"\n{prefix}{f.name}:  {docs.get(f.name, '')}")
                walk(tp, f"{prefix}{f.name}.")
            else:
                lines.append(f"  {prefix}{f.name} = {dump_value(getattr(default, f.name))}"
                             f"  ({_type_name(tp)})")
                lines.extend("      " + w for w in _wrap(docs.get(f.name, ""), 88))
                item = typing.get_args(tp)[0] if typing.get_origin(tp) is list else None
                if item is not None and dataclasses.is_dataclass(item):
                    lines.append(f"\n{prefix}{f.name}[i]:  each item of {f.name}")
                    walk(item, f"{prefix}{f.name}[i].")

    walk(cls, "")
    return "\n".join(lines).strip() + "\n"


def _wrap(doc: str, width: int) -> list[str]:
    return textwrap.wrap(doc.replace("``", "`"), width, break_on_hyphens=False)
