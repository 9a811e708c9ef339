"""Config loading and validation: every error names the file, line and field, with a suggestion."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from asft.config import (
    Config,
    ConfigError,
    field_docs,
    from_dict,
    load_config,
    parse_override,
    to_dict,
    to_yaml,
)
from asft.losses import LOSSES

ROOT = Path(__file__).resolve().parents[2]


def _sections(cls=Config):
    yield cls
    for f in dataclasses.fields(cls):
        default = getattr(cls(), f.name)
        if dataclasses.is_dataclass(default):
            yield from _sections(type(default))


def test_every_field_has_a_docstring():
    for cls in _sections():
        docs = field_docs(cls)
        undocumented = [f.name for f in dataclasses.fields(cls) if not docs.get(f.name)]
        assert not undocumented, f"{cls.__name__}: {undocumented}"


def test_default_config_is_the_default_job():
    cfg = Config()
    assert cfg.model.name == "smollm2-135m"
    assert cfg.loss.name == "asft"
    assert cfg.data.source.startswith("builtin:")
    # the written recipe and the built-in default are the same job
    assert to_dict(load_config(ROOT / "recipes" / "default.yaml")) == to_dict(cfg)


@pytest.mark.parametrize("recipe", sorted((ROOT / "recipes").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_recipe_loads(recipe: Path):
    cfg = load_config(recipe)
    assert cfg.loss.name in LOSSES


def test_resolved_yaml_round_trips_with_comments(tmp_path: Path):
    cfg = load_config(None, ["loss.name=dpo", "loss.hparams.beta=0.2", "optim.lr=3e-6",
                             "lora.enabled=true", "lora.target_modules=[q_proj, v_proj]"])
    text = to_yaml(cfg)
    assert "# Peak learning rate" in text and "# Rank of each adapter." in text
    path = tmp_path / "config.yaml"
    path.write_text(text)
    again = load_config(path)
    assert again == cfg
    assert again.loss.hparams == {"beta": 0.2}  # all hyperparameters resolved and written
    assert again.lora.target_modules == ["q_proj", "v_proj"]


def _error(tmp_path: Path, text: str) -> str:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return str(info.value)


def test_unknown_key_names_file_line_and_suggests(tmp_path: Path):
    msg = _error(tmp_path, "model:\n  name: tiny-llama\n  dtyp: fp32\n")
    assert "c.yaml:3" in msg and "model.dtyp" in msg and "did you mean 'dtype'" in msg


def test_unknown_section_suggests(tmp_path: Path):
    msg = _error(tmp_path, "seed: 1\noptimizer:\n  lr: 0.1\n")
    assert "c.yaml:2" in msg and "did you mean 'optim'" in msg


def test_wrong_type_names_expected_type(tmp_path: Path):
    msg = _error(tmp_path, "training:\n  batch_size: four\n")
    assert "c.yaml:2" in msg and "training.batch_size" in msg and "expected an integer" in msg
    msg = _error(tmp_path, "model:\n  trust_remote_code: 1\n")
    assert "true or false" in msg
    msg = _error(tmp_path, "training:\n  max_steps: 3.5\n")
    assert "training.max_steps" in msg


def test_choice_fields_suggest(tmp_path: Path):
    msg = _error(tmp_path, "model:\n  dtype: bf61\n")
    assert "did you mean 'bf16'" in msg


def test_loss_name_and_hparams_checked_against_registry(tmp_path: Path):
    msg = _error(tmp_path, "loss:\n  name: dpp\n")
    assert "c.yaml:2" in msg and "did you mean 'dpo'" in msg
    msg = _error(tmp_path, "loss:\n  name: dpo\n  hparams:\n    beta: 0.1\n    betta: 2\n")
    assert "c.yaml:5" in msg and "loss.hparams.betta" in msg and "did you mean 'beta'" in msg
    msg = _error(tmp_path, "loss:\n  name: dpo\n  hparams:\n    beta: -1\n")
    assert "beta must be > 0" in msg


def test_range_errors_name_the_field(tmp_path: Path):
    msg = _error(tmp_path, "optim:\n  lr: 0\n")
    assert "c.yaml:2" in msg and "optim.lr" in msg
    msg = _error(tmp_path, "data:\n  max_length: 64\n  max_prompt_length: 64\n")
    assert "data.max_prompt_length" in msg
    msg = _error(tmp_path, "optim:\n  lr: .nan\n")
    assert "finite" in msg


def test_adapter_reference_requires_lora():
    with pytest.raises(ConfigError, match=r"reference\.strategy.*lora\.enabled"):
        load_config(None, ["loss.name=dpo", "reference.strategy=adapter"])
    # a reference-free loss ignores the reference section
    assert load_config(None, ["loss.name=asft", "reference.strategy=adapter"]).loss.name == "asft"


def test_overrides_parse_yaml_scalars_and_report_themselves():
    cfg = load_config(None, ["optim.lr=1e-5", "training.max_steps=null", "lora.enabled=true"])
    assert cfg.optim.lr == 1e-5 and cfg.training.max_steps is None and cfg.lora.enabled
    with pytest.raises(ConfigError, match=r"override optim\.lrr=1: unknown key \(did you mean 'lr'\?\)"):
        load_config(None, ["optim.lrr=1"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_override("optim.lr")
    with pytest.raises(ConfigError, match=r"override seed\.x=1: expected an integer"):
        load_config(None, ["seed.x=1"])
    with pytest.raises(ConfigError, match="is not a section"):
        load_config(None, ["seed=1", "seed.x=1"])


def test_python_construction_is_validated_like_yaml():
    with pytest.raises(ValueError, match="batch_size"):
        from_dict({"training": {"batch_size": 0}})
    cfg = Config(loss={"name": "simpo"})  # nested dicts become sections
    assert cfg.loss.hparams == LOSSES["simpo"].defaults


def test_invalid_yaml_and_non_mapping(tmp_path: Path):
    assert "invalid YAML" in _error(tmp_path, "model: [unclosed\n")
    assert "must be a mapping" in _error(tmp_path, "- a\n- b\n")
    assert load_config(None) == Config()


def test_cli_help_config_and_print_config(capsys):
    from asft.cli import main

    assert main(["train", "--help-config"]) == 0
    out = capsys.readouterr().out
    assert "optim.lr" in out and "Peak learning rate" in out
    assert main(["train", "--print-config", "--loss", "orpo", "--max-steps", "7",
                 "--set", "optim.lr=1e-6"]) == 0
    printed = capsys.readouterr().out
    assert "name: orpo" in printed and "max_steps: 7" in printed and "lr: 1.0e-06" in printed
    assert main(["train", "--loss", "dpp"]) == 1
    assert "did you mean 'dpo'" in capsys.readouterr().err
    from asft.cli import build_parser

    help_text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    assert all(name in help_text for name in LOSSES)  # --loss lists the registry
