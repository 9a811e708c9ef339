"""The sampling phase: K answers per prompt from the policy, saved as they are made.

Each prompt's K samples come from generate calls of their own (``rows_per_call`` rows, the
same prompt in every row, so no padding), seeded by :func:`prompt_seed` from the run's seed,
the prompt's index and its text. A prompt's samples therefore depend on nothing else in the
run: not on the other prompts, the order they are done in, ``--num-prompts``, or where an
earlier run stopped, and a resumed run samples exactly what an uninterrupted one would (on
the same device and library versions).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence

from asft.errors import AsftError
from asft.experiments.pairs.config import PairsConfig
from asft.experiments.pairs.items import PromptItem
from asft.experiments.pairs.store import SideFile

Generate = Callable[[PromptItem], list[str]]
SAMPLE_FIELDS = ("samples",)


def prompt_seed(seed: int, index: int, sha: str) -> int:
    """The torch seed of one prompt's samples (< 2**63)."""
    key = json.dumps(["asft-pairs", seed, index, sha]).encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") >> 1


def model_generator(config: PairsConfig) -> Generate:
    """``generate(item)``: the policy's ``config.samples`` answers to ``item`` (the model is
    loaded here, on the GPU when there is one)."""
    import torch

    from asft.evaluate.generation import GenerationConfig, generate_responses
    from asft.model.load import load_model, load_tokenizer

    try:
        tokenizer = load_tokenizer(config.model)
        model = load_model(config.model, dtype=config.dtype)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise AsftError(f"--model {config.model}: cannot load it ({first[:300]})") from None
    if torch.cuda.is_available():
        model = model.cuda()

    def generate(item: PromptItem) -> list[str]:
        settings = GenerationConfig(
            max_new_tokens=config.max_new_tokens, temperature=config.temperature,
            top_p=config.top_p, batch_size=config.rows_per_call,
            seed=prompt_seed(config.seed, item.index, item.sha))
        return generate_responses(model, tokenizer, [item.messages] * config.samples, settings)

    return generate


def sample_all(open_generator: Callable[[], Generate], items: Sequence[PromptItem],
               store: SideFile, samples: int,
               on_done: Callable[[int], None] | None = None) -> dict[int, list[str]]:
    """Every item's samples by index: read from ``store``, or generated (the generator is
    opened only when something is missing) and appended to ``store`` one prompt at a time."""
    out: dict[int, list[str]] = {}
    generate: Generate | None = None
    for item in items:
        record = store.get(item.index, item.sha, item.origin)
        if record is None:
            generate = generate or open_generator()
            texts = list(generate(item))
            if len(texts) != samples:
                raise RuntimeError(f"the generator gave {len(texts)} samples, not {samples}")
            record = {"index": item.index, "sha": item.sha, "prompt": item.messages,
                      "samples": texts}
            store.add(record)
            from asft.train import faults  # here: the model (torch) is loaded by now anyway

            faults.hit("pairs.sampled")
            if on_done is not None:
                on_done(1)
        elif (not isinstance(record["samples"], list) or len(record["samples"]) != samples
              or not all(isinstance(t, str) for t in record["samples"])):
            raise AsftError(f"{store.path}: the record of prompt {item.index + 1} does not hold "
                            f"{samples} sample texts; delete that file to sample again")
        out[item.index] = record["samples"]
    return out
