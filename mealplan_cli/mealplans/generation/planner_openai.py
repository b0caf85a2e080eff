"""The OpenAI planner: day 1 meal by meal beside an outline, then one call per day in parallel.

One call for a whole week is 10-15k output tokens, minutes of generation and close to many HTTP
timeouts; a short outline call (every meal's title) followed by a call per day, run in parallel,
takes about one day's time and lets each day be validated, and regenerated with the validator's
reasons, on its own. Day 1 does not wait for the outline: its meals are written one call each
while the outline is, so the app can show it after about one meal's generation time.

Each call reserves the completion tokens its answer is expected to need (``completion_sizes``:
sized per meal from the answers measured, not a blanket cap, since OpenAI charges the
reservation against the rate limit); a call cut off for length is the only one asked again with
a larger reservation.

Retries live in two layers that never multiply: tenacity retries *transport* failures (429 but
not ``insufficient_quota``, 5xx, connection errors, timeouts; the SDK's own retries are off),
honouring Retry-After; the planner regenerates *content* the validator refused, at most twice
per day, with the reasons in the prompt.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from openai import AsyncOpenAI

from mealplan_cli.mealplans.generation.budget import CallBudget
from mealplan_cli.mealplans.generation.completion_sizes import MEALS, OUTLINE, CompletionSizes, Kind
from mealplan_cli.mealplans.generation.models import RejectedMeal, ScaledMeal
from mealplan_cli.mealplans.generation.openai_calls import Measure, StructuredCalls, Tally
from mealplan_cli.mealplans.generation.planner import (
    DayCallback,
    PlannerResult,
    Progress,
    ProgressCallback,
    no_day,
)
from mealplan_cli.mealplans.generation.planner_checks import (
    REGENERATIONS,
    check_meal,
    day_failed,
    drop_repeats,
    variety_clashes,
)
from mealplan_cli.mealplans.generation.planner_prompts import (
    day_prompt,
    meal_prompt,
    outline_prompt,
)
from mealplan_cli.mealplans.generation.planner_schema import (
    DayPlan,
    OutlineDay,
    PlanOutline,
    day_schema,
    safe_foods,
)
from mealplan_cli.mealplans.generation.pricing import Price, price_for
from mealplan_cli.mealplans.generation.request import MealPlanRequest
from mealplan_cli.mealplans.generation.validation import CheckedMeal, PlanValidator
from mealplan_cli.mealplans.generation.vocabulary import Slot
from mealplan_cli.ops.errors import AnswerTruncatedError, AnswerUnparseableError, PlanRejectedError


@dataclass
class _Written:
    """A day that passed the validator: its meals, and what it took."""

    meals: list[CheckedMeal]
    scaled: list[ScaledMeal]
    rejected: list[RejectedMeal]


class OpenAIPlanner:
    name = "openai"

    def __init__(
        self,
        client: AsyncOpenAI,
        model: str,
        *,
        concurrency: int = 4,
        max_attempts: int = 4,
        price: Price | None = None,
        day_one_by_meals: bool = True,
        budget: CallBudget | None = None,
    ) -> None:
        """``day_one_by_meals=False`` waits for the outline of every day before writing any,
        day 1 included, in one call per day: the earlier schedule, kept so the latency
        benchmark can compare the two in one run."""
        self.client = client
        self.model = model
        self.concurrency = concurrency
        self.max_attempts = max_attempts
        self.price = price_for(model, price)
        self.day_one_by_meals = day_one_by_meals
        self.calls = StructuredCalls(client, model, max_attempts, self.price, budget)
        self.sizes = CompletionSizes(model)

    async def plan(
        self,
        request: MealPlanRequest,
        validator: PlanValidator,
        on_progress: ProgressCallback,
        on_day: DayCallback = no_day,
    ) -> PlannerResult:
        """Day 1 meal by meal alongside the outline of the other days, then those days."""
        return await self.resume(request, validator, on_progress, on_day, {})

    async def resume(
        self,
        request: MealPlanRequest,
        validator: PlanValidator,
        on_progress: ProgressCallback,
        on_day: DayCallback,
        done: dict[int, list[CheckedMeal]],
    ) -> PlannerResult:
        """The plan, the days in ``done`` kept as they are (an earlier attempt's, checked).

        Day 1 waits for nothing: its meals are written one call each, in parallel with the
        outline, so it is validated and told to ``on_day`` after about one meal's generation
        time. The other days start once both are done, so each is told day 1's titles and
        proteins; the variety checks then run over the whole week as before.
        """
        tally = Tally()
        result = PlannerResult(days=[], model=self.model)
        if self.price is None:
            result.notes.append(
                f"no price known for model {self.model}: cost not estimated "
                "(set OPENAI_PRICE_INPUT_PER_MTOK and OPENAI_PRICE_OUTPUT_PER_MTOK)"
            )
        schema = day_schema(safe_foods(validator))
        first = 2 if self.day_one_by_meals else 1  # the first day the outline covers
        gate = asyncio.Semaphore(self.concurrency)
        by_day: dict[int, OutlineDay] = {}
        titles = {day: [c.meal.title for c in meals] for day, meals in done.items()}
        days: dict[int, list[CheckedMeal]] = dict(done)
        ready = len(days)
        missing = [day for day in range(first, request.days + 1) if day not in days]

        def publish(day: int, written: _Written) -> None:
            nonlocal ready
            first_time = day not in days
            days[day] = written.meals
            titles[day] = [c.meal.title for c in written.meals]
            on_day(day, written.meals)
            result.scaled += written.scaled
            result.rejected += written.rejected
            if first_time:
                ready += 1
                on_progress(Progress("day", ready, request.days, f"day {day} ready"))

        async def day_one() -> None:
            publish(1, await self._day_by_meals(request, validator, schema, 1, gate, tally))

        async def outline() -> None:
            if not missing:
                return
            on_progress(Progress("outline", 0, 1, "outlining the plan"))
            async with gate:
                planned = await self._outline(request, first, tally)
            for outline_day in planned.days:
                if outline_day.day >= first:
                    by_day[outline_day.day] = outline_day
                    titles.setdefault(outline_day.day, [m.title for m in outline_day.meals])
            on_progress(Progress("outline", 1, 1, "outline ready"))

        async def one_day(day: int, problems: list[str]) -> None:
            avoid = [t for other, ts in sorted(titles.items()) if other != day for t in ts]
            known = {
                other: [c.meal.main_protein or "none" for c in days[other]]
                for other in (day - 2, day - 1, day + 1, day + 2)
                if other in days
            }
            planned = by_day.get(day)
            outline = [(m.slot, m.title) for m in planned.meals] if planned else None
            async with gate:
                written = await self._day(
                    request, validator, schema, day, outline, avoid, problems, known, tally
                )
            publish(day, written)

        on_progress(Progress("day", ready, request.days, "writing days"))
        first_steps = [outline()]
        if self.day_one_by_meals and 1 not in days:
            first_steps.append(day_one())
        await _gather(first_steps)
        await _gather(one_day(day, []) for day in missing)
        for _ in range(REGENERATIONS):
            clashes = variety_clashes(days)
            if not clashes:
                break
            for day, reasons in clashes.items():
                await one_day(day, reasons)
        clashes = variety_clashes(days)
        if clashes:
            reasons = [r for rs in clashes.values() for r in rs]
            raise PlanRejectedError("the model kept repeating meals: " + reasons[0], reasons)
        result.days = [days[day] for day in sorted(days)]
        result.usage = tally.usage
        return result

    async def _outline(self, request: MealPlanRequest, first: int, tally: Tally) -> PlanOutline:
        prompt = outline_prompt(request, first_day=first)
        items = (request.days - first + 1) * len(request.meals)
        cut = 0
        for _ in range(REGENERATIONS + 1):
            try:
                return await self.calls.parse(
                    PlanOutline,
                    prompt,
                    tally,
                    self.sizes.reserve(OUTLINE, items, cut),
                    self._measure(OUTLINE, items),
                )
            except AnswerTruncatedError:
                cut += 1
            except AnswerUnparseableError:
                continue
        raise PlanRejectedError("the model could not produce a usable outline of the plan")

    async def _day(
        self,
        request: MealPlanRequest,
        validator: PlanValidator,
        schema: type[DayPlan],
        day: int,
        outline: list[tuple[Slot, str]] | None,
        avoid: list[str],
        problems: list[str],
        known: dict[int, list[str]],
        tally: Tally,
    ) -> _Written:
        rejected: list[RejectedMeal] = []
        problems = list(problems)
        compact = False
        cut = 0
        items = len(request.meals)
        for _ in range(REGENERATIONS + 1):
            prompt = day_prompt(request, day, outline, avoid, problems, compact, known)
            try:
                answer = await self.calls.parse(
                    schema,
                    prompt,
                    tally,
                    self.sizes.reserve(MEALS, items, cut),
                    self._measure(MEALS, items),
                )
            except AnswerTruncatedError:
                cut += 1
                compact, problems = True, ["the answer was cut off for length"]
                continue
            except AnswerUnparseableError as error:
                problems = [f"the answer did not match the schema: {error}"]
                continue
            problems = []
            checked: list[CheckedMeal] = []
            slots = [meal.slot for meal in answer.meals]
            if slots != request.meals:
                wanted = ", ".join(s.value for s in request.meals)
                got = ", ".join(s.value for s in slots)
                problems.append(f"the day must have exactly the meals {wanted}; it had {got}")
            for meal in answer.meals:
                outcome = check_meal(validator, day, meal, rejected)
                if isinstance(outcome, list):
                    problems += outcome
                else:
                    checked.append(outcome)
            if problems:
                continue
            fit = validator.fit_day(day, checked)
            if isinstance(fit, list):
                problems = [str(v) for v in fit]
                continue
            return _Written(fit.meals, fit.scaled, rejected)
        raise day_failed(day, problems)

    async def _day_by_meals(
        self,
        request: MealPlanRequest,
        validator: PlanValidator,
        schema: type[DayPlan],
        day: int,
        gate: asyncio.Semaphore,
        tally: Tally,
    ) -> _Written:
        """A day written one meal per call, the calls in parallel: about a third of a day call's
        time for three meals. Each meal goes through the same schema (a day holding just that
        meal, ingredients from the same food-id enum) and the same ``validator.check``; a meal
        refused is asked for again with its reasons, and once every slot has a meal the day is
        fitted to its energy target like any other. A day that does not fit is rewritten whole,
        each meal told why. At most ``REGENERATIONS`` rewrites of any meal, as for a day."""
        rejected: list[RejectedMeal] = []
        meals: dict[Slot, CheckedMeal] = {}
        problems: dict[Slot, list[str]] = {slot: [] for slot in request.meals}
        compact: set[Slot] = set()
        cuts: list[Slot] = []

        async def one(slot: Slot) -> None:
            avoid = [c.meal.title for s, c in meals.items() if s is not slot]
            prompt = meal_prompt(request, day, slot, avoid, problems[slot], slot in compact)
            async with gate:
                try:
                    answer = await self.calls.parse(
                        schema,
                        prompt,
                        tally,
                        self.sizes.reserve(MEALS, 1, cuts.count(slot)),
                        self._measure(MEALS, 1),
                    )
                except AnswerTruncatedError:
                    cuts.append(slot)
                    compact.add(slot)
                    problems[slot] = ["the answer was cut off for length"]
                    return
                except AnswerUnparseableError as error:
                    problems[slot] = [f"the answer did not match the schema: {error}"]
                    return
            got = [meal.slot for meal in answer.meals]
            if got != [slot]:
                problems[slot] = [
                    f"the answer must hold exactly one meal, the {slot.value}; it had "
                    + (", ".join(s.value for s in got) or "none")
                ]
                return
            outcome = check_meal(validator, day, answer.meals[0], rejected)
            if isinstance(outcome, list):
                problems[slot] = outcome
            else:
                meals[slot] = outcome

        last: list[str] = []
        for _ in range(REGENERATIONS + 1):
            await _gather(one(slot) for slot in request.meals if slot not in meals)
            drop_repeats(request.meals, meals, problems)
            if len(meals) < len(request.meals):
                last = [p for slot in request.meals if slot not in meals for p in problems[slot]]
                continue
            fit = validator.fit_day(day, [meals[slot] for slot in request.meals])
            if not isinstance(fit, list):
                return _Written(fit.meals, fit.scaled, rejected)
            last = [str(v) for v in fit]
            meals.clear()
            problems = {slot: last for slot in request.meals}
        raise day_failed(day, last)

    def _measure(self, kind: Kind, items: int) -> Measure:
        def measure(completion_tokens: int, cut_off: bool) -> None:
            self.sizes.observe(kind, items, completion_tokens, cut_off)

        return measure


async def _gather(tasks: Any) -> None:
    """Run the coroutines together; the first failure cancels the rest and is raised."""
    try:
        async with asyncio.TaskGroup() as group:
            for task in tasks:
                group.create_task(task)
    except BaseExceptionGroup as failures:
        first = failures.exceptions[0]
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None
