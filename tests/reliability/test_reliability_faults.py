"""Fault injection against real training processes: SIGKILL at every fault point (several
times each, in chains of kills and resumes), SIGKILL at random moments from outside, a full
disk at every step of a checkpoint write (injected, and a real full tmpfs where the system
allows mounting one).

After every fault: each folder that carries a completion marker verifies, every complete
checkpoint that existed before the fault is byte-for-byte unchanged (or was pruned because
``checkpoint.keep_last`` newer ones exist), and the next ``--resume`` starts from the newest
complete checkpoint. At the end of every chain the final weights and metrics equal those of an
uninterrupted run (CPU, fp32, 1e-6). tests/train/test_train_resume.py covers the single-fault cases;
this file covers many faults in time and their combinations.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from asft.config import load_config
from asft.train import checkpoint as ckpt
from asft.train import faults, train
from run_checks import assert_same_run

pytestmark = pytest.mark.fault

STEPS = 12
KEEP_LAST = 2
SETTINGS = [
    "model.name=tiny-llama", "model.dtype=fp32", "training.precision=fp32",
    "data.source=builtin:mixed", "data.limit=60", "data.probe_size=4",
    f"training.max_steps={STEPS}", "training.batch_size=2", "optim.lr=1e-3",
    "optim.warmup_steps=2", "logging.every=3", "logging.probe_every=5", "logging.progress=false",
    "logging.tensorboard=false", "checkpoint.every=2", f"checkpoint.keep_last={KEEP_LAST}",
]
CKPT_POINTS = [p for p in faults.POINTS if p.startswith("checkpoint.")
               and p not in faults.SHARDED_ONLY]  # single-process runs


def _cfg(out: Path, *extra: str):
    return load_config(None, [*SETTINGS, f"output_dir={out}", *extra])


def _argv(out: Path, resume: bool) -> list[str]:
    sets = [x for s in SETTINGS for x in ("--set", s)]
    return ["train", *sets, "--output-dir", str(out), *(["--resume"] if resume else [])]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference") / "run"
    train(_cfg(out))
    return out


@pytest.fixture(scope="module")
def forked(tmp_path_factory):
    if sys.platform == "win32":
        pytest.skip("fork-based fault injection needs a POSIX system")
    from forked_train import ForkedTrainer

    trainer = ForkedTrainer()
    trainer.warm(tmp_path_factory.mktemp("forkserver") / "warm.log")
    yield trainer
    trainer.close()


# ---------------------------------------------------------------------------------------------
# Invariants


def _snapshot(run: Path) -> dict[str, dict[str, str]]:
    """SHA-256 of every file of every complete checkpoint; asserts that each folder carrying a
    completion marker verifies (a marker on a damaged folder would be a lie)."""
    snap = {}
    for path in ckpt.candidates(run / ckpt.DIRNAME):
        if (path / ckpt.MARKER).is_file():
            assert ckpt.verify(path) is None, f"{path} has a marker but does not verify"
            snap[path.name] = {f.name: ckpt.sha256(f) for f in sorted(path.iterdir())}
    return snap


def _step(name: str) -> int:
    return int(name.split("-")[1])


def _survivors_intact(run: Path, before: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """The new snapshot, after checking that no complete checkpoint of ``before`` changed, and
    that any that disappeared was pruned legitimately (keep_last newer complete ones exist)."""
    now = _snapshot(run)
    for name, files in before.items():
        if name in now:
            assert now[name] == files, f"complete checkpoint {name} was modified"
        else:
            newer = [n for n in now if _step(n) > _step(name)]
            assert len(newer) >= KEEP_LAST, f"{name} vanished with only {newer} newer"
    return now


def _newest(snap: dict[str, dict[str, str]]) -> str | None:
    return max(snap, key=_step) if snap else None


def _resumed_from(log: Path) -> str | None:
    """The checkpoint a child said it resumed from: a folder name, 'fresh', or None (no line;
    a child killed early may not even have opened its log)."""
    text = log.read_text(errors="replace") if log.exists() else ""
    for line in text.splitlines():
        if line.startswith("resumed from "):
            return Path(line.split()[2]).name
        if line.startswith("no checkpoint in "):
            return "fresh"
    return None


def _assert_equals_reference(run: Path, reference: Path) -> None:
    assert_same_run(run, reference)
    leftovers = [p.name for p in (run / ckpt.DIRNAME).iterdir() if p.name.startswith(".")]
    assert not leftovers


def _finish(forked, out: Path, log: Path, expected: str | None, reference: Path) -> None:
    """A last, undisturbed --resume: it must start where expected and end as the reference."""
    code = forked.run(_argv(out, resume=True), log)
    assert code == 0, log.read_text()[-3000:]
    assert _resumed_from(log) == (expected or "fresh")
    _assert_equals_reference(out, reference)


# ---------------------------------------------------------------------------------------------
# SIGKILL at the fault points


# Each chain runs in one output folder: every child resumes the previous one's folder and is
# SIGKILLed at its fault point (counts restart in each process). Chain A kills at the first
# pass of each point; chain B at later passes, where pruning of old checkpoints is under way.
CHAINS = {
    "first-pass": [f"{p}@1=kill" for p in CKPT_POINTS]
    + ["train.loss@1=kill", "train.step@1=kill", "final.before_rename@1=kill"],
    "later-passes": [
        "checkpoint.after_model@2=kill",      # step 2 complete, killed writing 4
        "checkpoint.before_manifest@2=kill",  # 4 complete, killed sealing 6
        "checkpoint.prune@1=kill",            # 6 complete, killed deleting 2
        "train.loss@2=kill",                  # killed in step 8, before its update
        "checkpoint.after_rename@1=kill",     # 8 complete, killed before pruning 4
        "checkpoint.prune@2=kill",            # 10 complete, 6 deleted, killed deleting 4
        "checkpoint.before_rename@1=kill",    # killed renaming 12 into place
        "train.step@1=kill",                  # killed after step 11's update
        "checkpoint.after_optimizer@1=kill",
        "checkpoint.after_rank_state@1=kill",
        "checkpoint.begin@1=kill",
        "checkpoint.after_rename@1=kill",     # 12 complete, killed before pruning 8
        "final.before_rename@1=kill",         # killed renaming the final model into place
    ],
}


@pytest.mark.parametrize("chain", sorted(CHAINS))
def test_sigkill_chain_at_fault_points(chain, forked, reference, tmp_path, record_property):
    out = tmp_path / "run"
    snap: dict[str, dict[str, str]] = {}
    expected: str | None = None
    for i, spec in enumerate(CHAINS[chain]):
        log = tmp_path / f"child-{i}.log"
        code = forked.run(_argv(out, resume=i > 0), log, **{faults.ENV: spec})
        assert code == -signal.SIGKILL, f"{spec}: exit {code}\n{log.read_text()[-3000:]}"
        if i > 0:
            assert _resumed_from(log) == (expected or "fresh"), spec
        snap = _survivors_intact(out, snap)
        expected = _newest(snap)
    _finish(forked, out, tmp_path / "final.log", expected, reference)
    record_property("sigkill_fault_points", len(CHAINS[chain]))


# ---------------------------------------------------------------------------------------------
# SIGKILL at random moments


RANDOM_KILLS = 8


def _new_tmp_folder(root: Path, since_ns: int) -> bool:
    """Whether a checkpoint write that began after ``since_ns`` is under way in ``root`` (a
    leftover of an earlier killed writer, cleaned at start-up, does not count)."""
    try:
        with os.scandir(root) as entries:
            return any(e.name.startswith(".tmp-") and e.stat().st_ctime_ns >= since_ns for e in entries)
    except FileNotFoundError:
        return False


def _kill_inside_a_checkpoint_write(forked, proc, root: Path, since_ns: int, delay: float) -> None:
    """SIGKILL ``proc`` ``delay`` seconds after it starts writing a checkpoint."""
    while proc.is_alive():
        if _new_tmp_folder(root, since_ns):
            forked.kill_after(proc, delay)
            return
        time.sleep(0.0005)


def test_sigkill_at_random_moments(forked, reference, tmp_path, record_property):
    """Kills from outside at seeded random moments: every other one at a random time after the
    child starts (start-up, forward/backward passes, checkpoint writes, final save), the
    others at a random time inside a checkpoint write (mid-file, mid-fsync: between the fault
    points). When a child finishes before its kill, its run is checked and a new one begins."""
    rng = random.Random(6)
    # Calibrate: the wall time of a whole run in a child on this machine, now.
    start = time.monotonic()
    assert forked.run(_argv(tmp_path / "calibration", resume=False), tmp_path / "calibration.log") == 0
    whole = time.monotonic() - start
    _assert_equals_reference(tmp_path / "calibration", reference)
    kills = in_checkpoint_write = 0
    runs_checked = 1
    run_index, i = 0, 0
    out = tmp_path / f"run-{run_index}"
    snap: dict[str, dict[str, str]] = {}
    expected: str | None = None
    while kills < RANDOM_KILLS:
        log = tmp_path / f"child-{i}.log"
        i += 1
        time.sleep(0.02)  # file times of this child's writes come after since_ns
        since_ns = time.time_ns()
        proc = forked.start(_argv(out, resume=True), log)
        if kills % 2:
            _kill_inside_a_checkpoint_write(forked, proc, out / ckpt.DIRNAME, since_ns,
                                            rng.uniform(0.0, 0.02))
        else:
            forked.kill_after(proc, rng.uniform(0.02, 0.9) * whole)
        code = forked.wait(proc, log)
        said = _resumed_from(log)
        if said is not None:
            assert said == (expected or "fresh")
        if code == 0:  # finished before the kill: check it, start another run
            _assert_equals_reference(out, reference)
            runs_checked += 1
            run_index += 1
            out, snap, expected = tmp_path / f"run-{run_index}", {}, None
            continue
        assert code == -signal.SIGKILL, log.read_text()[-3000:]
        kills += 1
        in_checkpoint_write += _new_tmp_folder(out / ckpt.DIRNAME, since_ns)
        snap = _survivors_intact(out, snap)
        expected = _newest(snap)
    _finish(forked, out, tmp_path / "final.log", expected, reference)
    record_property("external_sigkills", kills)
    record_property("external_sigkills_inside_checkpoint_write", in_checkpoint_write)
    record_property("runs_compared", runs_checked + 1)


# ---------------------------------------------------------------------------------------------
# A full disk


def test_full_disk_at_every_checkpoint_write_step(reference, tmp_path, monkeypatch, record_property):
    """ENOSPC injected at each step of a checkpoint write, one run after another in one folder:
    each run stops with a message naming the checkpoint, the cause and the newest intact one;
    the partial write is gone; earlier checkpoints are unchanged; the next --resume continues.
    A full disk while pruning an old checkpoint costs disk space only: that run finishes."""
    out = tmp_path / "run"
    points = [p for p in CKPT_POINTS if p != "checkpoint.prune"]
    # 1: the first write of the run fails; 2: one more checkpoint completes first
    hits = [1, 2, 1, 2, 1, 2, 1]
    snap: dict[str, dict[str, str]] = {}
    for i, (point, hit) in enumerate(zip(points, hits, strict=True)):
        faults.reset()
        monkeypatch.setenv(faults.ENV, f"{point}@{hit}=enospc")
        with pytest.raises(ckpt.CheckpointError) as info:
            train(_cfg(out), resume=i > 0)
        message = str(info.value)
        assert "No space left on device" in message and f"injected at {point}" in message
        assert not any(p.name.startswith(".tmp-") for p in (out / ckpt.DIRNAME).iterdir())
        snap = _survivors_intact(out, snap)
        newest = _newest(snap)
        assert (f"{newest} untouched" if newest else "no earlier checkpoint") in message
    faults.reset()
    monkeypatch.setenv(faults.ENV, "checkpoint.prune@1=enospc")
    result = train(_cfg(out), resume=True)
    assert result.resumed_from.name == _newest(snap)
    faults.reset()
    monkeypatch.delenv(faults.ENV)
    ckpt.clean_stale(out / ckpt.DIRNAME)  # the trash folder the failed prune left behind
    _assert_equals_reference(out, reference)
    record_property("enospc_points", len(points) + 1)


_TMPFS_SCRIPT = textwrap.dedent("""
    import json, shutil, subprocess, sys
    from pathlib import Path
    from asft.train import checkpoint as ckpt
    from asft.errors import AsftError
    from asft.config import load_config
    from asft.train import train

    settings, cases, mnt, keep = json.loads(sys.argv[1])
    report = []
    for name, size, extra in cases:
        Path(mnt).mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", mnt], check=True)
        try:
            train(load_config(None, [*settings, *extra, f"output_dir={mnt}/run"]))
            report.append([name, None, None])
        except AsftError as err:
            report.append([name, type(err).__name__, str(err)])
        except Exception as err:  # reported to the test, which fails on it
            report.append([name, "unexpected " + type(err).__name__, str(err)[:2000]])
        shutil.copytree(f"{mnt}/run", f"{keep}/{name}", symlinks=True)
        subprocess.run(["umount", mnt], check=True)
    print(json.dumps(report))
""")


def _namespace_prefix() -> list[str]:
    """A command prefix that may mount a tmpfs (a private mount namespace), or skip."""
    unshare = shutil.which("unshare")
    if unshare is None or sys.platform != "linux":
        pytest.skip("needs unshare(1) on Linux to mount a small tmpfs")
    for prefix in ([unshare, "--user", "--map-root-user", "--mount"], [unshare, "--mount"]):
        probe = subprocess.run([*prefix, "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt || "
                                "mount -t tmpfs -o size=64k tmpfs /tmp"], capture_output=True)
        if probe.returncode == 0:
            return prefix
    pytest.skip("cannot mount a tmpfs in a private mount namespace here (no user namespaces)")


def test_real_full_disk(reference, tmp_path, record_property):
    """A real ENOSPC from the kernel: training writes into a small tmpfs that fills up inside
    a checkpoint write (in the optimizer state, after the weights) and inside the final model
    save. Each run stops with asft's message (never a library traceback), no complete
    checkpoint is damaged, and the folder, copied to a disk with space, resumes to the same
    weights as the uninterrupted run."""
    prefix = _namespace_prefix()
    pages = lambda n: -(-n // 4096) * 4096  # noqa: E731
    ref_ckpt = reference / ckpt.DIRNAME / f"step-{STEPS:07d}"
    one = sum(pages(f.stat().st_size) for f in ref_ckpt.iterdir())
    model_bytes = pages((ref_ckpt / "model.safetensors").stat().st_size)
    small = 64 * 1024  # config, data report, metrics
    cases = [
        # two complete checkpoints fit; the third fills the disk in its optimizer state, after
        # its weights file was written
        ["in-optimizer", 2 * one + small + model_bytes + 256 * 1024, []],
        # no checkpoints: the final model save fills the disk
        ["in-final-model", small + model_bytes // 2, ["checkpoint.every=0"]],
    ]
    keep = tmp_path / "copies"
    proc = subprocess.run(
        [*prefix, sys.executable, "-c", _TMPFS_SCRIPT,
         json.dumps([SETTINGS, cases, str(tmp_path / "mnt"), str(keep)])],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = {name: (kind, message) for name, kind, message in json.loads(proc.stdout.splitlines()[-1])}
    kind, message = report["in-optimizer"]
    assert kind == "CheckpointError", (kind, message)
    assert "could not write checkpoint step-0000006" in message
    assert "No space left on device" in message and "step-0000004 untouched" in message
    run = keep / "in-optimizer"
    assert sorted(_snapshot(run)) == ["step-0000002", "step-0000004"]
    assert not any(p.name.startswith(".tmp-") for p in (run / ckpt.DIRNAME).iterdir())
    result = train(_cfg(run), resume=True)
    assert result.resumed_from.name == "step-0000004"
    _assert_equals_reference(run, reference)
    kind, message = report["in-final-model"]
    assert kind == "AsftError", (kind, message)
    assert "could not save the final model" in message and "No space left on device" in message
    record_property("real_enospc", len(cases))
