"""Reference-based generation metrics: BLEU-4, ROUGE-L and exact match.

Both overlap metrics compare each generated response with the *chosen* response of its
held-out pair, as in the ASFT paper (arXiv 2409.10571, section 4). Scores are on a 0-100
scale so that the two read alike in tables:

- ``bleu4``: corpus BLEU with up to 4-grams, sacrebleu's default 13a tokenizer and brevity
  penalty (Papineni et al. 2002; Post 2018, arXiv 1804.08771). Corpus-level, not a mean of
  sentence scores: n-gram counts are pooled over all examples before the geometric mean.
- ``rougeL``: ROUGE-L F1 (longest common subsequence, Lin 2004) from ``rouge-score``,
  averaged over examples. Its default tokenizer lowercases and keeps only ``[a-z0-9]`` runs,
  so scripts without Latin letters or digits score 0.
- ``exact_match``: percentage of responses a task-specific checker accepts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence


def _check_lengths(hypotheses: Sequence[str], references: Sequence[str]) -> None:
    if len(hypotheses) != len(references):
        raise ValueError(
            f"{len(hypotheses)} hypotheses but {len(references)} references; they must pair up"
        )
    if not hypotheses:
        raise ValueError("no hypotheses to score")


def bleu4(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU-4 (0-100) of ``hypotheses`` against one reference each (sacrebleu)."""
    import sacrebleu

    _check_lengths(hypotheses, references)
    return float(sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score)


def rouge_l(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Mean ROUGE-L F1 (0-100) of ``hypotheses`` against one reference each (rouge-score)."""
    from rouge_score import rouge_scorer

    _check_lengths(hypotheses, references)
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    total = sum(scorer.score(ref, hyp)["rougeL"].fmeasure for hyp, ref in zip(hypotheses, references))
    return 100.0 * total / len(hypotheses)


def exact_match(
    hypotheses: Sequence[str], references: Sequence[object], checker: Callable[[str, object], bool]
) -> tuple[float, list[bool]]:
    """Percentage (0-100) of hypotheses that ``checker(hypothesis, reference)`` accepts, and
    the per-example verdicts."""
    _check_lengths(hypotheses, references)
    verdicts = [bool(checker(h, r)) for h, r in zip(hypotheses, references)]
    return 100.0 * sum(verdicts) / len(verdicts), verdicts
