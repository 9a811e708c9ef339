"""asft's model cache (tiny random models, the converted SmolLM2) is complete whichever
process builds it, and a folder left incomplete is rebuilt rather than failing every run."""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM
from transformers.modeling_utils import PreTrainedModel

from asft.model import tiny
from asft.model.saving import is_complete


def test_a_rank_that_transformers_would_not_let_save_still_writes_a_complete_model(
        tmp_path, monkeypatch):
    # what save_pretrained does on a rank other than 0 under an initialized process group
    monkeypatch.setattr(PreTrainedModel, "should_save_on_this_rank", lambda self, main: False)
    dest = tiny.materialize("tiny-llama-32x1", tmp_path)
    assert is_complete(dest) and (dest / "tokenizer.json").is_file()
    monkeypatch.undo()
    model = AutoModelForCausalLM.from_pretrained(dest)
    assert model.config.hidden_size == 32 and model.config.num_hidden_layers == 1
    # tied embeddings come back tied, with the saved values
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr() \
        or torch.equal(model.lm_head.weight, model.model.embed_tokens.weight)


def test_an_incomplete_cached_model_is_rebuilt(tmp_path):
    dest = tmp_path / "models" / "tiny-llama-32x1"
    dest.mkdir(parents=True)
    (dest / "tokenizer.json").write_text("{}")  # what an older asft left on a rank other than 0
    assert tiny.materialize("tiny-llama-32x1", tmp_path) == dest and is_complete(dest)
    assert AutoModelForCausalLM.from_pretrained(dest).config.hidden_size == 32
