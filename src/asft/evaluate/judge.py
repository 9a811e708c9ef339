"""A minimal client for OpenAI-compatible chat-completions endpoints, used as the MT-Bench judge.

Standard library only (urllib). The API key is read from an environment variable at
construction and kept out of ``repr``, logs and exception messages: any error text that
could echo it is scrubbed before it is raised.
"""

from __future__ import annotations

import http.client
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

# Status codes worth retrying: rate limits, timeouts and server-side failures. Other 4xx
# (bad request, bad key, unknown model) fail the same way on every try.
RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529})


class JudgeError(RuntimeError):
    """The judge endpoint failed (after retries, or with a non-retryable status)."""


@dataclass
class JudgeClient:
    """Chat-completions client with bounded exponential back-off.

    Attributes:
        base_url: endpoint root such as ``https://api.openai.com/v1`` (``/chat/completions``
            is appended unless the URL already ends with it).
        model: the judge model name sent in each request (``gpt-4`` in FastChat).
        api_key_env: name of the environment variable holding the key; unset or empty means
            no ``Authorization`` header (local servers such as vLLM need none).
        temperature: sampling temperature of the judge (FastChat uses 0).
        max_tokens: cap on the judge's reply length (FastChat uses 2048).
        timeout: seconds per HTTP request.
        max_retries: retries after the first attempt on retryable failures.
        backoff: first back-off delay in seconds; doubles per retry up to ``max_backoff``.
        max_backoff: ceiling on one back-off delay, in seconds.
        sleep: the sleep function (tests replace it to run instantly).
    """

    base_url: str
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    temperature: float = 0.0
    max_tokens: int = 2048
    timeout: float = 120.0
    max_retries: int = 6
    backoff: float = 1.0
    max_backoff: float = 60.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    _key: str = field(default="", init=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")
        self._key = os.environ.get(self.api_key_env, "")

    @property
    def url(self) -> str:
        """The full chat-completions URL."""
        base = self.base_url.rstrip("/")
        return base if base.endswith("/chat/completions") else base + "/chat/completions"

    @property
    def has_key(self) -> bool:
        """Whether a non-empty key was found in ``api_key_env``."""
        return bool(self._key)

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text

    def _post(self, payload: bytes) -> dict:
        headers = {"Content-Type": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        request = urllib.request.Request(self.url, data=payload, headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            return json.loads(response.read().decode("utf-8"))

    def complete(self, system: str, user: str) -> str:
        """The judge's reply to one (system, user) exchange.

        Retries up to ``max_retries`` times on network errors, timeouts, malformed replies
        and retryable HTTP statuses, sleeping ``backoff * 2**k`` seconds (capped) between
        tries. Raises :class:`JudgeError` when a try fails for good.
        """
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": user})
        payload = json.dumps({
            "model": self.model, "messages": messages,
            "temperature": self.temperature, "max_tokens": self.max_tokens,
        }).encode("utf-8")
        last = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                self.sleep(min(self.max_backoff, self.backoff * 2 ** (attempt - 1)))
            try:
                content = self._post(payload)["choices"][0]["message"]["content"]
                if not isinstance(content, str):
                    raise TypeError(f"message content is {type(content).__name__}, not text")
                return content
            except urllib.error.HTTPError as err:
                body = err.read().decode("utf-8", "replace")[:300]
                last = f"HTTP {err.code} {err.reason}: {body}"
                if err.code not in RETRYABLE_STATUS:
                    hint = f" (is ${self.api_key_env} set?)" if err.code in (401, 403) else ""
                    raise JudgeError(self._scrub(f"judge at {self.url}: {last}{hint}")) from None
            except (urllib.error.URLError, http.client.HTTPException, TimeoutError,
                    ConnectionError) as err:
                last = f"{type(err).__name__}: {getattr(err, 'reason', err)}"
            except (ValueError, KeyError, IndexError, TypeError, RecursionError) as err:
                last = f"malformed reply ({type(err).__name__}: {str(err)[:200]})"
        raise JudgeError(self._scrub(
            f"judge at {self.url} failed {self.max_retries + 1} times; last error: {last}"
        ))
