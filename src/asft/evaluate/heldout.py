"""Evaluate a model on held-out preference pairs: generate answers to their prompts and score
them against the chosen responses, then score both responses of each pair with the model.

Results (one flat dict, the content of ``eval.json``; percentages are 0-100):
``bleu4``, ``rougeL`` (:mod:`asft.evaluate.metrics`), ``exact_match`` (None without a
checker), the pairwise metrics of :mod:`asft.evaluate.pairwise` (``pref_acc_mean``,
``pref_acc_sum``, ``logps_chosen``, ``logps_rejected``, ``margin``, ...), and the counts
``num_samples`` (prompts generated for) and ``pairs`` (pairs scored; pairs too long for
``max_length`` are dropped by tokenization and counted in ``pairs_dropped``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from asft.errors import AsftError
from asft.evaluate.generation import GenerationConfig
from asft.progress import progress_bar

Checker = Callable[[str, object], bool]


@dataclass(frozen=True)
class EvalConfig:
    """What to evaluate and how.

    Attributes:
        generation: sampling settings for the answers.
        num_samples: evaluate the first N pairs only (None: all).
        max_length: longest prompt + response in tokens for pairwise scoring.
        max_prompt_length: longest prompt in tokens (generation and scoring keep its end).
        score_batch_size: pairs per forward pass when scoring.
        generate: compute BLEU-4 / ROUGE-L / exact match (needs generation, the slow part).
        pairwise: compute the pairwise log-likelihood metrics.
        overflow, boundary: tokenization policies for scoring (see ``data.overflow`` and
            ``data.boundary`` of :class:`asft.config.DataConfig`).
    """

    generation: GenerationConfig = field(default_factory=GenerationConfig)
    num_samples: int | None = None
    max_length: int = 1024
    max_prompt_length: int = 512
    score_batch_size: int = 8
    generate: bool = True
    pairwise: bool = True
    overflow: str = "drop"
    boundary: str = "shift"

    def __post_init__(self) -> None:
        if self.num_samples is not None and self.num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {self.num_samples}")
        if not 1 <= self.max_prompt_length < self.max_length:
            raise ValueError(f"need 1 <= max_prompt_length < max_length, got "
                             f"{self.max_prompt_length} and {self.max_length}")
        if not (self.generate or self.pairwise):
            raise ValueError("nothing to evaluate: both generate and pairwise are off")


def response_text(messages: Sequence[dict]) -> str:
    """The text of a response given as messages (several are joined by a blank line)."""
    return "\n\n".join(m["content"] for m in messages)


def checker_for(source: object) -> Checker | None:
    """The exact-match checker of a data source: the built-in tasks have one; None otherwise."""
    if isinstance(source, str) and source.startswith("builtin:"):
        from asft.data.builtin import check_answer

        return check_answer
    return None


def evaluate_pairs(
    model,
    tokenizer,
    pairs: Sequence,
    config: EvalConfig | None = None,
    checker: Checker | None = None,
    show_progress: bool = True,
) -> tuple[dict, list[dict]]:
    """Evaluate ``model`` on preference ``pairs`` (:class:`asft.data.PreferencePair`).

    Returns ``(metrics, generations)``: the dict described in the module docstring, and one
    record per generated answer (``origin``, ``prompt``, ``response``, ``chosen``, and
    ``correct`` when there is a checker).
    """
    from asft.evaluate import metrics as gen_metrics
    from asft.evaluate.generation import generate_responses
    from asft.evaluate.pairwise import pairwise_metrics, score_pairs

    config = config or EvalConfig()
    pairs = list(pairs[: config.num_samples] if config.num_samples else pairs)
    if not pairs:
        raise ValueError("no pairs to evaluate")
    one_sided = sum(1 for p in pairs if not p.chosen or not p.rejected)
    if one_sided:
        # BLEU needs a chosen response and preference accuracy both: KTO's unpaired examples
        # have one side only
        raise AsftError(f"{one_sided} of {len(pairs)} examples are unpaired (one response with a "
                         "desirable/undesirable label): evaluation needs pairs (prompt, chosen, "
                         "rejected)")
    results: dict = {"num_samples": len(pairs), "exact_match": None}
    generations: list[dict] = []
    with progress_bar(show=show_progress) as bar:
        if config.generate:
            gen_config = replace(config.generation, max_prompt_length=config.max_prompt_length)
            task = bar.add_task("generating", total=len(pairs)) if bar else None
            start = time.perf_counter()
            responses = generate_responses(
                model, tokenizer, [p.prompt for p in pairs], gen_config,
                on_batch=(lambda n: bar.advance(task, n)) if bar else None,
            )
            results["generation_s"] = time.perf_counter() - start
            references = [response_text(p.chosen) for p in pairs]
            results["bleu4"] = gen_metrics.bleu4(responses, references)
            results["rougeL"] = gen_metrics.rouge_l(responses, references)
            for p, resp, ref in zip(pairs, responses, references):
                generations.append({"origin": p.origin, "prompt": p.prompt, "response": resp,
                                    "chosen": ref})
            if checker is not None:
                results["exact_match"], verdicts = gen_metrics.exact_match(responses, pairs, checker)
                for g, ok in zip(generations, verdicts):
                    g["correct"] = ok
        if config.pairwise:
            from asft.data.tokenize import tokenize_pairs

            examples = tokenize_pairs(pairs, tokenizer, max_length=config.max_length,
                                      max_prompt_length=config.max_prompt_length,
                                      cache_dir=None, overflow=config.overflow,
                                      boundary=config.boundary).examples
            results["pairs_dropped"] = len(pairs) - len(examples)
            if examples:
                task = bar.add_task("scoring pairs", total=len(examples)) if bar else None
                pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
                stats = score_pairs(model, examples, pad, config.score_batch_size,
                                    on_batch=(lambda n: bar.advance(task, n)) if bar else None)
                results.update(pairwise_metrics(*stats))
    return results, generations
