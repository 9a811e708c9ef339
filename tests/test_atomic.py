"""asft.atomic (write aside, then rename) and the one progress-bar factory."""

from __future__ import annotations

import io
import json
import os

import pytest
import rich.progress as rp
from rich.console import Console

from asft import atomic
from asft.progress import progress_bar


def _folder(path, **files: str):
    """A folder at ``path`` holding ``files`` (name -> text)."""
    path.mkdir(parents=True)
    for name, text in files.items():
        (path / name).write_text(text)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_write_replaces_the_content_with_plain_file_permissions(tmp_path):
    path = tmp_path / "out.json"
    path.write_text("old")
    atomic.write_json(path, {"a": [1, 2]}, fsync=True)
    assert json.loads(path.read_text()) == {"a": [1, 2]}
    assert path.read_text().endswith("\n")
    assert (path.stat().st_mode & 0o777) == 0o666 & ~_umask()
    atomic.write_jsonl(path, [{"x": "é"}, {"y": 2}], ensure_ascii=False)
    assert path.read_text(encoding="utf-8") == '{"x": "é"}\n{"y": 2}\n'
    assert os.listdir(tmp_path) == ["out.json"]


def test_file_write_failing_midway_keeps_the_old_content_and_no_temp(tmp_path):
    path = tmp_path / "table.npz"
    path.write_bytes(b"old content")
    with pytest.raises(OSError, match="disk full"), atomic.file(path) as tmp, open(tmp, "wb") as fh:
        fh.write(b"half of the new")
        assert tmp.parent == tmp_path and tmp.name != path.name
        raise OSError(28, "disk full")
    assert path.read_bytes() == b"old content"
    assert os.listdir(tmp_path) == ["table.npz"]


def test_failing_fsync_keeps_the_old_content_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "state.json"
    path.write_text("old")

    def broken(p):
        raise OSError(5, "I/O error")

    monkeypatch.setattr(atomic, "fsync_path", broken)
    with pytest.raises(OSError, match="I/O error"):
        atomic.write_text(path, "new", fsync=True)
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["state.json"]


def test_temp_names_are_unique_and_beside_the_destination(tmp_path):
    path = tmp_path / "a.txt"
    with atomic.file(path) as one, atomic.file(path) as two:
        assert one != two and one.parent == two.parent == tmp_path
        one.write_text("1")
        two.write_text("2")
    assert path.read_text() == "1"  # the last rename wins; no temp is left either way
    assert os.listdir(tmp_path) == ["a.txt"]


def test_folder_write_that_raises_leaves_no_temp_and_keeps_the_previous_folder(tmp_path):
    dest = _folder(tmp_path / "model", weights="old")
    with pytest.raises(RuntimeError), atomic.folder(dest) as tmp:
        (tmp / "weights").write_text("new, half written")
        raise RuntimeError("killed by a bug")
    assert (dest / "weights").read_text() == "old"
    assert os.listdir(tmp_path) == ["model"]


def test_folder_replaces_an_existing_folder_through_a_trash_rename(tmp_path):
    dest = _folder(tmp_path / "model", stale="old")
    seen = []

    def on_trashed():  # the moment between the trash rename and the deletion
        seen.append((dest.exists(), sorted(os.listdir(tmp_path))))

    with atomic.folder(dest, fsync=True) as tmp:
        (tmp / "weights").write_text("new")
    assert os.listdir(dest) == ["weights"] and (dest / "weights").read_text() == "new"
    assert os.listdir(tmp_path) == ["model"]

    tmp = atomic.fresh_folder(tmp_path / ".tmp-model")
    (tmp / "weights").write_text("newer")
    atomic.move_into_place(tmp, dest, durable=True, on_trashed=on_trashed)
    assert seen == [(False, [".tmp-model", ".trash-model"])]
    assert (dest / "weights").read_text() == "newer"
    assert os.listdir(tmp_path) == ["model"]


def test_fixed_temp_folder_is_emptied_first(tmp_path):
    leftover = _folder(tmp_path / ".tmp-model", junk="left by a killed writer")
    with atomic.folder(tmp_path / "model", tmp=leftover) as tmp:
        assert tmp == leftover and os.listdir(tmp) == []
        (tmp / "weights").write_text("new")
    assert os.listdir(tmp_path) == ["model"]


def test_folder_without_replace_fails_on_a_finished_folder_and_cleans_up(tmp_path):
    dest = _folder(tmp_path / "models" / "tiny", **{"config.json": "{}"})
    with pytest.raises(OSError), atomic.folder(dest, replace=False) as tmp:
        (tmp / "config.json").write_text('{"other": 1}')
    assert (dest / "config.json").read_text() == "{}"
    assert os.listdir(dest.parent) == ["tiny"]


def test_discard_removes_the_folder_and_its_trash(tmp_path):
    path = _folder(tmp_path / "step-0000004", **{"model.safetensors": "x"})
    (tmp_path / ".trash-step-0000004").mkdir()  # left by an earlier, killed deletion
    atomic.discard(path)
    assert os.listdir(tmp_path) == []


def _kinds(bar: rp.Progress) -> list[type]:
    return [type(c) for c in bar.columns]


def test_progress_factory_columns():
    bar = progress_bar()
    assert isinstance(bar, rp.Progress)
    assert _kinds(bar) == [rp.TextColumn, rp.BarColumn, rp.MofNCompleteColumn, rp.TimeElapsedColumn,
                           rp.TextColumn, rp.TimeRemainingColumn]
    assert bar.columns[0].text_format == "{task.description}"
    assert bar.columns[4].text_format == "eta"

    tokenizing = progress_bar(unit="pairs", transient=True)
    assert _kinds(tokenizing)[2:4] == [rp.MofNCompleteColumn, rp.TextColumn]
    assert tokenizing.columns[3].text_format == "pairs"
    assert tokenizing.live.transient

    console = Console(file=io.StringIO())
    training = progress_bar(count_first=True, bar_width=24, fields=("info",), console=console)
    assert _kinds(training) == [rp.TextColumn, rp.MofNCompleteColumn, rp.BarColumn, rp.TimeElapsedColumn,
                                rp.TextColumn, rp.TimeRemainingColumn, rp.TextColumn]
    assert training.columns[2].bar_width == 24
    assert training.columns[-1].text_format == "{task.fields[info]}"
    assert training.console is console


def test_progress_factory_off_yields_none():
    with progress_bar(show=False) as bar:
        assert bar is None


def test_training_tracker_uses_the_factory(tmp_path):
    from asft.config import LoggingConfig
    from asft.train.tracking import Tracker

    console = Console(file=io.StringIO(), width=120)
    tracker = Tracker(LoggingConfig(tensorboard=False), tmp_path, total_steps=10, start_step=0,
                      run_config={}, console=console)
    try:
        bar = tracker._progress
        assert isinstance(bar, rp.Progress) and bar.console is console
        assert _kinds(bar)[:3] == [rp.TextColumn, rp.MofNCompleteColumn, rp.BarColumn]
        tracker.advance(3, info="loss 0.69")
        task = bar.tasks[0]
        assert (task.description, task.completed, task.total) == ("step", 3, 10)
        assert task.fields["info"] == "loss 0.69"
    finally:
        tracker.close()
