"""The ``reward-model:NAME`` scorer: a Hugging Face sequence-classification reward model.

The score of a sample is the model's single logit (``num_labels == 1``) for the whole
conversation, prompt then the sample as the assistant's reply, rendered with the reward
model's own chat template when its tokenizer has one (else the HH-RLHF transcript,
:func:`asft.data.render.plain_render`), as reward models trained with TRL read conversations.
The logit is read at the last token that is not padding (transformers' pooling), so a
conversation scores the same alone or padded in a batch. A non-finite logit is a scoring
failure for that sample.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from asft.errors import AsftError
from asft.experiments.pairs.items import Message, PromptItem, Score


def conversation_text(tokenizer, messages: Sequence[Message]) -> str:
    """The text the reward model reads for a finished conversation."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(list(messages), tokenize=False)
    from asft.data.render import plain_render

    return plain_render(list(messages))


def check_name(name: str) -> None:
    """AsftError when ``name`` is a path (not a hub id) to no folder: said before sampling."""
    if name.startswith(("/", ".", "~")) and not Path(name).expanduser().is_dir():
        raise AsftError(f"--scorer reward-model:{name}: no such folder")


def _load(name: str, dtype: str):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from asft.model.load import DTYPES, resolve_model

    check_name(name)
    path = resolve_model(name)
    try:
        # no code from the model's folder runs: as for every model asft loads by default
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
        model = AutoModelForSequenceClassification.from_pretrained(
            path, dtype=getattr(torch, DTYPES[dtype]), trust_remote_code=False)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise AsftError(f"--scorer reward-model:{name}: cannot load it ({first[:300]})") from None
    if model.config.num_labels != 1:
        raise AsftError(f"--scorer reward-model:{name}: it has {model.config.num_labels} labels; "
                        "a reward model has one (num_labels=1)")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if model.config.pad_token_id is None:  # else batches of more than one are refused
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


class RewardModelScorer:
    """Scores samples with the reward model ``name``, ``batch_size`` conversations per pass."""

    def __init__(self, name: str, dtype: str = "fp32", batch_size: int = 8):
        import torch

        self.model, self.tokenizer = _load(name, dtype)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model.to(self.device).eval()
        self.batch_size = batch_size

    def rewards(self, conversations: Sequence[Sequence[Message]]) -> list[float]:
        """The reward model's logit for each conversation."""
        import torch

        out: list[float] = []
        for start in range(0, len(conversations), self.batch_size):
            texts = [conversation_text(self.tokenizer, c)
                     for c in conversations[start:start + self.batch_size]]
            # a chat template writes its own special tokens; a plain transcript gets the
            # tokenizer's (a BOS token, say)
            plain = not getattr(self.tokenizer, "chat_template", None)
            batch = self.tokenizer(texts, padding=True, add_special_tokens=plain,
                                   return_tensors="pt").to(self.device)
            with torch.inference_mode():
                logits = self.model(**batch).logits
            out += logits[:, 0].float().tolist()
        return out

    def score(self, item: PromptItem, responses: Sequence[str]) -> list[Score]:
        """One :class:`Score` per response (a non-finite reward is a failure)."""
        rewards = self.rewards([[*item.messages, {"role": "assistant", "content": r}]
                                for r in responses])
        return [Score(r) if math.isfinite(r) else Score(None, f"non-finite reward {r}")
                for r in rewards]
