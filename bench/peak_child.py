"""Run asft's CLI and record its peak GPU memory: ``python bench/peak_child.py PEAK.json ARGS...``.

``asft train`` reports no GPU memory, and a peak can only be read inside the process that
allocated it, so bench/gpu.py runs each ``asft train`` through this wrapper instead of the
venv's ``asft`` script: it calls :func:`asft.cli.main` with ``ARGS`` exactly as that script
does, then writes ``{"peak_gpu_bytes": torch.cuda.max_memory_allocated()}`` to ``PEAK.json``
(null without CUDA) and exits with the CLI's status. Nothing of asft is changed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    peak_path, args = Path(argv[0]), argv[1:]
    from asft.cli import main as asft_main

    try:
        return asft_main(args)
    finally:  # also after an error: a failed row still says how far memory went
        import torch

        peak = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None
        peak_path.write_text(json.dumps({"peak_gpu_bytes": peak}))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
