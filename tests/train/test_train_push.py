"""``asft train --push-to-hub`` and ``asft push`` end to end on the tiny model, against the local
stand-in for the Hub API (``tests/hub_standin.py``): the final folder arrives byte for byte
with a model card built from the run; a failed push leaves the model on disk and ``asft push``
publishes it later; a missing token stops the command before any training."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from asft.cli import main
from hub_standin import TOKEN, HubStandIn


def _argv(overrides: list[str]) -> list[str]:
    return ["train", *[a for o in overrides for a in ("--set", o)]]


def _last_probe(run: Path) -> dict[str, float]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if "probe/logps/chosen" in r][-1]


def test_train_pushes_the_final_folder_and_a_card_of_the_run(hub_env, tiny_train_overrides, capsys):
    run = Path(tiny_train_overrides[-1].split("=", 1)[1])
    with HubStandIn(TOKEN) as server:
        code = main([*_argv([*tiny_train_overrides, f"hub.endpoint={server.url}", "optim.lr=2e-5"]),
                     "--push-to-hub", "me/tiny-asft"])
        assert code == 0, capsys.readouterr().err
        repo = server.repos["me/tiny-asft"]
    assert repo.private is True and repo.commits == ["Upload model trained with asft"]
    local = {p.name: p.read_bytes() for p in (run / "model").iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md"} <= set(local)
    assert repo.files == local  # every file, identical bytes
    card = local["README.md"].decode()
    assert server.metadata["tags"][:1] == ["asft"] and server.metadata["library_name"] == "transformers"
    assert "`tiny-llama`" in card and "**asft** loss" in card and "| learning rate | 2e-05," in card
    assert "2409.10571" in card and "@article{wang2024asft" in card
    probe = _last_probe(run)
    for key in ("probe/logps/chosen", "probe/logps/rejected", "probe/accuracy"):
        assert f"{probe[key]:.4f}" in card, key
    assert f"at step {probe['step']}" in card
    assert f"hub      {server.url}/me/tiny-asft" in capsys.readouterr().out
    assert "hub:\n" in (run / "config.yaml").read_text() and TOKEN not in (run / "config.yaml").read_text()


def test_a_failed_push_keeps_the_model_and_asft_push_publishes_it_later(hub_env, tiny_train_overrides,
                                                                       capsys):
    run = Path(tiny_train_overrides[-1].split("=", 1)[1])
    with HubStandIn(TOKEN) as server:
        server.fail["create"] = 500
        code = main([*_argv([*tiny_train_overrides, f"hub.endpoint={server.url}",
                             "hub.private=false"]), "--push-to-hub", "me/tiny-asft"])
        out, err = capsys.readouterr()
        assert code == 1 and "me/tiny-asft" not in server.repos
        assert "asft train: 4 steps" in out  # the training's summary came first
        assert f"The trained model is safe in {run / 'model'}" in err
        assert f"`asft push {run} --repo me/tiny-asft --endpoint {server.url}`" in err
        assert TOKEN not in out + err
        from transformers import AutoModelForCausalLM

        AutoModelForCausalLM.from_pretrained(run / "model")  # intact
        weights = (run / "model" / "model.safetensors").read_bytes()

        del server.fail["create"]
        assert main(["push", str(run)]) == 0  # the run's own hub section: repo, endpoint, public
        repo = server.repos["me/tiny-asft"]
    assert repo.private is False and repo.files["model.safetensors"] == weights
    assert f"pushed to {server.url}/me/tiny-asft" in capsys.readouterr().out


def test_no_token_stops_train_before_any_work(hub_env, tiny_train_overrides, capsys):
    run = Path(tiny_train_overrides[-1].split("=", 1)[1])
    hub_env.delenv("HF_TOKEN")
    assert main([*_argv(tiny_train_overrides), "--push-to-hub", "me/tiny-asft"]) == 1
    err = capsys.readouterr().err
    assert "no Hub token was found: set $HF_TOKEN" in err and "hf auth login" in err
    assert not run.exists()  # nothing trained, nothing written


def test_push_refuses_a_folder_that_is_not_a_finished_run(tmp_path, capsys):
    assert main(["push", str(tmp_path)]) == 1
    assert "not a run folder" in capsys.readouterr().err
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"hub": {"repo_id": "me/x"}}))
    assert main(["push", str(tmp_path)]) == 1
    assert "holds no final model" in capsys.readouterr().err
