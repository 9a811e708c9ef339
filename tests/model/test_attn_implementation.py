"""model.attn_implementation: the kernel reaches the model, kernels that cannot take asft's
dense 4D mask score on the plain layout (never handed the mask), and training with a
GPU-only kernel on a CPU is refused before any weight loads."""

from __future__ import annotations

import pytest
import torch

from asft.config import ConfigError, load_config
from asft.errors import AsftError
from asft.model.load import attention_refusal, load_model
from asft.model.logprobs import attn_implementation, shared_layout_refusal


def _pairs(n: int = 6):
    from asft.data.collate import Pair

    gen = torch.Generator().manual_seed(1)
    ids = lambda k: torch.randint(3, 200, (k,), generator=gen).tolist()  # noqa: E731
    return [Pair(ids(4 + i), ids(3 + i % 3), ids(5 - i % 2)) for i in range(n)]


def test_the_setting_is_checked_and_reaches_the_model():
    assert load_config(None).model.attn_implementation == "auto"
    with pytest.raises(ConfigError, match=r"model\.attn_implementation"):
        load_config(None, ["model.attn_implementation=flash2"])
    assert attn_implementation(load_model("tiny-llama", attn_implementation="eager")) == "eager"
    assert attn_implementation(load_model("tiny-llama")) == "sdpa"
    with pytest.raises(ValueError, match="unknown attn_implementation"):
        load_model("tiny-llama", attn_implementation="flash")


@pytest.mark.parametrize("kernel", ["eager", "flex_attention"])
def test_every_kernel_scores_pairs_as_sdpa_does(kernel):
    """fp32 log-probs of the same pairs: eager on the shared layout, flex on the plain one
    (its BlockMask layout is unverified), both equal sdpa's to 1e-5."""
    from asft.evaluate.pairwise import score_pairs

    pairs = _pairs()
    sdpa = score_pairs(load_model("tiny-llama"), pairs, pad_id=0, batch_size=4)
    model = load_model("tiny-llama", attn_implementation=kernel)
    other = score_pairs(model, pairs, pad_id=0, batch_size=4)
    for a, b in zip(sdpa, other):
        assert torch.allclose(a, b, atol=1e-5), (kernel, (a - b).abs().max())
    refusal = shared_layout_refusal(model)
    assert (refusal is None) == (kernel == "eager")
    if refusal:
        assert "flex_attention" in refusal and "BlockMask layout is unverified" in refusal


def test_flash_attention_2_is_refused_the_shared_layout_in_one_line(monkeypatch):
    """FA2 takes no 4D mask: the shared layout is refused with the reason (the model is not
    run: flash-attn needs CUDA)."""
    from asft.model import logprobs

    model = load_model("tiny-llama")
    monkeypatch.setattr(logprobs, "attn_implementation", lambda m: "flash_attention_2")
    refusal = shared_layout_refusal(model)
    assert refusal == "attention 'flash_attention_2' does not run the shared layout (it takes no " \
                      "4D mask, so no prompt sharing)"


def test_flash_attention_2_trains_on_padding_free_rows(monkeypatch):
    """With FA2 the batcher packs the plain layout padding-free (one row, no mask) and says so
    in one line; the model is not run (flash-attn needs CUDA: this path is untested on a GPU)."""
    from types import SimpleNamespace

    from asft.model import logprobs
    from asft.model.load import load_tokenizer
    from asft.train.setup import _batcher

    monkeypatch.setattr(logprobs, "attn_implementation", lambda m: "flash_attention_2")
    said: list[str] = []
    cfg = load_config(None, ["model.name=tiny-llama"])
    batcher = _batcher(cfg, SimpleNamespace(device="cpu"), load_model("tiny-llama"),
                       load_tokenizer("tiny-llama"), said.append)
    batch = batcher(_pairs(4))
    assert batch["layout"] == "varlen" and batch["input_ids"].shape[0] == 1
    assert bool((batch["group_ids"] >= 0).all())  # no pads
    assert said == ["data: attention 'flash_attention_2' does not run the shared layout (it takes "
                    "no 4D mask, so no prompt sharing); using the 'plain' layout packed "
                    "padding-free (FlashAttention-2's variable-length sequences)"]


def test_gpu_only_kernels_are_refused_for_training_on_a_cpu(tmp_path):
    from asft.train import train

    assert "no backward" in attention_refusal("flex_attention", "cpu")
    assert "CUDA" in attention_refusal("flash_attention_2", "cpu")
    assert attention_refusal("flash_attention_2", "cuda") is None
    assert attention_refusal("sdpa", "cpu") is None
    cfg = load_config(None, ["model.name=tiny-llama", "model.attn_implementation=flex_attention",
                             f"output_dir={tmp_path / 'run'}"])
    with pytest.raises(AsftError, match="flex_attention cannot train on the CPU"):
        train(cfg)
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
