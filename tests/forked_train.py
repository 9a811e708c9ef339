"""Run ``asft train`` in real child processes that a test may SIGKILL, cheaply.

Each child is forked from a warm server process (multiprocessing's ``forkserver``) that has
already imported torch, transformers, accelerate and asft, so a child starts training in
tens of milliseconds instead of paying a 3-5 s import. The server itself never runs a torch
operation, so forking it is safe (no thread pools to inherit). A child runs
:func:`asft.cli.main` with the argv and environment given by the parent (fault injection
through ``ASFT_FAULTS`` included), writes its stdout and stderr to a log file, and exits with
the command's exit code; a SIGKILL shows as exit code ``-9``.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

PRELOAD = [
    "torch", "transformers", "transformers.models.llama.modeling_llama", "accelerate",
    "accelerate.utils", "safetensors.torch", "rich.console", "rich.progress", "peft",
    "asft.cli", "asft.commands.train", "asft.train", "asft.model.load", "asft.data",
    "asft.data.tokenize", "asft.model.logprobs", "asft.losses", "asft.train.reference", "asft.train.tracking",
    "asft.train.policy", "asft.model.lora",
]


def _child(argv: Sequence[str], env: Mapping[str, str], log: str) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.environ.clear()
    os.environ.update(env)
    import torch

    torch.set_num_threads(1)
    from asft.cli import main
    from asft.train import faults

    faults.reset()
    code = main(list(argv))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class ForkedTrainer:
    """Starts ``asft`` commands in children of one warm forkserver."""

    def __init__(self) -> None:
        self.ctx = mp.get_context("forkserver")
        self.ctx.set_forkserver_preload(PRELOAD)

    def warm(self, log: Path) -> None:
        """Start the server (the one slow step) with a trivial command."""
        assert self.run(["losses"], log) == 0, log.read_text()

    def start(self, argv: Sequence[str], log: Path, **env: str) -> mp.process.BaseProcess:
        """Start ``asft ARGV`` with the parent's environment plus ``env``; returns the process."""
        full = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "400", **env}
        proc = self.ctx.Process(target=_child, args=(list(argv), full, str(log)), daemon=True)
        proc.start()
        return proc

    def run(self, argv: Sequence[str], log: Path, timeout: float = 180.0, **env: str) -> int:
        """Run ``asft ARGV`` to its end; returns the exit code (-9 when it was SIGKILLed)."""
        proc = self.start(argv, log, **env)
        return self.wait(proc, log, timeout)

    def close(self) -> None:
        """Stop the server (it holds torch and transformers in memory) if this Python can."""
        from multiprocessing import forkserver

        stop = getattr(forkserver._forkserver, "_stop", None)
        if stop is not None:
            stop()

    @staticmethod
    def wait(proc: mp.process.BaseProcess, log: Path, timeout: float = 180.0) -> int:
        proc.join(timeout)
        if proc.exitcode is None:
            proc.kill()
            proc.join()
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise AssertionError(f"child did not finish within {timeout} s (hang?):\n{tail}")
        return proc.exitcode

    @staticmethod
    def kill_after(proc: mp.process.BaseProcess, delay: float) -> bool:
        """SIGKILL ``proc`` ``delay`` seconds from now; False when it had already exited."""
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline:
            if not proc.is_alive():
                return False
            time.sleep(min(0.005, max(0.0, deadline - time.monotonic())))
        if not proc.is_alive():
            return False
        os.kill(proc.pid, signal.SIGKILL)
        return True
