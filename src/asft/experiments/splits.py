"""The pairs a comparison evaluates on: the test pairs and, when a learning rate is chosen,
the validation pairs, disjoint from each other and from every pair a method trains on.

- Training reads the first ``data.limit`` pairs of the training source (``asft compare``
  sets the limit to what the step budget uses; each run then holds ``data.probe_size`` of
  them out as its probe, drawn with its seed).
- Test: the first ``eval_samples`` pairs of the held-out source (by default the training
  source's ``test`` split), as without a learning-rate grid.
- Validation: the ``val_samples`` pairs that follow the first ``data.limit`` in the training
  source (same split, same reading seed), minus any whose prompt also appears among the
  training or test pairs. No run trains on them whatever its seed, because every seed's
  training pairs come from the first ``data.limit``.

All are read with one data seed (the comparison's first seed; it only matters for rated
data, whose rejected completion is drawn), so every job sees the same pairs.
"""

from __future__ import annotations

import json
from dataclasses import replace

from asft.errors import AsftError

TEST = "test"
VALIDATION = "validation"


def eval_source(settings, cfg) -> tuple[str, str | None]:
    """(source, split) of the test pairs."""
    if settings.eval_data is not None:
        return settings.eval_data, settings.eval_split
    return cfg.data.source, settings.eval_split or "test"


def prompt_key(pair) -> str:
    """A pair's prompt as text, to compare prompts across splits."""
    return json.dumps(pair.prompt, sort_keys=True, ensure_ascii=False)


def read_test_pairs(settings, cfg, data_seed: int) -> list:
    """The first ``settings.eval_samples`` pairs of the held-out source, read with the
    training data's spec (format, columns, policies)."""
    from asft.data.spec import read

    source, split = eval_source(settings, cfg)
    spec = replace(cfg.data, source=source, split=split, limit=None)
    return read(spec, seed=data_seed, limit=settings.eval_samples).pairs


def training_and_validation_pairs(settings, cfg, data_seed: int) -> tuple[list, list]:
    """(the pairs training reads, the validation pairs): see the module docstring."""
    from asft.data.spec import read

    n_train = cfg.data.limit
    if n_train is None:
        raise AsftError("choosing a learning rate holds out validation pairs after the training "
                        "pairs, so training must read a bounded prefix of its source: set "
                        "training.max_steps or data.limit")
    spec = replace(cfg.data, limit=None)
    pairs = read(spec, seed=data_seed, limit=n_train + settings.val_samples).pairs
    train, rest = pairs[:n_train], pairs[n_train:]
    seen = {prompt_key(p) for p in train} | {prompt_key(p) for p in read_test_pairs(settings, cfg, data_seed)}
    validation = [p for p in rest if prompt_key(p) not in seen]
    if not validation:
        raise AsftError(f"no validation pairs: {cfg.data.source} has no pairs after the first "
                        f"{n_train} that training reads (or all of them share a prompt with the "
                        "training or test pairs); lower data.limit or training.max_steps, or "
                        "use a larger source")
    return train, validation


def pairs_for(settings, cfg, split: str, data_seed: int) -> list:
    """The pairs of ``split`` (:data:`TEST` or :data:`VALIDATION`)."""
    if split == TEST:
        return read_test_pairs(settings, cfg, data_seed)
    return training_and_validation_pairs(settings, cfg, data_seed)[1]
