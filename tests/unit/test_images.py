"""Photos from the Unsplash fake: attribution, caching, download tracking, rate limits, failures.

No key or any Unsplash failure leaves photos out with a note; the plan itself always completes.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from mealplan_cli.mealplans.generation import MealPlan, generate_meal_plan, generation_services
from mealplan_cli.mealplans.generation.images import MemoryImageCache, photo_query
from mealplan_cli.mealplans.generation.request import parse_request
from mealplan_cli.settings.config import Settings
from tests.conftest import UNSPLASH_TEST_KEY, unsplash_settings
from tests.fakes.unsplash_server import FakeUnsplash, UnsplashFault

REQUEST = parse_request({"days": 2, "meals": "breakfast,snack", "calories": 1500})


def plan_with(settings: Settings, cache: MemoryImageCache | None = None) -> MealPlan:
    async def run() -> MealPlan:
        async with generation_services(settings, image_cache=cache) as services:
            return await generate_meal_plan(
                REQUEST, planner=services.planner, images=services.images
            )

    return asyncio.run(run())


def settings_for(fake: FakeUnsplash, **extra: Any) -> Settings:
    return Settings(planner="catalog", **unsplash_settings(fake, **extra))


def meals(plan: MealPlan) -> list[Any]:
    return [meal for day in plan.days for meal in day.meals]


def test_every_meal_gets_an_attributed_photo(fake_unsplash: FakeUnsplash) -> None:
    plan = plan_with(settings_for(fake_unsplash, unsplash_app_name="myapp"))
    for meal in meals(plan):
        photo = meal.photo
        assert photo is not None
        assert photo.attribution == f"Photo by {photo.photographer_name} on Unsplash"
        for link in (photo.photographer_url, photo.unsplash_url):
            query = parse_qs(urlsplit(link).query)
            assert query["utm_source"] == ["myapp"]
            assert query["utm_medium"] == ["referral"]
        assert photo.url.startswith(fake_unsplash.base_url)
    assert "4 of 4 meals have a photo" in plan.metadata.photos
    search = fake_unsplash.searches[0]
    assert search.params["orientation"] == "landscape"
    assert search.params["content_filter"] == "high"
    assert search.headers["authorization"] == f"Client-ID {UNSPLASH_TEST_KEY}"


def test_each_used_photo_triggers_its_download_endpoint_once(fake_unsplash: FakeUnsplash) -> None:
    plan = plan_with(settings_for(fake_unsplash))
    used = {meal.photo.id for meal in meals(plan) if meal.photo}
    downloaded = [photo_id for photo_id, _ in fake_unsplash.downloads]
    assert sorted(downloaded) == sorted(used)
    assert all("ixid" in params for _, params in fake_unsplash.downloads)


def test_a_dish_seen_before_costs_no_request(fake_unsplash: FakeUnsplash) -> None:
    cache = MemoryImageCache()
    plan_with(settings_for(fake_unsplash), cache)
    searches = len(fake_unsplash.searches)
    again = plan_with(settings_for(fake_unsplash), cache)
    assert len(fake_unsplash.searches) == searches
    assert "0 searches, 4 from cache" in again.metadata.photos


def test_a_dish_without_results_has_no_photo_and_is_remembered(
    fake_unsplash: FakeUnsplash,
) -> None:
    first = plan_with(settings_for(fake_unsplash))
    title = meals(first)[0].title
    fake_unsplash.no_results.add(title.lower())
    cache = MemoryImageCache()
    plan = plan_with(settings_for(fake_unsplash), cache)
    assert meals(plan)[0].photo is None
    assert "3 of 4 meals" in plan.metadata.photos
    assert asyncio.run(cache.get(photo_query(title))) is not None


def test_asking_stops_at_the_rate_limit_floor(fake_unsplash: FakeUnsplash) -> None:
    fake_unsplash.remaining = 7
    plan = plan_with(settings_for(fake_unsplash, unsplash_min_remaining=5))
    assert len(fake_unsplash.searches) == 2
    assert "quota nearly used" in plan.metadata.photos
    assert len(plan.days) == 2


@pytest.mark.parametrize(
    ("fault", "note"),
    [
        (UnsplashFault.rate_limit_429, "rate limit"),
        (UnsplashFault.rate_limit_403, "rate limit"),
        (UnsplashFault.server_error, "HTTP 500"),
    ],
)
def test_failures_leave_photos_out_and_the_plan_completes(
    fake_unsplash: FakeUnsplash, fault: UnsplashFault, note: str
) -> None:
    fake_unsplash.inject(fault, times=10)
    plan = plan_with(settings_for(fake_unsplash))
    assert len(plan.days) == 2
    assert all(meal.photo is None for meal in meals(plan))
    assert "stopped early" in plan.metadata.photos
    assert note in plan.metadata.photos


def test_a_hanging_unsplash_times_out_quickly(fake_unsplash: FakeUnsplash) -> None:
    fake_unsplash.hang_seconds = 10
    fake_unsplash.inject(UnsplashFault.hang, times=10)
    plan = plan_with(settings_for(fake_unsplash, unsplash_timeout_seconds=0.3))
    assert "did not answer in time" in plan.metadata.photos


def test_a_refused_key_is_reported_without_the_key(fake_unsplash: FakeUnsplash) -> None:
    fake_unsplash.access_key = "another-key"
    plan = plan_with(settings_for(fake_unsplash))
    assert "UNSPLASH_ACCESS_KEY" in plan.metadata.photos
    assert UNSPLASH_TEST_KEY not in plan.model_dump_json()


def test_no_key_means_no_photos_and_says_how_to_get_them() -> None:
    plan = plan_with(Settings(planner="catalog"))
    assert all(meal.photo is None for meal in meals(plan))
    assert "UNSPLASH_ACCESS_KEY" in plan.metadata.photos
