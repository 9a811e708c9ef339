"""Crash-safe writes: everything is written aside, in the same folder, then renamed into place.

A rename within one file system is atomic on POSIX, so a reader, or a process restarted after
a kill, finds either the old content or the new one, never half of a file or of a folder.

- :func:`file` and :func:`write_bytes` / :func:`write_text` / :func:`write_json` /
  :func:`write_jsonl`: one file, through a temporary file with a unique name beside it
  (``.NAME.XXXXXXXX.tmp``), deleted when the write fails.
- :func:`folder`: a folder, built in a temporary folder beside it and moved into place by
  :func:`move_into_place`, which first discards an existing folder of that name by renaming it
  to ``.trash-NAME`` (:func:`discard`), so that a half-deleted folder never looks valid.

``fsync=True`` makes a write durable (the data, then the folder entry that names it), as
checkpoints need; without it a write survives a killed process, though not a power cut.

This module sits at the bottom of the house: it imports nothing of asft, so that data, model,
train, evaluate and the commands can all use it. Callers that mark fault-injection points do
it around these calls, or through the ``on_trashed`` callback.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["discard", "file", "folder", "fresh_folder", "fsync_path", "move_into_place",
           "write_bytes", "write_json", "write_jsonl", "write_text"]


def fsync_path(path: str | os.PathLike) -> None:
    """Flush a file's data, or a folder's entries, to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _aside(path: Path, create: Callable[[Path], None]) -> Path:
    """A new temporary entry beside ``path``, with a name no other writer uses (created with
    the same permissions as a plain ``open`` or ``mkdir``, unlike :mod:`tempfile`'s 0600)."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            create(tmp)
            return tmp
        except FileExistsError:
            continue


def _new_file(path: Path) -> None:
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))


@contextlib.contextmanager
def file(path: str | os.PathLike, *, fsync: bool = False) -> Iterator[Path]:
    """A temporary path beside ``path`` for the block to write (by name or with ``open``);
    renamed onto ``path`` when the block ends normally, deleted when it raises.

    With ``fsync`` the data is flushed before the rename and the folder entry after it.
    """
    path = Path(path)
    tmp = _aside(path, _new_file)
    try:
        yield tmp
        if fsync:
            fsync_path(tmp)
        os.replace(tmp, path)
        if fsync:
            fsync_path(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(path: str | os.PathLike, data: bytes, *, fsync: bool = False) -> None:
    """Replace the content of ``path`` with ``data`` atomically (see :func:`file`)."""
    with file(path, fsync=fsync) as tmp, open(tmp, "wb") as fh:
        fh.write(data)


def write_text(path: str | os.PathLike, text: str, *, fsync: bool = False,
               encoding: str = "utf-8") -> None:
    """Replace the content of ``path`` with ``text`` atomically (see :func:`file`)."""
    write_bytes(path, text.encode(encoding), fsync=fsync)


def write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 2,
               fsync: bool = False) -> None:
    """Write ``obj`` as JSON (and a final newline) atomically (see :func:`file`)."""
    write_text(path, json.dumps(obj, indent=indent) + "\n", fsync=fsync)


def write_jsonl(path: str | os.PathLike, records: Iterable[Any], *, ensure_ascii: bool = True,
                fsync: bool = False) -> None:
    """Write one JSON object per line atomically (see :func:`file`)."""
    write_text(path, "".join(json.dumps(r, ensure_ascii=ensure_ascii) + "\n" for r in records),
               fsync=fsync)


def fresh_folder(path: str | os.PathLike) -> Path:
    """An empty folder at ``path`` (its parents created; what a killed writer left removed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        shutil.rmtree(path)
    path.mkdir()
    return path


def discard(path: str | os.PathLike, trash: str | os.PathLike | None = None, *,
            on_trashed: Callable[[], None] | None = None) -> None:
    """Delete folder ``path``, renaming it to ``trash`` (default ``.trash-NAME`` beside it) first,
    so that a deletion cut short never leaves a partial folder under the real name.
    ``on_trashed`` runs between the rename and the deletion."""
    path = Path(path)
    trash = Path(trash) if trash is not None else path.with_name(f".trash-{path.name}")
    if trash.exists():
        shutil.rmtree(trash, ignore_errors=True)
    os.replace(path, trash)
    if on_trashed is not None:
        on_trashed()
    shutil.rmtree(trash, ignore_errors=True)


def move_into_place(tmp: str | os.PathLike, dest: str | os.PathLike, *, replace: bool = True,
                    durable: bool = False, on_trashed: Callable[[], None] | None = None) -> None:
    """Rename the finished folder ``tmp`` to ``dest``.

    With ``replace`` an existing ``dest`` is first discarded through a trash rename
    (:func:`discard`, which runs ``on_trashed``); without it the rename fails with OSError when
    ``dest`` is a folder that is not empty (another writer got there first). ``durable``
    flushes the parent folder's entries after the rename (the caller flushes ``tmp`` itself).
    """
    tmp, dest = Path(tmp), Path(dest)
    if replace and dest.exists():
        discard(dest, on_trashed=on_trashed)
    os.replace(tmp, dest)
    if durable:
        fsync_path(dest.parent)


@contextlib.contextmanager
def folder(dest: str | os.PathLike, *, tmp: str | os.PathLike | None = None,
           replace: bool = True, fsync: bool = False) -> Iterator[Path]:
    """A fresh temporary folder for the block to fill, moved into place as ``dest`` when the
    block ends normally (:func:`move_into_place`) and deleted when it raises.

    The temporary folder has a unique name beside ``dest``, or is ``tmp`` (emptied first) when
    given: a fixed name lets the next writer remove what a killed one left. ``fsync`` flushes
    the folder's entries before the rename and its parent's after it (the files inside are
    the block's to flush).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    path = fresh_folder(tmp) if tmp is not None else _aside(dest, os.mkdir)
    try:
        yield path
        if fsync:
            fsync_path(path)
        move_into_place(path, dest, replace=replace, durable=fsync)
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
