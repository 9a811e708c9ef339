"""Method-spec parsing, and the gradient analysis against the closed forms of
docs (asft-method.md): ASFT dL/ds_w = -(1 + lam), dL/ds_l = lam * P_l / (1 - P_l);
DPO dL/ds_w = -beta * sigma(-z) = -dL/ds_l with z = beta * (s_w - s_l) when both
reference scores are equal."""

from __future__ import annotations

import csv
import math

import pytest

from asft.cli import main
from asft.evaluate.gradients import gradient_table, likelihood_grid
from asft.evaluate.methods import MethodSpec, parse_methods


def test_parse_methods_separates_methods_from_hyperparameters():
    methods = parse_methods("sft,dpo,asft,asft:beta=0.1,sft_weight=0,orpo:lam=0.2")
    assert [(m.name, m.hparams) for m in methods] == [
        ("sft", {}), ("dpo", {}), ("asft", {}), ("asft", {"beta": 0.1, "sft_weight": 0.0}),
        ("orpo", {"lam": 0.2})]
    assert methods[3].label == "asft:beta=0.1,sft_weight=0"
    assert methods[3].slug == "asft-beta0.1-sft_weight0"
    same = parse_methods(["sft; dpo", "asft ; asft:beta=0.1, sft_weight=0", "orpo:lam=0.2"])
    assert same == methods


@pytest.mark.parametrize(("spec", "message"), [
    ("dpo,beta=0.1", "write dpo:beta=0.1"),
    ("beta=0.1", "has no method before it"),
    ("asft:beta=x", "'x' is not a number"),
    ("asft:beta", "expected name:key=value"),
    ("nope", "unknown loss 'nope'"),
    ("asft:gamma=1", "unknown hyperparameter"),
    ("dpo:beta=0", "beta must be > 0"),
    ("asft,asft", "listed twice"),
    (" ; ", "no methods given"),
])
def test_parse_methods_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_methods(spec)


def _rows(rows, method, varied):
    return [r for r in rows if r.method == method and r.varied == varied]


@pytest.mark.parametrize("lam", [1.0, 0.5])
def test_asft_gradients_match_closed_form(lam):
    grid = likelihood_grid(21, 0.01, 0.99)
    method = MethodSpec("asft", {"lam": lam})
    rows = gradient_table([method], grid, fixed=0.3)
    assert len(rows) == 2 * len(grid)
    for r in rows:
        assert r.grad_chosen == pytest.approx(-(1 + lam), rel=1e-9)
        p = r.p_rejected
        assert r.grad_rejected == pytest.approx(lam * p / (1 - p), rel=1e-9)
    swept = _rows(rows, method.label, "rejected")
    assert [r.p_rejected for r in swept] == pytest.approx(grid)
    assert [r.p_chosen for r in swept] == pytest.approx([0.3] * len(grid))


def test_dpo_gradients_equal_and_opposite():
    rows = gradient_table([MethodSpec("dpo", {"beta": 0.5})], likelihood_grid(11), fixed=0.2)
    for r in rows:
        z = 0.5 * (r.s_chosen - r.s_rejected)
        expected = -0.5 / (1 + math.exp(z))  # -beta * sigma(-z)
        assert r.grad_chosen == pytest.approx(expected, rel=1e-9)
        assert r.grad_rejected == pytest.approx(-expected, rel=1e-9)


def test_gradients_command_writes_png_and_csv(tmp_path):
    out = tmp_path / "g"
    assert main(["gradients", "--output", str(out), "--points", "5",
                 "--methods", "asft,dpo,orpo,simpo", "--methods", "asft:beta=0.1,sft_weight=0"]) == 0
    assert (out / "gradients.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with (out / "gradients.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 5 * 2 * 5
    assert {r["method"] for r in rows} == {"asft", "dpo", "orpo", "simpo", "asft:beta=0.1,sft_weight=0"}
    assert all(math.isfinite(float(r["grad_chosen"])) for r in rows)


def test_gradients_command_rejects_bad_spec(tmp_path, capsys):
    assert main(["gradients", "--output", str(tmp_path), "--methods", "asft:lam=-1"]) == 1
    assert "lam must be >= 0" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["kto", "tpo", "tpo_l", "mrpo"])
def test_gradients_of_the_losses_with_more_statistics(name):
    """KTO at z0 = 0, TPO with gold = chosen, MRPO with its single reference: finite, and the
    chosen response is pushed up, the rejected one down."""
    from asft.evaluate.gradients import score_gradients

    g_w, g_l = score_gradients(MethodSpec(name), [-0.5, -1.0], [-0.7, -2.0], -0.8)
    assert (g_w < 0).all() and (g_l > 0).all()
