"""The fleet's OpenAI budget, kept in the database (``20240118000000_openai_budget.sql``).

Every worker on every machine takes each call's charge from one row per (API key fingerprint,
model) through ``mealworker_budget_take_turn``, which reserves the charge under the row's lock by
the database's clock and says how long to wait before sending. When the budget is short, calls
take turns (``20240121000000_fair_budget_turns.sql``): a waiting line in the database, served
round-robin across users, oldest job first. Whose call it is comes from the job being run
(``calls_of``), not from the generation library, which knows nothing of jobs. The wait is a
plain sleep in the job's task: the worker's heartbeat keeps extending the job's lease meanwhile,
and cancelling the job (an operator's cancel, a lost lease, shutdown) ends the sleep, gives the
reservation back and leaves the line. Nothing here spends a job attempt.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from mealplan_cli.core.db.base import Database
from mealplan_cli.mealplans.generation.budget import RateLimits
from mealplan_cli.ops.errors import DatabaseUnavailableError, SpendCapReachedError

if TYPE_CHECKING:
    from mealplan_cli.settings.config import Settings

log = logging.getLogger("mealworker.budget")

OUTAGE_RETRY_SECONDS = 1.0
"""While the database cannot be reached, no call goes out (fail closed): ask again after this."""

OPENAI_DEFAULT_URL = "https://api.openai.com/v1"

TURN_LEAD_SECONDS = 0.25
"""A call whose turn comes within this reserves its charge now and sleeps the rest."""

WAITER_REFRESH_SECONDS = 2.0
"""A call waiting in line asks again at least this often, which shows it is alive."""

WAITER_STALE_SECONDS = 10.0
"""A waiter not seen for this long (five missed asks: its worker died) no longer holds its
place; one that comes back takes its place again, since the order is by the job's age."""


@dataclass(frozen=True)
class CallOwner:
    """Whose OpenAI calls these are, for the turn order on a short budget.

    ``group`` is who takes turns with whom (a user); None lets the database find the job's
    meal plan's user, and a job without one is its own group. ``created_at`` is the job's age
    (the database reads it when None). No job at all: each call is its own group."""

    job_id: int | None = None
    created_at: datetime | None = None
    group: str | None = None


NO_JOB = CallOwner()

_owner: ContextVar[CallOwner | None] = ContextVar("mealworker_budget_owner", default=None)


@contextmanager
def calls_of(owner: CallOwner) -> Iterator[None]:
    """The budget calls made within (in this task and the tasks it starts) are ``owner``'s.

    The budget is built once per worker and handed to the planner, so the job's identity
    travels beside the generation library's calls rather than through them."""
    token = _owner.set(owner)
    try:
        yield
    finally:
        _owner.reset(token)


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
        lead: float = TURN_LEAD_SECONDS,
        refresh: float = WAITER_REFRESH_SECONDS,
        stale_after: float = WAITER_STALE_SECONDS,
    ) -> None:
        if stale_after <= refresh:
            raise ValueError("a waiter must ask again well before it is taken for dead")
        self.db = db
        self.key = key
        self.share = share
        self.tokens_cap = tokens_cap
        self.requests_cap = requests_cap
        self.daily_tokens_cap = daily_tokens_cap
        self.lead_ms = round(lead * 1000)
        self.refresh_ms = round(refresh * 1000)
        self.stale_ms = round(stale_after * 1000)
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
        owner = _owner.get() or NO_JOB
        waiter = uuid.uuid4()  # this call's place in the line, the same on each ask
        in_line = slept = False
        started = time.monotonic()
        while True:
            answer = await self._ask(model, tokens, waiter, owner)
            wait_ms, reserved = int(answer["wait_ms"]), bool(answer["reserved"])
            if answer.get("reason") == "waiting" and not in_line:
                in_line = True
                log.debug("waiting for the budget: %s calls ahead", answer.get("ahead"))
            if answer.get("reason") == "daily_cap":  # the database took it out of the line
                hours = wait_ms / 3_600_000
                raise SpendCapReachedError(
                    f"the daily OpenAI cap of {self.daily_tokens_cap:,} tokens is spent; it "
                    f"resets at 00:00 UTC, in {hours:.1f} h (raise OPENAI_DAILY_TOKEN_CAP, or "
                    "set OPENAI_DAILY_CAP_FALLBACK=true to write plans offline meanwhile)"
                )
            if wait_ms > 0:
                slept = True
                try:
                    await asyncio.sleep(wait_ms / 1000)
                except asyncio.CancelledError:
                    if reserved:
                        await asyncio.shield(self._refund(model, tokens))
                    elif in_line:
                        await asyncio.shield(self._leave(model, waiter))
                    raise
            if reserved:
                break
        waited = time.monotonic() - started
        if slept and waited >= 0.05:  # a call that was not told to wait did not wait
            self.waited_seconds += waited
            await self._quietly("mealworker_budget_waited", model, p_ms=round(waited * 1000))

    async def _ask(
        self, model: str, tokens: int, waiter: uuid.UUID, owner: CallOwner
    ) -> dict[str, Any]:
        """One ask for the call's turn: its reservation, or how long to wait before asking
        again. While the database cannot be reached no call goes out (fail closed)."""
        while True:
            try:
                rows = await self.db.call(
                    "mealworker_budget_take_turn",
                    p_key=self.key,
                    p_model=model,
                    p_tokens=tokens,
                    p_waiter=waiter,
                    p_requests=1,
                    p_tokens_cap=self.tokens_cap,
                    p_requests_cap=self.requests_cap,
                    p_share=self.share,
                    p_daily_tokens_cap=self.daily_tokens_cap,
                    p_job_id=owner.job_id,
                    p_job_created_at=owner.created_at,
                    p_group=owner.group,
                    p_lead_ms=self.lead_ms,
                    p_refresh_ms=self.refresh_ms,
                    p_stale_ms=self.stale_ms,
                )
            except DatabaseUnavailableError as error:
                log.debug("budget not reachable, no call sent yet: %s", error)
                await asyncio.sleep(OUTAGE_RETRY_SECONDS)
                continue
            return dict(rows[0])

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

    async def _leave(self, model: str, waiter: uuid.UUID) -> None:
        """Give up the call's place at once: a stale waiter would hold the line for seconds."""
        await self._quietly("mealworker_budget_leave", model, p_waiter=waiter)

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
