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


@pytest.fixture
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """ASFT_CACHE pointed at this test's own folder (a token store or model cache built by one
    test is not seen by the next)."""
    monkeypatch.setenv("ASFT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Folder of the tiny test tokenizer alone (no model), built once per module."""
    from asft.model.tiny import build_tokenizer

    path = tmp_path_factory.mktemp("tok")
    build_tokenizer().save_pretrained(path)
    return str(path)


@pytest.fixture
def hub_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """A Hub token (hub_standin.TOKEN) in $HF_TOKEN only: no saved login, no OIDC, not
    offline."""
    from huggingface_hub import constants

    from hub_standin import TOKEN

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    for name in ("HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-saved-token"))
    return monkeypatch
