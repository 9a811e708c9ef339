"""Tokenization: the exact-boundary guarantee, mismatch policy, limits, templates, and the cache."""

import copy
import json
from pathlib import Path

import pytest

from asft.data import PreferencePair
from asft.data.render import SENTINEL, plain_render
from asft.data.tokenize import TokenizedPair, tokenize_pairs
from slow_tokenizer import Slow

SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)


# A header that ends in a space, as in Alpaca-style "### Response: " templates: the byte-level
# pre-tokenizer glues that space to the response's first word, so a token straddles the boundary.
SPACE_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] + ': ' + message['content'] + '<|im_end|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}"
)


def m(role, content):
    return {"role": role, "content": content}


def pair(prompt, chosen, rejected, origin="t:1"):
    def wrap(x):
        return [m("assistant", x)] if isinstance(x, str) else x

    prompt = [m("user", prompt)] if isinstance(prompt, str) else prompt
    return PreferencePair(prompt, wrap(chosen), wrap(rejected), origin)


PAIRS = [
    pair("What is 12 plus 30?", "The answer is 42.", "I cannot help with that."),
    pair([m("system", "Be brief."), m("user", "hi"), m("assistant", "hello"), m("user", "sort 5, 2, 9")],
         "2, 5, 9", "9, 5, 2"),
    pair([], "Unprompted answer", "Other answer"),
    pair("Ünïcödé ✓ 漢字 emoji 🙂", "Ça va très bien 🙂", "naïve"),
    pair("q", [m("assistant", "a"), m("user", "more"), m("assistant", "b")], "c"),
    pair("empty?", "", "not empty"),
]


@pytest.fixture(scope="module")
def tok():
    from asft.model.tiny import build_tokenizer

    return build_tokenizer()


def full_ids(tok, messages, template=True):
    """The reference: the tokenizer's own tokenization of the rendered text, cut after EOS."""
    if template:
        text = tok.apply_chat_template(messages, tokenize=False)
        text = text[: text.rindex(tok.eos_token) + len(tok.eos_token)]
        return tok(text, add_special_tokens=False)["input_ids"]
    return tok(plain_render(messages))["input_ids"] + [tok.eos_token_id]


def check_exact(tok, pairs, result, template=True):
    assert len(result.examples) == len(result.indices)
    for ex, i in zip(result.examples, result.indices):
        p = pairs[i]
        assert ex.prompt_ids + ex.chosen_ids == full_ids(tok, p.prompt + p.chosen, template)
        assert ex.prompt_ids + ex.rejected_ids == full_ids(tok, p.prompt + p.rejected, template)
        assert ex.chosen_ids[-1] == ex.rejected_ids[-1] == tok.eos_token_id
        assert all(isinstance(t, int) for t in ex.prompt_ids + ex.chosen_ids)


def test_exact_tokenization_and_clean_boundaries(tok):
    result = tokenize_pairs(PAIRS, tok, None, None)
    assert result.report.kept == len(PAIRS) and result.report.boundary_mismatches == 0
    check_exact(tok, PAIRS, result)
    for ex, p in zip(result.examples, PAIRS):
        if not p.prompt:
            continue
        head = tok.apply_chat_template(p.prompt, tokenize=False, add_generation_prompt=True)
        assert ex.prompt_ids == tok(head, add_special_tokens=False)["input_ids"]
    # The newline after the final <|im_end|> is not part of the response.
    assert tok.decode(result.examples[0].chosen_ids) == "The answer is 42.<|im_end|>"


def test_boundary_mismatch_is_shifted_or_dropped_and_counted(tok):
    spaced = copy.deepcopy(tok)
    spaced.chat_template = SPACE_TEMPLATE
    pairs = [pair("q", "the answer", "no"), pair("q", "\nthe answer", "\nno")]
    shifted = tokenize_pairs(pairs, spaced, None, None)
    assert shifted.report.boundary_mismatches == 1 and shifted.report.kept == 2
    assert shifted.report.examples == ["t:1: boundary_mismatch (shifted)"]
    check_exact(spaced, pairs, shifted)
    ex = shifted.examples[0]
    head = spaced(spaced.apply_chat_template(pairs[0].prompt, tokenize=False,
                                             add_generation_prompt=True))["input_ids"]
    assert len(ex.prompt_ids) < len(head) and head[:len(ex.prompt_ids)] == ex.prompt_ids
    assert spaced.decode(ex.chosen_ids).startswith(" the answer")
    dropped = tokenize_pairs(pairs, spaced, None, None, boundary="drop")
    assert dropped.report.dropped == {"boundary_mismatch": 1} and dropped.indices == [1]


def test_plain_transcript_without_template(tok):
    plain = copy.deepcopy(tok)
    plain.chat_template = None
    result = tokenize_pairs(PAIRS, plain, None, None)
    assert not result.report.chat_template and result.report.kept == len(PAIRS)
    check_exact(plain, PAIRS, result, template=False)
    assert plain.decode(result.examples[0].prompt_ids) == "\n\nHuman: What is 12 plus 30?\n\nAssistant:"


def test_template_with_default_system_message_and_empty_prompt(tok):
    smol = copy.deepcopy(tok)
    smol.chat_template = SMOLLM2_TEMPLATE
    result = tokenize_pairs(PAIRS, smol, None, None)
    assert result.report.template_fallbacks == 0 and result.report.boundary_mismatches == 0
    check_exact(smol, PAIRS, result)
    empty = result.examples[2]  # empty prompt: the system message is prompt, not response
    assert smol.decode(empty.prompt_ids).startswith("<|im_start|>system\nYou are a helpful")
    assert smol.decode(empty.chosen_ids) == "Unprompted answer<|im_end|>"


def test_template_fallback_when_the_template_rewrites_content(tok):
    upper = copy.deepcopy(tok)
    upper.chat_template = upper.chat_template.replace("message['content']", "message['content'] | upper")
    upper.chat_template = upper.chat_template.replace("'<|im_start|>assistant\n'", "'<|im_start|>ASSISTANT\n'")
    assert SENTINEL.upper() != SENTINEL
    result = tokenize_pairs(PAIRS[:2], upper, None, None)
    assert result.report.template_fallbacks == 2
    check_exact(upper, PAIRS[:2], result)


def test_template_error_drops_the_pair(tok):
    strict = copy.deepcopy(tok)
    strict.chat_template = ("{% if messages[0]['role'] == 'system' %}"
                            "{{ raise_exception('no system role') }}{% endif %}" + tok.chat_template)
    result = tokenize_pairs(PAIRS[:2], strict, None, None)
    assert result.report.dropped == {"template_error": 1} and result.indices == [0]
    assert "no system role" in result.report.examples[0]


@pytest.mark.parametrize("attack", ["{% set x = messages.append(1) %}",
                                    "{{ messages.__class__.__mro__[1].__subclasses__() }}"])
def test_templates_stay_sandboxed(tok, attack):
    evil = copy.deepcopy(tok)
    evil.chat_template = attack + tok.chat_template
    result = tokenize_pairs(PAIRS[:1], evil, None, None)
    assert result.report.dropped == {"template_error": 1}
    assert "unsafe" in result.report.examples[0] or "SecurityError" in result.report.examples[0]


def test_prompt_truncation_keeps_the_end(tok):
    full = tokenize_pairs(PAIRS[:2], tok, None, None).examples
    cut = tokenize_pairs(PAIRS[:2], tok, None, 5)
    assert cut.report.prompts_truncated == 2
    for a, b in zip(full, cut.examples):
        assert b.prompt_ids == a.prompt_ids[-5:] and b.chosen_ids == a.chosen_ids


def test_max_length_drop_or_truncate(tok):
    full = tokenize_pairs(PAIRS[:1], tok, None, None).examples[0]
    p, longest = len(full.prompt_ids), max(len(full.chosen_ids), len(full.rejected_ids))
    assert tokenize_pairs(PAIRS[:1], tok, p + longest, None).report.kept == 1
    dropped = tokenize_pairs(PAIRS[:1], tok, p + longest - 1, None)
    assert dropped.report.dropped == {"too_long": 1} and dropped.examples == []
    cut = tokenize_pairs(PAIRS[:1], tok, p + 3, None, overflow="truncate")
    ex = cut.examples[0]
    assert cut.report.responses_truncated == 1
    assert ex.chosen_ids == full.chosen_ids[:3] and ex.rejected_ids == full.rejected_ids[:3]
    nothing = tokenize_pairs(PAIRS[:1], tok, 4, 4, overflow="truncate")
    assert nothing.report.dropped == {"empty_response": 1}


def test_slow_tokenizer_path_gives_the_same_tokens(tok):
    spaced = copy.deepcopy(tok)
    spaced.chat_template = SPACE_TEMPLATE
    pairs = [*PAIRS, pair("q", "the answer", "no")]
    fast = tokenize_pairs(pairs, spaced, None, None)
    slow = tokenize_pairs(pairs, Slow(spaced), None, None)
    assert slow.examples == fast.examples
    assert slow.report.boundary_mismatches == fast.report.boundary_mismatches >= 1


def test_backend_truncation_settings_are_ignored_and_restored(tok):
    t = copy.deepcopy(tok)
    t.backend_tokenizer.enable_truncation(4)
    result = tokenize_pairs(PAIRS[:2], t, None, None)
    assert t.backend_tokenizer.truncation["max_length"] == 4
    t.backend_tokenizer.no_truncation()
    check_exact(t, PAIRS[:2], result)


def test_cache_hit_miss_and_corruption(tok, tmp_path):
    first = tokenize_pairs(PAIRS, tok, 64, 32, cache_dir=tmp_path)
    assert first.report.cache == "miss"
    second = tokenize_pairs(PAIRS, tok, 64, 32, cache_dir=tmp_path)
    assert second.report.cache == "hit" and second.report.cache_path == first.report.cache_path
    assert second.examples == first.examples and second.indices == first.indices
    assert second.report.to_dict() | {"cache": "", "seconds": 0} == \
        first.report.to_dict() | {"cache": "", "seconds": 0}
    assert all(isinstance(ex, TokenizedPair) for ex in second.examples)
    # Any change of data or settings is a different entry.
    assert tokenize_pairs(PAIRS, tok, 65, 32, cache_dir=tmp_path).report.cache == "miss"
    assert tokenize_pairs(PAIRS[:-1], tok, 64, 32, cache_dir=tmp_path).report.cache == "miss"
    other = copy.deepcopy(tok)
    other.chat_template = SMOLLM2_TEMPLATE
    assert tokenize_pairs(PAIRS, other, 64, 32, cache_dir=tmp_path).report.cache == "miss"
    # A damaged entry (a file cut short, a header that lies, offsets that disagree) is
    # rebuilt, never trusted.
    path = Path(first.report.cache_path)
    ids = path / "ids.bin"
    # copied out first: damaging the files in place changes what a mapped store reads
    # (asft itself never writes a store in place: a rebuild is a new folder renamed over it)
    expected = list(first.examples)
    for damage in (lambda: ids.write_bytes(ids.read_bytes()[:-2]),
                   lambda: (path / "header.json").write_text("{"),
                   lambda: (path / "starts.bin").write_bytes(b"\1" * (path / "starts.bin").stat().st_size)):
        damage()
        again = tokenize_pairs(PAIRS, tok, 64, 32, cache_dir=tmp_path)
        assert again.report.cache == "miss" and again.examples == expected
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_unwritable_cache_costs_only_the_cache(tok, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = tokenize_pairs(PAIRS, tok, None, None, cache_dir=blocker / "cache")
    assert result.report.cache == "unwritable" and result.report.kept == len(PAIRS)


def test_report_is_json_and_has_percentiles(tok):
    report = tokenize_pairs(PAIRS, tok, None, None).report
    d = json.loads(json.dumps(report.to_dict()))
    assert d["kept"] == len(PAIRS) and set(d["lengths"]) == {"prompt", "chosen", "rejected"}
    assert d["lengths"]["chosen"]["max"] == max(report.chosen_lengths)


@pytest.mark.parametrize("kw", [{"overflow": "cut"}, {"boundary": "keep"}, {"max_length": 0},
                                {"max_prompt_length": -1}])
def test_bad_settings(tok, kw):
    args = {"max_length": None, "max_prompt_length": None} | kw
    with pytest.raises(ValueError):
        tokenize_pairs(PAIRS, tok, **args)


def test_hand_made_pair_without_response_is_dropped(tok):
    bad = PreferencePair([m("user", "q")], [], [], "hand:1")
    result = tokenize_pairs([bad, PAIRS[0]], tok, None, None)
    assert result.report.dropped == {"empty_response": 1} and result.indices == [1]
    # one empty side is an unpaired (KTO) example, kept with no tokens on that side
    # (tests/data/test_data_gold_unpaired.py); load_pairs gives one only for format unpaired
    one_sided = PreferencePair([m("user", "q")], [], [m("assistant", "a")], "hand:1")
    result = tokenize_pairs([one_sided], tok, None, None)
    assert result.report.kept == 1 and result.examples[0].chosen_ids == []


def test_tokenizer_without_eos(tok):
    t = copy.deepcopy(tok)
    t.eos_token = None
    with pytest.raises(ValueError, match="no EOS token"):
        tokenize_pairs(PAIRS, t, None, None)
