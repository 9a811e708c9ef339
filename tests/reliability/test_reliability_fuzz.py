"""Fuzzing the readers not covered by tests/data/test_data_fuzz.py and tests/config/test_config_fuzz.py:
MT-Bench questions, reference answers, judge prompts and the answer/judgment logs a rerun reads
back; checkpoint folders (manifest, damage anywhere); metrics.jsonl and config.yaml as
``asft plot`` and ``--resume`` read them; the token and reference-log-prob caches;
``ASFT_FAULTS``; and ``asft train`` command lines (``--set`` overrides included).

The contract: a result, or an error of the documented kind that names the file (and line)
or the option; never another exception from inside a library, never a hang (deadlines).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from asft.evaluate import mt_bench as mb
from asft.train import checkpoint as ckpt
from asft.train import faults

pytestmark = pytest.mark.fuzz

FUZZ = settings(max_examples=100, deadline=5000, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])

json_scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                | st.text(max_size=20))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=15)
MT_KEYS = ["question_id", "category", "turns", "reference", "choices", "index", "name",
           "system_prompt", "prompt_template", "output_format", "turn", "score", "judgment"]
strings = st.lists(st.text(max_size=30), min_size=0, max_size=3)
mt_records = st.dictionaries(
    st.sampled_from(MT_KEYS),
    json_values | strings | st.sampled_from(["writing", "math", "coding", "single-v1"])
    | st.integers(0, 5) | st.lists(st.fixed_dictionaries({"turns": strings}), max_size=2),
    max_size=7)
# Lines of a JSONL file: records, other JSON values, broken or odd lines.
jsonl_lines = st.lists(
    mt_records.map(json.dumps) | json_values.map(json.dumps)
    | st.sampled_from(["", "{", "[" * 5000 + "]" * 5000, '{"question_id": ' + "9" * 5000 + "}",
                       '{"question_id": 1e400, "choices": [{"turns": ["a"]}]}', "\x00\xff"])
    | st.text(max_size=40),
    max_size=6)


def _located(call, path: Path):
    """``call()``'s result, or None after checking that its ValueError names ``path``."""
    try:
        return call()
    except ValueError as err:
        assert str(path) in str(err), err
        assert len(str(err)) < 2000
        return None


# ---------------------------------------------------------------------------------------------
# MT-Bench files


def _write(lines_or_bytes, name: str, tmp: str) -> Path:
    path = Path(tmp) / name
    if isinstance(lines_or_bytes, bytes):
        path.write_bytes(lines_or_bytes)
    else:
        path.write_text("\n".join(lines_or_bytes), encoding="utf-8", errors="surrogatepass")
    return path


def _check_mt_bench_file(content) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = _write(content, "f.jsonl", tmp)
        questions = _located(lambda: mb.load_questions(path), path)
        refs = _located(lambda: mb.load_reference_answers(path), path)
        prompts = _located(lambda: mb.load_judge_prompts(path), path)
        for q in questions or []:
            assert isinstance(q.question_id, int) and q.turns and all(isinstance(t, str) for t in q.turns)
            # what the judge would be sent for this question, with the prompts just read
            for table in (mb.load_judge_prompts(), prompts or {}):
                if not table:
                    continue
                for turn in range(1, min(len(q.turns), 2) + 1):
                    ref = mb.reference_for(q, refs or {})
                    try:
                        mb.judge_messages(table, q, ["answer"] * 2, turn, ref)
                    except ValueError as err:
                        assert f"question {q.question_id}" in str(err)
        for qid, turns in (refs or {}).items():
            assert isinstance(qid, int) and all(isinstance(t, str) for t in turns)


@FUZZ
@given(jsonl_lines)
def test_mt_bench_jsonl_files(lines):
    _check_mt_bench_file(lines)


@FUZZ
@given(st.binary(max_size=300))
def test_mt_bench_files_of_arbitrary_bytes(data):
    _check_mt_bench_file(data)


@FUZZ
@given(st.lists(st.fixed_dictionaries({
    "name": st.sampled_from(sorted(mb.load_judge_prompts())) | json_values,
    "system_prompt": st.text(max_size=20) | json_values,
    "prompt_template": st.sampled_from(["{question} {answer}", "{question_1}{answer_2}", "{",
                                        "{nope}", "{0}", "{question.x}", "{answer!r:>{x}}"])
    | st.text(max_size=30) | json_values,
    "output_format": st.just("[[rating]]") | json_values}), min_size=1, max_size=6))
def test_judge_prompt_files(records):
    """A judge_prompts.jsonl is either refused at load time with its place named, or every
    prompt in it can grade every kind of question."""
    with tempfile.TemporaryDirectory() as tmp:
        path = _write([json.dumps(r) for r in records], "judge_prompts.jsonl", tmp)
        prompts = _located(lambda: mb.load_judge_prompts(path), path)
        if prompts is None:
            return
        for category in ("writing", "math"):
            q = mb.Question(1, category, ("q1", "q2"))
            for turn in (1, 2):
                mb.judge_messages(prompts, q, ["a1", "a2"], turn, ["r1", "r2"])


QUESTIONS = [mb.Question(1, "writing", ("w1", "w2")), mb.Question(2, "math", ("m1", "m2"), ("r1", "r2"))]


@FUZZ
@given(jsonl_lines, st.booleans())
def test_answer_and_judgment_logs_read_back_on_rerun(lines, torn):
    """What a rerun of ``asft mt-bench`` reads back from answers.jsonl and judgments.jsonl."""
    with tempfile.TemporaryDirectory() as tmp:
        path = _write(lines, "log.jsonl", tmp)
        if torn:
            with path.open("a") as fh:
                fh.write('\n{"question_id": 1, "cho')

        def generate(convs):
            return ["reply"] * len(convs)

        answers = _located(lambda: mb.answer_questions(generate, QUESTIONS, mb.JsonlLog(path), "m"),
                           path)
        if answers is not None:
            assert set(answers) >= {1, 2}
            assert all(isinstance(t, str) for q in QUESTIONS for t in answers[q.question_id])
        path = _write(lines, "judgments.jsonl", tmp)
        complete = lambda system, user: "Rating: [[5]]"  # noqa: E731
        good = {1: ["a", "b"], 2: ["c", "d"]}
        judgments = _located(lambda: mb.judge_answers(complete, "j", "m", mb.load_judge_prompts(),
                                                      QUESTIONS, good, {}, mb.JsonlLog(path)), path)
        if judgments is not None:
            scores = mb.summarize(QUESTIONS, judgments)
            assert scores["judgments"] >= 4


# ---------------------------------------------------------------------------------------------
# Checkpoint folders


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> Path:
    """The checkpoints folder of a short finished run (steps 2 and 4)."""
    from asft.config import load_config
    from asft.train import train

    out = tmp_path_factory.mktemp("ckpt-fuzz") / "run"
    train(load_config(None, [
        "model.name=tiny-llama", "model.dtype=fp32", "training.precision=fp32",
        "data.source=builtin:mixed", "data.limit=20", "data.probe_size=0", "training.max_steps=4",
        "training.batch_size=2", "logging.progress=false", "logging.tensorboard=false",
        "checkpoint.every=2", "checkpoint.keep_last=2", f"output_dir={out}"]))
    return out / ckpt.DIRNAME


FILES = (*ckpt.REQUIRED, *ckpt.LAYOUTS["full"], ckpt.MARKER)
damage = st.one_of(
    st.tuples(st.just("truncate"), st.sampled_from(FILES), st.floats(0, 1)),
    st.tuples(st.just("flip"), st.sampled_from(FILES), st.floats(0, 1)),
    st.tuples(st.just("delete"), st.sampled_from(FILES), st.none()),
    st.tuples(st.just("replace"), st.sampled_from(FILES), st.binary(max_size=64)),
    st.tuples(st.just("manifest"), st.just(ckpt.MARKER), json_values),
    st.tuples(st.just("manifest-entry"), st.sampled_from(FILES[:-1]), json_values),
)


def _apply(folder: Path, how: str, name: str, arg) -> None:
    f = folder / name
    if how == "truncate":
        data = f.read_bytes()
        f.write_bytes(data[: int(arg * len(data))])
    elif how == "flip":
        data = bytearray(f.read_bytes())
        if data:
            data[min(int(arg * len(data)), len(data) - 1)] ^= 0x20
        f.write_bytes(bytes(data))
    elif how == "delete":
        f.unlink()
    elif how == "replace":
        f.write_bytes(arg)
    elif how == "manifest":
        f.write_text(json.dumps(arg))
    else:
        manifest = json.loads((folder / ckpt.MARKER).read_text())
        manifest["files"][name] = arg
        (folder / ckpt.MARKER).write_text(json.dumps(manifest))


@settings(max_examples=150, deadline=5000, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(damages=st.lists(damage, min_size=1, max_size=3))
def test_damaged_checkpoint_is_skipped_with_a_reason(checkpoints, damages, record_property):
    """Any damage to the newest checkpoint (files cut, flipped, deleted, replaced; a manifest
    of any shape) makes verify() give a reason, and resume falls back to the older one."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "run" / ckpt.DIRNAME
        shutil.copytree(checkpoints, root)
        newest = root / "step-0000004"
        before = {f.name: f.read_bytes() for f in newest.iterdir()}
        for how, name, arg in damages:
            if (newest / name).is_file() and (how != "manifest-entry" or (newest / ckpt.MARKER).is_file()):
                # (a manifest already replaced by something that is not one cannot take an entry)
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    _apply(newest, how, name, arg)
        after = {f.name: f.read_bytes() for f in newest.iterdir()}
        assume(after != before)
        reason = ckpt.verify(newest)
        assert isinstance(reason, str) and reason
        path, skipped = ckpt.resume_point(root.parent)
        assert path == root / "step-0000002"
        assert skipped == [f"step-0000004: {reason}"]
        record_property("damaged_checkpoints", 1)


@settings(FUZZ, max_examples=40)
@given(data=st.binary(max_size=200),
       name=st.sampled_from(["step-0000009", ".tmp-step-0000009", "step-x", "step-0000009.bak"]))
def test_stray_entries_in_the_checkpoints_folder(checkpoints, data, name, record_property):
    """A file (not a folder) or garbage under a checkpoint-like name never wins over a
    complete checkpoint, and leftovers of killed writers are cleaned."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "run" / ckpt.DIRNAME
        shutil.copytree(checkpoints, root)
        (root / name).write_bytes(data)
        path, skipped = ckpt.resume_point(root.parent)
        assert path == root / "step-0000004"
        assert all(s.startswith("step-0000009: ") for s in skipped)
        record_property("damaged_checkpoints", 1)


# ---------------------------------------------------------------------------------------------
# Run folders as --resume and `asft plot` read them


metrics_lines = st.lists(
    st.fixed_dictionaries({"step": st.integers(-3, 30) | json_scalars},
                          optional={"logps/chosen": json_scalars, "logps/rejected": json_scalars,
                                    "probe/logps/chosen": json_scalars,
                                    "probe/logps/rejected": json_scalars}).map(json.dumps)
    | json_values.map(json.dumps) | st.text(max_size=30), max_size=8)


run_configs = st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()) | (
    st.fixed_dictionaries({}, optional={"name": st.sampled_from(["asft", "dpo"]) | json_values,
                                        "hparams": json_values | st.dictionaries(
                                            st.sampled_from(["beta", "lam"]) | st.text(max_size=4),
                                            json_values, max_size=3)})
    .map(lambda loss: json.dumps({"loss": loss}).encode()))


@FUZZ
@given(metrics_lines | st.binary(max_size=300), run_configs)
def test_metrics_and_config_of_a_run_folder(metrics, config):
    from asft.evaluate.dynamics import load_run
    from asft.train.tracking import read_metrics, truncate_metrics

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp)
        path = run / "metrics.jsonl"
        if isinstance(metrics, bytes):
            path.write_bytes(metrics)
        else:
            path.write_text("\n".join(metrics), encoding="utf-8", errors="surrogatepass")
        (run / "config.yaml").write_bytes(config)
        records = read_metrics(path)
        assert all(isinstance(r["step"], int) for r in records)
        truncate_metrics(path, 5)  # what --resume does with a checkpoint of step 5
        assert all(r["step"] <= 5 for r in read_metrics(path))
        curves = _located(lambda: load_run(run), run)
        if curves is not None:
            assert isinstance(curves.label, str) and curves.label


@FUZZ
@given(run_configs)
def test_run_label_from_any_config(config):
    """``asft plot`` labels a curve from the run's config.yaml, or falls back to the folder name."""
    from asft.evaluate.dynamics import load_run

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp)
        (run / "metrics.jsonl").write_text(json.dumps({"step": 1, "logps/chosen": -1.0,
                                                       "logps/rejected": -2.0}) + "\n")
        (run / "config.yaml").write_bytes(config)
        label = load_run(run).label
        assert isinstance(label, str) and label


# ---------------------------------------------------------------------------------------------
# Caches and the fault spec


@FUZZ
@given(st.sampled_from(["header.json", "ids.bin", "lengths.bin", "starts.bin", "indices.bin"]),
       st.binary(max_size=400))
def test_token_and_reference_caches_of_arbitrary_bytes(name, data):
    """A damaged cache entry is treated as absent (and recomputed), never an error: a token
    store with one file replaced by arbitrary bytes, and a reference cache of such bytes."""
    from asft.data.store import StoreBuilder, TokenizedPair, TokenStore, build_in
    from asft.train.reference import _read_cache

    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store"
        with build_in(store, StoreBuilder(np.dtype(np.uint16)).dtype) as builder:
            builder.append([TokenizedPair([1, 2], [3], [4, 5]), TokenizedPair([6], [7], [8])], [0, 1])
            builder.seal({})
        (store / name).write_bytes(data)
        # refused, unless the bytes written are the file's own (its digest then matches)
        assert TokenStore.open(store) is None
        path = Path(tmp) / "entry"
        path.write_bytes(data)
        assert _read_cache(path, "fingerprint") is None


@FUZZ
@given(st.text(max_size=60) | st.lists(st.sampled_from(
    [*faults.POINTS, "@", "=", ":", ",", "kill", "nan", "2", "-1", "x"]), max_size=8).map("".join))
def test_fault_spec(spec):
    try:
        parsed = faults.parse(spec)
    except ValueError as err:
        assert faults.ENV in str(err) or "invalid literal" in str(err)
        return
    assert all(f.point in faults.POINTS and f.action in faults.ACTIONS for f in parsed)


# ---------------------------------------------------------------------------------------------
# asft train command lines


FLAGS = ["--set", "--config", "-c", "--max-steps", "--loss", "--model", "--data", "--output-dir",
         "--resume", "--overwrite"]
SET_ITEMS = st.sampled_from(["optim.lr", "loss.hparams.beta", "model", "data.limit", "logging",
                             "training.max_steps", "lora.target_modules", "a.b.c", ".x", "loss"]).flatmap(
    lambda k: st.sampled_from(["=", "", "=="]).flatmap(
        lambda sep: (st.text(max_size=15) | st.sampled_from(["[1, 2", "{a: 1}", "1e999", "-1", "null",
                                                             "!!python/object:os.system", "&a [*a]"]))
        .map(lambda v: f"{k}{sep}{v}")))


@settings(max_examples=150, deadline=5000, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(FLAGS) | SET_ITEMS | st.text(max_size=12), max_size=8))
def test_train_command_lines(capsys, argv):
    """``asft train ... --print-config``: the resolved config, a one-line error (exit 1), or
    argparse's usage error (exit 2); nothing else, and nothing is trained."""
    from asft.cli import main

    with tempfile.TemporaryDirectory() as tmp:
        argv = [a.replace("\x00", "") for a in argv]
        try:
            code = main(["train", *argv, "--output-dir", str(Path(tmp) / "o"), "--print-config"])
        except SystemExit as exc:
            code = exc.code
        out, err = capsys.readouterr()
        assert code in (0, 1, 2), code
        if code == 0:
            assert "model:" in out
        if code == 1:
            assert err.startswith("asft train: error: ") and "Traceback" not in err
        assert not (Path(tmp) / "o").exists()



# ---------------------------------------------------------------------------------------------
# Replies of the MT-Bench judge


@pytest.fixture(scope="module")
def judge_server():
    """A local endpoint that answers with whatever (status, body) the test put in ``reply``."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    reply = {"status": 200, "body": b"{}"}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(reply["status"])
            self.send_header("Content-Length", str(len(reply["body"])))
            self.end_headers()
            self.wfile.write(reply["body"])

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", reply
    server.shutdown()
    server.server_close()


replies = (st.binary(max_size=200)
           | json_values.map(lambda v: json.dumps(v).encode())
           | json_values.map(lambda v: json.dumps({"choices": [{"message": {"content": v}}]}).encode())
           | json_values.map(lambda v: json.dumps({"choices": v}).encode())
           | st.just(b'{"choices": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"))


@FUZZ
@given(status=st.sampled_from([200, 200, 200, 400, 401, 429, 500, 503]), body=replies)
def test_judge_replies(judge_server, status, body):
    """Whatever the judge sends back: its text, or JudgeError; never another exception."""
    from asft.evaluate.judge import JudgeClient, JudgeError

    url, reply = judge_server
    reply.update(status=status, body=body)
    client = JudgeClient(url, "m", "ASFT_NO_SUCH_KEY_VAR", max_retries=0, timeout=10)
    try:
        text = client.complete("system", "user")
    except JudgeError as err:
        assert url in str(err)
        return
    assert status == 200 and isinstance(text, str)


# ---------------------------------------------------------------------------------------------
# What a rerun of asft compare reads back


result_docs = (st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode())
               | st.fixed_dictionaries({"label": json_scalars}, optional={
                   "metrics": json_values | st.dictionaries(st.text(max_size=6), json_scalars, max_size=3),
                   "train_s": json_scalars, "eval_s": json_scalars, "peak_memory_bytes": json_scalars,
                   "run_dir": json_scalars, "error": json_scalars, "extra": json_scalars,
                   # the sweep's fields (asft compare --lrs/--seeds), well formed or not
                   "lr": json_scalars, "lr_grid": json_values | st.lists(st.floats(1e-9, 0.5)),
                   "seeds": json_values | st.lists(st.integers()),
                   "ci95": json_values | st.dictionaries(
                       st.text(max_size=6), st.lists(st.floats(allow_nan=False), min_size=2, max_size=2)),
                   "per_seed": json_values, "validation": json_values | st.dictionaries(
                       st.sampled_from(["1e-05", "0.001", "untrained", "x"]), json_scalars)})
               .map(lambda d: json.dumps(d).encode()))


@dataclasses.dataclass
class _CompareSettings:
    output_dir: Path
    seed: int = 0
    rerun: bool = False


@FUZZ
@given(result_docs)
def test_compare_result_and_settings_files(data):
    """result.json (or validation.json) of a finished job is reused only when it is a
    well-formed result (else the job runs again) and renders in a report; an unreadable
    settings.json stops the rerun with a message naming it."""
    from asft.commands.compare import _check_same_settings
    from asft.errors import AsftError
    from asft.experiments.compare import read_result
    from asft.experiments.report import render_report

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "result.json"
        path.write_bytes(data)
        result = read_result(path)
        if result is not None:
            assert "| " + result.label in render_report([result], "t", {})
        try:
            _check_same_settings(_CompareSettings(Path(tmp)), path)
        except AsftError as err:
            assert str(Path(tmp)) in str(err)
