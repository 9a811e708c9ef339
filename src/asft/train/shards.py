"""Sharded checkpoint state under ``distributed.strategy: fsdp``: each process writes and
reads only its own shards of the weights and of AdamW's state.

Through torch's distributed checkpoint (DCP, ``torch.distributed.checkpoint``) with its
Hugging Face storage: every process writes one safetensors file per folder,
``model/shard-0000<rank+1>-model-00001-of-00001.safetensors`` and the same under
``optimizer/``, holding its pieces of each tensor with their offsets in the file's own
metadata. No pickle is written: no ``.distcp`` files and no ``.metadata`` file (the reader
rebuilds the layout from the safetensors headers), so a checkpoint can be opened without
running code. A replicated tensor (AdamW's step count) is written once, by one process.

Memory: nothing is gathered. The whole-state path (:func:`asft.train.sharding.full_state_dict`)
costs the main process 16 bytes a parameter of CPU memory at every checkpoint (weights and
two AdamW moments at fp32, plus the step); here each process writes what it holds.

Reading goes through the same planner: each process asks for the pieces of its own shards,
which DCP finds in whichever files hold them, so the files can be read back by another
number of processes (resharding). asft still refuses such a resume, because the data order
depends on the global batch (see :func:`asft.train.setup.restore`).

These functions are collectives: every process calls them together. A process whose write
fails raises its OSError; the others raise :class:`asft.train.checkpoint.PeerFailed`, so that
the checkpoint protocol names the process that failed and stops all of them at one point.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import torch

from asft.train import checkpoint as ckpt
from asft.train import faults

MODEL_DIR = "model"
OPTIMIZER_DIR = "optimizer"


def _writer(path: Path) -> Any:
    """A DCP storage writer for this process's shards in ``path`` that marks the point right
    after them for fault injection (``checkpoint.shard``: inside the shard write, before the
    processes agree that the write finished)."""
    from torch.distributed.checkpoint import HuggingFaceStorageWriter

    class _Writer(HuggingFaceStorageWriter):
        def write_data(self, plan: Any, planner: Any) -> Any:
            written = super().write_data(plan, planner)  # synchronous with one thread
            faults.hit("checkpoint.shard")
            return written

    # save_distributed: each process writes its own file and no consolidated copy is made
    return _Writer(str(path), save_distributed=True)


def _rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _save(state: dict[str, torch.Tensor], path: Path) -> None:
    """``dcp.save`` of a flat dict of (D)tensors into ``path``; DCP's one exception for every
    process becomes this process's OSError, or PeerFailed where another process failed."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.api import CheckpointException

    try:
        dcp.save(state, storage_writer=_writer(path))
    except CheckpointException as err:
        mine = err.failures.get(_rank())
        if mine is None:
            raise ckpt.PeerFailed(errno.EIO, f"another process failed to write its shards in {path}") from None
        cause = mine[0] if isinstance(mine, tuple) else mine
        if isinstance(cause, OSError):
            raise cause from None
        raise OSError(errno.EIO, f"{type(cause).__name__}: {cause}", str(path)) from None


def model_state(scorer: Any, names: set[str]) -> dict[str, torch.Tensor]:
    """This process's shards of the parameters named in ``names`` (DTensors under FSDP2; a
    tied weight appears once, under its ``named_parameters`` name)."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return {k: v for k, v in get_model_state_dict(scorer).items() if k in names}


def save(folder: Path, scorer: Any, optimizer: Any, names: set[str], main: bool) -> None:
    """Write this process's shards of the weights named ``names`` and of the optimizer's state
    into ``folder``/model and ``folder``/optimizer; the main process also writes the
    optimizer's param groups and non-tensor state to ``optimizer.json`` (a collective)."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    _save(model_state(scorer, names), folder / MODEL_DIR)
    faults.hit("checkpoint.after_model")
    tensors, meta = ckpt.flatten_optimizer(get_optimizer_state_dict(scorer, optimizer))
    _save(tensors, folder / OPTIMIZER_DIR)
    if main:
        ckpt.write_json(folder / "optimizer.json", meta)
    faults.hit("checkpoint.after_optimizer")


def saved_names(folder: Path) -> set[str]:
    """The tensor names in the shard files of ``folder`` (their headers only)."""
    from safetensors import safe_open

    names: set[str] = set()
    for f in sorted(folder.glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as fh:
            names.update(fh.keys())
    return names


def _load(state: dict[str, torch.Tensor], path: Path) -> None:
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import HuggingFaceStorageReader

    dcp.load(state, storage_reader=HuggingFaceStorageReader(str(path)))


def load(folder: Path, scorer: Any, optimizer: Any, names: set[str]) -> None:
    """Read this process's shards of the weights and the optimizer state of checkpoint
    ``folder`` into ``scorer`` and ``optimizer`` (a collective). CheckpointError when the
    saved weights do not name exactly ``names``."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_optimizer_state_dict,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    saved = saved_names(folder / MODEL_DIR)
    if saved != names:
        missing, extra = sorted(names - saved), sorted(saved - names)
        raise ckpt.CheckpointError(f"{folder}: the saved weights do not fit this model "
                                   f"(missing {missing[:3]}, unexpected {extra[:3]})")
    weights = model_state(scorer, names)
    _load(weights, folder / MODEL_DIR)
    # strict=False: a tied weight's twin is not in the state (it is the same parameter)
    set_model_state_dict(scorer, weights, options=StateDictOptions(strict=False))
    # the template creates the optimizer's state (its shapes and shards) for DCP to fill
    tensors, _ = ckpt.flatten_optimizer(get_optimizer_state_dict(scorer, optimizer))
    _load(tensors, folder / OPTIMIZER_DIR)
    state = ckpt.unflatten_optimizer(tensors, ckpt.load_optimizer_meta(folder))
    set_optimizer_state_dict(scorer, optimizer, optim_state_dict=state)
