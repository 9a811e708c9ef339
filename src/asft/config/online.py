"""The ``online:`` section: on-policy rounds of sampling, scoring and training.

Each round samples answers to the prompts with the current policy, scores them, pairs them
(``asft pairs``, :mod:`asft.experiments.pairs`) and trains on those pairs with the run's loss
(:mod:`asft.experiments.online`); ``rounds: 0`` (the default) is an ordinary run on
``data.source``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from asft.config.schema import Section, require

_SCORER = re.compile(r"^(builtin|judge|reward-model:\S.*)$")


@dataclass
class OnlineConfig(Section):
    """On-policy training in rounds (iterative/online preference optimisation): each round
    samples ``samples`` answers per prompt with the policy as it is, scores them with
    ``scorer``, pairs them (best against worst) and trains ``steps_per_round`` steps on the
    pairs, starting from the previous round's model. ``data.source`` is not read: the rounds'
    pairs are the data."""

    rounds: int = 0
    """Rounds of sample -> score -> pair -> train; 0: off (train on data.source)."""

    prompts: str | None = None
    """SOURCE of the prompts, as ``asft pairs --prompts`` reads it: ``builtin:<task>[:<split>]``
    or a file whose records have a ``prompt`` (and an ``answer`` for the builtin scorer).
    Every round answers the same prompts, with the policy of that round."""

    num_prompts: int | None = None
    """Use only the first N prompts of ``prompts``; null: all."""

    samples: int = 4
    """K, answers sampled per prompt and round (>= 2)."""

    scorer: str = "builtin"
    """``builtin`` (the built-in tasks' verifier, graded), ``judge`` (an OpenAI-compatible LLM
    judge; see judge_*) or ``reward-model:NAME`` (a sequence-classification model)."""

    steps_per_round: int = 8
    """Optimizer steps trained on each round's pairs."""

    pairing: str = "best-worst"
    """``best-worst``: one pair per prompt; ``all``: every better/worse pair."""

    max_pairs_per_prompt: int | None = None
    """Cap on the pairs of ``pairing: all``; null: no cap."""

    selection: str = "all"
    """``all``: every sample may pair; ``rso``: only those statistical rejection sampling keeps
    (RSO, arXiv 2309.06657), draws from pi(y|x) exp(score / rso_beta)."""

    rso_beta: float = 0.5
    """RSO's temperature: small keeps the best answers, large near-uniform draws."""

    rso_accept: int = 2
    """Samples RSO keeps per prompt (2..samples); they are then paired as ``pairing`` says."""

    temperature: float = 0.8
    """Sampling temperature (> 0)."""

    top_p: float = 0.95
    """Nucleus sampling mass."""

    max_new_tokens: int = 128
    """Cap on each sampled answer's tokens."""

    batch_size: int = 8
    """Rows per generate call (and conversations per reward-model pass)."""

    judge_base_url: str = "https://api.openai.com/v1"
    """``scorer: judge``: the API root of an OpenAI-compatible chat-completions server."""

    judge_model: str = "gpt-4"
    """``scorer: judge``: the judge model's name."""

    judge_api_key_env: str = "OPENAI_API_KEY"
    """``scorer: judge``: the environment variable holding the API key (the key itself is never
    written into a config)."""

    def validate(self) -> None:
        require(0 <= self.rounds <= 10**4, "rounds", f"must be in [0, 10000], got {self.rounds}")
        require(self.rounds == 0 or bool(self.prompts and self.prompts.strip()), "prompts",
                "is needed when rounds > 0: the SOURCE the policy answers, e.g. builtin:arithmetic")
        require(self.num_prompts is None or self.num_prompts >= 1, "num_prompts",
                f"must be >= 1 or null, got {self.num_prompts}")
        require(self.samples >= 2, "samples", f"must be >= 2 (a pair needs two answers), got {self.samples}")
        require(bool(_SCORER.match(self.scorer)), "scorer",
                f"must be builtin, judge or reward-model:NAME, got {self.scorer!r}")
        require(1 <= self.steps_per_round <= 10**9, "steps_per_round",
                f"must be in [1, 1e9], got {self.steps_per_round}")
        require(self.pairing in ("best-worst", "all"), "pairing",
                f"must be best-worst or all, got {self.pairing!r}")
        require(self.max_pairs_per_prompt is None or self.max_pairs_per_prompt >= 1,
                "max_pairs_per_prompt", f"must be >= 1 or null, got {self.max_pairs_per_prompt}")
        # as asft pairs refuses --max-pairs-per-prompt without --pairs all: never silently unused
        require(self.max_pairs_per_prompt is None or self.pairing == "all", "max_pairs_per_prompt",
                "applies to pairing: all (best-worst makes one pair per prompt)")
        require(self.selection in ("all", "rso"), "selection", f"must be all or rso, got {self.selection!r}")
        require(0 < self.rso_beta < math.inf, "rso_beta", f"must be > 0, got {self.rso_beta}")
        require(2 <= self.rso_accept <= self.samples, "rso_accept",
                f"must be in [2, samples], got {self.rso_accept}")
        require(0 < self.temperature < math.inf, "temperature",
                f"must be > 0 (0 is greedy: the answers would be the same), got {self.temperature}")
        require(0 < self.top_p <= 1, "top_p", f"must be in (0, 1], got {self.top_p}")
        require(self.max_new_tokens >= 1, "max_new_tokens", f"must be >= 1, got {self.max_new_tokens}")
        require(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
