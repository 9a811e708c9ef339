"""Crash-safe training checkpoints: written aside, sealed with a manifest, renamed into place.

Layout of ``<output_dir>/checkpoints/step-0000040/``:

    model.safetensors       trainable parameters (all weights, or only the LoRA adapters)
    optimizer.safetensors   optimizer state tensors ("state.<param index>.<name>")
    optimizer.json          optimizer param groups and non-tensor state
    trainer_state.json      step, scheduler, data position, world size, logging state
    rank-00000.safetensors  per process: torch (and CUDA) RNG states and running metric sums
    rank-00000.json         per process: Python and NumPy RNG states
    config.yaml             the resolved config of the run
    COMPLETE                manifest: size and SHA-256 of every file above; written last

Under ``distributed.strategy: fsdp`` the checkpoint is *sharded* (``"layout": "sharded"`` in
the manifest): instead of ``model.safetensors`` and ``optimizer.safetensors``, every process
writes its own shards of the weights and of AdamW's state through torch's distributed
checkpoint (DCP) as safetensors, ``model/shard-00001-model-00001-of-00001.safetensors`` and
``optimizer/shard-0000<rank+1>-...`` (each tensor's offsets in the file's metadata: no
``.metadata`` pickle), see :mod:`asft.train.sharding`. The same temporary folder, manifest
and rename seal them, so a sharded checkpoint is complete or ignored as a whole.

A checkpoint is written into ``checkpoints/.tmp-step-0000040``, every file is fsynced, the
manifest goes in last, and only then is the folder renamed to its final name (an atomic
rename on POSIX file systems). A process killed at any moment therefore leaves either a
complete, verifiable checkpoint or a temporary folder that resume ignores and cleans up.
Old checkpoints are deleted by renaming them to ``.trash-*`` first, so a half-deleted folder
never looks like a checkpoint. Only safetensors and JSON are written: nothing is pickled.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from asft import atomic
from asft.data.cache import sha256_file as sha256  # the manifest's file hash
from asft.errors import AsftError
from asft.train import faults

DIRNAME = "checkpoints"
MARKER = "COMPLETE"
FORMAT_VERSION = 1
_STEP_DIR = re.compile(r"^step-(\d{7,})$")
REQUIRED = ("optimizer.json", "trainer_state.json", "config.yaml", "rank-00000.safetensors",
            "rank-00000.json")
# what each layout adds: whole-state files, or at least one shard in each shard folder
LAYOUTS = {"full": ("model.safetensors", "optimizer.safetensors"), "sharded": ("model/", "optimizer/")}


class CheckpointError(AsftError):
    """A checkpoint could not be written or no checkpoint can be resumed (message says why)."""


class PeerFailed(OSError):
    """Raised in a process whose part of a collective write succeeded while another
    process's failed: this one stops too, and that one's error is what gets reported."""


class Collective(Protocol):
    """What checkpointing needs from ``accelerate.Accelerator`` (a stub will do in tests)."""

    is_main_process: bool
    process_index: int
    num_processes: int
    device: torch.device

    def wait_for_everyone(self) -> None: ...

    def reduce(self, tensor: torch.Tensor, reduction: str = "sum") -> torch.Tensor: ...


def step_dirname(step: int) -> str:
    """``step-0000040`` for step 40 (zero-padded so that names sort by step)."""
    return f"step-{step:07d}"


def step_of(path: Path) -> int | None:
    """The step encoded in a checkpoint folder's name, or None for other names."""
    m = _STEP_DIR.match(path.name)
    return int(m.group(1)) if m else None


# ---------------------------------------------------------------------------------------------
# Durable file writes


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as JSON, atomically and durably (fsynced)."""
    atomic.write_json(path, obj, indent=1, fsync=True)


def write_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Write a safetensors file (contiguous CPU copies), atomically and durably; OSError when
    it fails."""
    with atomic.file(path, fsync=True) as tmp:
        try:
            save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp),
                      metadata={"format": "pt"})
        except SafetensorError as err:
            raise as_os_error(err, path) from None


_OS_ERROR = re.compile(r"os error (\d+)")


def as_os_error(err: Exception, path: Path) -> OSError:
    """The OSError inside a safetensors error: its Rust writer reports a full disk as
    ``SafetensorError("... No space left on device (os error 28)")``, not as an OSError."""
    m = _OS_ERROR.search(str(err))
    if m is None:
        return OSError(errno.EIO, str(err), str(path))
    return OSError(int(m.group(1)), os.strerror(int(m.group(1))), str(path))


# ---------------------------------------------------------------------------------------------
# Optimizer and RNG state as safetensors + JSON


def flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A torch optimizer ``state_dict`` split into tensors and JSON-able metadata."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, st in state["state"].items():
        for key, value in st.items():
            if torch.is_tensor(value):
                tensors[f"state.{idx}.{key}"] = value
            else:
                scalars.setdefault(str(idx), {})[key] = value
    groups = []
    for group in state["param_groups"]:
        bad = [k for k, v in group.items() if torch.is_tensor(v)]
        if bad:
            raise CheckpointError(f"optimizer param group holds tensors ({', '.join(bad)}); "
                                  "use plain numbers for optimizer hyperparameters")
        groups.append(group)
    # keys are parameter indices (a plain state_dict) or names (FSDP's whole state, by name)
    meta = {"param_groups": groups, "scalars": scalars,
            "indices": [i if isinstance(i, str) else int(i) for i in state["state"]]}
    return tensors, meta


def unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`flatten_optimizer`."""
    state: dict[Any, dict[str, Any]] = {i: dict(meta["scalars"].get(str(i), {}))
                                        for i in meta["indices"]}
    keys = {str(i): i for i in meta["indices"]}
    for name, value in tensors.items():
        head, key = name.rsplit(".", 1)  # a state key (exp_avg, step) has no dot; a name may
        state[keys[head.removeprefix("state.")]][key] = value
    groups = [{k: (tuple(v) if isinstance(v, list) and k != "params" else v) for k, v in g.items()}
              for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


def capture_rng() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The Python, NumPy, torch and CUDA RNG states of this process (tensors, JSON)."""
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    meta = {"numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
            "python": [version, list(internal), gauss]}
    return tensors, meta


def restore_rng(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Set the RNG states captured by :func:`capture_rng`."""
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    name, keys, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = meta["python"]
    random.setstate((version, tuple(internal), gauss))


# ---------------------------------------------------------------------------------------------
# Verification and discovery


def verify(path: Path) -> str | None:
    """None when ``path`` is a complete, intact checkpoint; otherwise the reason it is not."""
    if not path.is_dir():
        return "not a folder"
    marker = path / MARKER
    if not marker.is_file():
        return f"no {MARKER} marker: the write was interrupted before it finished"
    try:
        manifest = json.loads(marker.read_text())
        files = manifest["files"]
        if manifest.get("format") != FORMAT_VERSION or not isinstance(files, dict):
            return f"{MARKER} has an unknown format"
    except (OSError, ValueError, KeyError, TypeError):
        return f"{MARKER} marker is unreadable or truncated"
    layout = manifest.get("layout", "full")
    if layout not in LAYOUTS:
        return f"{MARKER} names an unknown layout {layout!r}"
    missing = [name for name in REQUIRED + LAYOUTS[layout]
               if not any(f == name or (name.endswith("/") and f.startswith(name)) for f in files)]
    if missing:
        return f"manifest lacks {', '.join(missing)}"
    for name, info in files.items():
        f = path / name
        if not f.is_file():
            return f"{name} is missing"
        try:
            size = f.stat().st_size
            if size != info["bytes"]:
                return f"{name} has {size} bytes, the manifest says {info['bytes']} (truncated or replaced)"
            if sha256(f) != info["sha256"]:
                return f"{name} does not match its SHA-256 in the manifest (corrupted)"
        except (OSError, KeyError, TypeError):
            return f"{name} cannot be checked"
    return None


def layout_of(path: Path) -> str:
    """``full`` or ``sharded``: how checkpoint ``path`` (a verified one) holds its state."""
    return json.loads((path / MARKER).read_text()).get("layout", "full")


def candidates(root: Path) -> list[Path]:
    """Checkpoint folders under ``root`` (complete or not), newest step first."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if step_of(p) is not None]
    return sorted(found, key=lambda p: step_of(p) or 0, reverse=True)


def find_latest(root: Path) -> tuple[Path | None, list[str]]:
    """The newest complete checkpoint under ``root`` and why each newer candidate was skipped."""
    skipped = []
    for path in candidates(root):
        problem = verify(path)
        if problem is None:
            return path, skipped
        skipped.append(f"{path.name}: {problem}")
    return None, skipped


def resume_point(output_dir: Path) -> tuple[Path | None, list[str]]:
    """The checkpoint ``--resume`` continues from, and notes on skipped ones.

    Returns (None, notes) when the run has no checkpoint folder at all (nothing to resume, a
    fresh start); raises :class:`CheckpointError` explaining every candidate when checkpoints
    exist but none is complete.
    """
    root = output_dir / DIRNAME
    path, skipped = find_latest(root)
    if path is None and skipped:
        raise CheckpointError(
            f"cannot resume from {root}: no complete checkpoint.\n  "
            + "\n  ".join(skipped)
            + "\nRemove the damaged folders (or the whole output folder) to start again."
        )
    return path, skipped


# ---------------------------------------------------------------------------------------------
# Writing


def _failures(comm: Collective, error: OSError | None) -> dict[int, int]:
    """{rank: errno} of every process whose write failed, the same on every process (errno -1
    when the error carried none). One all-reduce of a [processes] vector."""
    if comm.num_processes == 1:
        return {} if error is None else {0: error.errno or -1}
    codes = torch.zeros(comm.num_processes, device=comm.device)
    if error is not None:
        codes[comm.process_index] = float(error.errno or -1)
    codes = comm.reduce(codes, "sum")
    return {rank: int(code) for rank, code in enumerate(codes.tolist()) if code != 0}


def _prune_hit() -> None:
    faults.hit("checkpoint.prune")


def clean_stale(root: Path) -> list[str]:
    """Remove temporary and trash folders left by killed processes; returns their names."""
    removed = []
    if root.is_dir():
        for p in root.iterdir():
            if p.is_dir() and (p.name.startswith(".tmp-") or p.name.startswith(".trash-")):
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p.name)
    return removed


def prune(root: Path, keep_last: int, current: int) -> list[str]:
    """Delete complete checkpoints older than the newest ``keep_last``, and damaged folders of
    steps before ``current`` (superseded by a complete one). Returns the names removed."""
    removed = []
    complete = 0
    for path in candidates(root):
        step = step_of(path) or 0
        has_marker = (path / MARKER).is_file()
        if has_marker and step <= current:
            complete += 1
            if complete <= keep_last:
                continue
        elif has_marker or step >= current:
            continue
        atomic.discard(path, root / f".trash-{path.name}", on_trashed=_prune_hit)
        removed.append(path.name)
    return removed


class _Write:
    """One checkpoint write shared by every process: the first OSError of each process is
    kept, and :meth:`check` turns a failure anywhere into CheckpointError everywhere."""

    def __init__(self, comm: Collective, root: Path, step: int):
        self.comm, self.root = comm, root
        self.final = root / step_dirname(step)
        self.tmp = root / f".tmp-{self.final.name}"
        self.error: OSError | None = None
        self.stopped = False  # another process failed inside a collective write

    def attempt(self, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` unless this process already failed or stopped; keep its OSError."""
        if self.error is None and not self.stopped:
            try:
                fn(*args)
            except PeerFailed:
                self.stopped = True
            except OSError as err:
                self.error = err

    def check(self) -> None:
        """Raise CheckpointError on every process when any process failed so far (collective);
        the main process removes the partial write first."""
        failed = _failures(self.comm, self.error)
        if not failed:
            return
        if self.comm.is_main_process:
            shutil.rmtree(self.tmp, ignore_errors=True)
        if self.error is not None:
            reason = f"{self.error.strerror or self.error}"
        else:  # name the processes that failed and why, so no log needs to be searched
            reason = "; ".join(f"process {rank} failed: {os.strerror(code) if code > 0 else 'error'}"
                               for rank, code in sorted(failed.items()))
        earlier = [p.name for p in candidates(self.root) if (p / MARKER).is_file()]
        keep = f"newest earlier checkpoint {earlier[0]} untouched" if earlier else "no earlier checkpoint"
        raise CheckpointError(f"could not write checkpoint {self.final.name} in {self.root}: {reason}; "
                              f"the partial write was removed ({keep})")


def _write_shared(tmp: Path, step: int, model_state: Callable[[], dict[str, torch.Tensor]] | None,
                  optimizer_state: Callable[[], dict[str, Any]] | None,
                  trainer_state: dict[str, Any], config_text: str) -> None:
    """The main process's part: a fresh temporary folder, the weights and the optimizer state
    (unless every process writes its shards of them), the trainer state and the config."""
    atomic.fresh_folder(tmp)
    faults.hit("checkpoint.begin")
    if model_state is not None and optimizer_state is not None:
        write_tensors(tmp / "model.safetensors", model_state())
        faults.hit("checkpoint.after_model")
        tensors, meta = flatten_optimizer(optimizer_state())
        write_tensors(tmp / "optimizer.safetensors", tensors)
        write_json(tmp / "optimizer.json", meta)
        faults.hit("checkpoint.after_optimizer")
    write_json(tmp / "trainer_state.json", {"format": FORMAT_VERSION, "step": step, **trainer_state})
    atomic.write_text(tmp / "config.yaml", config_text, fsync=True)


def _write_rank(tmp: Path, rank: int, rank_tensors: dict[str, torch.Tensor],
                rank_meta: dict[str, Any]) -> None:
    """Every process's part: its own state, merged with its RNG states."""
    rng_tensors, rng_meta = capture_rng()
    name = f"rank-{rank:05d}"
    write_tensors(tmp / f"{name}.safetensors", {**rank_tensors, **rng_tensors})
    write_json(tmp / f"{name}.json", {**rank_meta, **rng_meta})
    faults.hit("checkpoint.after_rank_state")


def _seal(tmp: Path, final: Path, step: int, layout: str) -> None:
    """The manifest last, then the atomic rename of the folder to its final name."""
    faults.hit("checkpoint.before_manifest")
    files = {p.relative_to(tmp).as_posix(): {"bytes": p.stat().st_size, "sha256": sha256(p)}
             for p in sorted(tmp.rglob("*")) if p.is_file()}
    write_json(tmp / MARKER, {"format": FORMAT_VERSION, "step": step, "layout": layout,
                              "files": files})
    for sub in sorted(p for p in tmp.rglob("*") if p.is_dir()):
        atomic.fsync_path(sub)  # the shard folders' entries, before the folder is sealed
    atomic.fsync_path(tmp)
    faults.hit("checkpoint.before_rename")
    # Only an incomplete or damaged folder can already hold a step not yet reached.
    atomic.move_into_place(tmp, final, durable=True, on_trashed=_prune_hit)
    faults.hit("checkpoint.after_rename")


def save(
    comm: Collective,
    root: Path,
    step: int,
    *,
    model_state: Callable[[], dict[str, torch.Tensor]] | None,
    optimizer_state: Callable[[], dict[str, Any]] | None,
    trainer_state: dict[str, Any],
    rank_tensors: dict[str, torch.Tensor],
    rank_meta: dict[str, Any],
    config_text: str,
    keep_last: int,
    shards: Callable[[Path], None] | None = None,
) -> Path:
    """Write checkpoint ``step`` under ``root``; every process calls this together.

    Either ``model_state`` and ``optimizer_state`` are given, called on the main process only
    (the whole states), or ``shards``: called on every process together with the temporary
    folder, it writes each process's shards of both (a collective; it raises
    :class:`PeerFailed` where another process's part failed). ``rank_tensors``/``rank_meta``
    hold this process's own state
    (merged with its RNG states). Raises :class:`CheckpointError` on every process when any
    process fails to write (a full disk, say); the temporary folder is then removed and the
    earlier checkpoints are untouched.
    """
    write = _Write(comm, root, step)
    if comm.is_main_process:
        write.attempt(_write_shared, write.tmp, step, model_state, optimizer_state, trainer_state,
                      config_text)
    write.check()
    if shards is not None:
        write.attempt(shards, write.tmp)
        write.check()
    write.attempt(_write_rank, write.tmp, comm.process_index, rank_tensors, rank_meta)
    write.check()
    if comm.is_main_process:
        write.attempt(_seal, write.tmp, write.final, step, "full" if shards is None else "sharded")
    write.check()
    if comm.is_main_process:
        # A leftover old checkpoint costs disk space, never correctness.
        with contextlib.suppress(OSError):
            prune(root, keep_last, step)
    comm.wait_for_everyone()
    return write.final


# ---------------------------------------------------------------------------------------------
# Reading


def load_model_state(path: Path) -> dict[str, torch.Tensor]:
    """The trainable parameters saved in checkpoint ``path``."""
    return load_file(str(path / "model.safetensors"))


def load_optimizer_meta(path: Path) -> dict[str, Any]:
    """The optimizer's param groups and non-tensor state saved in checkpoint ``path``."""
    return json.loads((path / "optimizer.json").read_text())


def load_optimizer_state(path: Path) -> dict[str, Any]:
    """The optimizer ``state_dict`` saved in (full-layout) checkpoint ``path``."""
    return unflatten_optimizer(load_file(str(path / "optimizer.safetensors")),
                               load_optimizer_meta(path))


def load_trainer_state(path: Path) -> dict[str, Any]:
    """The ``trainer_state.json`` of checkpoint ``path``."""
    return json.loads((path / "trainer_state.json").read_text())


def load_rank_state(path: Path, rank: int) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """This process's saved tensors and JSON (RNG states restored by the caller)."""
    name = f"rank-{rank:05d}"
    if not (path / f"{name}.json").is_file():
        raise CheckpointError(f"{path} has no state for process {rank}: it was written by fewer processes")
    return load_file(str(path / f"{name}.safetensors")), json.loads((path / f"{name}.json").read_text())
