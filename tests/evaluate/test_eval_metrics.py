"""BLEU-4, ROUGE-L and exact match on cases worked out by hand, and batched generation."""

from __future__ import annotations

import math

import pytest

from asft.evaluate.generation import GenerationConfig, generate_responses, render_prompt
from asft.evaluate.metrics import bleu4, exact_match, rouge_l


def test_bleu4_identical_is_100():
    assert bleu4(["the cat sat on the mat"], ["the cat sat on the mat"]) == pytest.approx(100)


def test_bleu4_brevity_penalty():
    """All n-gram precisions are 1; hypothesis 6 tokens vs reference 8: BP = exp(1 - 8/6)."""
    assert bleu4(["a b c d e f"], ["a b c d e f g h"]) == pytest.approx(100 * math.exp(-1 / 3))


def test_bleu4_is_corpus_level():
    """Counts pool over the corpus: 1-grams 6/10, 2-grams 5/8, 3-grams 4/6, 4-grams 3/4,
    BP = 1, BLEU = (0.6 * 0.625 * 4/6 * 0.75) ** (1/4). A mean of sentence BLEU would be 50."""
    expected = 100 * (0.6 * 0.625 * (4 / 6) * 0.75) ** 0.25
    assert bleu4(["a b c d e f", "w x y z"], ["a b c d e f", "p q r s"]) == pytest.approx(expected)


def test_rouge_l_f1():
    """LCS of 'a b c d' and 'a x c d e' is 'a c d': P = 3/4, R = 3/5, F1 = 2PR/(P+R) = 2/3.
    Second pair: tokens lowercased, punctuation dropped, no stemming: 'running fast' vs
    'run fast' has LCS 1, P = R = 1/2. Mean F1 = (2/3 + 1/2) / 2."""
    assert rouge_l(["a b c d"], ["a x c d e"]) == pytest.approx(100 * 2 / 3)
    assert rouge_l(["a b c d", "Running, fast!"], ["a x c d e", "run fast"]) == pytest.approx(
        100 * (2 / 3 + 1 / 2) / 2)


def test_metrics_reject_mismatched_or_empty_inputs():
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        bleu4(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="no hypotheses"):
        rouge_l([], [])


def test_exact_match_with_checker():
    def check(response, reference):
        return response.split()[-1] == reference

    score, verdicts = exact_match(["the answer is 42", "it is 7", "x"], ["42", "8", "x"], check)
    assert score == pytest.approx(200 / 3) and verdicts == [True, False, True]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from asft.model import tiny

    tok = tiny.build_tokenizer()
    # Untied embeddings: a tied random model greedily repeats one whitespace token.
    model = tiny.build_model(len(tok), hidden=64, layers=2, seed=0, tie=False)
    return model, tok


def test_generation_batched_equals_one_by_one(tiny):
    """Left padding must not change greedy replies: a batch of prompts of different lengths
    gives the same text as each prompt alone."""
    model, tok = tiny
    convs = [[{"role": "user", "content": c}] for c in
             ("What is 12 plus 30?", "Hi", "Sort the numbers 5, 2, 9 in ascending order.")]
    config = GenerationConfig(max_new_tokens=6, batch_size=3)
    done: list[int] = []
    batched = generate_responses(model, tok, convs, config, on_batch=done.append)
    alone = [generate_responses(model, tok, [c], config)[0] for c in convs]
    assert batched == alone and done == [3]
    assert any(batched)  # a seed whose greedy output is not only whitespace


def test_generation_sampling_is_seeded_and_prompt_uses_template(tiny):
    model, tok = tiny
    convs = [[{"role": "user", "content": "Hi"}]] * 2
    config = GenerationConfig(max_new_tokens=6, temperature=1.0, batch_size=1, seed=5)
    first = generate_responses(model, tok, convs, config)
    assert first == generate_responses(model, tok, convs, config)
    assert render_prompt(tok, convs[0]).endswith("<|im_start|>assistant\n")
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        GenerationConfig(temperature=-1)
