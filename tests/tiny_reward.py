"""A tiny random reward model (a one-layer Llama sequence classifier) on the test tokenizer, for
the tests of ``asft pairs`` and online rounds with ``reward-model:PATH``: its scores are
arbitrary but distinct, so its samples pair."""

from __future__ import annotations


def save_reward_model(path, tokenizer_dir, num_labels=1):
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=1, num_attention_heads=1, num_key_value_heads=1,
                         num_labels=num_labels, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    LlamaForSequenceClassification(config).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)
