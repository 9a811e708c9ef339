"""Pairs to text: the tokenizer's chat template (or a plain transcript), and the prompt boundary.

For each pair :class:`ChatRenderer` produces the full chosen and rejected conversation texts
exactly as the model's template writes them, and the character position where the prompt
ends in both. The prompt text is found by rendering the prompt with the generation prompt
(``add_generation_prompt=True``); when the full texts do not start with that (templates that
add a default system message only when the first message is not a system one, as SmolLM2's
does for an empty prompt, or that render the last assistant turn differently), the prompt is
rendered followed by a sentinel response and cut at the sentinel; when even that fails the
longest common prefix of the texts is used and the pair is counted as a template fallback.

Tokenizers without a chat template get the HH-RLHF transcript format
(``"\\n\\nHuman: ...\\n\\nAssistant: ..."``, the format base models were aligned on in the DPO paper,
arXiv 2305.18290): a "plain join" in which the prompt ends with ``"\\n\\nAssistant:"`` and the
response follows after one space.

Each response ends with the EOS token: the full text is cut right after the last EOS string in
the response (for ChatML the ``"\\n"`` after the final ``<|im_end|>`` is dropped), and when the
template writes no EOS (or there is no template) the EOS id is appended after tokenization.

A pair's gold response (TPO's third one) is rendered as chosen is: the same prompt, template
and EOS rule, and its text must share the prompt's end with the other two. The empty side of an
unpaired example (KTO's) has no text of its own: it gets a copy of the other side's, so that
the prompt boundary is found exactly as for a pair, and :attr:`RenderedPair.empty` names it
(tokenization gives it no tokens).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from asft.data.formats import common_prefix_len
from asft.data.records import Message, PreferencePair

SENTINEL = "ASFT_RESPONSE_SENTINEL_6b1f"
PLAIN_ROLES = {"system": "System", "user": "Human", "assistant": "Assistant", "tool": "Tool"}


def plain_render(messages: list[Message], add_generation_prompt: bool = False) -> str:
    """The HH-RLHF transcript of ``messages`` (used when the tokenizer has no chat template)."""
    text = "".join(f"\n\n{PLAIN_ROLES[m['role']]}: {m['content']}" for m in messages)
    return text + "\n\nAssistant:" if add_generation_prompt else text


class TemplateError(Exception):
    """The chat template refused a conversation (e.g. roles that do not alternate)."""


@dataclass
class RenderedPair:
    """Texts of one pair. ``prompt_chars``: where the prompt ends in every full text;
    ``*_eos``: the text already ends with the EOS token (else it is appended after
    tokenization); ``fallback``: the prompt end was found only by the common-prefix fallback;
    ``gold``: the gold response's full text, or None; ``empty``: ``"chosen"`` or
    ``"rejected"`` for the empty side of an unpaired example (its text is the other side's),
    else None."""

    chosen: str
    rejected: str
    prompt_chars: int
    chosen_eos: bool
    rejected_eos: bool
    fallback: bool
    gold: str | None = None
    gold_eos: bool = False
    empty: str | None = None

    def texts(self) -> list[str]:
        """The full texts that are tokenized: chosen, rejected, and gold when there is one."""
        return [self.chosen, self.rejected] + ([self.gold] if self.gold is not None else [])


def _template_of(tokenizer, chat_template: str | None) -> str | None:
    if chat_template is not None:
        return chat_template
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):
        template = template.get("default")
    return template or None


@lru_cache(maxsize=8)
def compile_template(template: str):
    """``template`` compiled in transformers' sandboxed Jinja environment (same globals,
    filters and extensions as ``apply_chat_template``), with the sandbox's attribute check
    memoized per (type, attribute): that check depends on nothing else, and it is about half
    the cost of rendering a conversation."""
    try:
        from transformers.utils.chat_template_utils import _compile_jinja_template
    except ImportError:  # a transformers without the helper: jinja2's own sandbox
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    else:
        env = _compile_jinja_template(template).environment.overlay()
    check = env.is_safe_attribute
    verdicts: dict[tuple[type, str], bool] = {}

    def is_safe_attribute(obj, attr, value):
        key = (type(obj), attr)
        if key not in verdicts:
            verdicts[key] = check(obj, attr, value)
        return verdicts[key]

    env.is_safe_attribute = is_safe_attribute
    return env.from_string(template)


def _compiled_render(template: str, special_tokens: dict[str, str]) -> Callable[..., str]:
    """A render function over the compiled template."""
    compiled = compile_template(template)

    def render(messages: list[Message], add_generation_prompt: bool = False) -> str:
        try:
            return compiled.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                   tools=None, documents=None, **special_tokens)
        # A template is a program from the model's files: any failure means it refused the pair.
        except Exception as err:
            raise TemplateError(f"{type(err).__name__}: {err}") from None

    return render


class ChatRenderer:
    """Renders pairs for ``tokenizer``: its chat template (or ``chat_template``), else plain.

    Attributes:
        template: the Jinja chat template used, or None for the plain transcript.
        template_text: the template and the special tokens it names (e.g. ``bos_token``).
        eos: the EOS token string each response ends with.
        add_special_tokens: whether tokenization adds the tokenizer's own special tokens
            (False with a template, which writes BOS itself where the model wants one, as
            ``apply_chat_template`` does; True for the plain transcript).
    """

    def __init__(self, tokenizer, chat_template: str | None = None):
        self.template = _template_of(tokenizer, chat_template)
        self.eos = tokenizer.eos_token
        if not self.eos:
            raise ValueError("the tokenizer has no EOS token: set tokenizer.eos_token")
        self.add_special_tokens = self.template is None
        self.template_text = ""
        if self.template is None:
            self.render = plain_render
        else:
            specials = {k: str(v) for k, v in tokenizer.special_tokens_map.items()
                        if isinstance(v, str)}
            self.render = _compiled_render(self.template, specials)
            # The template's literal text plus the special tokens it refers to by name.
            self.template_text = self.template + "".join(
                v for k, v in specials.items() if k in self.template)

    def _prompt_end(self, prompt: list[Message], first: Message, texts: list[str],
                    ) -> tuple[int, bool]:
        """(where the prompt ends in all ``texts``, found only by the fallback)."""
        head = self.render(prompt, add_generation_prompt=True)
        if all(t.startswith(head) for t in texts):
            return len(head), False
        probe = self.render([*prompt, {"role": first["role"], "content": SENTINEL}])
        cut = probe.find(SENTINEL)
        if cut >= 0 and all(t.startswith(probe[:cut]) for t in texts):
            return cut, False
        return min(common_prefix_len(texts[0], t) for t in [*texts[1:], head]), True

    def _cut_eos(self, text: str, start: int) -> tuple[str, bool]:
        pos = text.rfind(self.eos, start)
        if pos < 0:
            return text, False
        return text[: pos + len(self.eos)], True

    def pair(self, pair: PreferencePair) -> RenderedPair:
        """The texts of ``pair`` (at least one response); raises :class:`TemplateError` when
        the template refuses it."""
        empty = "chosen" if not pair.chosen else "rejected" if not pair.rejected else None
        response = pair.chosen or pair.rejected
        chosen = self.render(pair.prompt + response)
        rejected = chosen if empty else self.render(pair.prompt + pair.rejected)
        texts = [chosen, rejected]
        if pair.gold is not None:
            texts.append(self.render(pair.prompt + pair.gold))
        if self.template is None:
            end, fallback = len(self.render(pair.prompt, add_generation_prompt=True)), False
        else:
            end, fallback = self._prompt_end(pair.prompt, response[0], texts)
        (chosen, chosen_eos), (rejected, rejected_eos), *gold = (
            self._cut_eos(t, end) for t in texts)
        gold_text, gold_eos = gold[0] if gold else (None, False)
        return RenderedPair(chosen, rejected, end, chosen_eos, rejected_eos, fallback,
                            gold_text, gold_eos, empty)
