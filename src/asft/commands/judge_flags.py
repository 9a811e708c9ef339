"""The ``--judge-*`` flags of an OpenAI-compatible LLM judge, shared by ``asft mt-bench`` and
``asft pairs --scorer judge`` (the client: :class:`asft.evaluate.judge.JudgeClient`)."""

from __future__ import annotations

import argparse


def add(parser: argparse.ArgumentParser, title: str = "judge") -> None:
    """Add ``--judge-base-url``, ``--judge-model``, ``--judge-api-key-env``,
    ``--judge-parallel``, ``--judge-timeout``, ``--judge-retries`` and ``--judge-backoff``."""
    g = parser.add_argument_group(title)
    g.add_argument("--judge-base-url", default="https://api.openai.com/v1",
                   help="OpenAI-compatible API root (default: %(default)s)")
    g.add_argument("--judge-model", default="gpt-4", help="judge model name (default: %(default)s)")
    g.add_argument("--judge-api-key-env", default="OPENAI_API_KEY", metavar="VAR",
                   help="environment variable holding the judge's API key (default: %(default)s)")
    g.add_argument("--judge-parallel", type=int, default=4, help="judge requests in flight (default: 4)")
    g.add_argument("--judge-timeout", type=float, default=120.0, help="seconds per judge request")
    g.add_argument("--judge-retries", type=int, default=6, help="retries per judge request on errors")
    g.add_argument("--judge-backoff", type=float, default=1.0,
                   help="first retry delay in seconds, doubled per retry up to 60 (default: 1)")
