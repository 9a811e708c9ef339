"""docs/data.md: every format example loads, with the YAML `data:` keys shown beside it, into
the pair the text says."""

import json
import re
from pathlib import Path

import pytest
import yaml

from asft.data import load_pairs

DOC = Path(__file__).resolve().parents[2] / "docs" / "data.md"
_BLOCK = re.compile(r"```json\n(.*?)```\s*```yaml\n(.*?)```", re.S)


def examples():
    text = DOC.read_text(encoding="utf-8")
    formats = text[text.index("## Formats"):text.index("## Bad records")]
    return [(json.loads(record), yaml.safe_load(config)["data"])
            for record, config in _BLOCK.findall(formats)]


def test_every_format_has_an_example():
    shown = {data["format"] for _, data in examples()}
    assert shown == {"auto", "explicit", "conversational", "hh", "sharegpt", "ranked", "rated",
                     "unpaired"}
    assert len(examples()) == 12


@pytest.mark.parametrize(("record", "data"), examples())
def test_doc_example_loads_into_one_pair(record, data):
    kw = {"labels": data.get("labels"), "binarize": data.get("binarize", "random")}
    result = load_pairs([record], fmt=data["format"], columns=data.get("columns"), **kw)
    (pair,) = result.pairs
    assert result.report.format == data["format"] or data["format"] == "auto"
    assert pair.chosen[0]["role"] == "assistant" and pair.prompt[-1]["role"] == "user"
    chosen = pair.chosen[-1]["content"]
    assert chosen in {"4", "Blue.", "7", "Hello! How can I help?", "Round, grey, far.",
                      "He went home.", "Use a tension wrench.", "Why did the chicken...",
                      "A cat sat."}
    if "gold" in (data.get("columns") or {}):
        assert pair.gold == [{"role": "assistant", "content": "2 + 2 = 4."}]
    if data["format"] == "unpaired":
        assert pair.rejected == [] and result.report.desirable == 1
