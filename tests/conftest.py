"""Shared fixtures: an isolated asft cache for the whole session, the tiny model, a training config."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def asft_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ASFT_CACHE points to a session-wide temporary folder, so tests never write to
    ~/.cache/asft and the tiny model is built once per session (subprocesses inherit it)."""
    path = tmp_path_factory.mktemp("asft-cache")
    old = os.environ.get("ASFT_CACHE")
    os.environ["ASFT_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("ASFT_CACHE", None)
    else:
        os.environ["ASFT_CACHE"] = old


@pytest.fixture(scope="session")
def tiny_model_dir(asft_cache: Path) -> Path:
    """Folder of the random ``tiny-llama`` model and tokenizer (built once per session)."""
    from asft.model.load import resolve_model

    return Path(resolve_model("tiny-llama"))


@pytest.fixture
def tiny_train_overrides(tmp_path: Path) -> list[str]:
    """Overrides that make a training config run in about a second on the CPU: tiny-llama in
    fp32 on 40 built-in pairs, 4 steps, no progress bar, no TensorBoard."""
    return [
        "model.name=tiny-llama", "model.dtype=fp32", "training.precision=fp32",
        "data.source=builtin:mixed",
        "data.limit=40", "data.probe_size=4", "training.max_steps=4", "training.batch_size=2",
        "logging.every=1", "logging.probe_every=2", "logging.progress=false",
        "logging.tensorboard=false", f"output_dir={tmp_path / 'run'}",
    ]
