"""Fuzzing the config loader: whatever the input, the outcome is a Config or a ConfigError that
names the place, never a traceback from inside a library and never a hang."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asft.config import MAX_CONFIG_BYTES, Config, ConfigError, load_config, to_dict

pytestmark = pytest.mark.fuzz

FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _outcome(path: Path, data: bytes) -> Config | ConfigError:
    path.write_bytes(data)
    try:
        return load_config(path)
    except ConfigError as err:
        assert str(path) in str(err), err  # every error names the file
        assert len(str(err)) < 2000
        return err


@FUZZ
@given(st.binary(max_size=400))
def test_arbitrary_bytes(tmp_path: Path, data: bytes):
    _outcome(tmp_path / "c.yaml", data)


scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
                    st.text(max_size=20))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=20)
SECTIONS = [f.name for f in dataclasses.fields(Config)]
FIELDS = {f.name: [g.name for g in dataclasses.fields(getattr(Config(), f.name))]
          for f in dataclasses.fields(Config) if dataclasses.is_dataclass(getattr(Config(), f.name))}


@FUZZ
@given(st.dictionaries(st.one_of(st.sampled_from(SECTIONS), st.text(max_size=10)), values, max_size=5))
def test_random_yaml_documents(tmp_path: Path, doc: dict):
    _outcome(tmp_path / "c.yaml", yaml.safe_dump(doc).encode())


@st.composite
def one_wrong_field(draw):
    """A valid config with one field of one section replaced by an arbitrary value."""
    section = draw(st.sampled_from(sorted(FIELDS)))
    name = draw(st.sampled_from(FIELDS[section]))
    return section, name, draw(values)


@FUZZ
@given(one_wrong_field())
def test_one_field_with_arbitrary_value(tmp_path: Path, case):
    section, name, value = case
    doc = to_dict(Config())
    doc[section][name] = value
    result = _outcome(tmp_path / "c.yaml", yaml.safe_dump(doc).encode())
    if isinstance(result, ConfigError):
        message = str(result)
        # the error points at the field (or, for a cross-field rule, at the related one)
        assert f"{section}.{name}" in message or section in message, message


@FUZZ
@given(st.text(max_size=60))
def test_arbitrary_override_strings(text: str):
    try:
        load_config(None, [text])
    except ConfigError as err:
        assert "override" in str(err)


@pytest.mark.parametrize("text", [
    "[" * 5000,                                           # deep flow nesting
    "a:\n" + "".join("  " * i + "b:\n" for i in range(1, 200)),  # deep block nesting
    "model:\n  name: " + "x" * 100_000 + "\n",              # a huge field
    "seed: " + "9" * 5000 + "\n",                          # an integer Python refuses to parse
    "seed: 2001-02-30\n",                                   # an impossible date
    "x: !!python/object/apply:os.system ['echo hacked']\n",  # code execution attempt
    "\ufeffmodel: {name: tiny-llama}\n",                    # BOM
    "model: {name: tiny-llama}\nmodel: {dtype: fp32}\n",   # duplicate key: the last one wins
])
def test_hostile_documents(tmp_path: Path, text: str):
    _outcome(tmp_path / "c.yaml", text.encode())


def test_alias_bomb_is_fast(tmp_path: Path):
    """'Billion laughs': 9 levels of 10 aliases; expanding it would take hours and gigabytes."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    lines.append("lora: {target_modules: *a9}")
    start = time.perf_counter()
    result = _outcome(tmp_path / "c.yaml", "\n".join(lines).encode())
    assert isinstance(result, ConfigError)
    assert time.perf_counter() - start < 5


def test_oversized_file_refused_before_parsing(tmp_path: Path):
    result = _outcome(tmp_path / "c.yaml", b"#" * (MAX_CONFIG_BYTES + 1))
    assert "at most" in str(result)
