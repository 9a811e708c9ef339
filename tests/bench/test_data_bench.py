"""bench/tokenize_speed.py runs end to end (on a tiny tokenizer and a generated HH file)."""

import gzip
import importlib.util
import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "tokenize_speed.py"


def test_tokenize_bench_smoke(tmp_path, monkeypatch):
    from asft.model.tiny import build_tokenizer

    data = tmp_path / "hh.jsonl.gz"
    rows = [{"chosen": f"\n\nHuman: q{i}?\n\nAssistant: yes {i}",
             "rejected": f"\n\nHuman: q{i}?\n\nAssistant: no"} for i in range(30)]
    data.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
    tok_dir = tmp_path / "tok"
    build_tokenizer().save_pretrained(tok_dir)
    out = tmp_path / "result.json"
    spec = importlib.util.spec_from_file_location("tokenize_speed", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    monkeypatch.setattr(sys, "argv", ["tokenize_speed.py", "--data", str(data), "--tokenizer",
                                      str(tok_dir), "--repeats", "1", "--out", str(out)])
    assert bench.main() == 0
    result = json.loads(out.read_text())
    assert result["pairs"] == result["kept"] == 30
    assert result["verified_exact"] == {"sequences": 60, "exact": 60}
    assert len(result["cached_s"]["runs"]) == 1 and result["cpu_s"]["tokenize_s"]["runs"]
