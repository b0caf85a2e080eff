"""FakeOpenAI as the real ``openai.AsyncOpenAI`` sees it: answers, usage, latency and faults.

These tests pin the fake's contract, so that tests of the generation code can trust that a
fault injected here surfaces as the same SDK exception the live API would cause.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import httpx
import openai
import pytest
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletion
from pydantic import BaseModel

from tests.fakes.openai_server import REFUSAL, ChatRequest, FakeOpenAI, Fault

MODEL = "gpt-4o-mini"
LONG_INSTRUCTIONS = "Plan meals for one day. " * 250


class Recipe(BaseModel):
    name: str
    calories: int
    allergens: list[str]


RECIPE = {"name": "Lentil soup", "calories": 420, "allergens": []}


def recipe(request: ChatRequest) -> dict[str, Any]:
    return dict(RECIPE)


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(recipe) as server:
        yield server


def client_for(fake: FakeOpenAI, *, max_retries: int = 0, **options: Any) -> AsyncOpenAI:
    return AsyncOpenAI(
        base_url=fake.base_url, api_key="sk-test", max_retries=max_retries, **options
    )


def messages(user: str = "Vegan, 2000 kcal", system: str = "Plan meals.") -> list[Any]:
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def cached_tokens(completion: ChatCompletion) -> int:
    assert completion.usage is not None
    details = completion.usage.prompt_tokens_details
    assert details is not None
    assert details.cached_tokens is not None
    return details.cached_tokens


async def parse_recipe(client: AsyncOpenAI, **options: Any) -> Any:
    return await client.chat.completions.parse(
        model=MODEL, messages=messages(), response_format=Recipe, **options
    )


def test_parse_returns_the_responders_dict_as_structured_output(fake: FakeOpenAI) -> None:
    async def scenario() -> Any:
        async with client_for(fake) as client:
            return await parse_recipe(client)

    completion = asyncio.run(scenario())

    assert completion.choices[0].message.parsed == Recipe.model_validate(RECIPE)
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == MODEL
    [request] = fake.requests
    assert request.model == MODEL
    assert request.schema_name == "Recipe"
    assert request.schema is not None
    assert request.schema["additionalProperties"] is False
    assert request.messages[1]["content"] == "Vegan, 2000 kcal"
    assert request.headers["authorization"] == "Bearer sk-test"
    assert fake.calls_by_schema() == {"Recipe": 1}
    assert fake.requests_for("Recipe") == [request]


def test_a_string_answer_is_sent_verbatim_and_counted_in_usage(fake: FakeOpenAI) -> None:
    fake.responder = lambda request: "plain text"

    async def scenario() -> Any:
        async with client_for(fake) as client:
            return await client.chat.completions.create(
                model=MODEL, messages=messages(user="abcd", system="efgh")
            )

    completion = asyncio.run(scenario())

    assert completion.choices[0].message.content == "plain text"
    assert completion.usage.prompt_tokens == 2
    assert completion.usage.completion_tokens == 3
    assert completion.usage.total_tokens == 5
    assert fake.calls_by_schema() == {None: 1}


def test_rate_limit_headers_come_with_every_answer(fake: FakeOpenAI) -> None:
    async def scenario() -> tuple[Mapping[str, str], Mapping[str, str]]:
        async with client_for(fake) as client:
            first = await client.chat.completions.with_raw_response.create(
                model=MODEL, messages=messages()
            )
            second = await client.chat.completions.with_raw_response.create(
                model=MODEL, messages=messages()
            )
            return first.headers, second.headers

    first, second = asyncio.run(scenario())

    for name in (
        "x-ratelimit-limit-requests",
        "x-ratelimit-remaining-requests",
        "x-ratelimit-remaining-tokens",
        "x-ratelimit-reset-requests",
    ):
        assert name in first
    assert int(second["x-ratelimit-remaining-requests"]) == (
        int(first["x-ratelimit-remaining-requests"]) - 1
    )
    assert "x-should-retry" not in first


def test_a_long_shared_prefix_is_reported_as_cached_in_128_token_steps(fake: FakeOpenAI) -> None:
    async def scenario() -> list[int]:
        async with client_for(fake) as client:
            cached = []
            for user in ("Vegan, 2000 kcal", "Keto, 1800 kcal"):
                completion = await client.chat.completions.create(
                    model=MODEL, messages=messages(user=user, system=LONG_INSTRUCTIONS)
                )
                cached.append(cached_tokens(completion))
            return cached

    first, second = asyncio.run(scenario())

    assert first == 0
    assert second == len(LONG_INSTRUCTIONS) // 4 // 128 * 128
    assert second >= 1024


def test_short_prompts_are_never_cached(fake: FakeOpenAI) -> None:
    async def scenario() -> int:
        async with client_for(fake) as client:
            await client.chat.completions.create(model=MODEL, messages=messages())
            completion = await client.chat.completions.create(model=MODEL, messages=messages())
            return cached_tokens(completion)

    assert asyncio.run(scenario()) == 0


def test_concurrent_requests_wait_in_parallel(fake: FakeOpenAI) -> None:
    fake.time_to_first_token = 0.3

    async def scenario() -> float:
        async with client_for(fake) as client:
            started = time.perf_counter()
            await asyncio.gather(*(parse_recipe(client) for _ in range(3)))
            return time.perf_counter() - started

    elapsed = asyncio.run(scenario())

    assert 0.3 <= elapsed < 0.8


def test_generation_time_grows_with_the_answer(fake: FakeOpenAI) -> None:
    fake.responder = lambda request: "x" * 400
    fake.tokens_per_second = 500

    async def scenario() -> float:
        async with client_for(fake) as client:
            started = time.perf_counter()
            await client.chat.completions.create(model=MODEL, messages=messages())
            return time.perf_counter() - started

    assert asyncio.run(scenario()) >= 100 / 500


def test_rate_limit_fault_raises_rate_limit_error_then_service_resumes(fake: FakeOpenAI) -> None:
    fake.inject(Fault.rate_limit)
    fake.retry_after = "7"

    async def scenario() -> tuple[openai.RateLimitError, Any]:
        async with client_for(fake) as client:
            with pytest.raises(openai.RateLimitError) as raised:
                await parse_recipe(client)
            return raised.value, await parse_recipe(client)

    error, completion = asyncio.run(scenario())

    assert error.code == "rate_limit_exceeded"
    assert error.type == "requests"
    assert error.response.headers["retry-after"] == "7"
    assert error.response.headers["x-ratelimit-remaining-requests"] == "0"
    assert completion.choices[0].message.parsed is not None
    assert fake.pending_faults == []


def test_the_sdk_retries_through_injected_rate_limits(fake: FakeOpenAI) -> None:
    fake.inject("rate_limit", times=2)
    fake.retry_after = "0.01"

    async def scenario() -> Any:
        async with client_for(fake, max_retries=2) as client:
            return await parse_recipe(client)

    completion = asyncio.run(scenario())

    assert completion.choices[0].message.parsed == Recipe.model_validate(RECIPE)
    assert len(fake.requests) == 3


def test_insufficient_quota_is_a_rate_limit_error_with_its_own_code(fake: FakeOpenAI) -> None:
    fake.inject(Fault.insufficient_quota)

    async def scenario() -> openai.RateLimitError:
        async with client_for(fake) as client:
            with pytest.raises(openai.RateLimitError) as raised:
                await parse_recipe(client)
            return raised.value

    error = asyncio.run(scenario())

    assert error.code == "insufficient_quota"
    assert error.type == "insufficient_quota"
    assert "exceeded your current quota" in error.message


def test_server_error_fault_raises_internal_server_error(fake: FakeOpenAI) -> None:
    fake.inject(Fault.server_error)

    async def scenario() -> openai.InternalServerError:
        async with client_for(fake) as client:
            with pytest.raises(openai.InternalServerError) as raised:
                await parse_recipe(client)
            return raised.value

    assert asyncio.run(scenario()).status_code == 500


def test_hang_trips_the_client_timeout_and_does_not_hold_up_stop() -> None:
    server = FakeOpenAI(recipe).start()
    try:
        server.inject(Fault.hang)

        async def scenario() -> None:
            async with client_for(server, timeout=0.3) as client:
                with pytest.raises(openai.APITimeoutError):
                    await parse_recipe(client)

        asyncio.run(scenario())
    finally:
        started = time.perf_counter()
        server.stop()
    assert time.perf_counter() - started < server.hang_seconds / 3


def test_stop_drops_a_request_that_is_still_waiting() -> None:
    answering = threading.Event()

    def slow_recipe(request: ChatRequest) -> dict[str, Any]:
        answering.set()
        return recipe(request)

    server = FakeOpenAI(slow_recipe, time_to_first_token=30).start()

    async def scenario() -> None:
        async with client_for(server, timeout=20) as client:
            pending = asyncio.create_task(parse_recipe(client))
            assert await asyncio.to_thread(answering.wait, 5)
            await asyncio.to_thread(server.stop)
            with pytest.raises(openai.APIConnectionError):
                await pending

    started = time.perf_counter()
    asyncio.run(scenario())
    assert time.perf_counter() - started < 10


def test_truncated_fault_raises_length_finish_reason_error(fake: FakeOpenAI) -> None:
    fake.inject(Fault.truncated, times=2)

    async def scenario() -> Any:
        async with client_for(fake) as client:
            with pytest.raises(openai.LengthFinishReasonError):
                await parse_recipe(client)
            return await client.chat.completions.create(model=MODEL, messages=messages())

    completion = asyncio.run(scenario())

    full = '{"name":"Lentil soup","calories":420,"allergens":[]}'
    assert completion.choices[0].finish_reason == "length"
    assert completion.choices[0].message.content == full[: len(full) // 2]


def test_refusal_fault_leaves_parsed_empty_and_sets_refusal(fake: FakeOpenAI) -> None:
    fake.inject(Fault.refusal)

    async def scenario() -> Any:
        async with client_for(fake) as client:
            return await parse_recipe(client)

    message = asyncio.run(scenario()).choices[0].message

    assert message.parsed is None
    assert message.content is None
    assert message.refusal == REFUSAL


def test_content_filter_fault_raises_content_filter_error(fake: FakeOpenAI) -> None:
    fake.inject(Fault.content_filter)

    async def scenario() -> None:
        async with client_for(fake) as client:
            with pytest.raises(openai.ContentFilterFinishReasonError):
                await parse_recipe(client)

    asyncio.run(scenario())


def test_transform_fault_rewrites_one_answer(fake: FakeOpenAI) -> None:
    fake.inject(Fault.transform, transform=lambda answer: {**answer, "allergens": ["peanuts"]})

    async def scenario() -> list[Any]:
        async with client_for(fake) as client:
            return [(await parse_recipe(client)).choices[0].message.parsed for _ in range(2)]

    tainted, clean = asyncio.run(scenario())

    assert tainted.allergens == ["peanuts"]
    assert clean.allergens == []


def test_faults_are_served_first_in_first_out(fake: FakeOpenAI) -> None:
    fake.inject(Fault.server_error)
    fake.inject(Fault.refusal, times=2)
    assert fake.pending_faults == [Fault.server_error, Fault.refusal, Fault.refusal]

    async def scenario() -> list[str]:
        outcomes = []
        async with client_for(fake) as client:
            for _ in range(4):
                try:
                    message = (await parse_recipe(client)).choices[0].message
                except openai.InternalServerError:
                    outcomes.append("500")
                else:
                    outcomes.append("refusal" if message.refusal else "ok")
        return outcomes

    assert asyncio.run(scenario()) == ["500", "refusal", "refusal", "ok"]


def test_inject_rejects_a_transform_without_its_fault(fake: FakeOpenAI) -> None:
    with pytest.raises(ValueError, match="transform"):
        fake.inject(Fault.transform)
    with pytest.raises(ValueError, match="transform"):
        fake.inject(Fault.refusal, transform=lambda answer: answer)


def test_a_wrong_key_is_refused_without_echoing_it(fake: FakeOpenAI) -> None:
    wrong_key = "sk-live-0123456789abcdef"

    async def scenario() -> openai.AuthenticationError:
        async with AsyncOpenAI(base_url=fake.base_url, api_key=wrong_key, max_retries=0) as client:
            with pytest.raises(openai.AuthenticationError) as raised:
                await parse_recipe(client)
            return raised.value

    error = asyncio.run(scenario())

    assert error.code == "invalid_api_key"
    assert error.type == "invalid_request_error"
    assert wrong_key not in error.message
    assert "sk-...cdef" in error.message
    assert fake.requests == []


def test_a_missing_key_is_refused(fake: FakeOpenAI) -> None:
    async def scenario() -> httpx.Response:
        async with httpx.AsyncClient(base_url=fake.base_url) as http:
            return await http.post("/chat/completions", json={"model": MODEL, "messages": []})

    response = asyncio.run(scenario())

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


def test_no_api_key_configured_accepts_any_key() -> None:
    async def scenario() -> Any:
        async with AsyncOpenAI(base_url=server.base_url, api_key="anything", max_retries=0) as c:
            return await parse_recipe(c)

    with FakeOpenAI(recipe, api_key=None) as server:
        assert asyncio.run(scenario()).choices[0].message.parsed is not None


def test_models_lists_the_known_models_and_unknown_ones_are_not_found() -> None:
    async def scenario() -> tuple[list[str], openai.NotFoundError]:
        async with client_for(server) as client:
            listed = [model.id async for model in client.models.list()]
            with pytest.raises(openai.NotFoundError) as raised:
                await client.chat.completions.create(model="gpt-2", messages=messages())
            return listed, raised.value

    with FakeOpenAI(recipe, models=["gpt-4o-mini", "my-model"]) as server:
        listed, error = asyncio.run(scenario())

    assert listed == ["gpt-4o-mini", "my-model"]
    assert error.code == "model_not_found"


def test_a_failing_responder_surfaces_as_a_500_and_is_kept(fake: FakeOpenAI) -> None:
    def broken(request: ChatRequest) -> dict[str, Any]:
        raise KeyError("days")

    fake.responder = broken

    async def scenario() -> None:
        async with client_for(fake) as client:
            with pytest.raises(openai.InternalServerError):
                await parse_recipe(client)

    asyncio.run(scenario())

    [error] = fake.errors
    assert isinstance(error, KeyError)
