"""Reference log-probs for losses that need them (``LOSSES[name].needs_reference``), three ways.

- ``copy``: a frozen copy of the reference model scores every batch (one extra forward per
  step, one extra model in memory; under ``distributed.strategy: fsdp`` the copy is sharded
  layer by layer like the policy, with no optimizer, so each process holds 1/N of it).
- ``adapter``: with LoRA, the policy itself with its adapters switched off *is* the
  reference; no extra memory, one extra forward per step.
- ``cache``: the training pairs the run will read (the data order knows them in advance:
  ``max_steps x global batch`` at most) are scored once before training and stored in
  ``<output_dir>/reference_logps.safetensors`` (NaN marks a pair not scored); no extra model
  and no extra forward during training. A short run on a large file waits only for its own
  pairs; a resumed or longer run scores only what the file lacks. While no step has been taken the policy is the reference, so the cache is built
  with the policy itself; only a separate ``reference.model`` (or a resumed run whose cache
  file is gone) loads a model for it.

A loss with ``needs_reference = False`` never reaches this module's loaders: :func:`build`
returns None before anything is loaded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from asft import atomic
from asft.config import Config
from asft.data.collate import responses_per_pair
from asft.losses import LOSSES
from asft.model.scoring import pair_sizes
from asft.progress import progress_bar
from asft.train import sharding
from asft.train.distributed import score_shards

CACHE_FILE = "reference_logps.safetensors"


class Reference(Protocol):
    """Scores a batch with the reference model."""

    strategy: str

    def __call__(self, batch: dict, indices: Sequence[int]) -> torch.Tensor:
        """Summed reference log-probs [K*B] (float32): chosen responses, then rejected, then
        (K = 3, a loss with a third response) the third ones.

        ``indices`` are the batch's positions in the training set (used by the cache).
        """
        ...


def load_reference_model(name: str, dtype: str, trust_remote_code: bool,
                         attn_implementation: str = "auto"):
    """A frozen reference model in eval mode (the single place a reference model is loaded).
    An sdpa model takes the span kernel (:func:`asft.model.spans.adopt`), so that it scores the
    policy's flat batches pair by pair as the policy does; on any other batch it is sdpa."""
    from asft.model import spans
    from asft.model.load import load_model

    model = load_model(name, dtype=dtype, trust_remote_code=trust_remote_code,
                       attn_implementation=attn_implementation)
    spans.adopt(model)
    model.requires_grad_(False)
    return model.eval()


def _score(scorer: Any, batch: dict, model: torch.nn.Module) -> torch.Tensor:
    """Summed log-probs [K*B] under no_grad with ``model`` in eval mode (restored after)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logps, _ = scorer(batch)
    finally:
        model.train(was_training)
    return logps.float()


class CopyReference:
    """A frozen copy of the reference model, prepared by accelerate for evaluation, or, when
    ``shard`` (the policy is sharded), sharded by FSDP2 as the policy is (:func:`sharding.shard`:
    the same layers, the same bf16 compute policy); being frozen, it has no gradients and no
    optimizer state. Its forwards are collectives then: every process scores a batch
    together, which the training step and :func:`score_shards` already do."""

    strategy = "copy"

    def __init__(self, cfg: Config, accelerator: Any, shard: bool = False):
        from asft.model.logprobs import PreferenceScorer

        model = load_reference_model(cfg.reference.model or cfg.model.name, cfg.model.dtype,
                                     cfg.model.trust_remote_code, cfg.model.attn_implementation)
        self.model = model
        scorer = PreferenceScorer(model)
        if shard:
            sharding.shard(scorer.to(accelerator.device), cfg.training.precision,
                           cfg.distributed.cpu_offload)
            self.scorer = scorer
        else:
            self.scorer = accelerator.prepare_model(scorer, evaluation_mode=True)

    def __call__(self, batch: dict, indices: Sequence[int]) -> torch.Tensor:
        return _score(self.scorer, batch, self.model)


class AdapterReference:
    """The policy's base weights: the same forward with the LoRA adapters disabled."""

    strategy = "adapter"

    def __init__(self, scorer: Any, peft_model: Any):
        if not hasattr(peft_model, "disable_adapter"):
            raise ValueError("reference strategy 'adapter' needs a LoRA (peft) model")
        self.scorer = scorer
        self.peft_model = peft_model

    def __call__(self, batch: dict, indices: Sequence[int]) -> torch.Tensor:
        with self.peft_model.disable_adapter():
            return _score(self.scorer, batch, self.peft_model)


class CachedReference:
    """Reference log-probs looked up by training-set index; tensor [N, K] (chosen, rejected and,
    K = 3, the third response), NaN for pairs that were not scored (the run never reads them)."""

    strategy = "cache"

    def __init__(self, table: torch.Tensor):
        self.table = table

    def __call__(self, batch: dict, indices: Sequence[int]) -> torch.Tensor:
        rows = self.table[torch.as_tensor(list(indices), dtype=torch.long)]
        if torch.isnan(rows).any():
            # the data order and the precomputed set disagree: a bug, never a silent NaN loss
            unscored = [i for i, r in zip(indices, rows.tolist()) if math.isnan(r[0])]
            raise RuntimeError(f"reference log-probs of training pairs {unscored} were not precomputed")
        return rows.T.reshape(-1).to(batch["input_ids"].device)


class MultiReference:
    """The primary reference followed by further ones (``reference.models``, for MRPO), whose
    log-probs were cached before training: [(1 + M) * K * B] per batch."""

    def __init__(self, primary: Reference, more: list[CachedReference]):
        self.primary, self.more = primary, more
        self.strategy = primary.strategy

    def __call__(self, batch: dict, indices: Sequence[int]) -> torch.Tensor:
        return torch.cat([self.primary(batch, indices), *(m(batch, indices) for m in self.more)])


def more_cache_file(i: int) -> str:
    """The cache file of the i-th (1-based) model of ``reference.models``."""
    return CACHE_FILE.replace(".safetensors", f"-{i + 1}.safetensors")


def fingerprint(cfg: Config, examples: Sequence[Any]) -> str:
    """Identifies what a cache was computed from: reference model, dtype, layout, packing, token ids."""
    h = hashlib.sha256()
    head = {"model": cfg.reference.model or cfg.model.name, "dtype": cfg.model.dtype,
            "layout": cfg.data.layout, "pack": cfg.data.pack, "n": len(examples)}
    h.update(json.dumps(head, sort_keys=True).encode())
    if hasattr(examples, "digest"):  # a token store (view): its ids are hashed when built
        h.update(examples.digest().encode())
        return h.hexdigest()
    for ex in examples:
        extra = (ex.extra_ids,) if hasattr(ex, "extra_ids") else ()
        for ids in (ex.prompt_ids, ex.chosen_ids, ex.rejected_ids, *extra):
            h.update(len(ids).to_bytes(4, "little"))
            h.update(torch.as_tensor(list(ids), dtype=torch.int64).numpy().tobytes())
    return h.hexdigest()


def _read_cache(path: Path, expected: str) -> torch.Tensor | None:
    try:
        with safe_open(str(path), framework="pt") as f:
            if (f.metadata() or {}).get("fingerprint") != expected:
                return None
            return f.get_tensor("logps")
    except (OSError, ValueError, RuntimeError, KeyError, SafetensorError):
        # safetensors reports a truncated or foreign file as one of these
        return None


def build_cache(cfg: Config, accelerator: Any, examples: Sequence[Any],
                make_batch: Callable[[Sequence[Any]], dict], path: Path, policy: Any,
                log: Callable[[str], None], needed: Sequence[int] | None = None,
                shard: bool = False) -> CachedReference:
    """The cache at ``path``, completed for the pairs at ``needed`` (default: all) and
    rewritten (write aside, rename) when any was missing; scored sharded over the processes
    with :func:`asft.train.distributed.score_shards`, as the probe is.

    ``policy`` is the prepared scorer when the policy is still at its starting point and is
    the reference; None loads the reference model instead (sharded when ``shard``).
    """
    expected = fingerprint(cfg, examples)
    table = _read_cache(path, expected) if path.is_file() else None
    k = responses_per_pair([examples[0]]) if len(examples) else 2
    if table is None or table.shape != (len(examples), k):
        table = torch.full((len(examples), k), math.nan, dtype=torch.float32)
    need = torch.arange(len(examples)) if needed is None else torch.as_tensor(list(needed), dtype=torch.long)
    missing = need[torch.isnan(table[need, 0])].tolist()
    if not missing:
        log(f"reference log-probs: cached in {path}")
        return CachedReference(table)
    scorer = CopyReference(cfg, accelerator, shard).scorer if policy is None else policy
    log(f"reference log-probs: scoring the {len(missing)} of {len(examples)} pairs this run reads "
        "(strategy 'cache')")
    size = pair_sizes(examples)
    missing.sort(key=size.__getitem__, reverse=True)  # similar lengths share a batch: less padding
    show = accelerator.is_main_process and cfg.logging.progress
    with progress_bar(show=show, unit="pairs", transient=True) as bar:
        task = bar.add_task("reference", total=-(-len(missing) // accelerator.num_processes)) if bar else None
        scores = score_shards(accelerator, scorer, examples, make_batch, cfg.training.batch_size,
                              subset=missing, on_batch=(lambda n: bar.advance(task, n)) if bar else None)
    rows = torch.as_tensor(missing, dtype=torch.long)
    table[rows] = scores[:k][:, rows].T.to(torch.float32)  # the K summed log-prob rows
    if accelerator.is_main_process:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic.file(path) as tmp:
            save_file({"logps": table.contiguous()}, str(tmp), metadata={"fingerprint": expected})
    accelerator.wait_for_everyone()
    return CachedReference(table)


def build(
    cfg: Config,
    accelerator: Any,
    *,
    scorer: Any,
    peft_model: Any,
    examples: Sequence[Any],
    make_batch: Callable[[Sequence[Any]], dict],
    output_dir: Path,
    fresh: bool,
    log: Callable[[str], None],
    needed: Sequence[int] | None = None,
) -> Reference | None:
    """The reference for ``cfg``, or None (nothing loaded) when the loss needs none.

    Args:
        scorer: the prepared policy scorer; ``peft_model`` the unwrapped peft model (LoRA) or None.
        examples: the training pairs, indexed as the training loop indexes them.
        make_batch: tokenized pairs -> a collated batch on the device.
        fresh: True when no optimizer step has been taken (the policy is still the reference).
        needed: the training-set indices the run will read (the cache scores only these).
    """
    if not LOSSES[cfg.loss.name].needs_reference:
        return None
    primary = _primary(cfg, accelerator, scorer, peft_model, examples, make_batch, output_dir,
                       fresh, log, needed)
    multi = LOSSES[cfg.loss.name].multi_reference
    if not multi or not cfg.reference.models:
        if cfg.reference.models:
            log(f"reference.models: not read by loss {cfg.loss.name!r} (one reference model)")
        if multi:
            log(f"loss {cfg.loss.name!r}: reference.models is empty, so there is one reference "
                "and it trains as DPO; name a second one with reference.models: [NAME]")
        return primary
    more = []
    for i, name in enumerate(cfg.reference.models):
        # one model in memory at a time: each is loaded, scores the pairs, and is dropped
        log(f"reference model {i + 2}: {name}, log-probs cached before training")
        other = dataclasses.replace(cfg, reference=dataclasses.replace(cfg.reference, model=name))
        more.append(build_cache(other, accelerator, examples, make_batch,
                                output_dir / more_cache_file(i), None, log, needed,
                                sharding.is_sharded(scorer)))
    return MultiReference(primary, more)


def _primary(cfg: Config, accelerator: Any, scorer: Any, peft_model: Any, examples: Sequence[Any],
             make_batch: Callable[[Sequence[Any]], dict], output_dir: Path, fresh: bool,
             log: Callable[[str], None], needed: Sequence[int] | None) -> Reference:
    """The primary reference, by ``reference.strategy``."""
    strategy = cfg.reference.resolved(cfg.lora.enabled)
    shard = sharding.is_sharded(scorer)
    if strategy == "copy":
        log(f"reference model: frozen copy of {cfg.reference.model or cfg.model.name}"
            + (f", sharded (FSDP2) over {accelerator.num_processes} processes" if shard else ""))
        return CopyReference(cfg, accelerator, shard)
    if strategy == "adapter":
        log("reference model: the base weights with the LoRA adapters disabled")
        return AdapterReference(scorer, peft_model)
    policy = scorer if fresh and cfg.reference.model is None else None
    return build_cache(cfg, accelerator, examples, make_batch, output_dir / CACHE_FILE, policy, log,
                       needed, shard)
