"""Cutting texts after special tokens: where it is allowed, and that tokens never change."""

import copy

from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers

import asft.data.segments as segments
from asft.data import PreferencePair, tokenize_pairs
from asft.data.segments import SpecialCut


def tiny():
    from asft.model.tiny import build_tokenizer

    return build_tokenizer()


def test_cut_after_the_last_special_token_of_the_prompt():
    tok = tiny()
    cutter = SpecialCut(tok.backend_tokenizer, tok.chat_template)
    assert cutter.enabled and set(cutter.anchors) == {"<|im_start|>", "<|im_end|>"}
    head = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    pos, token_id = cutter.cut((head + "yes<|im_end|>", head + "no<|im_end|>"), len(head))
    assert head[:pos].endswith("<|im_start|>") and pos == head.rindex("<|im_start|>") + 12
    assert token_id == tok.convert_tokens_to_ids("<|im_start|>")
    assert cutter.cut(("plain text", "plain text!"), 10) is None


def test_no_cut_where_an_added_token_spans_it():
    tok = tiny()
    tok.backend_tokenizer.add_special_tokens([AddedToken("<|im_start|>assist", special=True)])
    cutter = SpecialCut(tok.backend_tokenizer, "<|im_start|>")
    text = "x<|im_start|>assistant\n"
    assert cutter.cut((text,), len(text)) is None
    # An rstrip token would eat the whitespace after it: never an anchor.
    tok2 = tiny()
    tok2.backend_tokenizer.add_special_tokens([AddedToken("<sep>", special=True, rstrip=True)])
    assert "<sep>" not in SpecialCut(tok2.backend_tokenizer, "<sep><|im_start|>").anchors


def test_position_dependent_pre_tokenizer_disables_cuts():
    for scheme, enabled in (("first", False), ("always", True)):
        t = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
        t.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme=scheme)
        t.add_special_tokens(["<s>"])
        assert SpecialCut(t, "<s>").enabled is enabled


def test_results_identical_with_and_without_cuts(monkeypatch):
    tok = tiny()
    tricky = copy.deepcopy(tok)
    tricky.backend_tokenizer.add_special_tokens([AddedToken("<|im_start|>assist", special=True)])
    turns = [{"role": "user", "content": "hi <|im_end|> there"}, {"role": "assistant", "content": "yo"},
             {"role": "user", "content": "and?"}]
    pairs = [PreferencePair(turns, [{"role": "assistant", "content": c}],
                            [{"role": "assistant", "content": r}], f"t:{i}")
             for i, (c, r) in enumerate([("fine", "bad"), ("\n\nok", " no"), ("🙂", "x")])]
    calls = []
    real_cut = SpecialCut.cut

    def counting(self, texts, end):
        out = real_cut(self, texts, end)
        calls.append(out is not None)
        return out

    for t in (tok, tricky):
        monkeypatch.setattr(segments.SpecialCut, "cut", counting)
        with_cuts = tokenize_pairs(pairs, t, None, None)
        monkeypatch.setattr(segments.SpecialCut, "cut", lambda self, texts, end: None)
        without = tokenize_pairs(pairs, t, None, None)
        assert with_cuts.examples == without.examples
        assert with_cuts.report.to_dict() | {"seconds": 0} == without.report.to_dict() | {"seconds": 0}
    assert any(calls)
