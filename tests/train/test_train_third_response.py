"""KTO and TPO through the trainer on the tiny model: unpaired KTO files, gold columns for
TPO, the cached reference of KTO's mismatched completions, and the one-line refusals."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from asft.config import load_config
from asft.errors import AsftError
from asft.train import reference, train


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _unpaired(n: int) -> list[dict]:
    return [{"prompt": f"What is {i} plus {i}?", "completion": f"{2 * i}" if i % 3 else f"{i}",
             "label": bool(i % 3)} for i in range(n)]


def _records(run: Path) -> list[dict]:
    return [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in r]


def _overrides(base: list[str], source: Path, *extra: str) -> list[str]:
    return [*[o for o in base if not o.startswith("data.source")], f"data.source={source}",
            "data.limit=null", *extra]


def test_kto_trains_on_unpaired_examples(tmp_path, tiny_train_overrides):
    data = _write(tmp_path / "kto.jsonl", _unpaired(24))
    cfg = load_config(None, _overrides(tiny_train_overrides, data, "loss.name=kto",
                                       "data.probe_size=0", "optim.lr=1e-3"))
    result = train(cfg)
    records = _records(result.output_dir)
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    for r in records:
        assert math.isfinite(r["loss"]) and r["grad_norm"] > 0 and "kl/z0" in r
        assert r.get("pairs/unscorable", 0) == 0  # one side is enough for KTO
    # at step 1 the policy is the reference: every log-ratio and z0 are 0, each term 1/2
    assert records[0]["loss"] == pytest.approx(0.5, abs=1e-5)
    assert records[0]["kl/z0"] == pytest.approx(0.0, abs=1e-6)


def test_other_losses_refuse_unpaired_data_in_one_line(tmp_path, tiny_train_overrides):
    data = _write(tmp_path / "kto.jsonl", _unpaired(24))
    cfg = load_config(None, _overrides(tiny_train_overrides, data, "loss.name=dpo"))
    with pytest.raises(AsftError, match=r"20 of 20 training examples are unpaired .*loss 'dpo' "
                                        r"needs pairs: use a loss that reads unpaired examples \(kto\)"):
        train(cfg)


def test_kto_file_without_labels_names_the_line(tmp_path, tiny_train_overrides):
    rows = _unpaired(6)
    del rows[3]["label"]
    data = _write(tmp_path / "nolabel.jsonl", rows)
    cfg = load_config(None, _overrides(tiny_train_overrides, data, "loss.name=kto"))
    with pytest.raises(AsftError, match=r"line 4.*label"):
        train(cfg)


def test_kto_cache_reference_holds_the_mismatched_completions(tmp_path, tiny_train_overrides):
    """The cache scores three responses per pair; at step 1 the loss is exactly 1/2 per term,
    with the reference from the cache as from a frozen copy."""
    losses = {}
    for strategy in ("cache", "copy"):
        out = tmp_path / strategy
        cfg = load_config(None, [*tiny_train_overrides, "loss.name=kto", "data.probe_size=0",
                                 f"reference.strategy={strategy}", f"output_dir={out}"])
        result = train(cfg)
        losses[strategy] = [r["loss"] for r in _records(result.output_dir)]
    from safetensors.torch import load_file

    table = load_file(str(tmp_path / "cache" / reference.CACHE_FILE))["logps"]
    assert table.shape[1] == 3 and torch.isfinite(table[~torch.isnan(table[:, 0])]).all()
    assert losses["cache"][0] == pytest.approx(0.5, abs=1e-5)
    assert losses["cache"] == pytest.approx(losses["copy"], abs=1e-4)


def test_tpo_reads_a_gold_column(tmp_path, tiny_train_overrides):
    rows = [{"prompt": f"Add {i} and 1.", "chosen": f"{i + 1}", "rejected": f"{i}",
             "reference_answer": f"The sum is {i + 1}."} for i in range(24)]
    data = _write(tmp_path / "gold.jsonl", rows)
    cfg = load_config(None, _overrides(tiny_train_overrides, data, "loss.name=tpo",
                                       "data.columns={gold: reference_answer}", "data.probe_size=0"))
    result = train(cfg)
    records = _records(result.output_dir)
    assert len(records) == 4 and all(math.isfinite(r["terms/gold"]) for r in records)
    # the gold answers are longer than the chosen ones, so their NLL is not the chosen one's
    assert records[0]["logps/gold"] != pytest.approx(records[0]["logps/chosen"], abs=1e-3)
    del rows[5]["reference_answer"]
    _write(data, rows)
    with pytest.raises(AsftError, match=r"line 6.*reference_answer"):
        train(load_config(None, _overrides(tiny_train_overrides, data, "loss.name=tpo",
                                           "data.columns={gold: reference_answer}",
                                           f"output_dir={tmp_path / 'bad'}")))


def test_tpo_without_a_gold_column_uses_the_chosen_response(tiny_train_overrides):
    cfg = load_config(None, [*tiny_train_overrides, "loss.name=tpo", "data.probe_size=0"])
    records = _records(train(cfg).output_dir)
    for r in records:
        assert r["logps/gold"] == pytest.approx(r["logps/chosen"], abs=1e-6)


def test_mrpo_with_an_agreeing_second_reference_trains_as_dpo(tmp_path, tiny_train_overrides):
    """reference.models holds the policy's own starting point: both references agree, so every
    step's loss equals DPO's; the second reference's log-probs sit in their own cache file."""
    losses = {}
    for loss, extra in (("dpo", []), ("mrpo", ["reference.models=[tiny-llama]"])):
        out = tmp_path / loss
        cfg = load_config(None, [*tiny_train_overrides, f"loss.name={loss}", "data.probe_size=0",
                                 "optim.lr=1e-3", f"output_dir={out}", *extra])
        losses[loss] = [r["loss"] for r in _records(train(cfg).output_dir)]
    assert (tmp_path / "mrpo" / reference.more_cache_file(0)).is_file()
    assert losses["mrpo"] == pytest.approx(losses["dpo"], abs=1e-5)
    assert losses["mrpo"][0] == pytest.approx(math.log(2), abs=1e-5)


def test_mrpo_takes_at_most_one_further_reference(tiny_train_overrides):
    from asft.config import ConfigError

    with pytest.raises(ConfigError, match=r"reference.models.*loss 'mrpo' is defined .* for two references"):
        load_config(None, [*tiny_train_overrides, "loss.name=mrpo", "reference.models=[a, b]"])
