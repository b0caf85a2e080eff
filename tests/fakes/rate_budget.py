"""An organisation's rate limit as OpenAI enforces it, for ``FakeOpenAI.budget``.

Two buckets (tokens and requests per minute) that refill continuously. A request is charged
when it arrives, before any answer is written: the prompt's estimate (characters over four,
the response format's JSON schema included) plus its ``max_completion_tokens``, whatever the
answer uses. A request that does not fit is refused with a 429 and the ``x-ratelimit-*``
headers, and no ``retry-after`` (OpenAI sends none on these). Every figure a benchmark or test
needs is counted here: charges, refusals, and the most the buckets were ever overdrawn (never,
since a refused request is not charged; ``max_in_window`` checks it from the outside).
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

WINDOW_SECONDS = 60.0
DEFAULT_COMPLETION_TOKENS = 4096


def charge_of(body: dict[str, Any], prompt_text: str) -> int:
    """What OpenAI's limiter counts for a chat request at arrival."""
    response_format = body.get("response_format")
    schema_chars = len(json.dumps(response_format, separators=(",", ":"))) if response_format else 0
    prompt = math.ceil((len(prompt_text) + schema_chars) / 4)
    reserved = body.get("max_completion_tokens") or body.get("max_tokens")
    return prompt + int(reserved or DEFAULT_COMPLETION_TOKENS)


@dataclass
class _Bucket:
    limit: int
    level: float
    at: float

    def refill(self, now: float) -> None:
        self.level = min(self.limit, self.level + (now - self.at) * self.limit / WINDOW_SECONDS)
        self.at = now

    def reset_seconds(self) -> float:
        return (self.limit - self.level) * WINDOW_SECONDS / self.limit


@dataclass
class RateBudget:
    """Tokens and requests per minute; thread-safe (the fake answers on many threads)."""

    tokens_per_minute: int
    requests_per_minute: int = 10_000
    send_headers: bool = True
    charged_tokens: int = 0
    answered: int = 0
    refused: int = 0
    charges: deque[tuple[float, int]] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        now = time.monotonic()
        self._tokens = _Bucket(self.tokens_per_minute, self.tokens_per_minute, now)
        self._requests = _Bucket(self.requests_per_minute, self.requests_per_minute, now)

    def charge(self, tokens: int) -> bool:
        """Take a request's charge; False (charge nothing) when it does not fit."""
        with self._lock:
            now = time.monotonic()
            self._tokens.refill(now)
            self._requests.refill(now)
            if self._tokens.level < tokens or self._requests.level < 1:
                self.refused += 1
                return False
            self._tokens.level -= tokens
            self._requests.level -= 1
            self.charged_tokens += tokens
            self.answered += 1
            self.charges.append((now, tokens))
            return True

    def empty(self) -> None:
        """Someone else used the key: nothing left until the buckets refill."""
        with self._lock:
            now = time.monotonic()
            self._tokens.level, self._tokens.at = 0.0, now
            self._requests.level, self._requests.at = 0.0, now

    def headers(self) -> dict[str, str]:
        if not self.send_headers:
            return {}
        with self._lock:
            now = time.monotonic()
            self._tokens.refill(now)
            self._requests.refill(now)
            tokens, requests = self._tokens, self._requests
            return {
                "x-ratelimit-limit-tokens": str(tokens.limit),
                "x-ratelimit-limit-requests": str(requests.limit),
                "x-ratelimit-remaining-tokens": str(math.floor(tokens.level)),
                "x-ratelimit-remaining-requests": str(math.floor(requests.level)),
                "x-ratelimit-reset-tokens": _duration(tokens.reset_seconds()),
                "x-ratelimit-reset-requests": _duration(requests.reset_seconds()),
            }

    def max_in_window(self, seconds: float = WINDOW_SECONDS) -> int:
        """The most tokens charged in any ``seconds``-long stretch: a bucket of one minute's
        limit, refilled over the minute, lets through at most twice the limit in a minute (a
        full bucket at the start, a refill during it), and at most the limit plus the refill
        in any shorter stretch."""
        with self._lock:
            times = list(self.charges)
        best, total, start = 0, 0, 0
        for end in range(len(times)):
            total += times[end][1]
            while times[end][0] - times[start][0] > seconds:
                total -= times[start][1]
                start += 1
            best = max(best, total)
        return best


def _duration(seconds: float) -> str:
    """OpenAI's way of writing a reset time: ``1s``, ``6m0s``, ``120ms``."""
    if seconds < 1:
        return f"{max(math.ceil(seconds * 1000), 0)}ms"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}m{rest:.3g}s" if minutes else f"{rest:.3g}s"
