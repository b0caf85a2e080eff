"""How long a 7-day, 3-meal plan takes: the planner's outline + parallel days, against one call.

Both run in the same process against the same loopback OpenAI fake, simulating a small model's
speed (0.7 s to first token, 70 output tokens/s by default), so their ratio is meaningful on a
noisy machine. Also times the offline catalogue planner. Prints one JSON object.

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

from mealplan_cli.generation import generate_meal_plan
from mealplan_cli.generation.foods import default_table
from mealplan_cli.generation.models import Day, parse_request
from mealplan_cli.generation.planner_catalog import CatalogPlanner
from mealplan_cli.generation.planner_openai import OpenAIPlanner, day_schema, safe_foods
from mealplan_cli.generation.planner_prompts import INSTRUCTIONS, outline_prompt
from mealplan_cli.generation.validation import PlanValidator
from tests.fakes.meal_responder import CatalogResponder
from tests.fakes.openai_server import FakeOpenAI

REQUEST = parse_request({"days": 7, "meals": "breakfast,lunch,dinner", "calories": 2000})
API_KEY = "sk-bench"
MODEL = "gpt-4.1-mini"


def whole_plan_schema() -> type[BaseModel]:
    """Every day of the plan in one answer: what a single-call planner asks for, with the same
    food-id enum as the per-day schema."""
    day = day_schema(safe_foods(PlanValidator(REQUEST)))
    schema: type[BaseModel] = create_model("WholePlan", days=(list[day], ...))  # type: ignore[valid-type]
    return schema


async def planner_way(base_url: str) -> tuple[float, dict[str, Any]]:
    client = AsyncOpenAI(api_key=API_KEY, base_url=base_url, max_retries=0, timeout=600)
    try:
        planner = OpenAIPlanner(client, MODEL, concurrency=7)
        started = time.perf_counter()
        days_ready: dict[int, float] = {}  # day number -> seconds until it was first told

        def on_day(day: Day) -> None:
            days_ready.setdefault(day.day, time.perf_counter() - started)

        plan = await generate_meal_plan(REQUEST, planner=planner, on_day=on_day)
        elapsed = time.perf_counter() - started
        return elapsed, {**plan.metadata.usage.model_dump(), "days_ready_s": days_ready}
    finally:
        await client.close()


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
        planner_s, planner_usage = asyncio.run(planner_way(fake.base_url))
        days_ready = planner_usage.pop("days_ready_s")
        first_day_s = min(days_ready.values())
        single_s, single_usage = asyncio.run(single_call_way(fake.base_url))
    print(
        json.dumps(
            {
                "benchmark": "plan_latency",
                "request": "7 days x breakfast, lunch, dinner",
                "simulated_model": {"time_to_first_token_s": ttft, "output_tokens_per_s": rate},
                "planner_outline_then_parallel_days_s": round(planner_s, 2),
                "single_call_whole_plan_s": round(single_s, 2),
                "ratio_planner_to_single": round(planner_s / single_s, 3),
                "goal_ratio_at_most": 0.3,
                "first_day_visible_s": round(first_day_s, 2),
                "ratio_first_day_to_planner": round(first_day_s / planner_s, 3),
                "goal_first_day_ratio_at_most": 0.35,
                "first_day_number": min(days_ready, key=lambda n: days_ready[n]),
                "day_one_visible_s": round(days_ready.get(1, float("nan")), 2),
                "days_ready_s": {str(n): round(s, 2) for n, s in sorted(days_ready.items())},
                "planner_usage": planner_usage,
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
