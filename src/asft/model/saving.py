"""Writing a model folder that is complete whichever process writes it.

transformers' ``save_pretrained`` writes the weights and ``config.json`` only on rank 0 when a
``torch.distributed`` process group is initialized (``should_save_on_this_rank``), and the
tokenizer files on every rank. asft's model cache (a converted SmolLM2, a tiny random model)
is per machine: on a node whose ranks are not rank 0 the first to arrive builds it, and would
otherwise rename a folder holding only tokenizer files into place, which every later run then
fails to load. :func:`save_complete` writes what ``save_pretrained`` left out.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from asft import atomic


def save_complete(model: Any, tokenizer: Any, folder: Path) -> None:
    """``model`` (safetensors, config, generation config) and ``tokenizer`` into ``folder``."""
    model.save_pretrained(folder, safe_serialization=True)
    if not (folder / "config.json").is_file():
        from safetensors.torch import save_model

        model.config.save_pretrained(folder)
        if getattr(model, "generation_config", None) is not None:
            model.generation_config.save_pretrained(folder)
        # save_model writes tied weights once, as save_pretrained does
        save_model(model, str(folder / "model.safetensors"), metadata={"format": "pt"})
    tokenizer.save_pretrained(folder)


def is_complete(folder: Path) -> bool:
    """Whether a cached model folder has its config and weights."""
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))


def cached_folder(dest: Path, write: Callable[[Path], None]) -> Path:
    """``dest``, built once by ``write(tmp)`` into a temporary folder renamed into place.

    A complete folder is returned as it is; one left incomplete by an older asft (see this
    module's docstring) is discarded and rebuilt; when another process renames its build into
    place first, that build is used.
    """
    if is_complete(dest):
        return dest
    if dest.exists():
        atomic.discard(dest)
    try:
        with atomic.folder(dest, replace=False) as tmp:
            write(tmp)
    except OSError:
        if not is_complete(dest):  # else another process built it first
            raise
    return dest

