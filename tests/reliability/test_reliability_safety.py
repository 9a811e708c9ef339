"""Safety: ``trust_remote_code`` stays off unless asked; a run writes weights only as
safetensors (nothing pickled: no .bin/.pt, no torch.save, no pickle or zip payloads); the
judge's API key appears in no file, no output and no error message, even when the judge
echoes it back in its error replies."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open

from asft.config import Config, load_config
from asft.train import train
from fake_judge import JudgeServer

pytestmark = pytest.mark.safety

SRC = Path(__file__).resolve().parents[2] / "src" / "asft"
KEY = "sk-asft-FAKE-KEY-5f3c9a1e7d-must-never-appear"
FAST = ["model.name=tiny-llama", "model.dtype=fp32", "training.precision=fp32",
        "data.source=builtin:mixed", "data.limit=24", "data.probe_size=4",
        "training.batch_size=2", "logging.progress=false"]


# ---------------------------------------------------------------------------------------------
# trust_remote_code


@pytest.fixture
def from_pretrained_calls(monkeypatch) -> list[tuple[str, object]]:
    """Every AutoModelForCausalLM/AutoTokenizer.from_pretrained call: (class, trust_remote_code)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    calls: list[tuple[str, object]] = []
    for cls in (AutoModelForCausalLM, AutoTokenizer):
        original = cls.from_pretrained.__func__

        def spy(klass, *args, _original=original, **kwargs):
            calls.append((klass.__name__, kwargs.get("trust_remote_code", False)))
            return _original(klass, *args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", classmethod(spy))
    return calls


def test_trust_remote_code_defaults_off():
    assert Config().model.trust_remote_code is False
    assert load_config(None).model.trust_remote_code is False  # the default job
    recipes = Path(__file__).resolve().parents[2] / "recipes"
    for recipe in sorted(recipes.glob("*.yaml")):
        assert load_config(recipe).model.trust_remote_code is False, recipe
    found = [str(p) for p in SRC.rglob("*.py") if re.search(r"trust_remote_code\s*=\s*True", p.read_text())]
    assert not found


def test_every_load_passes_trust_remote_code_false_unless_asked(from_pretrained_calls, tmp_path):
    from asft.commands.mt_bench import _generator
    from asft.model.load import load_model, load_tokenizer

    load_tokenizer("tiny-llama")
    load_model("tiny-llama")
    # generation for mt-bench and eval
    args = type("Args", (), {"model": "tiny-llama", "dtype": "fp32", "max_new_tokens": 2,
                             "temperature": 0.0, "batch_size": 1, "seed": 0,
                             "condition_score": None, "condition_template": None,
                             "condition_max_score": None, "attn_implementation": "auto"})()
    _generator(args)
    # training with a reference model copied from the policy: policy, tokenizer, reference
    train(load_config(None, [*FAST, "loss.name=dpo", "reference.strategy=copy",
                             "training.max_steps=1", f"output_dir={tmp_path / 'a'}"]))
    assert len(from_pretrained_calls) >= 6
    assert {trust for _, trust in from_pretrained_calls} == {False}
    from_pretrained_calls.clear()
    # asked for: the policy, its tokenizer and the reference all pass it on
    train(load_config(None, [*FAST, "loss.name=dpo", "reference.strategy=copy",
                             "model.trust_remote_code=true", "training.max_steps=1",
                             f"output_dir={tmp_path / 'b'}"]))
    assert sorted(from_pretrained_calls) == [("AutoModelForCausalLM", True)] * 2 + [("AutoTokenizer", True)]


# ---------------------------------------------------------------------------------------------
# Only safetensors weights


PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".npy", ".h5"}
ALLOWED_SUFFIXES = {".safetensors", ".json", ".jsonl", ".yaml", ".jinja", ".txt", ".md", ""}


def _looks_pickled(data: bytes) -> bool:
    """A pickle stream (protocol 2-5 header) or a zip archive (torch.save's format)."""
    return (len(data) > 1 and data[0] == 0x80 and 2 <= data[1] <= 5) or data.startswith(b"PK\x03\x04")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> list[Path]:
    """Runs that write everything a run can write: checkpoints (full weights, and LoRA), the
    final model (merged, and adapter only), a reference log-prob cache, TensorBoard logs. The
    fake API keys are in the environment, as they would be on a user's machine."""
    base = tmp_path_factory.mktemp("safety")
    keys = {"OPENAI_API_KEY": KEY, "WANDB_API_KEY": KEY, "HF_TOKEN": KEY}
    old = {k: os.environ.get(k) for k in keys}
    os.environ.update(keys)
    try:
        out = []
        for name, extra in (
            ("full-dpo", ["loss.name=dpo", "reference.strategy=cache", "logging.tensorboard=true"]),
            ("lora-adapter", ["lora.enabled=true", "lora.r=4", "lora.merge_on_save=false",
                              "logging.tensorboard=false"]),
        ):
            run = base / name
            train(load_config(None, [*FAST, *extra, "training.max_steps=4", "checkpoint.every=2",
                                     f"output_dir={run}"]))
            out.append(run)
        return out
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_runs_write_only_safetensors_weights(runs, record_property):
    checked = 0
    for run in runs:
        files = [p for p in run.rglob("*") if p.is_file()]
        assert any(p.parent.parent.name == "checkpoints" for p in files)
        for path in files:
            rel = path.relative_to(run)
            assert path.suffix not in PICKLE_SUFFIXES, rel
            assert not _looks_pickled(path.read_bytes()[:4]), rel
            if "tensorboard" not in rel.parts:
                assert path.suffix in ALLOWED_SUFFIXES, rel
            if path.suffix == ".safetensors":
                with safe_open(str(path), framework="pt") as f:
                    assert list(f.keys()), rel
            elif path.suffix in (".json", ".jsonl") or path.name == "COMPLETE":
                for line in path.read_text().splitlines() if path.suffix == ".jsonl" else [path.read_text()]:
                    json.loads(line)
            checked += 1
    names = {p.name for run in runs for p in run.rglob("*.safetensors")}
    assert {"model.safetensors", "optimizer.safetensors", "rank-00000.safetensors",
            "reference_logps.safetensors", "adapter_model.safetensors"} <= names
    record_property("files_scanned", checked)


def test_token_cache_holds_no_objects(runs):
    """The token cache holds token stores: raw integer arrays (.bin) and a JSON header."""
    entries = list((Path(os.environ["ASFT_CACHE"]) / "tokens").glob("store-*"))
    assert entries
    for entry in entries:
        assert sorted(p.name for p in entry.iterdir()) == [
            "header.json", "ids.bin", "indices.bin", "lengths.bin", "starts.bin"], entry
        header = json.loads((entry / "header.json").read_text())
        assert np.dtype(header["dtype"]).kind in "iu", entry


def test_no_pickle_in_the_code():
    pattern = re.compile(r"\btorch\.(save|load)\(|\bimport pickle\b|\bpickle\.|allow_pickle=True|"
                         r"weights_only=False|safe_serialization=False")
    found = [f"{p.relative_to(SRC)}:{n}" for p in SRC.rglob("*.py")
             for n, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert not found


def test_environment_secrets_are_not_written_by_training(runs):
    for run in runs:
        for path in run.rglob("*"):
            if path.is_file():
                assert KEY.encode() not in path.read_bytes(), path


# ---------------------------------------------------------------------------------------------
# The judge's API key


class EchoingJudge(JudgeServer):
    """A judge that answers every request with ``status`` and a body that repeats the request's
    Authorization header, as some misconfigured proxies do."""

    def __init__(self, status: int):
        self.requests = 0
        self.status = status
        super().__init__(self._respond)

    def _respond(self, headers, body):
        self.requests += 1
        return self.status, {"error": f"bad credentials: {headers.get('Authorization')}"}


@pytest.fixture
def question_file(tmp_path) -> Path:
    path = tmp_path / "question.jsonl"
    path.write_text(json.dumps({"question_id": 1, "category": "writing",
                                "turns": ["Say hi.", "Say bye."]}) + "\n")
    return path


def _mt_bench_argv(question_file: Path, out: Path, judge: EchoingJudge) -> list[str]:
    return ["mt-bench", "--model", "tiny-llama", "--output", str(out), "--questions",
            str(question_file), "--judge-base-url", judge.url, "--judge-api-key-env",
            "ASFT_TEST_JUDGE_KEY", "--max-new-tokens", "3", "--judge-retries", "2", "--judge-parallel", "1",
            "--judge-backoff", "0.01"]


def _assert_no_key(out: Path, *texts: str) -> int:
    files = [p for p in out.rglob("*") if p.is_file()]
    for path in files:
        assert KEY.encode() not in path.read_bytes(), path
    for text in texts:
        assert KEY not in text
        assert KEY[8:24] not in text  # not even a fragment of it
    return len(files)


def test_judge_key_never_leaks_from_the_cli(question_file, tmp_path):
    """``asft mt-bench`` as a user runs it, against a judge that rejects the key (HTTP 401) and
    quotes it back: the key is in no output file, not on stdout, not on stderr."""
    judge = EchoingJudge(401)
    out = tmp_path / "out"
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "asft.cli", *_mt_bench_argv(question_file, out, judge)],
            capture_output=True, text=True, timeout=300,
            env={**os.environ, "ASFT_TEST_JUDGE_KEY": KEY, "OMP_NUM_THREADS": "1"})
    finally:
        judge.close()
    assert judge.requests == 1  # 401 is not retried
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "HTTP 401" in proc.stderr and "***" in proc.stderr and "Traceback" not in proc.stderr
    assert "$ASFT_TEST_JUDGE_KEY" in proc.stderr  # the hint names the variable, not its value
    assert _assert_no_key(out, proc.stdout, proc.stderr) >= 1


@pytest.mark.parametrize("status", [500, 429, 400])
def test_judge_key_never_leaks_after_retries(question_file, tmp_path, monkeypatch, capsys, status):
    """Retryable (500, 429) and final (400) errors that quote the key, then a rerun: never in
    the files, the messages or the exception raised."""
    from asft.cli import main

    monkeypatch.setenv("ASFT_TEST_JUDGE_KEY", KEY)
    out = tmp_path / "out"
    judge = EchoingJudge(status)
    try:
        for _ in range(2):  # the rerun resumes from the saved answers and fails the same way
            assert main(_mt_bench_argv(question_file, out, judge)) == 1
    finally:
        judge.close()
    assert judge.requests == 2 * (3 if status in (500, 429) else 1)
    captured = capsys.readouterr()
    assert f"HTTP {status}" in captured.err and "***" in captured.err
    _assert_no_key(out, captured.out, captured.err)
