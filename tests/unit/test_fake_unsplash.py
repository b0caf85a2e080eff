"""FakeUnsplash as an ``httpx`` client sees it: search, download tracking, quota and faults.

These tests pin the fake's contract, so that tests of the photo code can rely on it answering
like the live API, including the plain-text 403 that a JSON-only client would choke on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fakes.unsplash_server import FakeUnsplash, UnsplashFault

KEY = "unsplash-test-key"
BASE83 = set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#$%*+,-.:;=?@[]^_{|}~")


@pytest.fixture
def unsplash() -> Iterator[FakeUnsplash]:
    with FakeUnsplash() as server:
        yield server


@pytest.fixture
def http(unsplash: FakeUnsplash) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=unsplash.base_url, headers={"Authorization": f"Client-ID {KEY}"}
    ) as client:
        yield client


def search(http: httpx.Client, query: str, **params: Any) -> httpx.Response:
    return http.get("/search/photos", params={"query": query, **params})


def test_search_answers_photos_about_the_query(unsplash: FakeUnsplash, http: httpx.Client) -> None:
    response = search(http, "lentil soup", orientation="landscape", content_filter="high")

    assert response.status_code == 200
    body = response.json()
    assert body["total"] > 0
    assert body["total_pages"] == -(-body["total"] // 10)
    assert len(body["results"]) == 10
    photo = body["results"][0]
    assert "lentil soup" in photo["alt_description"]
    assert "lentil soup" in photo["description"]
    assert photo["width"] > photo["height"]
    assert photo["color"].startswith("#")
    assert len(photo["blur_hash"]) == 28
    assert set(photo["blur_hash"]) <= BASE83
    for url in photo["urls"].values():
        assert url.startswith(f"{unsplash.base_url}/images/{photo['id']}.jpg?")
    assert photo["links"]["download_location"].startswith(
        f"{unsplash.base_url}/photos/{photo['id']}/download?ixid="
    )
    assert photo["user"]["name"]
    assert photo["user"]["links"]["html"].startswith(unsplash.base_url)
    assert all(url.startswith(unsplash.base_url) for url in photo["links"].values())


def test_results_are_deterministic_per_query(http: httpx.Client) -> None:
    first = search(http, "Tomato salad").json()["results"]
    again = search(http, "Tomato salad").json()["results"]
    other = search(http, "porridge").json()["results"]

    assert first == again
    assert {photo["id"] for photo in first}.isdisjoint(photo["id"] for photo in other)
    assert len({photo["id"] for photo in first}) == len(first)


def test_per_page_is_capped_and_pages_differ(http: httpx.Client) -> None:
    capped = search(http, "pasta", per_page=50).json()
    page_1 = search(http, "pasta", per_page=5, page=1).json()["results"]
    page_2 = search(http, "pasta", per_page=5, page=2).json()["results"]

    assert len(capped["results"]) == 30
    assert capped["total_pages"] == -(-capped["total"] // 30)
    assert len(page_1) == len(page_2) == 5
    assert {photo["id"] for photo in page_1}.isdisjoint(photo["id"] for photo in page_2)


def test_portrait_photos_are_taller_than_wide(http: httpx.Client) -> None:
    photos = search(http, "smoothie", orientation="portrait").json()["results"]

    assert all(photo["height"] > photo["width"] for photo in photos)


def test_a_query_without_results(unsplash: FakeUnsplash, http: httpx.Client) -> None:
    unsplash.no_results.add("dragon fruit stew")

    body = search(http, "Dragon fruit stew").json()

    assert body == {"total": 0, "total_pages": 0, "results": []}


def test_a_missing_query_is_a_bad_request(http: httpx.Client) -> None:
    response = http.get("/search/photos")

    assert response.status_code == 400
    assert response.json() == {"errors": ["query is missing"]}


def test_searches_are_recorded_with_params_and_headers(
    unsplash: FakeUnsplash, http: httpx.Client
) -> None:
    search(http, "oats", per_page=3, orientation="landscape", content_filter="high")

    [call] = unsplash.searches
    assert call.query == "oats"
    assert call.params == {
        "query": "oats",
        "per_page": "3",
        "orientation": "landscape",
        "content_filter": "high",
    }
    assert call.headers["authorization"] == f"Client-ID {KEY}"


@pytest.mark.parametrize("authorization", [None, "Client-ID wrong-key", f"Bearer {KEY}"])
def test_requests_without_the_access_key_are_unauthorised(
    unsplash: FakeUnsplash, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    with httpx.Client(base_url=unsplash.base_url, headers=headers) as client:
        response = search(client, "soup")

    assert response.status_code == 401
    assert response.json() == {"errors": ["OAuth error: The access token is invalid"]}
    assert response.headers["X-Ratelimit-Remaining"] == "50"


def test_download_location_is_tracked_with_its_query_string(
    unsplash: FakeUnsplash, http: httpx.Client
) -> None:
    photo = search(http, "granola").json()["results"][0]
    location = httpx.URL(photo["links"]["download_location"])

    response = http.get(location)

    assert response.status_code == 200
    assert response.json()["url"].startswith(f"{unsplash.base_url}/images/{photo['id']}.jpg")
    assert unsplash.downloads == [(photo["id"], {"ixid": location.params["ixid"]})]


def test_download_of_an_unknown_photo_is_not_found(
    unsplash: FakeUnsplash, http: httpx.Client
) -> None:
    response = http.get("/photos/not-a-photo/download")

    assert response.status_code == 404
    assert unsplash.downloads == []


def test_each_request_spends_quota_and_zero_means_plain_text_403(
    unsplash: FakeUnsplash, http: httpx.Client
) -> None:
    first = search(http, "soup")
    unsplash.remaining = 1
    last = search(http, "soup")
    refused = search(http, "soup")

    assert first.headers["X-Ratelimit-Limit"] == "50"
    assert first.headers["X-Ratelimit-Remaining"] == "49"
    assert last.headers["X-Ratelimit-Remaining"] == "0"
    assert refused.status_code == 403
    assert refused.headers["content-type"].startswith("text/plain")
    assert refused.text == "Rate Limit Exceeded"
    assert refused.headers["X-Ratelimit-Remaining"] == "0"


def test_rate_limit_429_fault_has_a_json_body(unsplash: FakeUnsplash, http: httpx.Client) -> None:
    unsplash.inject(UnsplashFault.rate_limit_429)

    refused = search(http, "soup")
    served = search(http, "soup")

    assert refused.status_code == 429
    assert refused.json() == {"errors": ["Rate Limit Exceeded"]}
    assert refused.headers["X-Ratelimit-Remaining"] == "0"
    assert served.status_code == 200


def test_rate_limit_403_fault_has_a_plain_text_body(
    unsplash: FakeUnsplash, http: httpx.Client
) -> None:
    unsplash.inject("rate_limit_403")

    refused = search(http, "soup")

    assert refused.status_code == 403
    assert refused.headers["content-type"].startswith("text/plain")
    assert refused.text == "Rate Limit Exceeded"


def test_server_error_fault_has_an_html_body(unsplash: FakeUnsplash, http: httpx.Client) -> None:
    unsplash.inject(UnsplashFault.server_error, times=2)

    responses = [search(http, "soup") for _ in range(3)]

    assert [response.status_code for response in responses] == [500, 500, 200]
    assert responses[0].headers["content-type"].startswith("text/html")
    assert unsplash.pending_faults == []


def test_hang_trips_the_client_timeout_and_does_not_hold_up_stop() -> None:
    server = FakeUnsplash().start()
    try:
        server.inject(UnsplashFault.hang)
        with (
            httpx.Client(
                base_url=server.base_url, headers={"Authorization": f"Client-ID {KEY}"}, timeout=0.3
            ) as client,
            pytest.raises(httpx.ReadTimeout),
        ):
            search(client, "soup")
    finally:
        started = time.perf_counter()
        server.stop()
    assert time.perf_counter() - started < server.hang_seconds / 3


def test_concurrent_async_searches(unsplash: FakeUnsplash) -> None:
    queries = ["soup", "salad", "stew", "curry", "toast"]

    async def scenario() -> list[httpx.Response]:
        async with httpx.AsyncClient(
            base_url=unsplash.base_url, headers={"Authorization": f"Client-ID {KEY}"}
        ) as client:
            return await asyncio.gather(
                *(client.get("/search/photos", params={"query": query}) for query in queries)
            )

    responses = asyncio.run(scenario())

    assert [response.status_code for response in responses] == [200] * len(queries)
    assert sorted(call.query or "" for call in unsplash.searches) == sorted(queries)
    assert unsplash.remaining == 50 - len(queries)
