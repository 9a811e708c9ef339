"""Prompt sharing and packing across Hugging Face architectures, not only Llama.

For each tiny random model: when :func:`asft.model.logprobs.shared_layout_supported` accepts it, the
shared, packed layout gives the naive per-sequence log-probs (float64 softmax, one sequence at a
time) to 1e-5; when it refuses (BLOOM: ALiBi takes no position ids and its 4D-mask path differs),
the plain layout does, and training falls back to it by itself.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import transformers as T
from test_logprobs import VOCAB, make_pairs, naive

from asft.config import load_config
from asft.data.collate import collate
from asft.model.logprobs import PreferenceScorer, shared_layout_supported

SMALL = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4)
GQA = dict(SMALL, num_key_value_heads=2)

CONFIGS = {
    "gpt2": lambda v: T.GPT2Config(vocab_size=v, n_embd=64, n_layer=2, n_head=4, n_positions=128),
    "qwen2": lambda v: T.Qwen2Config(vocab_size=v, **GQA),
    "qwen3": lambda v: T.Qwen3Config(vocab_size=v, head_dim=16, **GQA),
    "mistral": lambda v: T.MistralConfig(vocab_size=v, **GQA),
    "gemma2": lambda v: T.Gemma2Config(vocab_size=v, head_dim=16, **GQA),  # logit soft-capping
    "gemma3": lambda v: T.Gemma3TextConfig(vocab_size=v, head_dim=16, **GQA),
    "phi3": lambda v: T.Phi3Config(vocab_size=v, pad_token_id=0, **GQA),
    "gpt_neox": lambda v: T.GPTNeoXConfig(vocab_size=v, **SMALL),
    "falcon": lambda v: T.FalconConfig(vocab_size=v, hidden_size=64, num_hidden_layers=2,
                                       num_attention_heads=4),
    "opt": lambda v: T.OPTConfig(vocab_size=v, hidden_size=64, ffn_dim=128, num_hidden_layers=2,
                                 num_attention_heads=4, word_embed_proj_dim=64),
}
FALLBACK = {"bloom": lambda v: T.BloomConfig(vocab_size=v, hidden_size=64, n_layer=2, n_head=4)}


def _model(make, vocab: int = VOCAB):
    torch.manual_seed(0)
    return T.AutoModelForCausalLM.from_config(make(vocab)).eval()


@pytest.mark.parametrize("arch", sorted(CONFIGS))
def test_shared_packed_layout_is_exact(arch):
    model = _model(CONFIGS[arch])
    assert shared_layout_supported(model)
    pairs = make_pairs(5)
    logps, _ = PreferenceScorer(model, chunk_size=7)(collate(pairs, 0, "shared", pack=True))
    ref, _ = naive(model, pairs)
    torch.testing.assert_close(logps.double(), ref, atol=1e-5, rtol=1e-5)


NO_FLEX = ("falcon", "gpt2")  # transformers has no FlexAttention path for these


@pytest.mark.parametrize("arch", sorted(set(CONFIGS) - set(NO_FLEX)))
def test_flex_block_mask_layout_is_exact(arch):
    """The shared, packed layout through FlexAttention and asft's BlockMask (transformers'
    ``flex_attention``): the naive per-sequence log-probs to 1e-5, as sdpa's dense mask gives
    them. Run as torch's eager FlexAttention (``force_eager``), which applies the BlockMask's
    rule at every position: compiling ten architectures on a CPU would take minutes. The
    compiled kernel, which also reads the block tables, is checked on tiny-llama in
    test_attn_implementation.py."""
    sdpa = _model(CONFIGS[arch])
    model = T.AutoModelForCausalLM.from_config(CONFIGS[arch](VOCAB), attn_implementation="flex_attention")
    model.load_state_dict(sdpa.state_dict())
    model.eval()
    pairs = make_pairs(5)
    with torch.compiler.set_stance("force_eager"), torch.no_grad():
        assert shared_layout_supported(model)
        logps, _ = PreferenceScorer(model, chunk_size=7)(collate(pairs, 0, "shared", pack=True))
        ref, _ = naive(sdpa, pairs)  # the dense-mask kernel, one sequence at a time
    torch.testing.assert_close(logps.double(), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", NO_FLEX)
def test_architectures_without_flex_are_refused_at_load(arch, tmp_path):
    from asft.model.load import load_model

    _model(CONFIGS[arch]).save_pretrained(tmp_path / arch)
    with pytest.raises(ValueError, match="attn_implementation 'flex_attention' cannot be used"):
        load_model(str(tmp_path / arch), attn_implementation="flex_attention")


@pytest.mark.parametrize("arch", sorted(FALLBACK))
def test_model_without_4d_mask_support_is_refused_and_plain_is_exact(arch):
    model = _model(FALLBACK[arch])
    assert not shared_layout_supported(model)
    pairs = make_pairs(5)
    logps, _ = PreferenceScorer(model, chunk_size=7)(collate(pairs, 0, "plain", pack=False))
    ref, _ = naive(model, pairs)
    torch.testing.assert_close(logps.double(), ref, atol=1e-5, rtol=1e-5)


def test_training_falls_back_to_plain_rows(tiny_model_dir, tiny_train_overrides, tmp_path, capsys):
    """A BLOOM model in a folder (the tiny tokenizer beside it) trains; the run says it uses
    the plain layout without packing, and its loss is finite."""
    from asft.train import train

    folder = tmp_path / "tiny-bloom"
    tokenizer = T.AutoTokenizer.from_pretrained(tiny_model_dir)
    _model(FALLBACK["bloom"], len(tokenizer)).save_pretrained(folder)
    for f in Path(tiny_model_dir).iterdir():
        if "token" in f.name or f.name.endswith((".txt", ".jinja")):
            shutil.copy(f, folder / f.name)
    cfg = load_config(None, [*tiny_train_overrides, f"model.name={folder}", "training.max_steps=2",
                             "data.probe_size=0"])
    result = train(cfg)
    err = " ".join(capsys.readouterr().err.split())  # the console wraps long lines
    # BLOOM's attention raises on the 4D mask (ALiBi): the start-up line names the error
    assert "this model cannot run the 4D attention mask (the check raised ValueError" in err
    assert "; using the 'plain' layout without packing" in err
    assert result.loss_last is not None and torch.isfinite(torch.tensor(result.loss_last))
