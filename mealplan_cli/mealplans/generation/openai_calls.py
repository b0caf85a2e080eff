"""One structured-output call to OpenAI: transport retries, usage counted, errors made plain.

Every request is first charged to a ``CallBudget`` (its prompt estimate plus the reserved
``max_completion_tokens``, what OpenAI's rate limiter counts), which waits while the fleet's
budget is short; the limits are learned from each answer's headers. With a shared budget a 429
is the budget's business: it is told, and the call asked for again, which spends no transport
attempt. After each call the budget is told what it cost (a daily cap in dollars counts it).
Tenacity retries the other *transport* failures (5xx, connection errors, timeouts, and 429 when
nothing is shared; never ``insufficient_quota``; the SDK's own retries are off), honouring
Retry-After. An answer cut short or not matching the schema is raised as
``AnswerTruncatedError`` or ``AnswerUnparseableError`` for the planner to ask again; a refusal
or the content filter is the provider's rejection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import openai
import pydantic
from openai import AsyncOpenAI
from pydantic import BaseModel
from tenacity import AsyncRetrying, retry_if_exception

from mealplan_cli.mealplans.generation.budget import (
    NOTHING_SPENT,
    CallBudget,
    NoBudget,
    RateLimits,
    Spend,
    estimate_prompt_tokens,
)
from mealplan_cli.mealplans.generation.models import Usage
from mealplan_cli.mealplans.generation.openai_errors import (
    first_error,
    provider_error,
    retry_wait,
    transient,
)
from mealplan_cli.mealplans.generation.planner_prompts import INSTRUCTIONS
from mealplan_cli.mealplans.generation.pricing import Price, cost_usd, worst_case_usd
from mealplan_cli.ops.errors import (
    AnswerTruncatedError,
    AnswerUnparseableError,
    ProviderRejectedError,
    ProviderUnavailableError,
)
from mealplan_cli.ops.retry_policies import openai_attempts

T = TypeVar("T", bound=BaseModel)

Measure = Callable[[int, bool], None]
"""Told each answer's completion tokens and whether it was cut off (to size the next ones)."""

MAX_RATE_LIMITED = 50
"""429s one call may meet under a shared budget before it gives up: each waits for the
budget to refill, so this many means the limit is far below what the budget believes."""


@dataclass
class Tally:
    """Usage across concurrent calls, and whether one of them has already failed the plan."""

    usage: Usage = field(default_factory=Usage)
    failed: bool = False


class StructuredCalls:
    """Calls to one model with one client, each parsed into a pydantic schema."""

    def __init__(
        self,
        client: AsyncOpenAI,
        model: str,
        max_attempts: int,
        price: Price | None,
        budget: CallBudget | None = None,
    ) -> None:
        self.client = client
        self.model = model
        self.max_attempts = max_attempts
        self.price = price
        self.budget: CallBudget = budget or NoBudget()

    async def parse(
        self,
        schema: type[T],
        prompt: str,
        tally: Tally,
        max_tokens: int,
        measure: Measure | None = None,
    ) -> T:
        """One structured-output call, transport failures retried, errors made plain.

        Once a call has failed the plan, a call that was waiting for its turn is not sent: it
        ends as cancelled (the failure is being raised already) rather than spend tokens."""
        if tally.failed:
            raise asyncio.CancelledError()
        try:
            return await self._parse_once(schema, prompt, tally, max_tokens, measure)
        except (ProviderRejectedError, ProviderUnavailableError):
            tally.failed = True
            raise

    async def _parse_once(
        self,
        schema: type[T],
        prompt: str,
        tally: Tally,
        max_tokens: int,
        measure: Measure | None,
    ) -> T:
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": INSTRUCTIONS},
            {"role": "user", "content": prompt},
        ]
        prompt_tokens = estimate_prompt_tokens(messages, schema)

        async def call() -> Any:
            return await self._send(messages, schema, max_tokens, prompt_tokens, tally)

        try:
            completion = await self._with_retries(call)
        except openai.LengthFinishReasonError as error:
            self._count(tally, error.completion.usage)
            if measure is not None and error.completion.usage is not None:
                measure(error.completion.usage.completion_tokens, True)
            raise AnswerTruncatedError() from None
        except openai.ContentFilterFinishReasonError:
            raise ProviderRejectedError(
                "OpenAI's content filter stopped the answer: check the request's notes"
            ) from None
        except pydantic.ValidationError as error:
            raise AnswerUnparseableError(first_error(error)) from None
        self._count(tally, completion.usage)
        if measure is not None and completion.usage is not None:
            measure(completion.usage.completion_tokens, False)
        message = completion.choices[0].message
        if message.refusal:
            raise ProviderRejectedError(
                f"the model refused to write this plan ({message.refusal[:200]}): "
                "check the request's notes"
            )
        if message.parsed is None:
            raise AnswerUnparseableError("the answer was empty")
        parsed: T = message.parsed
        return parsed

    async def _send(
        self,
        messages: list[dict[str, Any]],
        schema: type[T],
        max_tokens: int,
        prompt_tokens: int,
        tally: Tally,
    ) -> Any:
        """Take the charge from the budget, send, learn the limits from the answer's headers,
        and tell the budget what the call cost.

        A 429 under a shared budget empties it (for every worker) and the call waits its turn
        again: a rate-limit wait is not a failure and costs no transport attempt."""
        charge = prompt_tokens + max_tokens
        worst = worst_case_usd(self.price, prompt_tokens, max_tokens)
        refused = 0
        while True:
            reservation = await self.budget.take(self.model, charge, worst)
            tally.usage = tally.usage + Usage(charged_tokens=charge)
            spend: Spend | None = None  # unknown until an answer is read: the worst case
            try:
                raw = await self.client.chat.completions.with_raw_response.parse(
                    model=self.model,
                    messages=messages,  # type: ignore[arg-type]
                    response_format=schema,
                    max_completion_tokens=max_tokens,
                )
                spend = self._spend(raw.http_response)
            except openai.RateLimitError as error:
                spend = NOTHING_SPENT
                if not self.budget.shared or error.code == "insufficient_quota":
                    raise
                tally.usage = tally.usage + Usage(rate_limited=1)
                refused += 1
                if refused >= MAX_RATE_LIMITED:
                    raise
                limits = RateLimits.from_headers(error.response.headers)
                await self.budget.learn(self.model, limits)  # a 429 tells the limit too
                await self.budget.refused(self.model, limits)
                continue
            except openai.APIStatusError:
                spend = NOTHING_SPENT
                raise
            finally:
                await asyncio.shield(self.budget.spent(self.model, worst, spend, reservation))
            await self.budget.learn(self.model, RateLimits.from_headers(raw.headers))
            return raw.parse()

    def _spend(self, response: Any) -> Spend | None:
        """What the answer's ``usage`` says it used and cost (None when it says nothing);
        ``response`` is the SDK's HTTP response."""
        try:
            usage = response.json().get("usage")
        except ValueError:
            return None
        if not isinstance(usage, dict):
            return None
        prompt = int(usage.get("prompt_tokens") or 0)
        completion = int(usage.get("completion_tokens") or 0)
        details = usage.get("prompt_tokens_details")
        cached = int((details or {}).get("cached_tokens") or 0) if isinstance(details, dict) else 0
        cost = None if self.price is None else cost_usd(self.price, prompt, cached, completion)
        return Spend(prompt, cached, completion, cost)

    async def _with_retries(self, call: Callable[[], Awaitable[Any]]) -> Any:
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception(transient),
                wait=retry_wait,
                stop=openai_attempts(self.max_attempts),
                reraise=True,
            ):
                with attempt:
                    return await call()
        except openai.APIError as error:
            raise provider_error(error, self.model, self.max_attempts) from None
        raise AssertionError("unreachable: tenacity either returns or raises")

    def _count(self, tally: Tally, usage: Any) -> None:
        if usage is None:
            return
        details = getattr(usage, "prompt_tokens_details", None)
        cached = int(getattr(details, "cached_tokens", 0) or 0)
        prompt, completion = int(usage.prompt_tokens), int(usage.completion_tokens)
        tally.usage = tally.usage + Usage(
            calls=1,
            input_tokens=prompt,
            output_tokens=completion,
            cached_tokens=cached,
            cost_usd=cost_usd(self.price, prompt, cached, completion),
        )
