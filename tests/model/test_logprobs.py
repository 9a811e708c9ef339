"""asft.model.logprobs and asft.data.collate against a naive reference.

The reference scores each (prompt, response) sequence on its own with a plain forward and a
full float64 log_softmax: the textbook definition of the summed response log-prob. Every
layout (shared prompt, plain), packing on and off, and both heads (chunked, full) must agree
with it to 1e-5 in fp32, gradients included.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest
import torch

from asft.data.collate import collate
from asft.model.logprobs import (
    PreferenceScorer,
    attention_mask_4d,
    shared_layout_refusal,
    shared_layout_supported,
    target_logprobs,
)
from asft.model.tiny import build_model

VOCAB = 97


@dataclass
class Pair:
    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]


def make_pairs(n: int, seed: int = 0) -> list[Pair]:
    rng = random.Random(seed)

    def ids(lo, hi):
        return [rng.randrange(3, VOCAB) for _ in range(rng.randint(lo, hi))]

    return [Pair(ids(1, 12), ids(1, 9), ids(1, 11)) for _ in range(n)]


@pytest.fixture(scope="module", params=["sdpa", "eager"])
def model(request):
    m = build_model(VOCAB, hidden=64, layers=2, seed=1, tie=False)
    m.config._attn_implementation = request.param
    return m.eval()


@dataclass
class Triple(Pair):
    extra_ids: list[int]


def naive(model, pairs: list[Pair], which_ids=("chosen_ids", "rejected_ids")) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed response log-probs [K*B] and counts, one sequence at a time, float64 softmax
    (an empty response: 0 and 0)."""
    out, counts = [], []
    for which in which_ids:
        for p in pairs:
            resp = getattr(p, which)
            if not resp:
                out.append(torch.zeros((), dtype=torch.float64))
                counts.append(0)
                continue
            ids = torch.tensor([p.prompt_ids + resp])
            logits = model(input_ids=ids).logits[0].double()
            logp = torch.log_softmax(logits, -1)
            P = len(p.prompt_ids)
            pos = torch.arange(P - 1, P - 1 + len(resp))
            out.append(logp[pos, torch.tensor(resp)].sum())
            counts.append(len(resp))
    return torch.stack(out), torch.tensor(counts)


@pytest.mark.parametrize("layout", ["shared", "plain"])
@pytest.mark.parametrize("pack", [False, True])
@pytest.mark.parametrize("head", ["chunked", "full"])
def test_logps_match_naive(model, layout, pack, head):
    pairs = make_pairs(5)
    batch = collate(pairs, pad_id=0, layout=layout, pack=pack)
    scorer = PreferenceScorer(model, head=head, chunk_size=7)
    logps, tokens = scorer(batch)
    ref, ref_counts = naive(model, pairs)
    assert torch.equal(tokens, ref_counts)
    torch.testing.assert_close(logps.double(), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("layout", ["shared", "plain"])
@pytest.mark.parametrize("pack", [False, True])
def test_third_response_and_empty_sides_match_naive(model, layout, pack):
    """A third response (TPO's gold, KTO's mismatched completion) is one more segment seeing
    only the prompt; an empty side (an unpaired KTO example, a pair without gold) scores 0."""
    pairs = make_pairs(6, seed=7)
    extras = make_pairs(6, seed=8)
    triples = [Triple(p.prompt_ids, [] if i == 1 else p.chosen_ids, [] if i == 2 else p.rejected_ids,
                      [] if i == 3 else e.chosen_ids) for i, (p, e) in enumerate(zip(pairs, extras))]
    batch = collate(triples, pad_id=0, layout=layout, pack=pack)
    assert batch["num_seqs"] == 18
    logps, tokens = PreferenceScorer(model, chunk_size=7)(batch)
    ref, ref_counts = naive(model, triples, ("chosen_ids", "rejected_ids", "extra_ids"))
    assert torch.equal(tokens, ref_counts)
    torch.testing.assert_close(logps.double(), ref, atol=1e-5, rtol=1e-5)
    if layout == "shared" and not pack:
        assert batch["input_ids"].shape[0] == 6  # one row per pair: the prompt computed once


def test_gradients_match_plain_path(model):
    """Shared layout + packing + chunked head give the same parameter gradients as the plain path."""
    pairs = make_pairs(4, seed=3)
    weights = torch.randn(8, dtype=torch.float64)

    def grads(layout, pack, head):
        model.zero_grad()
        logps, _ = PreferenceScorer(model, head=head, chunk_size=5)(collate(pairs, 0, layout, pack))
        (logps.double() * weights).sum().backward()
        return {n: p.grad.clone() for n, p in model.named_parameters()}

    ref = grads("plain", False, "full")
    got = grads("shared", True, "chunked")
    for name, g in ref.items():
        torch.testing.assert_close(got[name], g, atol=1e-5, rtol=1e-4, msg=name)


def test_target_logprobs_chunked_equals_full_with_bias_and_softcap():
    torch.manual_seed(0)
    h = torch.randn(13, 8, dtype=torch.float64, requires_grad=True)
    head = torch.nn.Linear(8, 50, dtype=torch.float64)
    t = torch.randint(0, 50, (13,))
    for softcap in (0.0, 3.0):
        got = target_logprobs(h, head, t, chunk=4, softcap=softcap)
        raw = head(h)
        logits = softcap * torch.tanh(raw / softcap) if softcap else raw
        ref = torch.log_softmax(logits, -1).gather(1, t[:, None]).squeeze(1)
        torch.testing.assert_close(got.double(), ref)
        w = torch.randn(13, dtype=torch.float64)
        g_got = torch.autograd.grad((got * w).sum(), [h, head.weight, head.bias])
        g_ref = torch.autograd.grad((ref * w).sum(), [h, head.weight, head.bias])
        for a, b in zip(g_got, g_ref):
            torch.testing.assert_close(a, b)


def test_target_logprobs_of_no_rows_give_zero_gradients():
    """A batch without response tokens: no chunk runs, and the weight still gets its (zero)
    gradient, of the weight's shape (the first chunk's product starts the sum otherwise)."""
    head = torch.nn.Linear(8, 50)
    h = torch.zeros(0, 8, requires_grad=True)
    got = target_logprobs(h, head, torch.zeros(0, dtype=torch.long), chunk=4, softcap=0.0)
    got.sum().backward()
    assert got.shape == (0,)
    assert head.weight.grad.shape == (50, 8) and not head.weight.grad.any()


def test_rejected_never_sees_chosen():
    """Row: prompt(2) chosen(2) rejected(2) -> rejected rows of the mask block the chosen keys."""
    batch = collate([Pair([5, 6], [7, 8], [9, 10])], pad_id=0, layout="shared")
    allowed = attention_mask_4d(batch["group_ids"], batch["segment_ids"], torch.float32)[0, 0] == 0
    expected = torch.tensor([
        [1, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],
        [1, 1, 1, 1, 0, 0],
        [1, 1, 0, 0, 1, 0],
        [1, 1, 0, 0, 1, 1],
    ], dtype=torch.bool)
    assert torch.equal(allowed, expected)
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 2, 3]]
    # Both responses' first tokens are predicted from the last prompt token (flat index 1).
    assert batch["target_index"].tolist() == [1, 2, 1, 4]


def test_packing_reduces_rows_and_padding():
    pairs = [Pair([1] * 20, [2] * 10, [3] * 10)] + [Pair([1] * 3, [2] * 2, [3] * 2)] * 6
    unpacked = collate(pairs, 0, "shared", pack=False)
    packed = collate(pairs, 0, "shared", pack=True)
    assert unpacked["input_ids"].shape == (7, 40)
    assert packed["input_ids"].shape == (3, 40)  # [40], [7 x 5], [7]
    assert packed["num_tokens"] == unpacked["num_tokens"] == 40 + 6 * 7


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="empty prompt"):
        collate([Pair([], [1], [2])], 0)
    with pytest.raises(ValueError, match="empty response on both sides"):
        collate([Pair([1], [], [])], 0)
    with pytest.raises(ValueError, match="unknown layout"):
        collate([Pair([1], [1], [2])], 0, layout="zigzag")
    with pytest.raises(ValueError, match="unknown head"):
        PreferenceScorer(build_model(VOCAB), head="sparse")


def test_shared_layout_support_detected(model):
    assert shared_layout_supported(model)


def test_shared_layout_rejected_for_model_ignoring_4d_mask(monkeypatch):
    """A model whose decoder drops the 4D mask and position ids must be detected."""
    m = build_model(VOCAB, hidden=64, layers=2, seed=2)
    orig = m.model.forward

    def forward(input_ids=None, attention_mask=None, position_ids=None, **kw):
        return orig(input_ids=input_ids, **kw)

    monkeypatch.setattr(m.model, "forward", forward)
    assert not shared_layout_supported(m)
    assert shared_layout_refusal(m) == "this model ignores the 4D attention mask"


def test_a_layout_check_that_raises_is_reported_in_one_line(monkeypatch):
    """An exception inside the check falls back to the plain layout and names its error."""
    m = build_model(VOCAB, hidden=64, layers=2, seed=2)

    def forward(*args, **kwargs):
        raise RuntimeError("kernel says no\nsecond line")

    monkeypatch.setattr(m.model, "forward", forward)
    assert shared_layout_refusal(m) == ("this model cannot run the 4D attention mask (the check "
                                        "raised RuntimeError: kernel says no second line)")


def test_chunked_head_under_bf16_autocast_matches_full_path(model):
    """Under CPU bf16 autocast both heads agree to bf16 rounding, gradients included."""
    pairs = make_pairs(3, seed=7)
    batch = collate(pairs, 0, "shared", pack=True)
    results = {}
    for head in ("full", "chunked"):
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logps, tokens = PreferenceScorer(model, head=head, chunk_size=6)(batch)
        (logps / tokens).sum().backward()
        results[head] = (logps.detach(), model.lm_head.weight.grad.clone())
    torch.testing.assert_close(results["chunked"][0], results["full"][0], rtol=2e-2, atol=0.5)
    g_full, g_chunk = results["full"][1], results["chunked"][1]
    cos = torch.nn.functional.cosine_similarity(g_full.flatten(), g_chunk.flatten(), dim=0)
    assert cos > 0.99


def test_block_mask_rule_equals_the_dense_mask():
    """FlexAttention's mask_mod (asft.model.masks) allows exactly what the dense 4D mask allows,
    position by position, on packed rows with a third response and pads; its BlockMask skips
    the blocks of pairs that never see each other."""
    from torch.nn.attention.flex_attention import create_mask

    from asft.data.collate import Triple
    from asft.model.masks import block_mask, mask_mod

    pairs = [Triple(p.prompt_ids, p.chosen_ids, p.rejected_ids, p.chosen_ids[:2])
             for p in make_pairs(6, seed=3)]
    batch = collate(pairs, 0, "shared", pack=True)
    g, s = batch["group_ids"], batch["segment_ids"]
    R, T = g.shape
    dense = attention_mask_4d(g, s, torch.float32) == 0
    flex = create_mask(mask_mod(g, s), R, 1, T, T, device="cpu")
    assert flex.shape == dense.shape and torch.equal(flex, dense)
    assert (s == 3).any() and (g.amax(1) > 0).any()  # a third response, and pairs packed together
    bm = block_mask(g, s)
    assert bm.shape == (R, 1, T, T)


def test_rows_padded_to_whole_blocks_score_the_same(model):
    """flex's rows padded to a multiple of its block (asft.data.collate.pad_positions): T is
    rounded up, the targets follow their tokens, and the log-probs are the unpadded ones."""
    from asft.data.collate import pad_positions

    batch = collate(make_pairs(5), 0, "shared", pack=True)
    T = batch["input_ids"].shape[1]
    padded = pad_positions(batch, 16)
    assert padded["input_ids"].shape[1] == -(-T // 16) * 16 > T
    assert torch.equal(padded["input_ids"].flatten()[padded["target_index"]],
                       batch["input_ids"].flatten()[batch["target_index"]])
    scorer = PreferenceScorer(model)
    with torch.no_grad():
        torch.testing.assert_close(scorer(padded)[0], scorer(batch)[0], atol=1e-5, rtol=1e-5)
    assert pad_positions(padded, 16) is padded


def test_targets_padded_to_a_bucket_score_the_same(model):
    """A compiled run's batches (asft.data.collate.pad_targets): N rounded up to a bucket, the
    padding scored into a slot past the last sequence and dropped; log-probs and token counts
    are the unpadded ones."""
    from asft.data.collate import bucket, pad_targets

    batch = collate(make_pairs(5), 0, "shared", pack=True)
    n = batch["target_ids"].shape[0]
    padded = pad_targets(batch)
    assert padded["target_ids"].shape[0] == bucket(n) > n
    scorer = PreferenceScorer(model)
    with torch.no_grad():
        (a, ta), (b, tb) = scorer(padded), scorer(batch)
    torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)
    assert torch.equal(ta, tb)


def test_padding_free_layout_is_exact_under_the_boundaries_flash_attention_reads(model):
    """The FA2 layout (asft.data.collate.padding_free): one row, no pads, positions restarting
    per sequence. transformers derives FA2's cu_seqlens from those positions; attending within
    the sequences they delimit (a reference attention: sdpa/eager with that block-diagonal
    causal mask) gives the naive per-sequence log-probs, third responses included."""
    from transformers.modeling_flash_attention_utils import prepare_fa_kwargs_from_position_ids

    from asft.data.collate import Triple, padding_free

    pairs = [Triple(p.prompt_ids, p.chosen_ids, p.rejected_ids, p.rejected_ids[:3])
             for p in make_pairs(5, seed=4)]
    plain = collate(pairs, 0, "plain", pack=True)
    flat = padding_free(plain)
    assert flat["input_ids"].shape == (1, plain["num_tokens"]) and bool((flat["group_ids"] >= 0).all())
    (cu, _), _ = prepare_fa_kwargs_from_position_ids(flat["position_ids"])
    lengths = cu.diff().tolist()
    assert len(lengths) == 3 * len(pairs)  # one sequence per response, as the plain layout has
    seq = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))[None]
    reference = {**flat, "group_ids": seq, "layout": "plain"}
    with torch.no_grad():
        logps, tokens = PreferenceScorer(model, chunk_size=5)(reference)
    ref, ref_tokens = naive(model, pairs, ("chosen_ids", "rejected_ids", "extra_ids"))
    torch.testing.assert_close(logps.double(), ref, atol=1e-5, rtol=1e-5)
    assert torch.equal(tokens, ref_tokens)
    with pytest.raises(ValueError, match="plain layout"):
        padding_free(collate(pairs, 0, "shared"))
