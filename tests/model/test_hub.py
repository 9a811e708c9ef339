"""Publishing to the Hub: the ``hub`` config section, the model card, and :func:`push` against a
local stand-in for the Hub's HTTP API (``tests/hub_standin.py``; no network)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from asft.config import ConfigError, HubConfig, load_config
from asft.model import hub
from asft.model.card import CITATION, RunFacts, base_model_id, dataset_id, model_card
from asft.model.hub import HubError, push
from hub_standin import TOKEN, HubStandIn


@pytest.fixture
def model_folder(tmp_path) -> Path:
    """A small stand-in for a final model folder (bytes that must arrive unchanged)."""
    folder = tmp_path / "run" / "model"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text('{"model_type": "llama"}\n')
    (folder / "model.safetensors").write_bytes(bytes(range(256)) * 64)
    (folder / "tokenizer.json").write_text('{"version": "1.0"}\n')
    (folder / "tokenizer_config.json").write_text("{}\n")
    return folder


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_hub_section_is_validated_and_set_from_the_command_line():
    from asft.cli import build_parser
    from asft.commands.train import overrides_from_args

    assert load_config(None).hub == HubConfig() and HubConfig().repo_id is None  # off
    args = build_parser().parse_args(["train", "--push-to-hub", "me/model", "--set", "hub.private=false"])
    cfg = load_config(None, overrides_from_args(args))
    assert cfg.hub.repo_id == "me/model" and cfg.hub.private is False
    for bad, message in (("hub.repo_id=a b", "not a Hub repository id"),
                         ("hub.repo_id=a/b/c", "not a Hub repository id"),
                         ("hub.endpoint=ftp://x", "http:// or https://"),
                         ("hub.token_env=MY-VAR", "name of an environment variable"),
                         ("hub.privat=true", "did you mean 'private'")):
        with pytest.raises(ConfigError, match=message):
            load_config(None, [bad])


def test_a_token_pasted_as_token_env_is_refused_without_being_repeated():
    token = "hf_" + "a1B2c3D4" * 4
    with pytest.raises(ConfigError, match="looks like a Hub token") as err:
        load_config(None, [f"hub.token_env={token}"])
    assert token not in str(err.value)


def test_token_comes_from_the_named_variable_and_its_absence_is_a_clear_error(hub_env):
    cfg = HubConfig(repo_id="me/model", token_env="MY_HUB_TOKEN")
    hub_env.delenv("HF_TOKEN")
    with pytest.raises(HubError, match=r"no Hub token was found: set \$MY_HUB_TOKEN"):
        hub.token(cfg)
    hub_env.setenv("MY_HUB_TOKEN", "hf_other")
    assert hub.token(cfg) == "hf_other"
    from huggingface_hub import constants

    hub_env.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubError, match="HF_HUB_OFFLINE"):
        hub.token(cfg)


def test_card_metadata_names_base_model_data_and_licence():
    cfg = load_config(None, ["data.source=HuggingFaceH4/ultrafeedback_binarized", "loss.name=orpo"])
    card = model_card(cfg, RunFacts(steps=10, pairs_seen=40), "me/model")
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert front["license"] == "apache-2.0" and front["library_name"] == "transformers"
    assert front["datasets"] == ["HuggingFaceH4/ultrafeedback_binarized"]
    assert {"asft", "orpo"} <= set(front["tags"])
    assert CITATION in card and "2409.10571" in card and "2403.07691" in card  # ORPO's paper
    assert "No held-out probe" in card
    assert base_model_id("tiny-llama") is None and base_model_id("meta-llama/Llama-3.1-8B") == "meta-llama/Llama-3.1-8B"
    assert dataset_id("builtin:mixed") is None and dataset_id("pairs.jsonl") is None
    adapter = load_config(None, ["lora.enabled=true", "lora.merge_on_save=false", "hub.license=mit"])
    front = yaml.safe_load(model_card(adapter, RunFacts()).split("---\n")[1])
    assert front["library_name"] == "peft" and front["license"] == "mit" and "lora" in front["tags"]


@pytest.mark.parametrize("lfs", [False, True], ids=["regular", "lfs"])
def test_push_uploads_every_file_of_the_folder_and_the_card(hub_env, model_folder, lfs):
    from huggingface_hub import constants

    if lfs:  # the LFS transfer huggingface_hub uses without hf_xet (see hub_standin)
        hub_env.setattr(constants, "HF_HUB_DISABLE_XET", True)
    before = _files(model_folder)
    with HubStandIn(TOKEN, lfs_suffixes=(".safetensors",) if lfs else ()) as server:
        cfg = HubConfig(repo_id="me/model", endpoint=server.url, commit_message="first")
        url = push(model_folder, cfg, "---\nlibrary_name: transformers\n---\n# card\n")
        assert url == f"{server.url}/me/model"
        repo = server.repos["me/model"]
        assert server.calls[0] == "create" and "commit" in server.calls
        assert repo.private is True and repo.commits == ["first"]
        assert repo.files == {**before, "README.md": b"---\nlibrary_name: transformers\n---\n# card\n"}
        assert repo.lfs_paths == ({"model.safetensors"} if lfs else set())
        # pushing again reuses the repository (exist_ok) and commits anew
        push(model_folder, HubConfig(repo_id="me/model", endpoint=server.url, private=False), "# v2\n")
        assert repo.private is True and len(repo.commits) == 2 and repo.files["README.md"] == b"# v2\n"


@pytest.mark.parametrize("where, status, message", [
    ("create", 500, "HTTP 500"),
    ("commit", 401, "the token was refused"),
    ("preupload", 403, "may not write to this namespace"),
])
def test_a_failed_push_says_the_model_is_safe_and_how_to_push_again(hub_env, model_folder, where,
                                                                    status, message):
    before = _files(model_folder)
    with HubStandIn(TOKEN) as server:
        server.fail[where] = status
        cfg = HubConfig(repo_id="me/model", endpoint=server.url)
        with pytest.raises(HubError) as err:
            push(model_folder, cfg, "# card\n", again="asft push RUN")
    text = str(err.value)
    assert message in text and f"safe in {model_folder}" in text and "`asft push RUN`" in text
    assert TOKEN not in text
    after = _files(model_folder)
    assert after.pop("README.md") == b"# card\n" and after == before


def test_a_wrong_token_and_an_unreachable_hub_are_clear_errors(hub_env, model_folder):
    with HubStandIn("hf_the_right_token") as server, pytest.raises(HubError, match="HTTP 401"):
        push(model_folder, HubConfig(repo_id="me/model", endpoint=server.url), "# card\n")
    closed = f"http://127.0.0.1:{server.server.server_address[1]}"
    with pytest.raises(HubError, match=r"could not push .* safe in"):
        push(model_folder, HubConfig(repo_id="me/model", endpoint=closed), "# card\n")
    assert (model_folder / "model.safetensors").read_bytes() == bytes(range(256)) * 64
