"""The settings of ``asft pairs``: what to sample, how to score, how to pair.

Every field is checked here, before a model loads, with a one-line error naming its flag.
:meth:`PairsConfig.sampling_settings` and :meth:`PairsConfig.scoring_settings` are what the
side files record: a rerun with other values there is refused rather than mixed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from asft.errors import AsftError
from asft.experiments.pairs.selection import SELECTIONS, rso_rng, rso_select

PAIRING_MODES = ("best-worst", "all")
SCORER_KINDS = ("builtin", "judge", "reward-model:NAME")
DTYPES = ("fp32", "bf16", "fp16")


def parse_scorer(text: str) -> tuple[str, str | None]:
    """``(kind, name)`` of ``--scorer``: ``("builtin", None)``, ``("judge", None)`` or
    ``("reward-model", NAME)``; AsftError for anything else."""
    kind, sep, name = text.strip().partition(":")
    if kind in ("builtin", "judge") and not sep:
        return kind, None
    if kind == "reward-model" and name.strip():
        return kind, name.strip()
    raise AsftError(f"--scorer must be one of {', '.join(SCORER_KINDS)}, got {text!r}")


@dataclass(frozen=True)
class JudgeOptions:
    """The LLM judge of ``--scorer judge`` (an OpenAI-compatible chat-completions endpoint).

    Attributes:
        base_url: API root, e.g. ``https://api.openai.com/v1`` or a local vLLM server.
        model: the judge model's name; recorded in the scores file (another judge is refused).
        api_key_env: environment variable holding the API key (unset: no key is sent).
        parallel: judge requests in flight at once.
        timeout: seconds per request.
        retries: retries per request on network errors, malformed replies and 429/5xx.
        backoff: first retry delay in seconds, doubled per retry (at most 60).
    """

    base_url: str = "https://api.openai.com/v1"
    model: str = "gpt-4"
    api_key_env: str = "OPENAI_API_KEY"
    parallel: int = 4
    timeout: float = 120.0
    retries: int = 6
    backoff: float = 1.0

    def __post_init__(self) -> None:
        if self.parallel < 1:
            raise AsftError(f"--judge-parallel must be >= 1, got {self.parallel}")
        if self.retries < 0:
            raise AsftError(f"--judge-retries must be >= 0, got {self.retries}")
        if not (self.timeout > 0 and self.backoff >= 0):
            raise AsftError("--judge-timeout must be > 0 and --judge-backoff >= 0")


@dataclass(frozen=True)
class PairsConfig:
    """One ``asft pairs`` run.

    Attributes:
        model: the policy that samples (folder, hub id or short name such as ``tiny-llama``).
        prompts: SOURCE: ``builtin:<task>[:<split>][?n=..&seed=..]`` or a file (JSONL, JSON,
            CSV, Parquet, datasets folder) whose records have a ``prompt`` (string or messages).
        output: the pairs file (JSON Lines); the side files sit beside it.
        samples: K, answers sampled per prompt (>= 2).
        scorer: ``builtin``, ``judge`` or ``reward-model:NAME`` (see :func:`parse_scorer`).
        pairing: ``best-worst`` (one pair per prompt) or ``all`` (every better/worse pair).
        max_pairs_per_prompt: cap for ``all`` (None: no cap), largest score gaps first.
        selection: which samples may pair: ``all``, or ``rso``, those statistical rejection
            sampling keeps (arXiv 2309.06657; :mod:`~asft.experiments.pairs.selection`).
        rso_beta: RSO's temperature beta (> 0): small keeps the best answers, large keeps
            near-uniform draws.
        rso_accept: samples RSO keeps per prompt (>= 2: a pair needs two).
        num_prompts: use only the first N prompts of SOURCE (None: all).
        temperature: sampling temperature (> 0: K greedy answers would all be the same).
        top_p: nucleus-sampling mass.
        max_new_tokens: cap on each answer's tokens.
        seed: sampling seed; each prompt's samples are seeded from it, the prompt's index and
            its text, so they do not depend on the other prompts of the run.
        batch_size: rows per generate call (a prompt's K samples go in ceil(K / batch_size)
            calls) and conversations per reward-model forward pass.
        dtype: the policy's and the reward model's weights: fp32, bf16 or fp16.
        judge: the judge's settings (``--scorer judge`` only).
    """

    model: str
    prompts: str
    output: Path
    samples: int = 4
    scorer: str = "builtin"
    pairing: str = "best-worst"
    max_pairs_per_prompt: int | None = None
    selection: str = "all"
    rso_beta: float = 0.5
    rso_accept: int = 2
    num_prompts: int | None = None
    temperature: float = 0.8
    top_p: float = 0.95
    max_new_tokens: int = 256
    seed: int = 0
    batch_size: int = 8
    dtype: str = "fp32"
    judge: JudgeOptions = field(default_factory=JudgeOptions)

    def __post_init__(self) -> None:
        parse_scorer(self.scorer)
        checks = (
            (self.samples >= 2, f"--samples must be >= 2 (a pair needs two answers), got {self.samples}"),
            (self.pairing in PAIRING_MODES, f"--pairs must be one of {', '.join(PAIRING_MODES)}, "
                                            f"got {self.pairing!r}"),
            (self.max_pairs_per_prompt is None or self.max_pairs_per_prompt >= 1,
             f"--max-pairs-per-prompt must be >= 1, got {self.max_pairs_per_prompt}"),
            (self.max_pairs_per_prompt is None or self.pairing == "all",
             "--max-pairs-per-prompt applies to --pairs all (best-worst makes one pair per prompt)"),
            (self.selection in SELECTIONS, f"--selection must be one of {', '.join(SELECTIONS)}, "
                                           f"got {self.selection!r}"),
            (0 < self.rso_beta < math.inf, f"--rso-beta must be > 0 and finite, got {self.rso_beta}"),
            (2 <= self.rso_accept <= self.samples, f"--rso-accept must be in [2, --samples], "
                                                   f"got {self.rso_accept}"),
            (self.num_prompts is None or self.num_prompts >= 1,
             f"--num-prompts must be >= 1, got {self.num_prompts}"),
            (0 < self.temperature < math.inf, f"--temperature must be > 0 and finite (0 is greedy: "
                                              f"the K answers would be the same), got {self.temperature}"),
            (0 < self.top_p <= 1, f"--top-p must be in (0, 1], got {self.top_p}"),
            (self.max_new_tokens >= 1, f"--max-new-tokens must be >= 1, got {self.max_new_tokens}"),
            (self.batch_size >= 1, f"--batch-size must be >= 1, got {self.batch_size}"),
            (self.dtype in DTYPES, f"--dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}"),
        )
        for ok, message in checks:
            if not ok:
                raise AsftError(message)

    @property
    def rows_per_call(self) -> int:
        """Rows of one generate call: the sampling stream, hence the samples, depend on it."""
        return min(self.samples, self.batch_size)

    def sampling_settings(self) -> dict:
        """What the samples depend on (recorded in, and checked against, the samples file)."""
        return {"model": self.model, "prompts": self.prompts, "samples": self.samples,
                "temperature": self.temperature, "top_p": self.top_p,
                "max_new_tokens": self.max_new_tokens, "seed": self.seed,
                "rows_per_call": self.rows_per_call, "dtype": self.dtype}

    def pair_values(self, item_index: int, values: list[float | None]) -> list[float | None]:
        """The scores pairing sees for one prompt: all of them, or (``rso``) only those of the
        samples rejection sampling keeps, the others None (not candidates)."""
        if self.selection == "all":
            return values
        kept = set(rso_select(values, self.rso_accept, self.rso_beta, rso_rng(self.seed, item_index)))
        return [v if i in kept else None for i, v in enumerate(values)]
