"""Flat rows with attention pair by pair (asft.model.spans): exact against separate sequences.

A flat batch holds every pair of the batch in one row without a pad; the span kernel runs
transformers' SDPA once per pair with that pair's shared-prefix mask. Checked here: the
collator's flat rows and spans, log-probs and gradients equal to the naive per-sequence ones
(and to the padded rows' dense mask) on many architectures, the kernel being plain SDPA when a
batch carries no spans, the sliding window, and that a model whose layers drop the span plan
is caught by the layout check, training then keeping padded rows and saying so.
"""

from __future__ import annotations

import pytest
import torch
import transformers as T
from test_logprobs import make_pairs, naive
from test_logprobs_architectures import CONFIGS, FALLBACK, _model

from asft.data.collate import Triple, collate
from asft.model import spans
from asft.model.logprobs import PreferenceScorer, attn_implementation, shared_layout_supported
from asft.train.policy import enable_checkpointing


def test_flat_batch_is_one_row_without_pads_and_spans_cover_each_pair():
    pairs = make_pairs(5)
    for layout, per_pair in (("shared", 1), ("plain", 2)):
        batch = collate(pairs, 0, layout, pack=True, flat=True)
        assert batch["input_ids"].shape[0] == 1
        assert bool((batch["group_ids"] >= 0).all())  # not a single pad
        assert len(batch["spans"]) == per_pair * len(pairs)
        ends = [0] + [end for _, _, end, _ in batch["spans"]]
        assert [start for _, start, _, _ in batch["spans"]] == ends[:-1]  # end to end
        assert ends[-1] == batch["input_ids"].shape[1] == batch["num_tokens"]
        groups = batch["group_ids"][0]
        for g, (_, start, end, lengths) in enumerate(batch["spans"]):  # one piece per span
            assert bool((groups[start:end] == g).all())
            assert sum(lengths) == end - start and len(lengths) == (3 if layout == "shared" else 2)
    assert "spans" not in collate(pairs, 0, "shared", pack=True)


NOT_FUNCTIONAL = ("falcon",)  # attention outside transformers' AttentionInterface


@pytest.mark.parametrize("arch", sorted(CONFIGS))
def test_pair_by_pair_is_exact_on_each_architecture(arch):
    """The flat batch under the span kernel gives the naive per-sequence log-probs to 1e-5
    (and the layout check accepts it), on every architecture the shared layout runs on; an
    architecture whose attention is not transformers' functional one, or whose kernel is not
    sdpa, keeps its kernel, and the flat batch is exact there too, through the dense mask."""
    model = _model(CONFIGS[arch])
    ref, _ = naive(model, make_pairs(5))
    kernel = attn_implementation(model)  # Gemma 2 loads with eager (soft-capping)
    adopts = kernel == "sdpa" and arch not in NOT_FUNCTIONAL
    assert spans.adopt(model) == adopts
    assert attn_implementation(model) == (spans.KERNEL if adopts else kernel)
    assert shared_layout_supported(model)
    with torch.no_grad():
        logps, _ = PreferenceScorer(model, chunk_size=7)(
            collate(make_pairs(5), 0, "shared", pack=True, flat=True))
    torch.testing.assert_close(logps.double(), ref, atol=1e-5, rtol=1e-5)


def test_gradients_equal_the_dense_masks_with_checkpointing_and_a_third_response():
    """Backward (which the CPU runs here, unlike flex's) through gradient checkpointing: the
    recomputed layers see the same spans. Gradients equal those of padded rows under one dense
    mask, with a third response (a third segment that sees only the prompt)."""
    model = _model(CONFIGS["qwen2"]).train()
    enable_checkpointing(model)
    triples = [Triple(p.prompt_ids, p.chosen_ids, p.rejected_ids, p.chosen_ids[::-1])
               for p in make_pairs(4)]
    grads = {}
    for name, flat in (("dense", False), ("spans", True)):
        if flat:
            assert spans.adopt(model)
        model.zero_grad()
        logps, _ = PreferenceScorer(model, chunk_size=7)(collate(triples, 0, "shared", pack=True, flat=flat))
        (logps * torch.linspace(-1, 1, logps.numel())).sum().backward()
        grads[name] = {n: p.grad.clone() for n, p in model.named_parameters()}
    for n, g in grads["dense"].items():
        torch.testing.assert_close(grads["spans"][n], g, atol=1e-5, rtol=1e-4, msg=n)


def test_without_spans_the_kernel_is_sdpa():
    """A batch that is not flat (generation, evaluation, padded rows) runs transformers' SDPA
    unchanged: the same logits as the model before adopt, padding mask included."""
    model = _model(CONFIGS["qwen2"])
    ids = torch.randint(1, 50, (2, 9), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0  # left padding
    with torch.no_grad():
        before = model(input_ids=ids, attention_mask=mask).logits
        assert spans.adopt(model)
        after = model(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(after, before, atol=0, rtol=0)


def test_sliding_window_counts_positions_within_the_pair():
    batch = collate([Triple([1, 2, 3, 4], [5, 6], [7, 8, 9], [])], 0, "shared", pack=True, flat=True)
    plan = spans.plan(batch)
    full, narrow = plan.window_mask(0, 100), plan.window_mask(0, 2)[0, 0]
    assert full[0, 0, 6].tolist() == [True] * 4 + [False] * 2 + [True] + [False] * 2
    # the rejected response's first token (position 4, index 6) sees prompt position 3 only
    assert narrow[6].tolist() == [False, False, False, True, False, False, True, False, False]
    assert bool((narrow <= full[0, 0]).all())


def test_a_model_that_drops_the_plan_fails_the_check_and_training_keeps_padded_rows(monkeypatch):
    """If an architecture's layers did not pass the span plan down, the kernel would attend
    across the whole flat row: the layout check catches it, and the batcher goes back to sdpa
    over padded rows, in one line."""
    from types import SimpleNamespace

    from asft.config import load_config
    from asft.model.load import load_model, load_tokenizer
    from asft.train.setup import _batcher

    monkeypatch.setattr(spans, "decoder_kwargs", lambda batch, kernel: {})
    import asft.model.logprobs as logprobs
    monkeypatch.setattr(logprobs, "decoder_kwargs", lambda batch, kernel: {})
    said: list[str] = []
    model = load_model("tiny-llama")
    batcher = _batcher(load_config(None, ["model.name=tiny-llama"]), SimpleNamespace(device="cpu"),
                       model, load_tokenizer("tiny-llama"), said.append)
    batch = batcher(make_pairs(4))
    assert "spans" not in batch and batch["layout"] == "shared"
    assert attn_implementation(model) == "sdpa"
    assert len(said) == 1 and said[0].startswith("model: attention sdpa over padded rows, not pair "
                                                 "by pair: this model ignores the 4D attention mask")


def test_training_on_a_cpu_goes_pair_by_pair(tiny_train_overrides, capsys):
    from asft.config import load_config
    from asft.train import train

    cfg = load_config(None, [*tiny_train_overrides, "training.max_steps=2", "data.probe_size=0"])
    result = train(cfg)
    err = " ".join(capsys.readouterr().err.split())
    assert "attention pair by pair" in err
    assert result.loss_last is not None and torch.isfinite(torch.tensor(result.loss_last))


@pytest.mark.parametrize("arch", sorted(FALLBACK))
def test_architectures_outside_the_interface_are_left_alone(arch):
    model = _model(FALLBACK[arch])
    kernel = attn_implementation(model)
    if not spans.adopt(model):
        assert attn_implementation(model) == kernel
    else:  # BLOOM still refuses the shared layout (ALiBi): training keeps the plain layout
        assert not shared_layout_supported(model)


def test_adopt_leaves_other_kernels_alone():
    model = T.AutoModelForCausalLM.from_config(CONFIGS["qwen2"](64), attn_implementation="eager")
    assert not spans.adopt(model) and attn_implementation(model) == "eager"


def test_a_sliding_window_shorter_than_the_pairs_is_applied_within_each_pair():
    """Mistral with a 6-token window: pairs longer than it go through the windowed rule,
    which counts positions within the pair, and give the naive per-sequence log-probs."""
    make = lambda v: T.MistralConfig(vocab_size=v, sliding_window=6, **{  # noqa: E731
        k: v2 for k, v2 in CONFIGS["mistral"](v).to_dict().items()
        if k in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                 "num_key_value_heads")})
    model = _model(make)
    pairs = make_pairs(5)
    assert max(len(p.prompt_ids) + len(p.chosen_ids) + len(p.rejected_ids) for p in pairs) > 6
    ref, _ = naive(model, pairs)
    assert spans.adopt(model)
    with torch.no_grad():
        logps, _ = PreferenceScorer(model, chunk_size=7)(collate(pairs, 0, "shared", pack=True, flat=True))
    torch.testing.assert_close(logps.double(), ref, atol=1e-5, rtol=1e-5)


def test_under_bf16_each_pair_attends_in_fp32(monkeypatch):
    """On a CPU, torch's flash-attention kernel runs slower in bf16 than in fp32 at a pair's
    lengths, so under bf16 autocast (and with bf16 weights) the span kernel attends in fp32
    with autocast off and hands the output on in bf16 (bench: the bf16 step ~9% faster, peak
    RSS 0.3 GiB lower). Gradients flow through it under gradient checkpointing, and the
    log-probs stay within bf16 rounding of the fp32 ones."""
    import transformers.integrations.sdpa_attention as sdpa_module

    seen, real = [], sdpa_module.sdpa_attention_forward

    def spy(module, q, k, v, mask, **kwargs):
        seen.append((q.dtype, k.dtype, v.dtype, torch.is_autocast_enabled("cpu")))
        out = real(module, q, k, v, mask, **kwargs)
        seen.append(out[0].dtype)
        return out

    model = _model(CONFIGS["qwen2"]).train()
    enable_checkpointing(model)
    ref, _ = naive(model, make_pairs(4))
    assert spans.adopt(model)
    monkeypatch.setattr(sdpa_module, "sdpa_attention_forward", spy)
    batch = collate(make_pairs(4), 0, "shared", pack=True, flat=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logps, _ = PreferenceScorer(model, chunk_size=7)(batch)
    logps.sum().backward()
    assert seen and set(seen) == {(torch.float32, torch.float32, torch.float32, False), torch.float32}
    torch.testing.assert_close(logps.double(), ref, atol=0.02, rtol=1e-3)
    grad = model.model.layers[0].self_attn.q_proj.weight.grad
    assert grad is not None and bool(grad.isfinite().all()) and bool(grad.any())
    seen.clear()
    with torch.no_grad():  # bf16 weights, no autocast: fp32 inside, bf16 out
        logps, _ = PreferenceScorer(model.to(torch.bfloat16), chunk_size=7)(batch)
    assert set(seen[::2]) == {(torch.float32, torch.float32, torch.float32, False)}
    torch.testing.assert_close(logps.double(), ref, atol=0.05, rtol=1e-3)
    seen.clear()
    # padded rows (no plan) too, so that the layout check compares like with like
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        padded, _ = PreferenceScorer(model.float(), chunk_size=7)(collate(make_pairs(4), 0, "plain"))
    assert seen and set(seen[::2]) == {(torch.float32, torch.float32, torch.float32, False)}
    torch.testing.assert_close(padded.double(), ref, atol=0.02, rtol=1e-3)
