"""How long a 7-day, 3-meal plan takes, and how soon its first day is visible.

Three ways, run in the same process against the same loopback OpenAI fake simulating a small
model's speed (0.7 s to first token, 70 output tokens/s by default), so their ratios are
meaningful on a noisy machine:

- ``planner``: the OpenAI planner as shipped: day 1 one call per meal beside the outline of
  days 2..7, then those days in parallel;
- ``planner_outline_first``: the earlier schedule (outline of all days, then every day in
  parallel), for the before/after of time to first day and of tokens;
- ``single_call``: the whole plan in one call.

Tokens: the fake counts prompt tokens on the messages only; ``schema_tokens_est`` adds the
response-format schema (``len/4``), which repeats on every call and which OpenAI bills as input.
Also times the offline catalogue planner. Prints one JSON object.

    python -m scripts.bench.plan_latency [--speedup 10] [--catalog-runs 20]

``--speedup`` divides the simulated latency (and the times, roughly) for a quick check; the
figures reported in notes use the default of 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

from openai import AsyncOpenAI
from pydantic import BaseModel, create_model

from mealplan_cli.mealplans.generation import generate_meal_plan
from mealplan_cli.mealplans.generation.foods import default_table
from mealplan_cli.mealplans.generation.models import Day
from mealplan_cli.mealplans.generation.planner_catalog import CatalogPlanner
from mealplan_cli.mealplans.generation.planner_openai import OpenAIPlanner
from mealplan_cli.mealplans.generation.planner_prompts import INSTRUCTIONS, outline_prompt
from mealplan_cli.mealplans.generation.planner_schema import day_schema, safe_foods
from mealplan_cli.mealplans.generation.pricing import price_for
from mealplan_cli.mealplans.generation.request import parse_request
from mealplan_cli.mealplans.generation.validation import PlanValidator
from tests.fakes.meal_responder import CatalogResponder
from tests.fakes.openai_server import FakeOpenAI, estimate_tokens

REQUEST = parse_request({"days": 7, "meals": "breakfast,lunch,dinner", "calories": 2000})
API_KEY = "sk-bench"
MODEL = "gpt-4.1-mini"


def whole_plan_schema() -> type[BaseModel]:
    """Every day of the plan in one answer: what a single-call planner asks for, with the same
    food-id enum as the per-day schema."""
    day = day_schema(safe_foods(PlanValidator(REQUEST)))
    schema: type[BaseModel] = create_model("WholePlan", days=(list[day], ...))  # type: ignore[valid-type]
    return schema


async def planner_way(base_url: str, day_one_by_meals: bool) -> dict[str, Any]:
    client = AsyncOpenAI(api_key=API_KEY, base_url=base_url, max_retries=0, timeout=600)
    try:
        planner = OpenAIPlanner(client, MODEL, concurrency=7, day_one_by_meals=day_one_by_meals)
        started = time.perf_counter()
        days_ready: dict[int, float] = {}  # day number -> seconds until it was first told

        def on_day(day: Day) -> None:
            days_ready.setdefault(day.day, time.perf_counter() - started)

        plan = await generate_meal_plan(REQUEST, planner=planner, on_day=on_day)
        elapsed = time.perf_counter() - started
        first_day_s = min(days_ready.values())
        return {
            "full_plan_s": round(elapsed, 2),
            "first_day_visible_s": round(first_day_s, 2),
            "first_day_number": min(days_ready, key=lambda n: days_ready[n]),
            "ratio_first_day_to_full_plan": round(first_day_s / elapsed, 3),
            "days_ready_s": {str(n): round(s, 2) for n, s in sorted(days_ready.items())},
            "usage": plan.metadata.usage.model_dump(),
        }
    finally:
        await client.close()


def add_schema_tokens(run: dict[str, Any], fake: FakeOpenAI, since: int) -> None:
    """The response-format schemas the run sent, as tokens and as cost at the model's price."""
    schema_tokens = sum(
        estimate_tokens(json.dumps(request.body.get("response_format")))
        for request in fake.requests[since:]
    )
    price = price_for(MODEL)
    usage = run["usage"]
    usage["schema_tokens_est"] = schema_tokens
    if price is not None:
        usage["cost_usd_with_schema_est"] = round(
            usage["cost_usd"] + schema_tokens * price.input / 1_000_000, 6
        )


async def single_call_way(base_url: str) -> tuple[float, dict[str, Any]]:
    client = AsyncOpenAI(api_key=API_KEY, base_url=base_url, max_retries=0, timeout=600)
    try:
        prompt = outline_prompt(REQUEST).replace("outline all", "write in full all")
        started = time.perf_counter()
        completion = await client.chat.completions.parse(
            model=MODEL,
            messages=[
                {"role": "system", "content": INSTRUCTIONS},
                {"role": "user", "content": prompt},
            ],
            response_format=whole_plan_schema(),
        )
        elapsed = time.perf_counter() - started
        parsed: Any = completion.choices[0].message.parsed
        if parsed is None or len(parsed.days) != REQUEST.days:
            raise SystemExit("the single-call answer was not a whole plan")
        usage = completion.usage
        return elapsed, {"output_tokens": usage.completion_tokens if usage else None}
    finally:
        await client.close()


def catalog_times(runs: int) -> list[float]:
    default_table()  # loading the bundled data once is start-up, not planning
    times = []
    for seed in range(runs):
        started = time.perf_counter()
        asyncio.run(generate_meal_plan(REQUEST, planner=CatalogPlanner(seed=seed)))
        times.append((time.perf_counter() - started) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--speedup", type=float, default=1.0)
    parser.add_argument("--catalog-runs", type=int, default=20)
    args = parser.parse_args()
    ttft, rate = 0.7 / args.speedup, 70.0 * args.speedup
    # The catalogue first, in a quiet process: timed after the OpenAI section (whose clients,
    # schemas and server threads it leaves behind) its median was 63 ms against 30-40 ms when
    # timed alone on the same machine.
    catalog = catalog_times(args.catalog_runs)
    with FakeOpenAI(
        CatalogResponder(), time_to_first_token=ttft, tokens_per_second=rate, api_key=API_KEY
    ) as fake:
        fake.models.append(MODEL)
        runs: dict[str, dict[str, Any]] = {}
        for name, by_meals in (("planner", True), ("planner_outline_first", False)):
            since = len(fake.requests)
            runs[name] = asyncio.run(planner_way(fake.base_url, by_meals))
            add_schema_tokens(runs[name], fake, since)
        single_s, single_usage = asyncio.run(single_call_way(fake.base_url))
    planner, before = runs["planner"], runs["planner_outline_first"]
    for run in runs.values():
        run["ratio_full_plan_to_single_call"] = round(run["full_plan_s"] / single_s, 3)
    print(
        json.dumps(
            {
                "benchmark": "plan_latency",
                "request": "7 days x breakfast, lunch, dinner",
                "simulated_model": {"time_to_first_token_s": ttft, "output_tokens_per_s": rate},
                "full_plan_s": planner["full_plan_s"],
                "first_day_visible_s": planner["first_day_visible_s"],
                "single_call_whole_plan_s": round(single_s, 2),
                "ratio_full_plan_to_single_call": planner["ratio_full_plan_to_single_call"],
                "goal_ratio_at_most": 0.3,
                "ratio_first_day_to_full_plan": planner["ratio_first_day_to_full_plan"],
                "goal_first_day_ratio_at_most": 0.35,
                "first_day_vs_outline_first": round(
                    planner["first_day_visible_s"] / before["first_day_visible_s"], 3
                ),
                "tokens_vs_outline_first": {
                    key: round(planner["usage"][key] / before["usage"][key], 3)
                    for key in ("calls", "input_tokens", "output_tokens", "schema_tokens_est")
                },
                **runs,
                "single_call_usage": single_usage,
                "catalog_planner_ms": {
                    "runs": len(catalog),
                    "median": round(statistics.median(catalog), 1),
                    "max": round(max(catalog), 1),
                    "goal_median_under": 50,
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
