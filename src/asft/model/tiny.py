"""Tiny random models for tests, smoke runs and benchmarks: no download, built in a second.

``tiny-llama`` (and ``tiny-llama-<hidden>x<layers>``) resolves through :func:`materialize` to a
folder under the asft cache holding a randomly initialised Llama and a byte-level BPE
tokenizer trained locally on a fixed corpus, with a ChatML chat template so that the
chat-template code path is exercised exactly as with a real instruct model.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from asft.model.saving import cached_folder, save_complete

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]
_NAME = re.compile(r"^tiny-llama(?:-(\d+)x(\d+))?$")

# Enough varied English, digits and punctuation that the BPE learns useful merges.
_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "What is 12 plus 30? The answer is 42.",
    "Convert 3 kilometers to meters: 3000 meters.",
    "Sort the numbers 5, 2, 9 in ascending order: 2, 5, 9.",
    "Human: how are you today?\n\nAssistant: I am fine, thank you for asking!",
    "Please write a short poem about the sea and the sky.",
    "I cannot help with that request, but here is something else.",
    "0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 100 1000",
    "Question: What is 7 times 8? Answer: 56",
] * 4


def is_tiny(name: str) -> bool:
    """True when ``name`` is a tiny-llama model name."""
    return bool(_NAME.match(name))


def build_tokenizer(vocab_size: int = 512):
    """A byte-level BPE GPT2Tokenizer with ChatML specials; eos <|im_end|>, pad <|pad|>."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Tokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(_CORPUS, vocab_size=vocab_size, min_frequency=1,
                            special_tokens=SPECIAL_TOKENS, show_progress=False)
    model = bpe._tokenizer.model
    vocab = bpe.get_vocab()
    with tempfile.TemporaryDirectory() as tmp:
        model.save(tmp)
        merges = [
            tuple(line.split(" ")) for line in Path(tmp, "merges.txt").read_text().splitlines()
            if line and not line.startswith("#version")
        ]
    tok = GPT2Tokenizer(
        vocab=vocab, merges=merges, unk_token="<|endoftext|>", bos_token="<|endoftext|>",
        eos_token="<|im_end|>", pad_token="<|pad|>",
    )
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>"]})
    tok.chat_template = CHATML_TEMPLATE
    return tok


def build_model(vocab_size: int, hidden: int = 64, layers: int = 2, seed: int = 0,
                tie: bool = True):
    """A randomly initialised LlamaForCausalLM (fp32, eager-free sdpa) for tests."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=hidden, intermediate_size=2 * hidden,
        num_hidden_layers=layers, num_attention_heads=max(1, hidden // 32),
        num_key_value_heads=max(1, hidden // 64), max_position_embeddings=2048,
        tie_word_embeddings=tie, pad_token_id=None,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def materialize(name: str, root: Path) -> Path:
    """Create (once) and return the folder of tiny model ``name`` under ``root``."""
    m = _NAME.match(name)
    if not m:
        raise ValueError(f"not a tiny model name: {name!r} (expected tiny-llama or tiny-llama-HxL)")
    hidden, layers = (int(m.group(1)), int(m.group(2))) if m.group(1) else (64, 2)
    dest = root / "models" / name

    def write(tmp: Path) -> None:
        tok = build_tokenizer()
        model = build_model(len(tok), hidden=hidden, layers=layers)
        model.config.eos_token_id = tok.eos_token_id
        model.config.pad_token_id = tok.pad_token_id
        model.generation_config.eos_token_id = tok.eos_token_id
        model.generation_config.pad_token_id = tok.pad_token_id
        save_complete(model, tok, tmp)

    return cached_folder(dest, write)
