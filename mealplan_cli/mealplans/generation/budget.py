"""The rate-limit budget an OpenAI call is charged against before it is sent.

OpenAI counts a request against the organisation's tokens per minute when it arrives: the
prompt's estimated tokens plus ``max_completion_tokens``. A fleet of workers that each meet that
limit alone spends its calls on 429s. So the generation library asks a ``CallBudget`` before
every request: ``take`` waits until the charge fits (a shared budget lives in the database,
built by the runtime; the library never sees the queue), ``learn`` reads the limits from each
answer's ``x-ratelimit-*`` headers, and ``refused`` tells the budget about a 429 that still
happened, so that every worker holds back, not just this one. ``spent`` tells it what each
call cost by its answer's usage, so that a daily cap in dollars counts what was spent rather
than the worst case reserved by ``take``; it is handed back the reservation ``take`` returned,
so that it ends that call's worst case and no other.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, Protocol

from pydantic import BaseModel

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_MS = {"ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}

CHARS_PER_TOKEN = 4
"""OpenAI's rule of thumb, and how its rate limiter estimates a prompt before tokenising it."""

ESTIMATE_MARGIN = 1.02
"""A little over the character estimate: the budget must never promise what OpenAI refuses."""


@dataclass(frozen=True)
class RateLimits:
    """What one answer's ``x-ratelimit-*`` headers said (None: the header was absent)."""

    tokens_limit: int | None = None
    requests_limit: int | None = None
    tokens_remaining: int | None = None
    requests_remaining: int | None = None
    tokens_reset_ms: int | None = None
    requests_reset_ms: int | None = None
    retry_after_ms: int | None = None

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> RateLimits:
        def number(name: str) -> int | None:
            value = headers.get(name)
            try:
                return None if value is None else int(float(value))
            except ValueError:
                return None

        retry_after = headers.get("retry-after-ms")
        retry_ms = _number_ms(retry_after) if retry_after is not None else None
        if retry_ms is None and headers.get("retry-after") is not None:
            seconds = _number_ms(headers["retry-after"])
            retry_ms = None if seconds is None else seconds * 1000
        return cls(
            tokens_limit=number("x-ratelimit-limit-tokens"),
            requests_limit=number("x-ratelimit-limit-requests"),
            tokens_remaining=number("x-ratelimit-remaining-tokens"),
            requests_remaining=number("x-ratelimit-remaining-requests"),
            tokens_reset_ms=duration_ms(headers.get("x-ratelimit-reset-tokens")),
            requests_reset_ms=duration_ms(headers.get("x-ratelimit-reset-requests")),
            retry_after_ms=retry_ms,
        )

    @property
    def known(self) -> bool:
        return self.tokens_limit is not None or self.requests_limit is not None


def duration_ms(text: str | None) -> int | None:
    """OpenAI's reset durations (``1s``, ``6m0s``, ``20ms``, ``1h2m3.5s``) in milliseconds."""
    if not text:
        return None
    parts = _DURATION_PART.findall(text.strip())
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        return None
    return math.ceil(sum(float(n) * _UNIT_MS[u] for n, u in parts))


def _number_ms(text: str) -> int | None:
    try:
        return max(math.ceil(float(text)), 0)
    except ValueError:
        return None


@cache
def schema_chars(schema: type[BaseModel]) -> int:
    """The length of the JSON schema the SDK sends for ``schema`` (it is part of the prompt)."""
    from openai.lib._parsing._completions import type_to_response_format_param

    return len(json.dumps(type_to_response_format_param(schema), separators=(",", ":")))


def estimate_prompt_tokens(messages: list[dict[str, Any]], schema: type[BaseModel]) -> int:
    """What OpenAI's rate limiter will count for this prompt: its characters over four, the
    response format's schema (the food-id enum is most of it) included."""
    chars = sum(len(str(m.get("content", ""))) for m in messages) + schema_chars(schema)
    return math.ceil(chars / CHARS_PER_TOKEN * ESTIMATE_MARGIN)


@dataclass(frozen=True)
class Spend:
    """What one call used and cost, from its answer's ``usage``."""

    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    """None when the model's price is unknown."""


NOTHING_SPENT = Spend(cost_usd=0.0)
"""A call OpenAI refused or failed (an error status is not billed)."""


class CallBudget(Protocol):
    """What a planner's calls are charged against; see the module's docstring."""

    shared: bool
    """True when a 429 is the budget's business (told to ``refused``, then asked again at no
    cost to the job); False when the call's own retries handle it, as without a budget."""

    async def take(
        self, model: str, tokens: int, worst_usd: float | None = None
    ) -> uuid.UUID | None:
        """Wait until a call of ``tokens`` (prompt estimate plus reservation) may be sent;
        ``worst_usd`` is what it can cost at most (None: the price is unknown). Returns the id
        of the call's reservation of ``worst_usd``, for ``spent`` (None: nothing reserved).
        Raises ``SpendCapReachedError`` when a daily cap leaves no room for it today."""
        ...

    async def spent(
        self,
        model: str,
        worst_usd: float | None,
        spend: Spend | None,
        reservation: uuid.UUID | None = None,
    ) -> None:
        """A call taken with ``worst_usd`` (its ``reservation``, as ``take`` returned it) ended:
        ``spend`` is what it used and cost, None when unknown (no answer read: it counts at its
        worst case)."""
        ...

    async def learn(self, model: str, limits: RateLimits) -> None:
        """An answer came back with these headers."""
        ...

    async def refused(self, model: str, limits: RateLimits) -> None:
        """OpenAI answered 429 (a rate limit, not the quota) with these headers."""
        ...


class NoBudget:
    """Nothing shared: each call goes at once and a 429 is retried by the call itself."""

    shared = False

    async def take(
        self, model: str, tokens: int, worst_usd: float | None = None
    ) -> uuid.UUID | None:
        return None

    async def spent(
        self,
        model: str,
        worst_usd: float | None,
        spend: Spend | None,
        reservation: uuid.UUID | None = None,
    ) -> None:
        return None

    async def learn(self, model: str, limits: RateLimits) -> None:
        return None

    async def refused(self, model: str, limits: RateLimits) -> None:
        return None
