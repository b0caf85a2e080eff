"""The fleet's OpenAI budget, kept in the database (``20240118000000_openai_budget.sql``,
``20240120000001_budget_caps.sql``).

Every worker on every machine takes each call's charge from one row per (API key fingerprint,
model) through ``mealworker_budget_take_turn``, which reserves the charge under the row's lock by
the database's clock and says how long to wait before sending. When the budget is short, calls
take turns (``20240121000000_fair_budget_turns.sql``): a waiting line in the database, served
round-robin across users, oldest job first. Whose call it is comes from the job being run
(``calls_of``), not from the generation library, which knows nothing of jobs. The wait is a
plain sleep in the job's task: the worker's heartbeat keeps extending the job's lease meanwhile,
and cancelling the job (an operator's cancel, a lost lease, shutdown) ends the sleep, gives the
reservation back and leaves the line. Nothing here spends a job attempt; a long wait is noted
in the job's history (``tail``).

The operator's daily caps (``OPENAI_DAILY_TOKEN_CAP``, ``OPENAI_DAILY_USD_CAP``) are checked by
the same call: when one leaves no room, ``take`` raises ``SpendCapReachedError`` with the time
the cap opens again (the next UTC midnight by the database's clock), and the meal-plan job
waits until then (``mealplans.job``). Each answer's cost is told back (``spent``), so that the
dollar cap counts what was spent, not the worst case reserved.

That worst case is a reservation of its own (``20240124000000_usd_reservations.sql``), held
while its call can still be running: until the HTTP request's own time is up, and for a job's
call as long as the job's lease is held (kept by the worker's heartbeats). So a worker killed
mid-call holds the fleet's dollars for a few minutes, not until midnight, and one cut off from
the database still has its call counted while that call could be answered.
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

from mealplan_cli.core.db.base import Database, Row
from mealplan_cli.core.queue import ClaimedJob, Queue, parse_time
from mealplan_cli.mealplans.generation.budget import RateLimits, Spend
from mealplan_cli.ops.errors import (
    ConfigurationError,
    DatabaseError,
    DatabaseUnavailableError,
    SpendCapReachedError,
    SpendCapTooSmallError,
)
from mealplan_cli.ops.metrics import BudgetFigures

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

CALL_MARGIN_SECONDS = 30.0
"""Beyond the client's own time for one request (OPENAI_TIMEOUT_SECONDS; each attempt reserves
anew): the sleep after an early reservation, and the clocks of this machine and the database."""

CALL_SECONDS = 120.0 + CALL_MARGIN_SECONDS
"""How long a reservation holds at least, unless the settings say otherwise (the default
timeout)."""

WAIT_REASONS: dict[str | None, str] = {
    None: "the per-minute limit",
    "waiting": "turns with other calls",
    "probing": "the limit being learned",
    "rate_limited": "a 429 from OpenAI",
    "usd_in_flight": "calls under way near the dollar cap",
}
"""Why a call waited (the take's reason), as ``tail`` shows it in a ``budget_wait`` event."""

WAITER_STALE_SECONDS = 10.0
"""A waiter not seen for this long (five missed asks: its worker died) no longer holds its
place; one that comes back takes its place again, since the order is by the job's age."""


@dataclass(frozen=True)
class CallOwner:
    """Whose OpenAI calls these are, for the turn order on a short budget and the job's history.

    ``group`` is who takes turns with whom (a user); None lets the database find the job's
    meal plan's user, and a job without one is its own group. ``created_at`` is the job's age
    (the database reads it when None). No job at all: each call is its own group. ``job``, the
    claimed job itself, lets a long wait be noted in its history (``tail``) and binds the calls'
    worst cases to its lease."""

    job_id: int | None = None
    created_at: datetime | None = None
    group: str | None = None
    job: ClaimedJob | None = None

    @classmethod
    def of(cls, job: ClaimedJob) -> CallOwner:
        return cls(job.id, job.created_at, job=job)

    @property
    def lease_token(self) -> uuid.UUID | None:
        """The lease the calls' reservations are bound to (None: no claimed job)."""
        return None if self.job is None else self.job.lease_token


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


NOTED_WAIT_SECONDS = 1.0
"""A wait for the budget at least this long is written as a ``budget_wait`` event of the job."""

CAP_SETTINGS = {"daily_cap": "OPENAI_DAILY_TOKEN_CAP", "daily_usd_cap": "OPENAI_DAILY_USD_CAP"}


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
        daily_usd_cap: float | None = None,
        lead: float = TURN_LEAD_SECONDS,
        refresh: float = WAITER_REFRESH_SECONDS,
        stale_after: float = WAITER_STALE_SECONDS,
        call_seconds: float = CALL_SECONDS,
    ) -> None:
        if stale_after <= refresh:
            raise ValueError("a waiter must ask again well before it is taken for dead")
        self.db = db
        self.key = key
        self.share = share
        self.tokens_cap = tokens_cap
        self.requests_cap = requests_cap
        self.daily_tokens_cap = daily_tokens_cap
        self.daily_usd_cap = daily_usd_cap
        self.lead_ms = round(lead * 1000)
        self.refresh_ms = round(refresh * 1000)
        self.stale_ms = round(stale_after * 1000)
        self.expires_ms = round(call_seconds * 1000)
        """A reservation holds at least this long after it was made (its call's time)."""
        self._learned: dict[str, tuple[int | None, int | None]] = {}
        self._figures = BudgetFigures(
            daily_tokens_cap=daily_tokens_cap, daily_usd_cap=daily_usd_cap
        )

    @classmethod
    def from_settings(cls, db: Database, settings: Settings) -> DatabaseBudget | None:
        capped = [
            name
            for name, value in (
                ("OPENAI_DAILY_TOKEN_CAP", settings.openai_daily_token_cap),
                ("OPENAI_DAILY_USD_CAP", settings.openai_daily_usd_cap),
            )
            if value is not None
        ]
        if settings.openai_api_key is not None and not settings.openai_shared_budget and capped:
            raise ConfigurationError(
                f"{' and '.join(capped)} need the shared budget, which keeps the fleet's daily "
                "count: remove OPENAI_SHARED_BUDGET=false, or the cap"
            )
        if settings.openai_api_key is None or not settings.openai_shared_budget:
            return None
        return cls(
            db,
            budget_key(settings.openai_api_key.get_secret_value(), settings.openai_base_url),
            share=settings.openai_budget_share,
            tokens_cap=settings.openai_tpm_limit,
            requests_cap=settings.openai_rpm_limit,
            daily_tokens_cap=settings.openai_daily_token_cap,
            daily_usd_cap=settings.openai_daily_usd_cap,
            call_seconds=settings.openai_timeout_seconds + CALL_MARGIN_SECONDS,
        )

    @property
    def waited_seconds(self) -> float:
        """Time this process's calls spent waiting for the budget, every model together."""
        return sum(self._figures.waited_seconds.values())

    def figures(self) -> BudgetFigures:
        """What ``/metrics`` shows of the budget (``ops.metrics.BudgetFigures``)."""
        return self._figures

    async def take(
        self, model: str, tokens: int, worst_usd: float | None = None
    ) -> uuid.UUID | None:
        self._check_fits(model, tokens, worst_usd)
        owner = _owner.get() or NO_JOB
        waiter = uuid.uuid4()  # this call's place in the line, the same on each ask
        in_line = slept = False
        started = time.monotonic()
        why: set[str] = set()
        while True:
            answer = await self._ask(model, tokens, worst_usd, waiter, owner, why)
            wait_ms, reserved = int(answer["wait_ms"]), bool(answer["reserved"])
            reason = answer.get("reason")
            self._seen(model, answer)
            if reason in CAP_SETTINGS:  # the database took it out of the line
                self._figures.capped[model] = True
                raise self._cap_reached(str(reason), answer, wait_ms)
            self._figures.capped[model] = False
            if reason == "waiting" and not in_line:
                in_line = True
                log.debug("waiting for the budget: %s calls ahead", answer.get("ahead"))
            reservation = _reservation(answer) if reserved else None
            if wait_ms > 0:
                slept = True
                why.add(WAIT_REASONS.get(str(reason), WAIT_REASONS[None]))
                try:
                    await asyncio.sleep(wait_ms / 1000)
                except asyncio.CancelledError:
                    if reserved:
                        await asyncio.shield(self._refund(model, tokens, worst_usd, reservation))
                    elif in_line:
                        await asyncio.shield(self._leave(model, waiter))
                    raise
            if reserved:
                break
        waited = time.monotonic() - started
        if slept and waited >= 0.05:  # a call that was not told to wait did not wait
            waits = self._figures.waited_seconds
            waits[model] = waits.get(model, 0.0) + waited
            await self._quietly("mealworker_budget_waited", model, p_ms=round(waited * 1000))
        if waited >= NOTED_WAIT_SECONDS:
            await self._note_wait(model, waited, why)
        return reservation

    async def spent(
        self,
        model: str,
        worst_usd: float | None,
        spend: Spend | None,
        reservation: uuid.UUID | None = None,
    ) -> None:
        if spend is None:  # no answer read: it may have been billed, count the worst case
            spend = Spend(cost_usd=worst_usd)
        try:
            today = await self.db.value(
                "mealworker_budget_spent",
                p_key=self.key,
                p_model=model,
                p_reserved_usd=worst_usd,
                p_cost_usd=spend.cost_usd,
                p_input_tokens=spend.input_tokens,
                p_cached_tokens=spend.cached_tokens,
                p_output_tokens=spend.output_tokens,
                p_reservation=reservation,
            )
        except DatabaseUnavailableError as error:  # the reservation stays while it is live
            log.debug("mealworker_budget_spent not recorded: %s", error)
            return
        if today is not None:
            self._figures.cost_today_usd = float(today)

    def _check_fits(self, model: str, tokens: int, worst_usd: float | None) -> None:
        """A call larger than a whole day's cap could never go: say so rather than wait."""
        if self.daily_tokens_cap is not None and tokens > self.daily_tokens_cap:
            raise SpendCapTooSmallError(
                f"one OpenAI call of this plan charges {tokens:,} tokens, more than the whole "
                f"daily OpenAI cap of {self.daily_tokens_cap:,} tokens (OPENAI_DAILY_TOKEN_CAP): "
                "raise "
                "the cap, or set OPENAI_DAILY_CAP_FALLBACK=true to write such plans offline",
                reason="a call is larger than the daily OpenAI cap",
                until=None,
            )
        if self.daily_usd_cap is None:
            return
        if worst_usd is None:
            raise ConfigurationError(
                f"OPENAI_DAILY_USD_CAP is set but the price of {model!r} is unknown: set "
                "OPENAI_PRICE_INPUT_PER_MTOK and OPENAI_PRICE_OUTPUT_PER_MTOK"
            )
        if worst_usd > self.daily_usd_cap:
            raise SpendCapTooSmallError(
                f"one OpenAI call of this plan may cost ${worst_usd:.4f}, more than the whole "
                f"daily OpenAI cap of ${self.daily_usd_cap:.4f} (OPENAI_DAILY_USD_CAP): raise "
                "the cap, or set OPENAI_DAILY_CAP_FALLBACK=true to write such plans offline",
                reason="a call costs more than the daily OpenAI cap",
                until=None,
            )

    def _cap_reached(self, reason: str, row: Row, wait_ms: int) -> SpendCapReachedError:
        until = parse_time(row.get("retry_at"))
        hours = wait_ms / 3_600_000
        if reason == "daily_cap":
            charged = int(row.get("tokens_charged_today") or 0)
            cap = f"{self.daily_tokens_cap:,} tokens"
            short = f"daily OpenAI cap reached: {charged:,} of {cap} charged today"
        else:
            spent = float(row.get("usd_spent_today") or 0.0)
            under_way = float(row.get("usd_reserved_today") or 0.0)
            cap = f"${self.daily_usd_cap:.2f}"
            short = f"daily OpenAI cap reached: ${spent:.4f} of {cap} spent today"
            if under_way > 0:
                short += f", up to ${under_way:.4f} more in calls under way"
        short += f" ({CAP_SETTINGS[reason]})"
        return SpendCapReachedError(
            f"the daily OpenAI cap of {cap} is spent; it resets at 00:00 UTC, in {hours:.1f} h "
            f"(raise {CAP_SETTINGS[reason]}, or set OPENAI_DAILY_CAP_FALLBACK=true to write "
            "plans offline meanwhile)",
            reason=short,
            until=until,
        )

    def _seen(self, model: str, row: Row) -> None:
        limit = row.get("tokens_limit")
        cap = self.tokens_cap
        known = [int(v) for v in (limit, cap) if v is not None]
        if known:
            self._figures.tokens_limit[model] = int(min(known) * self.share)
        charged = row.get("tokens_charged_today")
        if charged is not None:
            self._figures.tokens_charged_today[model] = int(charged)
        spent = row.get("usd_spent_today")
        if spent is not None:
            self._figures.cost_today_usd = float(spent)

    async def _note_wait(self, model: str, waited: float, why: set[str]) -> None:
        job = (_owner.get() or NO_JOB).job
        if job is None:
            return
        detail = {"model": model, "waited_ms": round(waited * 1000), "why": ", ".join(sorted(why))}
        try:
            await Queue(self.db).note(job, "budget_wait", detail)
        except DatabaseError as error:  # history is a courtesy: the call goes on without it
            log.debug("job %s: budget wait not noted: %s", job.id, error)

    async def _ask(
        self,
        model: str,
        tokens: int,
        worst_usd: float | None,
        waiter: uuid.UUID,
        owner: CallOwner,
        why: set[str],
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
                    p_usd=worst_usd,
                    p_daily_usd_cap=self.daily_usd_cap,
                    p_job_id=owner.job_id,
                    p_job_created_at=owner.created_at,
                    p_group=owner.group,
                    p_lead_ms=self.lead_ms,
                    p_refresh_ms=self.refresh_ms,
                    p_stale_ms=self.stale_ms,
                    p_lease_token=owner.lease_token,
                    p_expires_ms=self.expires_ms,
                )
            except DatabaseUnavailableError as error:
                log.debug("budget not reachable, no call sent yet: %s", error)
                why.add("database unreachable")
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
        refused = self._figures.refused
        refused[model] = refused.get(model, 0) + 1
        log.info(
            "OpenAI rate limit reached for %s although the budget allowed the call: every "
            "worker waits for the budget to refill",
            model,
        )
        await self._quietly(
            "mealworker_budget_refused", model, p_wait_ms=limits.retry_after_ms or 0
        )

    async def _refund(
        self, model: str, tokens: int, worst_usd: float | None, reservation: uuid.UUID | None
    ) -> None:
        await self._quietly(
            "mealworker_budget_refund",
            model,
            p_tokens=tokens,
            p_requests=1,
            p_tokens_cap=self.tokens_cap,
            p_requests_cap=self.requests_cap,
            p_share=self.share,
            p_usd=worst_usd,
            p_reservation=reservation,
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


def _reservation(answer: Row) -> uuid.UUID | None:
    """The reservation a take made (a UUID from psycopg, its text from PostgREST)."""
    value = answer.get("reservation")
    return None if value is None else uuid.UUID(str(value))


async def budget_stats(db: Database) -> list[dict[str, object]]:
    """Each budget as ``stats --json`` shows it: limits learned, today's charge, the tokens the
    answers used and what they cost, 429s, waits, the share of the bucket free now, the daily
    caps and until when one holds calls back, and the calls waiting in line for their turn now
    (``calls_waiting``, and the longest of their waits so far, ``longest_wait_ms``)."""
    rows = [dict(row) for row in await db.call("mealworker_budget_stats")]
    line: dict[tuple[object, object], list[int]] = {}
    for waiter in await db.call("mealworker_budget_waiters"):
        key = (waiter["budget_key"], waiter["model"])
        line.setdefault(key, []).append(int(waiter["waiting_ms"] or 0))
    for row in rows:
        waits = line.get((row["budget_key"], row["model"]), [])
        row["calls_waiting"] = len(waits)
        row["longest_wait_ms"] = max(waits, default=0)
    return rows
