"""``asft pairs`` from start to end: prompts -> samples -> scores -> pairs -> one output file.

The phases save their work in two side files beside the output (``OUT.samples.jsonl``,
``OUT.scores.jsonl``; :mod:`~asft.experiments.pairs.store`), so a rerun of the same command
resumes where the last one stopped and a finished one is redone from them alone. Pairing
(:func:`~asft.experiments.pairs.pairing.make_pairs`) reads only the saved samples and scores,
so ``--pairs`` and ``--max-pairs-per-prompt`` can change between runs. The output is written
at the end, whole (:mod:`asft.atomic`): no half-written pairs file ever exists.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from asft import atomic
from asft.errors import AsftError
from asft.experiments.pairs import sampling, scorers, scoring
from asft.experiments.pairs.config import PairsConfig
from asft.experiments.pairs.items import PromptItem, Score
from asft.experiments.pairs.pairing import make_pairs
from asft.experiments.pairs.prompts import read_prompts
from asft.experiments.pairs.store import SideFile


@dataclass
class Summary:
    """What a run did.

    Attributes:
        prompts: prompts of this run; samples: their samples (prompts x K).
        sampled, scored: prompts sampled and scored by this run (the rest were saved).
        pairs: pairs written to ``output`` (0: nothing written).
        skipped: prompts that gave no pair, by reason (``tie``, ``too_few_scored``,
            ``identical``; :data:`~asft.experiments.pairs.pairing.SKIP_REASONS`).
        failures: samples that could not be scored.
        score_mean: mean score of the scored samples (None: none was scored).
        solved: samples the ``builtin`` verifier found correct (score 1); None for other scorers.
        output, samples_file, scores_file: the pairs file and the side files.
    """

    prompts: int
    samples: int
    output: Path
    samples_file: Path
    scores_file: Path
    sampled: int = 0
    scored: int = 0
    pairs: int = 0
    failures: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    score_mean: float | None = None
    solved: int | None = None


def side_paths(output: Path) -> tuple[Path, Path]:
    """The samples and scores files of the pairs file ``output``."""
    return (output.with_name(output.name + ".samples.jsonl"),
            output.with_name(output.name + ".scores.jsonl"))


def pair_records(items: Sequence[PromptItem], samples: dict[int, list[str]],
                 scores: dict[int, list[Score]], config: PairsConfig,
                 skipped: Counter) -> list[dict]:
    """The output records, prompt by prompt in SOURCE order; counts prompts with no pair in
    ``skipped``. The prompt is written as messages, which the explicit format reads back as
    they are (a system message included)."""
    records = []
    for item in items:
        texts, values = samples[item.index], [s.value for s in scores[item.index]]
        pairing = make_pairs(config.pair_values(item.index, values), texts, config.pairing,
                             config.max_pairs_per_prompt)
        if pairing.skipped:
            skipped[pairing.skipped] += 1
        records += [{"prompt": item.messages, "chosen": texts[i], "rejected": texts[j],
                     "score_chosen": values[i], "score_rejected": values[j]}
                    for i, j in pairing.pairs]
    return records


def _phase(name: str, items, store: SideFile, work, show: bool):
    """Run ``work(on_done)`` under a progress bar counting prompts; return what it returns
    and how many prompts it did."""
    from asft.progress import progress_bar

    done_before = sum(item.index in store.records for item in items)
    did = [0]

    with progress_bar(show=show, unit="prompts") as bar:
        task = bar.add_task(name, total=len(items), completed=done_before) if bar else None

        def on_done(n: int) -> None:
            did[0] += n
            if bar:
                bar.advance(task, n)

        return work(on_done), did[0]


def run_pairs(config: PairsConfig, show_progress: bool = True) -> Summary:
    """Sample, score and pair (see the module docstring); write ``config.output`` unless no
    pair formed. Raises AsftError (or the data layer's DataError, JudgeError) for the user."""
    if config.output.is_dir():
        raise AsftError(f"-o {config.output} is a folder; give the pairs file's path")
    items = read_prompts(config.prompts, config.num_prompts)
    scorers.check(config, items)
    config.output.parent.mkdir(parents=True, exist_ok=True)
    samples_path, scores_path = side_paths(config.output)
    sample_store = SideFile(samples_path, config.sampling_settings(), sampling.SAMPLE_FIELDS)
    score_store = SideFile(scores_path, scorers.scoring_settings(config), scoring.SCORE_FIELDS)
    summary = Summary(len(items), len(items) * config.samples, config.output, samples_path,
                      scores_path)
    samples, summary.sampled = _phase(
        "sampling", items, sample_store, lambda on_done: sampling.sample_all(
            lambda: sampling.model_generator(config), items, sample_store, config.samples,
            on_done), show_progress)
    scores, summary.scored = _phase(
        "scoring", items, score_store, lambda on_done: scoring.score_all(
            lambda: scorers.open_scorer(config), items, samples, score_store, on_done),
        show_progress)
    skipped: Counter = Counter()
    records = pair_records(items, samples, scores, config, skipped)
    summary.skipped = dict(skipped)
    values = [s.value for i in items for s in scores[i.index] if s.value is not None]
    summary.failures = len(items) * config.samples - len(values)
    summary.score_mean = sum(values) / len(values) if values else None
    if config.scorer == "builtin":
        summary.solved = sum(v >= 1.0 for v in values)
    summary.pairs = len(records)
    if records:
        atomic.write_jsonl(config.output, records, ensure_ascii=False)
    return summary
