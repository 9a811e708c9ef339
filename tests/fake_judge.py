"""A local stand-in for an OpenAI-compatible judge API, shared by the MT-Bench and safety tests.

The server listens on 127.0.0.1 on a free port and hands every POST to ``respond(headers, body)``,
which returns ``(status, payload)``; the payload goes back as JSON. Nothing leaves the machine.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Responder = Callable[[Mapping[str, str], dict], tuple[int, Any]]


class JudgeServer:
    """Serves ``respond`` at ``self.url`` (an OpenAI-style base URL ending in /v1) until ``close``."""

    def __init__(self, respond: Responder):
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest's output clean
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status, payload = respond(self.headers, body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def chat_reply(text: str) -> dict:
    """The body of a successful chat-completions answer carrying ``text``."""
    return {"choices": [{"message": {"role": "assistant", "content": text}}]}
