"""Dish photos from Unsplash, cached, attributed and rate-limit aware.

Photos are a garnish: no key, a rate limit or any Unsplash failure leaves them out and the plan
still completes. The guidelines production apps are approved under are kept: hotlinked urls,
"Photo by NAME on Unsplash" with UTM links, and the download endpoint triggered for each photo
actually used.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx

from mealplan_cli.mealplans.generation.foods import lookup_key
from mealplan_cli.mealplans.generation.models import Photo
from mealplan_cli.ops.errors import PhotosUnavailableError
from mealplan_cli.ops.redact import SecretValue


@dataclass(frozen=True)
class CachedPhoto:
    """A cache entry: the photo found for a query, or ``None`` when Unsplash had none."""

    photo: Photo | None


class ImageCache(Protocol):
    async def get(self, query: str) -> CachedPhoto | None: ...

    async def put(self, query: str, photo: Photo | None) -> None: ...


class MemoryImageCache:
    """A per-process cache (the worker backs the same interface with the database)."""

    def __init__(self) -> None:
        self._entries: dict[str, CachedPhoto] = {}

    async def get(self, query: str) -> CachedPhoto | None:
        return self._entries.get(query)

    async def put(self, query: str, photo: Photo | None) -> None:
        self._entries[query] = CachedPhoto(photo)


def photo_query(title: str) -> str:
    """The cache key and search text for a dish: word order and plurals do not matter."""
    return lookup_key(title)


def _with_utm(url: str, app_name: str) -> str:
    parts = urlsplit(url)
    utm = urlencode({"utm_source": app_name, "utm_medium": "referral"})
    query = f"{parts.query}&{utm}" if parts.query else utm
    return urlunsplit(parts._replace(query=query))


def photo_from_result(result: dict[str, Any], app_name: str) -> Photo | None:
    """A ``Photo`` from one search result, or ``None`` when it lacks what attribution needs."""
    try:
        urls, user, links = result["urls"], result["user"], result["links"]
        name = str(user["name"])
        return Photo(
            id=str(result["id"]),
            url=str(urls["regular"]),
            thumb_url=str(urls.get("thumb") or urls["small"]),
            blur_hash=result.get("blur_hash"),
            alt=result.get("alt_description") or result.get("description"),
            width=result.get("width"),
            height=result.get("height"),
            color=result.get("color"),
            photographer_name=name,
            photographer_url=_with_utm(str(user["links"]["html"]), app_name),
            unsplash_url=_with_utm(str(links["html"]), app_name),
            attribution=f"Photo by {name} on Unsplash",
            download_location=str(links["download_location"]),
        )
    except (KeyError, TypeError):
        return None


@dataclass
class PhotoStats:
    searches: int = 0
    cache_hits: int = 0
    downloads_triggered: int = 0
    remaining: int | None = None


@dataclass
class UnsplashPhotos:
    """Searches Unsplash for dish photos through a shared ``httpx.AsyncClient``."""

    http: httpx.AsyncClient
    access_key: SecretValue
    api_url: str = "https://api.unsplash.com"
    app_name: str = "mealworker"
    min_remaining: int = 5
    timeout: float = 5.0
    cache: ImageCache = field(default_factory=MemoryImageCache)
    stats: PhotoStats = field(default_factory=PhotoStats)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Client-ID {self.access_key.get_secret_value()}",
            "Accept-Version": "v1",
        }

    async def photo_for(self, title: str) -> Photo | None:
        """The photo for a dish, from the cache when seen before; raises
        ``PhotosUnavailableError``."""
        query = photo_query(title)
        cached = await self.cache.get(query)
        if cached is not None:
            self.stats.cache_hits += 1
            return cached.photo
        # One request at a time: each answer says how much hourly quota is left, and the floor
        # can only be honoured if no other request is in flight when it is read.
        async with self._lock:
            remaining = self.stats.remaining
            if remaining is not None and remaining <= self.min_remaining:
                raise PhotosUnavailableError(
                    f"Unsplash hourly quota nearly used ({remaining} requests left); "
                    "photos resume when it resets"
                )
            self.stats.searches += 1
            response = await self._get(
                "/search/photos",
                {
                    "query": title,
                    "per_page": "5",
                    "orientation": "landscape",
                    "content_filter": "high",
                },
            )
        try:
            results = response.json().get("results") or []
        except ValueError:
            raise PhotosUnavailableError(
                "Unsplash answered a search with something not JSON"
            ) from None
        photo = next((p for p in (photo_from_result(r, self.app_name) for r in results) if p), None)
        await self.cache.put(query, photo)
        return photo

    async def mark_used(self, photo: Photo) -> None:
        """Tell Unsplash the photo is shown (its download endpoint, query string kept)."""
        if not photo.download_location:
            return
        async with self._lock:
            await self._get(photo.download_location, None)
        self.stats.downloads_triggered += 1

    async def _get(self, path_or_url: str, params: dict[str, str] | None) -> httpx.Response:
        url = path_or_url if "://" in path_or_url else f"{self.api_url}{path_or_url}"
        try:
            response = await self.http.get(
                url, params=params, headers=self._headers, timeout=self.timeout
            )
        except httpx.TimeoutException:
            raise PhotosUnavailableError("Unsplash did not answer in time") from None
        except httpx.HTTPError as error:
            raise PhotosUnavailableError(f"Unsplash unreachable ({type(error).__name__})") from None
        remaining = response.headers.get("x-ratelimit-remaining")
        if remaining is not None and remaining.strip().lstrip("-").isdigit():
            self.stats.remaining = int(remaining)
        if response.status_code == 429 or (
            response.status_code == 403 and "rate limit" in response.text.lower()
        ):
            self.stats.remaining = 0
            raise PhotosUnavailableError(
                "Unsplash rate limit reached; photos resume when it resets"
            )
        if response.status_code in (401, 403):
            raise PhotosUnavailableError(
                f"Unsplash refused the access key (HTTP {response.status_code}): "
                "check UNSPLASH_ACCESS_KEY"
            )
        if response.status_code >= 400:
            raise PhotosUnavailableError(f"Unsplash answered HTTP {response.status_code}")
        return response
