"""The registry is the one source of loss names and hyperparameters.

- docs/losses.md and README.md hold exactly the table generated from it;
- ``asft losses --markdown`` prints that table and ``--write`` regenerates it;
- every way in (config, method specs, compute) rejects an unknown name the same way, with a
  "did you mean" and the valid choices;
- ``--help-config`` lists the registered names.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from asft.cli import main
from asft.config import ConfigError, load_config
from asft.config.schema import suggest
from asft.evaluate.methods import parse_methods
from asft.losses import LOSSES, LossArgumentError, get_spec, resolve_hparams
from asft.losses.docs import BEGIN, END, markdown_table, splice

ROOT = Path(__file__).resolve().parents[2]
REGENERATE = "asft losses --markdown --write docs/losses.md README.md"


@pytest.mark.parametrize("doc", ["docs/losses.md", "README.md"])
def test_committed_table_is_the_generated_one(doc):
    text = (ROOT / doc).read_text(encoding="utf-8")
    assert splice(text, doc) == text, (
        f"the loss table in {doc} differs from the registry; regenerate it with `{REGENERATE}`"
    )


def test_generated_table_has_one_row_per_loss_with_its_defaults():
    rows = re.findall(r"^\| `(\w+)` \|(.*)\|$", markdown_table(), re.M)
    assert [name for name, _ in rows] == list(LOSSES)
    for name, rest in rows:
        spec = LOSSES[name]
        cells = [c.strip() for c in rest.split(" | ")]
        assert len(cells) == 5, rest
        assert cells[0] == spec.formula and spec.formula, name
        documented = {k: float(v) for k, v in re.findall(r"`(\w+)` = ([-\d.e]+)", cells[1])}
        assert documented == spec.defaults, name
        assert spec.defaults or cells[1] == "none", name
        assert cells[2] == ("yes" if spec.needs_reference else "no"), name
        papers = [p for p in (spec.paper, *spec.related) if p]
        assert re.findall(r"\(https://arxiv\.org/abs/([\d.]+)\)", cells[3]) == papers, name
        assert papers or cells[3] == "-", name
        assert cells[4] == spec.summary, name


def test_cli_markdown_prints_the_table(capsys):
    assert main(["losses", "--markdown"]) == 0
    assert capsys.readouterr().out == markdown_table()


def test_cli_write_regenerates_only_the_marked_section(tmp_path, capsys):
    doc = tmp_path / "doc.md"
    doc.write_text(f"# Title\n\nprose\n\n{BEGIN}\n| stale |\n{END}\n\nmore prose\n")
    assert main(["losses", "--write", str(doc)]) == 0
    text = doc.read_text()
    assert text == f"# Title\n\nprose\n\n{BEGIN}\n\n{markdown_table()}\n{END}\n\nmore prose\n"
    assert main(["losses", "--markdown", "--write", str(doc)]) == 0
    assert doc.read_text() == text
    assert capsys.readouterr().out.splitlines() == [f"{doc}: updated", f"{doc}: up to date"]

    doc.write_text("no markers\n")
    assert main(["losses", "--write", str(doc)]) == 1
    assert "expected one line" in capsys.readouterr().err


def test_unknown_names_suggest_and_list_the_valid_ones():
    with pytest.raises(LossArgumentError, match=r"unknown loss 'dpoo' \(did you mean 'dpo'\?\)") as err:
        get_spec("dpoo")
    assert err.value.hparam is None
    assert ", ".join(sorted(LOSSES)) in str(err.value)
    # the registry words its suggestion exactly as the config loader does
    assert suggest("dpoo", LOSSES) in str(err.value)
    with pytest.raises(LossArgumentError, match=r"betta \(did you mean 'beta'\?\).*valid: beta=2, gamma=0.5") as err:
        resolve_hparams("simpo", betta=1.0)
    assert err.value.hparam == "betta"
    # `name` is positional-only, so a hyperparameter called "name" is judged, not a TypeError
    with pytest.raises(LossArgumentError, match="unknown hyperparameter"):
        resolve_hparams("dpo", name=1.0)


def test_method_specs_use_the_registry_checks():
    with pytest.raises(ValueError, match=r"unknown loss 'simp' \(did you mean 'simpo'\?\)"):
        parse_methods("sft,simp")
    with pytest.raises(ValueError, match=r"unknown hyperparameter\(s\) lamb \(did you mean 'lam'\?\)"):
        parse_methods("orpo:lamb=0.2")


def test_config_errors_point_at_the_field(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("loss:\n  name: dpo\n  hparams:\n    beta: -1\n")
    with pytest.raises(ConfigError, match=r"c\.yaml:4: loss\.hparams\.beta: loss 'dpo': beta must be > 0"):
        load_config(config)
    with pytest.raises(ConfigError, match=r"override loss\.name='hnge': unknown loss 'hnge' \(did you mean 'hinge'\?\)"):
        load_config(None, [("loss.name", "hnge")])
    with pytest.raises(ConfigError, match=r"override loss\.hparams\.name=1: unknown hyperparameter"):
        load_config(None, ["loss.hparams.name=1"])


def test_help_config_lists_the_registered_losses(capsys):
    assert main(["train", "--help-config"]) == 0
    assert f"One of: {', '.join(LOSSES)}." in " ".join(capsys.readouterr().out.split())
