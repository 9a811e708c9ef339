"""``distributed.strategy``: DDP through accelerate, or FSDP2 applied by asft itself.

FSDP2 is torch's ``torch.distributed.fsdp.fully_shard``: each decoder layer becomes a unit
whose parameters are all-gathered just before it runs and freed after, so does an LM head not
tied to the embeddings, then the whole :class:`asft.model.logprobs.PreferenceScorer` becomes
the root unit, which holds the embeddings, the final norm and a tied LM head. Sharding the scorer (not the model inside it)
matters: the scorer calls the decoder and then the chunked LM head itself, so the root's
hooks must run around the scorer's forward for the head's weight to be gathered; the root
keeps it gathered through the backward, which the head's custom autograd needs.

asft applies FSDP2 itself rather than through accelerate's plugin, because accelerate falls
back to DDP on CPUs: this way the same code path runs, and is tested, on 2 CPU processes
with gloo. The parameters stay fp32 (the master weights, sharded, as is AdamW's state);
``training.precision: bf16-mixed`` computes in bf16 through ``MixedPrecisionPolicy`` with
fp32 gradient reduction, instead of accelerate's autocast.

Checkpoints under ``fsdp`` are sharded: each process writes its own shards of the weights and
of AdamW's state as safetensors through torch's distributed checkpoint
(:mod:`asft.train.shards`), inside the usual crash-safe protocol (:mod:`asft.train.checkpoint`),
and reads them back on resume; nothing is gathered. Only the final model is gathered
(:func:`full_state_dict`), once, and written as one Hugging Face folder. Not yet under
``fsdp`` (refused at start-up, before any weight loads): LoRA.
The GPU path (NCCL, CPU offload) is untested here: no GPU on the machine that built it.
"""

from __future__ import annotations

from typing import Any

import torch

GIB = 2**30
STATE_BYTES_PER_PARAM = 16  # fp32 weights, gradients and AdamW's two moments


def resolve(strategy: str, num_processes: int, n_params: int, device: torch.device) -> str:
    """``ddp`` or ``fsdp`` for this run (see :class:`asft.config.DistributedConfig`)."""
    if num_processes <= 1:
        return "ddp"  # nothing to shard over; accelerate leaves one process unwrapped
    if strategy != "auto":
        return strategy
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
        if STATE_BYTES_PER_PARAM * n_params > 0.8 * total:
            return "fsdp"
    return "ddp"


def refusal(cfg: Any) -> str | None:
    """Why ``cfg`` cannot run under ``fsdp`` yet, or None."""
    if cfg.lora.enabled:
        return "LoRA is not supported under distributed.strategy: fsdp yet; use ddp"
    return None


def decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The model's repeated blocks: modules whose class transformers names in
    ``_no_split_modules`` (e.g. ``LlamaDecoderLayer``)."""
    names = set(getattr(model, "_no_split_modules", None) or [])
    layers = [m for m in model.modules() if type(m).__name__ in names]
    if not layers:
        raise ValueError(f"{type(model).__name__} names no decoder layer class "
                         "(_no_split_modules): cannot shard it layer by layer")
    return layers


def own_head(model: torch.nn.Module) -> torch.nn.Module | None:
    """The LM head when it can be a unit of its own (its weight is not tied to the input
    embeddings, which the root holds), else None."""
    lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    head, embed = lm.get_output_embeddings(), lm.get_input_embeddings()
    if head is None or head.weight is embed.weight:
        return None
    return head


def shard(scorer: torch.nn.Module, precision: str, cpu_offload: bool) -> tuple[int, bool]:
    """Apply FSDP2 in place: each decoder layer of ``scorer.model``, the LM head when it is not
    tied to the embeddings, then ``scorer``. Returns the number of layers sharded on their own
    and whether the head is one: its weight is then gathered only while the chunked head runs
    (:func:`asft.model.logprobs.target_logprobs` calls it through the unit's hooks), not for
    the whole forward and backward, which matters for a large vocabulary."""
    from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, fully_shard

    kwargs: dict[str, Any] = {}
    if precision == "bf16-mixed":
        kwargs["mp_policy"] = MixedPrecisionPolicy(param_dtype=torch.bfloat16,
                                                   reduce_dtype=torch.float32)
    if cpu_offload:
        kwargs["offload_policy"] = CPUOffloadPolicy()
    layers = decoder_layers(scorer.model)
    for layer in layers:
        fully_shard(layer, **kwargs)
    head = own_head(scorer.model)
    if head is not None:
        fully_shard(head, **kwargs)
    fully_shard(scorer, **kwargs)
    return len(layers), head is not None


def is_sharded(module: Any) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(module, FSDPModule)


def full_state_dict(accelerator: Any, scorer: Any) -> dict[str, torch.Tensor]:
    """The scorer's whole state dict on the main process (a collective under ``fsdp``: every
    process calls it; the others get an empty dict)."""
    if not is_sharded(scorer):
        return accelerator.get_state_dict(scorer)
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(scorer, options=StateDictOptions(full_state_dict=True,
                                                                 cpu_offload=True))


def as_float(value: Any) -> float:
    """A scalar tensor (a DTensor under ``fsdp``: its full value) as a Python float."""
    if hasattr(value, "full_tensor"):
        value = value.full_tensor()
    return float(value)
