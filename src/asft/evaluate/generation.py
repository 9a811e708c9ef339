"""Batched, left-padded generation of chat responses with the model's own chat template.

Prompts are sorted by length so each batch pads little, the longest batch runs first (an
out-of-memory error shows up at once, not at the end), and results come back in input order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

Message = dict[str, str]


@dataclass(frozen=True)
class GenerationConfig:
    """How responses are sampled.

    Attributes:
        max_new_tokens: cap on generated tokens per response.
        temperature: 0 means greedy decoding; > 0 samples with this temperature.
        top_p: nucleus-sampling mass when sampling (1.0 keeps the whole distribution).
        top_k: when sampling, keep only the k most likely tokens (0: no cut).
        batch_size: prompts per ``generate`` call.
        max_prompt_length: prompts longer than this many tokens keep their last tokens
            (None: no truncation).
        seed: torch seed set before sampling, for reproducible samples.
    """

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    batch_size: int = 8
    max_prompt_length: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if not 0 <= self.temperature < math.inf:  # NaN fails too
            raise ValueError(f"temperature must be >= 0 and finite, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0: no cut), got {self.top_k}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.max_prompt_length is not None and self.max_prompt_length < 1:
            raise ValueError(f"max_prompt_length must be >= 1, got {self.max_prompt_length}")


def render_prompt(tokenizer, messages: Sequence[Message]) -> str:
    """The text the model sees before its reply: the chat template with the generation
    prompt, or, without a template, the HH-RLHF transcript ending in ``"\n\nAssistant:"``
    that training uses too (:func:`asft.data.render.plain_render`)."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            list(messages), tokenize=False, add_generation_prompt=True
        )
    from asft.data.render import plain_render

    return plain_render(list(messages), add_generation_prompt=True)


def _stop_ids(model, tokenizer) -> list[int]:
    ids = [tokenizer.eos_token_id]
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids += configured if isinstance(configured, list) else [configured]
    return sorted({i for i in ids if i is not None})


def generate_responses(
    model,
    tokenizer,
    conversations: Sequence[Sequence[Message]],
    config: GenerationConfig | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> list[str]:
    """The model's reply to each conversation (the last message is the user's turn).

    Args:
        model: a causal LM (its device is used for the inputs).
        tokenizer: its tokenizer (prompts are left-padded with its pad token here).
        conversations: N message lists.
        config: sampling settings (greedy, 256 new tokens, batch 8 by default).
        on_batch: called with the number of conversations finished after each batch.

    Returns:
        N decoded replies, special tokens removed, surrounding whitespace stripped.
    """
    import torch

    config = config or GenerationConfig()
    texts = [render_prompt(tokenizer, conv) for conv in conversations]
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
    if config.max_prompt_length is not None:
        encoded = [ids[-config.max_prompt_length:] for ids in encoded]
    order = sorted(range(len(texts)), key=lambda i: -len(encoded[i]))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    stop = _stop_ids(model, tokenizer)
    sampling = config.temperature > 0
    kwargs = {"do_sample": sampling, "max_new_tokens": config.max_new_tokens,
              "pad_token_id": pad_id, "eos_token_id": stop}
    if sampling:
        kwargs.update(temperature=config.temperature, top_p=config.top_p, top_k=config.top_k)
    else:
        # Neutralize sampling knobs a checkpoint's generation_config may carry, so greedy
        # decoding does not warn about them.
        kwargs.update(temperature=None, top_p=None, top_k=None)
    device = next(model.parameters()).device
    replies: list[str] = [""] * len(texts)
    was_training = model.training
    model.eval()
    torch.manual_seed(config.seed)
    try:
        for start in range(0, len(order), config.batch_size):
            idx = order[start:start + config.batch_size]
            width = max(len(encoded[i]) for i in idx)
            ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):
                n = len(encoded[i])
                ids[row, width - n:] = torch.tensor(encoded[i], dtype=torch.long)
                mask[row, width - n:] = 1
            with torch.inference_mode():
                out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                                     **kwargs)
            for row, i in enumerate(idx):
                replies[i] = tokenizer.decode(out[row, width:], skip_special_tokens=True).strip()
            if on_batch is not None:
                on_batch(len(idx))
    finally:
        model.train(was_training)
    return replies
