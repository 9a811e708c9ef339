"""The benchmark's work: HH-RLHF pairs under a chat template, and the batches every system runs.

Every system must do exactly the same work, so the pairs are chosen here once and written to
a workload file that each measuring process reads:

- pairs are read and tokenized by asft's own data layer (:func:`asft.data.load_pairs`,
  :func:`asft.data.tokenize_pairs`: the model's chat template, exact prompt/response
  boundary); TRL gets the same pairs as messages and tokenizes them with its own code;
- only pairs whose longer sequence fits ``max_length`` minus a margin are eligible, so no
  system truncates anything and no truncation policy can change the work (TRL's ORPO appends
  an EOS and never truncates the prompt, DPO drops or truncates, asft truncates the prompt);
- batches are drawn at random (fixed seed) from the eligible pairs; all systems run the same
  batches in the same order, warm-up first.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

# TRL's ORPO appends an EOS to each response: keep two tokens of room so it never truncates.
MARGIN = 2


@dataclass
class BenchPair:
    """One preference pair as messages (for TRL) and as token ids (for asft).

    Attributes:
        origin: ``file:line`` of the record.
        prompt: the conversation before the responses, ``{"role", "content"}`` messages.
        chosen: the preferred response messages.
        rejected: the dispreferred response messages.
        prompt_ids: chat-template tokens of the prompt, generation prompt included.
        chosen_ids: the chosen response's tokens (ending with EOS).
        rejected_ids: the rejected response's tokens.
    """

    origin: str
    prompt: list[dict[str, str]]
    chosen: list[dict[str, str]]
    rejected: list[dict[str, str]]
    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]

    @property
    def lengths(self) -> tuple[int, int, int]:
        """(P, C, R): prompt, chosen and rejected token counts."""
        return len(self.prompt_ids), len(self.chosen_ids), len(self.rejected_ids)


def load_bench_pairs(path: Path, tokenizer, limit: int | None = None) -> tuple[list[BenchPair], int]:
    """Every pair of ``path`` tokenized without truncation, and the number of records skipped."""
    from asft.data import load_pairs, tokenize_pairs

    loaded = load_pairs(str(path), on_bad_record="skip", limit=limit)
    tokens = tokenize_pairs(loaded.pairs, tokenizer, max_length=None, max_prompt_length=None)
    pairs = []
    for ex, i in zip(tokens.examples, tokens.indices):
        p = loaded.pairs[i]
        pairs.append(BenchPair(p.origin, list(p.prompt), list(p.chosen), list(p.rejected),
                               list(ex.prompt_ids), list(ex.chosen_ids), list(ex.rejected_ids)))
    skipped = loaded.report.num_skipped + tokens.report.num_dropped
    return pairs, skipped


@dataclass
class Workload:
    """What every system runs: ``batches`` of pairs, warm-up batches first.

    Attributes:
        source: the data file.
        tokenizer: name of the tokenizer the ids come from.
        max_length: the sequence budget every system is configured with.
        total_pairs: tokenized pairs in the file.
        eligible_pairs: pairs that fit ``max_length - MARGIN`` without truncation.
        skipped_records: records that asft's data layer skipped or dropped.
        seed: seed of the batch draw.
        warmup: how many of the batches are warm-up.
        batches: lists of pairs, ``batch_size`` each.
        dataset_mean: mean (P, C, R) over all tokenized pairs (for the FLOPs floor).
    """

    source: str
    tokenizer: str
    max_length: int
    total_pairs: int
    eligible_pairs: int
    skipped_records: int
    seed: int
    warmup: int
    batches: list[list[BenchPair]]
    dataset_mean: tuple[float, float, float]

    def timed_batches(self) -> list[list[BenchPair]]:
        return self.batches[self.warmup:]

    def save(self, path: Path) -> None:
        data = asdict(self)
        path.write_text(json.dumps(data))

    @classmethod
    def load(cls, path: Path) -> Workload:
        data = json.loads(Path(path).read_text())
        data["batches"] = [[BenchPair(**p) for p in b] for b in data["batches"]]
        data["dataset_mean"] = tuple(data["dataset_mean"])
        return cls(**data)


def build_workload(path: Path, tokenizer, tokenizer_name: str, *, max_length: int, batch_size: int,
                   warmup: int, steps: int, seed: int, limit: int | None = None) -> Workload:
    """Draw ``warmup + steps`` batches of ``batch_size`` distinct eligible pairs at random."""
    pairs, skipped = load_bench_pairs(path, tokenizer, limit)
    eligible = [p for p in pairs if p.lengths[0] + max(p.lengths[1:]) <= max_length - MARGIN]
    need = (warmup + steps) * batch_size
    if len(eligible) < need:
        raise ValueError(f"{path}: {len(eligible)} pairs fit max_length {max_length}, need {need}")
    chosen = random.Random(seed).sample(eligible, need)
    batches = [chosen[i:i + batch_size] for i in range(0, need, batch_size)]
    n = max(len(pairs), 1)
    mean = tuple(sum(p.lengths[k] for p in pairs) / n for k in range(3))
    return Workload(str(path), tokenizer_name, max_length, len(pairs), len(eligible), skipped,
                    seed, warmup, batches, mean)
