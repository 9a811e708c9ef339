"""Real data: all 2,312 pairs of HH-RLHF harmless-base test load with the right implicit prompts.

Reads ../shared/data/hh-rlhf (beside the repository); skipped when it is absent.
"""

import gzip
import json
import os
import re
from pathlib import Path

import pytest

from asft.data import load_pairs
from asft.data.render import plain_render
from asft.data.tokenize import tokenize_pairs

HH = Path(__file__).resolve().parents[3] / "shared" / "data" / "hh-rlhf" / "harmless-base-test.jsonl.gz"
pytestmark = [pytest.mark.shared,
              pytest.mark.skipif(not HH.is_file(), reason=f"shared HH-RLHF data not found at {HH}")]


def norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


@pytest.fixture(scope="module")
def raw():
    with gzip.open(HH, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


@pytest.fixture(scope="module")
def loaded():
    return load_pairs(HH)


def test_all_pairs_load(loaded, raw):
    report = loaded.report
    assert (report.format, report.read, report.kept, report.skipped) == ("hh", 2312, 2312, {})
    assert len(raw) == 2312
    # Four chosen answers are empty in the data (silence preferred over a harmful reply).
    assert report.empty_responses == 4
    assert [p.origin for p in loaded.pairs[:2]] == [f"{HH}:1", f"{HH}:2"]


def test_implicit_prompts(loaded, raw):
    """Checked against an independent computation: longest common prefix ending in
    "\\n\\nAssistant:", and the messages written back as a transcript reproduce the texts."""
    marker = "\n\nAssistant:"
    for pair, rec in zip(loaded.pairs, raw):
        common = os.path.commonprefix([rec["chosen"], rec["rejected"]])  # noqa: RUF071 - strings
        end = common.rindex(marker) + len(marker)
        prompt_text = rec["chosen"][:end]
        assert norm(plain_render(pair.prompt, add_generation_prompt=True)) == norm(prompt_text)
        assert norm(plain_render(pair.prompt + pair.chosen)) == norm(rec["chosen"])
        assert norm(plain_render(pair.prompt + pair.rejected)) == norm(rec["rejected"])
        assert pair.prompt[-1]["role"] == "user" and pair.chosen[0]["role"] == "assistant"


def test_tokenized_exactly_with_a_chat_template(loaded):
    from asft.model.tiny import build_tokenizer

    tok = build_tokenizer()
    pairs = loaded.pairs[::8]
    result = tokenize_pairs(pairs, tok, None, None)
    assert result.report.kept == len(pairs)
    for ex, i in zip(result.examples, result.indices):
        p = pairs[i]
        for resp, ids in ((p.chosen, ex.chosen_ids), (p.rejected, ex.rejected_ids)):
            text = tok.apply_chat_template(p.prompt + resp, tokenize=False)
            text = text[: text.rindex("<|im_end|>") + len("<|im_end|>")]
            assert ex.prompt_ids + ids == tok(text, add_special_tokens=False)["input_ids"]
