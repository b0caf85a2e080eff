"""The clients a generation needs, built once from settings and closed together."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mealplan_cli.ops.errors import ConfigurationError
from mealplan_cli.settings.config import PlannerChoice, Settings

# The planners, photos, httpx and the catalogue load when a plan is first made, not when the
# services open: a worker that only runs ping or custom jobs never pays for them (start-up
# time and idle memory).
if TYPE_CHECKING:
    from mealplan_cli.mealplans.generation.budget import CallBudget
    from mealplan_cli.mealplans.generation.images import ImageCache, UnsplashPhotos
    from mealplan_cli.mealplans.generation.planner import (
        DayCallback,
        Planner,
        PlannerResult,
        ProgressCallback,
        ResumingPlanner,
    )
    from mealplan_cli.mealplans.generation.planner_catalog import CatalogPlanner
    from mealplan_cli.mealplans.generation.pricing import Price
    from mealplan_cli.mealplans.generation.request import MealPlanRequest
    from mealplan_cli.mealplans.generation.validation import CheckedMeal, PlanValidator


@dataclass
class GenerationServices:
    """The planner and photo source a generation runs with, and a line describing them."""

    planner: Planner
    images: UnsplashPhotos | None
    description: str
    budget: CallBudget | None = None
    """What the OpenAI calls are charged against (None: nothing shared)."""


def choose_planner(settings: Settings) -> PlannerChoice:
    """``auto`` means OpenAI when a key is set, else the offline catalogue."""
    if settings.planner is PlannerChoice.auto:
        return PlannerChoice.openai if settings.openai_api_key else PlannerChoice.catalog
    if settings.planner is PlannerChoice.openai and settings.openai_api_key is None:
        raise ConfigurationError(
            "the openai planner needs OPENAI_API_KEY: set it in .env or the environment, "
            "or use --planner catalog for the offline catalogue"
        )
    return settings.planner


class LazyCatalogPlanner:
    """The offline catalogue planner, built (catalogue loaded) on its first plan."""

    name = "catalog"

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed
        self._planner: CatalogPlanner | None = None

    async def plan(
        self,
        request: MealPlanRequest,
        validator: PlanValidator,
        on_progress: ProgressCallback,
        on_day: DayCallback | None = None,
    ) -> PlannerResult:
        if self._planner is None:
            from mealplan_cli.mealplans.generation.planner_catalog import CatalogPlanner

            self._planner = CatalogPlanner(seed=self.seed)
        if on_day is None:
            return await self._planner.plan(request, validator, on_progress)
        return await self._planner.plan(request, validator, on_progress, on_day)


class CapFallbackPlanner:
    """The OpenAI planner, and the offline catalogue when the daily OpenAI cap is spent (the
    operator opted in with ``OPENAI_DAILY_CAP_FALLBACK``); the plan's notes say which wrote it."""

    def __init__(self, planner: ResumingPlanner, fallback: Planner) -> None:
        self.planner = planner
        self.fallback = fallback
        self.name = planner.name

    async def plan(
        self,
        request: MealPlanRequest,
        validator: PlanValidator,
        on_progress: ProgressCallback,
        on_day: DayCallback | None = None,
    ) -> PlannerResult:
        return await self.resume(request, validator, on_progress, on_day, {})

    async def resume(
        self,
        request: MealPlanRequest,
        validator: PlanValidator,
        on_progress: ProgressCallback,
        on_day: DayCallback | None,
        done: dict[int, list[CheckedMeal]],
    ) -> PlannerResult:
        from mealplan_cli.mealplans.generation.planner import no_day
        from mealplan_cli.ops.errors import SpendCapReachedError

        try:
            return await self.planner.resume(
                request, validator, on_progress, on_day or no_day, done
            )
        except SpendCapReachedError as error:
            result = await self.fallback.plan(request, validator, on_progress, on_day or no_day)
            result.notes.append(f"written by the offline catalogue: {error}")
            return result


def model_price(settings: Settings) -> Price | None:
    """The price the OpenAI model's calls are counted at: the OPENAI_PRICE_* settings, else the
    price table's (None: unknown)."""
    from mealplan_cli.mealplans.generation.pricing import price_for

    return price_for(settings.openai_model, _price_override(settings))


def check_spend_caps(settings: Settings) -> None:
    """A dollar cap needs the model's price: with none known, refuse to start rather than count
    the calls as free."""
    if settings.openai_daily_usd_cap is None or model_price(settings) is not None:
        return
    from mealplan_cli.mealplans.generation.pricing import PRICES

    raise ConfigurationError(
        f"OPENAI_DAILY_USD_CAP is set but the price of model {settings.openai_model!r} is "
        "unknown, so its calls could not be counted: set OPENAI_PRICE_INPUT_PER_MTOK and "
        "OPENAI_PRICE_OUTPUT_PER_MTOK (US dollars per million tokens), or use a model of the "
        f"price table ({', '.join(sorted(PRICES))})"
    )


def _price_override(settings: Settings) -> Price | None:
    from mealplan_cli.mealplans.generation.pricing import Price

    given = (settings.openai_price_input_per_mtok, settings.openai_price_output_per_mtok)
    if given[0] is None or given[1] is None:
        return None
    cached = settings.openai_price_cached_per_mtok
    return Price(given[0], given[0] if cached is None else cached, given[1])


@asynccontextmanager
async def generation_services(
    settings: Settings,
    *,
    seed: int | None = None,
    image_cache: ImageCache | None = None,
    budget: CallBudget | None = None,
) -> AsyncIterator[GenerationServices]:
    """Open the planner's and photos' clients; everything is closed on exit. ``budget`` is
    what OpenAI calls are charged against (the runtime's is shared through the database);
    without one each call meets the rate limit alone."""
    choice = choose_planner(settings)
    async with AsyncExitStack() as stack:
        planner: Planner
        if choice is PlannerChoice.openai:
            check_spend_caps(settings)
            planner = await stack.enter_async_context(_openai_planner(settings, budget))
            where = settings.openai_base_url or "api.openai.com"
            planner_text = f"openai ({settings.openai_model} at {where})"
        else:
            planner = LazyCatalogPlanner(seed=seed)
            planner_text = "catalog (offline)"
        images = None
        photos_text = "photos off (no UNSPLASH_ACCESS_KEY)"
        if settings.unsplash_access_key is not None:
            import httpx

            from mealplan_cli.mealplans.generation.images import MemoryImageCache, UnsplashPhotos

            http = await stack.enter_async_context(
                httpx.AsyncClient(headers={"User-Agent": "mealworker"})
            )
            images = UnsplashPhotos(
                http,
                settings.unsplash_access_key,
                api_url=settings.unsplash_api_url,
                app_name=settings.unsplash_app_name,
                min_remaining=settings.unsplash_min_remaining,
                timeout=settings.unsplash_timeout_seconds,
                cache=image_cache or MemoryImageCache(),
            )
            photos_text = f"photos from Unsplash ({settings.unsplash_api_url})"
        yield GenerationServices(
            planner, images, f"planner {planner_text}, {photos_text}", budget=budget
        )


@asynccontextmanager
async def _openai_planner(settings: Settings, budget: CallBudget | None) -> AsyncIterator[Planner]:
    # Imported here: the SDK is a third of an idle worker's memory, and the offline planner
    # never needs it.
    from openai import AsyncOpenAI

    from mealplan_cli.mealplans.generation.planner_openai import OpenAIPlanner

    assert settings.openai_api_key is not None
    client = AsyncOpenAI(
        api_key=settings.openai_api_key.get_secret_value(),
        base_url=settings.openai_base_url,
        timeout=settings.openai_timeout_seconds,
        max_retries=0,
    )
    try:
        planner = OpenAIPlanner(
            client,
            settings.openai_model,
            concurrency=settings.openai_concurrency,
            max_attempts=settings.openai_max_attempts,
            price=_price_override(settings),
            budget=budget,
        )
        if settings.openai_daily_cap_fallback:
            yield CapFallbackPlanner(planner, LazyCatalogPlanner())
        else:
            yield planner
    finally:
        await client.close()
