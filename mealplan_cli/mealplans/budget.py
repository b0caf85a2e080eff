"""The fleet's OpenAI budget, kept in the database (``20240118000000_openai_budget.sql``).

Every worker on every machine takes each call's charge from one row per (API key fingerprint,
model) through ``mealworker_budget_take``, which reserves the charge under the row's lock by the
database's clock and says how long to wait before sending. The wait is a plain sleep in the
job's task: the worker's heartbeat keeps extending the job's lease meanwhile, and cancelling the
job (an operator's cancel, a lost lease, shutdown) ends the sleep and gives the reservation
back. Nothing here spends a job attempt.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from typing import TYPE_CHECKING

from mealplan_cli.core.db.base import Database
from mealplan_cli.mealplans.generation.budget import RateLimits
from mealplan_cli.ops.errors import DatabaseUnavailableError, SpendCapReachedError

if TYPE_CHECKING:
    from mealplan_cli.settings.config import Settings

log = logging.getLogger("mealworker.budget")

OUTAGE_RETRY_SECONDS = 1.0
"""While the database cannot be reached, no call goes out (fail closed): ask again after this."""

OPENAI_DEFAULT_URL = "https://api.openai.com/v1"


def budget_key(api_key: str, base_url: str | None) -> str:
    """Which budget a key draws on: a fingerprint of the key and where it is sent, never the
    key itself (the table is readable by the service role, and shown by ``stats``)."""
    digest = hashlib.sha256(f"{base_url or OPENAI_DEFAULT_URL}\n{api_key}".encode()).hexdigest()
    return f"key-{digest[:16]}"


class DatabaseBudget:
    """A ``CallBudget`` shared through ``mealworker_budget_*`` functions, by either transport."""

    shared = True

    def __init__(
        self,
        db: Database,
        key: str,
        *,
        share: float = 1.0,
        tokens_cap: int | None = None,
        requests_cap: int | None = None,
        daily_tokens_cap: int | None = None,
    ) -> None:
        self.db = db
        self.key = key
        self.share = share
        self.tokens_cap = tokens_cap
        self.requests_cap = requests_cap
        self.daily_tokens_cap = daily_tokens_cap
        self._learned: dict[str, tuple[int | None, int | None]] = {}
        self.waited_seconds = 0.0
        self.refusals = 0

    @classmethod
    def from_settings(cls, db: Database, settings: Settings) -> DatabaseBudget | None:
        if settings.openai_api_key is None or not settings.openai_shared_budget:
            return None
        return cls(
            db,
            budget_key(settings.openai_api_key.get_secret_value(), settings.openai_base_url),
            share=settings.openai_budget_share,
            tokens_cap=settings.openai_tpm_limit,
            requests_cap=settings.openai_rpm_limit,
            daily_tokens_cap=settings.openai_daily_token_cap,
        )

    async def take(self, model: str, tokens: int) -> None:
        started = time.monotonic()
        while True:
            try:
                rows = await self.db.call(
                    "mealworker_budget_take",
                    p_key=self.key,
                    p_model=model,
                    p_tokens=tokens,
                    p_requests=1,
                    p_tokens_cap=self.tokens_cap,
                    p_requests_cap=self.requests_cap,
                    p_share=self.share,
                    p_daily_tokens_cap=self.daily_tokens_cap,
                )
            except DatabaseUnavailableError as error:
                log.debug("budget not reachable, no call sent yet: %s", error)
                await asyncio.sleep(OUTAGE_RETRY_SECONDS)
                continue
            wait_ms, reserved = int(rows[0]["wait_ms"]), bool(rows[0]["reserved"])
            if rows[0].get("reason") == "daily_cap":
                hours = wait_ms / 3_600_000
                raise SpendCapReachedError(
                    f"the daily OpenAI cap of {self.daily_tokens_cap:,} tokens is spent; it "
                    f"resets at 00:00 UTC, in {hours:.1f} h (raise OPENAI_DAILY_TOKEN_CAP, or "
                    "set OPENAI_DAILY_CAP_FALLBACK=true to write plans offline meanwhile)"
                )
            if wait_ms > 0:
                try:
                    await asyncio.sleep(wait_ms / 1000)
                except asyncio.CancelledError:
                    if reserved:
                        await asyncio.shield(self._refund(model, tokens))
                    raise
            if reserved:
                break
        waited = time.monotonic() - started
        if waited >= 0.05:
            self.waited_seconds += waited
            await self._quietly("mealworker_budget_waited", model, p_ms=round(waited * 1000))

    async def learn(self, model: str, limits: RateLimits) -> None:
        """Tell the database the limits when this process sees them first or they change;
        the same headers again cost no round trip."""
        seen = (limits.tokens_limit, limits.requests_limit)
        if self._learned.get(model) == seen:
            return
        self._learned[model] = seen
        await self._quietly(
            "mealworker_budget_learn",
            model,
            p_tokens_limit=limits.tokens_limit,
            p_requests_limit=limits.requests_limit,
            p_tokens_remaining=limits.tokens_remaining,
            p_requests_remaining=limits.requests_remaining,
        )

    async def refused(self, model: str, limits: RateLimits) -> None:
        self.refusals += 1
        log.info(
            "OpenAI rate limit reached for %s although the budget allowed the call: every "
            "worker waits for the budget to refill",
            model,
        )
        await self._quietly(
            "mealworker_budget_refused", model, p_wait_ms=limits.retry_after_ms or 0
        )

    async def _refund(self, model: str, tokens: int) -> None:
        await self._quietly(
            "mealworker_budget_refund",
            model,
            p_tokens=tokens,
            p_requests=1,
            p_tokens_cap=self.tokens_cap,
            p_requests_cap=self.requests_cap,
            p_share=self.share,
        )

    async def _quietly(self, function: str, model: str, **params: object) -> None:
        """Bookkeeping that must not fail a plan: an outage here only makes the budget late."""
        try:
            await self.db.call(function, p_key=self.key, p_model=model, **params)
        except DatabaseUnavailableError as error:
            log.debug("%s not recorded: %s", function, error)


async def budget_stats(db: Database) -> list[dict[str, object]]:
    """Each budget as ``stats --json`` shows it: limits learned, today's charge, 429s, waits,
    the share of the bucket free now."""
    rows = await db.call("mealworker_budget_stats")
    return [dict(row) for row in rows]
