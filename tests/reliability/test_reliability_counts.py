"""The counting behind docs/reliability.md (scripts/reliability_counts.py): hypothesis examples,
faults logged by asft.train.faults and record_property counts, checked on
a small generated test suite whose true counts are known."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestAssertRewriteWarning")

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "reliability_counts.py"


def _script():
    spec = importlib.util.spec_from_file_location("reliability_counts", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SUITE = '''
import pytest
import torch
from hypothesis import given, settings, strategies as st

from asft.train import faults


@pytest.mark.fuzz
@settings(max_examples=7, database=None, derandomize=True)
@given(st.integers())
def test_fuzzed(x):
    assert isinstance(x, int)


@pytest.mark.fuzz
@settings(max_examples=5, database=None, derandomize=True)
@given(st.integers(0, 100))
def test_fuzzed_fails(x):
    assert x < 0


@pytest.mark.fault
def test_faults(monkeypatch, record_property):
    monkeypatch.setenv(faults.ENV, "train.step@1=error,train.step@2=enospc,train.loss=nan")
    faults.reset()
    with pytest.raises(RuntimeError):
        faults.hit("train.step")
    with pytest.raises(OSError):
        faults.hit("train.step")
    assert torch.isnan(faults.poison("train.loss", torch.zeros(())))
    record_property("external_sigkills", 3)
    faults.reset()


@pytest.mark.edge
@pytest.mark.parametrize("v", [1, 2])
def test_edge(v):
    assert v


def test_unmarked():
    pass
'''


def test_counts_on_a_known_suite(pytester, tmp_path):
    script = _script()
    pytester.makepyfile(test_suite=SUITE)
    counts = script.Counts(tmp_path)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-m", "fault or fuzz or edge",
                                          plugins=[counts])
    result.assert_outcomes(passed=4, failed=1, deselected=1)
    summary = script.summarize(counts.tests)
    assert summary["faults"]["fired_inside_asft"] == {"error": 1, "enospc": 1, "nan": 1}
    assert summary["faults"]["external_sigkills"] == 3
    assert summary["faults"]["injected"] == summary["faults"]["survived"] == 6
    # 7 passing examples; the failing property ran >= 1 example before and while shrinking
    fuzzed = next(v for k, v in counts.tests.items() if k.endswith("test_fuzzed"))
    assert fuzzed["examples"] == 7
    assert summary["fuzz"]["hypothesis_tests"] == 2 and summary["fuzz"]["failed"] == 1
    assert summary["fuzz"]["hypothesis_examples"] > 7
    assert summary["edge"]["cases"] == 2
    table = script.markdown(summary)
    assert "| **All faults: injected / survived** | **6 / 6** |" in table
