"""``map_chunks``: a function over a stream of chunks, in order, in forked worker processes.

Tokenization is mostly Python (templates, the prompt boundary, the length policies) around
the Rust tokenizer, so one process keeps one core busy; ``data.num_proc`` workers tokenize
chunks side by side. Workers are *forked*: they inherit the tokenizer and the function from
the parent, and only the chunks (lists of pairs) and their results cross the pipes. At most
``2 x num_proc`` chunks are in flight, so a streamed source is never read ahead into memory.
Results come back in the chunks' order, so the output is exactly the one-process output.

Where fork is not available (Windows, macOS defaults aside) or one worker is asked for, or
the stream holds a single chunk, everything runs in this process.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

_FN: Callable[..., Any] | None = None  # the function the forked workers run (inherited)


def default_num_proc() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _call(args: tuple) -> Any:
    assert _FN is not None
    return _FN(*args)


@contextmanager
def _quiet_tokenizers() -> Iterator[None]:
    """Tokenizers' Rust thread pool is disabled in a forked child anyway; saying so up front
    spares every worker the library's warning about it."""
    old = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = old


def map_chunks(fn: Callable[..., Any], items: Iterable[tuple], num_proc: int) -> Iterator[Any]:
    """``fn(*item)`` for each ``item``, yielded in order, computed by up to ``num_proc``
    forked processes (or here; see the module docstring)."""
    global _FN
    items = iter(items)
    first = next(items, None)
    if first is None:
        return
    second = next(items, None)
    if num_proc <= 1 or second is None or "fork" not in multiprocessing.get_all_start_methods():
        yield fn(*first)
        if second is not None:
            yield fn(*second)
            for item in items:
                yield fn(*item)
        return
    _FN = fn
    try:
        with _quiet_tokenizers():
            pool = multiprocessing.get_context("fork").Pool(num_proc)
        try:
            pending: deque = deque()
            for item in _chain(first, second, items):
                pending.append(pool.apply_async(_call, (item,)))
                if len(pending) >= 2 * num_proc:
                    yield pending.popleft().get()
            while pending:
                yield pending.popleft().get()
        finally:
            pool.terminate()
            pool.join()
    finally:
        _FN = None


def _chain(first: tuple, second: tuple, rest: Iterator[tuple]) -> Iterator[tuple]:
    yield first
    yield second
    yield from rest
