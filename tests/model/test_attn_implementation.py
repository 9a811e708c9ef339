"""model.attn_implementation: the kernel reaches the model, each kernel gets the mask it takes
(sdpa/eager the dense 4D mask, flex the BlockMask, FA2 padding-free rows), ``auto`` picks flex
for training on CUDA and falls back to sdpa when flex fails there, and training with a
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
    """fp32 log-probs of the same pairs on the shared, packed layout: eager with the dense 4D
    mask, flex with the BlockMask through transformers' compiled FlexAttention (a real fused
    CPU kernel, which skips the blocks the BlockMask marks empty), both equal sdpa's to 1e-5."""
    from torch._dynamo.utils import counters

    from asft.evaluate.pairwise import score_pairs

    pairs = _pairs()
    sdpa = score_pairs(load_model("tiny-llama"), pairs, pad_id=0, batch_size=4)
    model = load_model("tiny-llama", attn_implementation=kernel)
    assert shared_layout_refusal(model) is None
    counters.clear()
    other = score_pairs(model, pairs, pad_id=0, batch_size=4)
    for a, b in zip(sdpa, other):
        assert torch.allclose(a, b, atol=1e-5), (kernel, (a - b).abs().max())
    if kernel == "flex_attention":  # the kernel was compiled, not run as its eager reference
        assert counters["stats"]["unique_graphs"] > 0


def test_auto_means_flex_for_training_on_cuda_where_the_architecture_has_it(tmp_path):
    import transformers as T

    from asft.model.load import supports_flex, training_attention

    assert training_attention("tiny-llama", "auto", "cuda") == "flex_attention"
    assert training_attention("tiny-llama", "auto", "cpu") == "auto"
    assert training_attention("tiny-llama", "sdpa", "cuda") == "sdpa"
    folder = tmp_path / "gpt2"
    T.GPT2Config(vocab_size=64, n_embd=32, n_layer=1, n_head=2).save_pretrained(folder)
    assert not supports_flex(str(folder))  # transformers' GPT-2 has no FlexAttention path
    assert training_attention(str(folder), "auto", "cuda") == "auto"
    assert not supports_flex(str(tmp_path / "missing"))


def test_flex_chosen_by_auto_that_fails_goes_back_to_sdpa_in_one_line(monkeypatch):
    """A flex kernel that raises on the device (compile or kernel error) under ``auto``: the
    policy is switched to sdpa and checked again, said in one line; chosen explicitly, the
    failure is reported as the layout check's error instead."""
    from asft.model import masks
    from asft.model.logprobs import attn_implementation
    from asft.train.setup import _layout_check

    def broken(*args, **kwargs):
        raise RuntimeError("no flex kernel for this device")

    monkeypatch.setattr(masks, "block_mask", broken)
    said: list[str] = []
    auto = load_config(None, ["model.name=tiny-llama"])
    model = load_model("tiny-llama", attn_implementation="flex_attention")
    assert _layout_check(auto, model, None, said.append) is None
    assert attn_implementation(model) == "sdpa"
    assert said == ["model: attention sdpa instead of flex_attention, which auto chose: this model "
                    "cannot run the 4D attention mask (the check raised RuntimeError: no flex "
                    "kernel for this device)"]
    explicit = load_config(None, ["model.name=tiny-llama", "model.attn_implementation=flex_attention"])
    model = load_model("tiny-llama", attn_implementation="flex_attention")
    why = _layout_check(explicit, model, None, said.append)
    assert "no flex kernel for this device" in why and attn_implementation(model) == "flex_attention"


def test_bf16_mixed_checks_the_layout_at_bf16_tolerance_then_again_in_fp32(monkeypatch):
    """Under bf16-mixed the prepared scorer computes in bf16, where padded and packed rows
    round apart by more than fp32's tolerance (0.036 nats/token on SmolLM2-135M), so its
    check allows for bf16 rounding; the layout is then checked once more outside it, in fp32
    at fp32's tolerance, where rounding cannot hide a leak across pairs. fp32 training checks
    once, at fp32's tolerance; a failing bf16 check is not run again."""
    from asft.model import logprobs
    from asft.model.logprobs import PreferenceScorer
    from asft.train.setup import _layout_check

    model = load_model("tiny-llama")
    prepared = PreferenceScorer(model)
    real, calls, answers = logprobs.shared_layout_refusal, [], {}

    def spy(m, scorer=None, low_precision=False):
        calls.append((scorer, low_precision))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=low_precision):
            why = real(m, scorer, low_precision=low_precision)  # really run, as it would be
        return answers.get(low_precision, why)

    monkeypatch.setattr(logprobs, "shared_layout_refusal", spy)
    mixed = load_config(None, ["model.name=tiny-llama", "training.precision=bf16-mixed"])
    assert _layout_check(mixed, model, prepared, print) is None
    assert calls == [(prepared, True), (None, False)]
    calls.clear()
    answers[False] = "leak"  # what only fp32 sees
    assert _layout_check(mixed, model, prepared, print) == "leak"
    calls.clear()
    answers[True] = "this model ignores the 4D attention mask"
    assert _layout_check(mixed, model, prepared, print) == answers[True]
    assert calls == [(prepared, True)]
    calls.clear()
    fp32 = load_config(None, ["model.name=tiny-llama", "training.precision=fp32"])
    assert _layout_check(fp32, model, prepared, print) == "leak"
    assert calls == [(prepared, False)]


def test_eval_scores_with_flex_as_with_sdpa(tmp_path, monkeypatch):
    """``asft eval --attn-implementation flex_attention`` reports sdpa's log-probs (1e-5)."""
    import json

    from asft.cli import main

    monkeypatch.setenv("ASFT_CACHE", str(tmp_path / "cache"))
    results = {}
    for kernel in ("sdpa", "flex_attention"):
        out = tmp_path / kernel
        assert main(["eval", "--model", "tiny-llama", "--data", "builtin:arithmetic", "--output",
                     str(out), "--num-samples", "6", "--no-generate",
                     "--attn-implementation", kernel]) == 0
        results[kernel] = json.loads((out / "eval.json").read_text())
    for key in ("logps_chosen", "logps_rejected", "logps_sum_chosen", "logps_sum_rejected"):
        assert results["flex_attention"][key] == pytest.approx(results["sdpa"][key], abs=1e-5)


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
