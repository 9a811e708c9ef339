"""Cutting a text where tokenization is provably unchanged: right after a special token.

A Hugging Face (Rust) tokenizer first splits its input at added tokens, then normalizes,
pre-tokenizes and encodes each piece on its own. So ``encode(A + B) == encode(A) + encode(B)``
when A ends with an added token that ``A + B`` also matches there, namely when

1. no added token occurrence in ``A + B`` spans the cut (leftmost-longest matching would
   otherwise pick it in ``A + B`` but not in A);
2. the token does not strip whitespace across the cut (``rstrip``, or an ``lstrip`` token
   right after it);
3. no step depends on where a piece sits in the input (``Metaspace`` with
   ``prepend_scheme="first"`` adds a space to the first piece only: the cut is then disabled).

:func:`asft.data.tokenize.tokenize_pairs` uses this to encode the shared head of a pair's two
texts (the system prompt, the turns, up to the last special token before the response) once
instead of twice, which is most of the work: prompts are three quarters of the tokens of
HH-RLHF. Conditions 1 and 2 are checked for every text; the caller also checks that A's
encoding ends with the expected token id and otherwise encodes the whole text.
"""

from __future__ import annotations

import json
import re


class SpecialCut:
    """Finds safe cut positions for one tokenizer and the special tokens of its template.

    Attributes:
        enabled: False when the tokenizer's pipeline is position-dependent (no cuts).
        anchors: content -> id of the special tokens (as written by the template) after which
            a cut may be made.
    """

    def __init__(self, backend, template_text: str):
        pipeline = [json.loads(part.__getstate__()) for part in (backend.normalizer,
                                                                  backend.pre_tokenizer) if part]
        self.enabled = '"prepend_scheme": "first"' not in json.dumps(pipeline)
        added = backend.get_added_tokens_decoder()
        contents = sorted((t.content for t in added.values() if t.content), key=len, reverse=True)
        self._any = re.compile("|".join(map(re.escape, contents))) if contents else None
        self._max_len = len(contents[0]) if contents else 0
        self._lstrip = [t.content for t in added.values() if t.lstrip and t.content]
        self.anchors = {
            t.content: i for i, t in added.items()
            if t.content and t.special and not t.normalized and not t.rstrip
            and t.content in template_text and not t.content[-1].isspace()
        }
        if not self.anchors:
            self.enabled = False

    def _safe(self, text: str, pos: int) -> bool:
        """Conditions 1 and 2 at ``pos`` in ``text``."""
        for start in range(max(0, pos - self._max_len + 1), pos):
            m = self._any.match(text, start)
            if m and m.end() > pos:
                return False
        return not any(text.startswith(tok, pos) for tok in self._lstrip)

    def cut(self, texts: tuple[str, ...], end: int) -> tuple[int, int] | None:
        """(position, id of the token ending there): the last safe cut at or before ``end``
        valid in all ``texts`` (which share their first ``end`` characters), or None."""
        if not self.enabled:
            return None
        head = texts[0]
        best, best_id = -1, -1
        for content, token_id in self.anchors.items():
            found = head.rfind(content, 0, end)
            if found >= 0 and found + len(content) > best:
                best, best_id = found + len(content), token_id
        if best <= 0 or not all(self._safe(t, best) for t in texts):
            return None
        return best, best_id
