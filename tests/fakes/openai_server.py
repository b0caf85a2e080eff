"""An OpenAI-compatible Chat Completions server on loopback, for the real ``openai`` SDK.

It speaks just enough of the protocol for ``chat.completions.create``/``parse`` and
``models.list``, and adds what the generation code has to cope with in production: latency per
request (so parallel calls visibly overlap), prompt caching in ``usage``, rate-limit headers, and
scripted faults (``FakeOpenAI.inject``) that surface as the SDK's own exceptions.

Token counts are estimated as ``ceil(len(text) / 4)``, which is close enough for budgets and
cache arithmetic and keeps the fake free of a tokenizer.
"""

from __future__ import annotations

import json
import math
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from tests.fakes import FaultQueue, Incoming, LoopbackServer, Reply
from tests.fakes.rate_budget import RateBudget, charge_of

__all__ = ["DEFAULT_MODELS", "ChatRequest", "FakeOpenAI", "Fault", "Responder", "Transform"]

DEFAULT_MODELS = ("gpt-4o-mini", "gpt-4.1-mini", "gpt-5-mini")
REFUSAL = "I'm sorry, but I can't help with that request."
CACHE_MIN_TOKENS = 1024
CACHE_STEP_TOKENS = 128
RATE_WINDOW_SECONDS = 60.0


class Fault(StrEnum):
    """Misbehaviour served to the next chat requests, queued with ``FakeOpenAI.inject``.

    - ``rate_limit``: 429 ``rate_limit_exceeded`` (type ``requests``) with ``retry-after``.
    - ``insufficient_quota``: 429 whose type and code are ``insufficient_quota`` (billing: a retry
      cannot help, which is why callers must tell it apart from ``rate_limit``).
    - ``server_error``: 500.
    - ``hang``: silence for ``hang_seconds`` so the client's timeout trips, then a normal answer.
    - ``truncated``: the first half of the content, ``finish_reason`` ``length``.
    - ``refusal``: content null, ``refusal`` set, ``finish_reason`` ``stop``.
    - ``content_filter``: content null, ``finish_reason`` ``content_filter``.
    - ``transform``: the responder's dict passed through a callable before it is sent.
    """

    rate_limit = "rate_limit"
    insufficient_quota = "insufficient_quota"
    server_error = "server_error"
    hang = "hang"
    truncated = "truncated"
    refusal = "refusal"
    content_filter = "content_filter"
    transform = "transform"


@dataclass(frozen=True)
class ChatRequest:
    """A chat request as received; ``schema_name``/``schema`` come from a json_schema format."""

    model: str
    messages: list[dict[str, Any]]
    schema_name: str | None
    schema: dict[str, Any] | None
    body: dict[str, Any]
    headers: dict[str, str]

    @classmethod
    def from_body(cls, body: dict[str, Any], headers: dict[str, str]) -> ChatRequest:
        response_format = body.get("response_format") or {}
        json_schema = response_format.get("json_schema") or {}
        return cls(
            model=str(body["model"]),
            messages=list(body["messages"]),
            schema_name=json_schema.get("name"),
            schema=json_schema.get("schema"),
            body=body,
            headers=headers,
        )

    @property
    def prompt_text(self) -> str:
        """The messages' text in order: what prompt tokens and the cache prefix are counted on."""
        return "".join(_message_text(message.get("content")) for message in self.messages)


Responder = Callable[[ChatRequest], dict[str, Any] | str]
Transform = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class _Injected:
    fault: Fault
    transform: Transform | None = None


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


def mask_key(key: str) -> str:
    """Show a key the way OpenAI's errors do, never whole, so test logs cannot leak one."""
    if len(key) < 10:
        return "*" * 8
    return f"{key[:3]}...{key[-4:]}"


def _message_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def _as_dict(answer: dict[str, Any] | str) -> dict[str, Any]:
    parsed = json.loads(answer) if isinstance(answer, str) else answer
    if not isinstance(parsed, dict):
        raise TypeError("Fault.transform needs a responder that answers a JSON object")
    return parsed


def _compact_json(answer: dict[str, Any]) -> str:
    return json.dumps(answer, separators=(",", ":"))


def _shared_prefix_length(a: str, b: str) -> int:
    for index, (left, right) in enumerate(zip(a, b, strict=False)):
        if left != right:
            return index
    return min(len(a), len(b))


def _error(
    status: int, message: str, type_: str, code: str | None, param: str | None = None
) -> Reply:
    return Reply.json(
        status, {"error": {"message": message, "type": type_, "param": param, "code": code}}
    )


class FakeOpenAI(LoopbackServer):
    """Chat Completions and models endpoints under ``base_url``, answered by ``responder``.

    Every attribute set in ``__init__`` may be changed while the server runs; each request reads
    them when it arrives. ``requests`` holds every authenticated chat request in arrival order,
    faulted ones included, so retries are visible.
    """

    def __init__(
        self,
        responder: Responder,
        *,
        time_to_first_token: float = 0.0,
        tokens_per_second: float | None = None,
        api_key: str | None = "sk-test",
        models: Sequence[str] = DEFAULT_MODELS,
    ) -> None:
        super().__init__()
        self.responder = responder
        self.time_to_first_token = time_to_first_token
        self.tokens_per_second = tokens_per_second
        self.api_key = api_key
        self.models = list(models)
        self.retry_after = "1"
        self.hang_seconds = 30.0
        self.requests_limit = 500
        self.tokens_limit = 200_000
        self.requests: list[ChatRequest] = []
        self.budget: RateBudget | None = None
        """When set, the organisation's limit is enforced as OpenAI does (see ``rate_budget``)."""
        self._faults: FaultQueue[_Injected] = FaultQueue()
        self._lock = threading.Lock()
        self._prompts_seen: dict[str, list[str]] = {}
        self._window: deque[tuple[float, int]] = deque()

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v1"

    def inject(
        self, fault: Fault | str, times: int = 1, *, transform: Transform | None = None
    ) -> None:
        """Serve ``fault`` to the next ``times`` chat requests, after any already queued."""
        fault = Fault(fault)
        if (fault is Fault.transform) != (transform is not None):
            raise ValueError("a transform callable goes with Fault.transform, and only with it")
        self._faults.push(_Injected(fault, transform), times)

    @property
    def pending_faults(self) -> list[Fault]:
        return [injected.fault for injected in self._faults.pending()]

    def clear_faults(self) -> None:
        self._faults.clear()

    def calls_by_schema(self) -> Counter[str | None]:
        """How many chat requests arrived per response-format schema name (None: no schema)."""
        return Counter(request.schema_name for request in self.requests)

    def requests_for(self, schema_name: str | None) -> list[ChatRequest]:
        return [request for request in self.requests if request.schema_name == schema_name]

    def handle(self, request: Incoming) -> Reply | None:
        reply = self._authenticate(request.headers) or self._route(request)
        if reply is not None:
            reply.headers = {**self._rate_headers(), **reply.headers}
            reply.headers.setdefault("x-request-id", f"req_{uuid.uuid4().hex}")
        return reply

    def _route(self, request: Incoming) -> Reply | None:
        if request.method == "POST" and request.path == "/v1/chat/completions":
            return self._chat(request)
        if request.method == "GET" and request.path == "/v1/models":
            return Reply.json(
                200, {"object": "list", "data": [self._model(m) for m in self.models]}
            )
        if request.method == "GET" and request.path.startswith("/v1/models/"):
            name = request.path.removeprefix("/v1/models/")
            if name in self.models:
                return Reply.json(200, self._model(name))
            return self._unknown_model(name)
        return _error(
            404, f"Invalid URL ({request.method} {request.path})", "invalid_request_error", None
        )

    def _authenticate(self, headers: dict[str, str]) -> Reply | None:
        if self.api_key is None:
            return None
        scheme, _, given = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and given == self.api_key:
            return None
        if not given:
            message = (
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
            )
        else:
            message = (
                f"Incorrect API key provided: {mask_key(given)}. You can find your API key at "
                "https://platform.openai.com/account/api-keys."
            )
        return _error(401, message, "invalid_request_error", "invalid_api_key")

    def _model(self, name: str) -> dict[str, Any]:
        return {"id": name, "object": "model", "created": 1_700_000_000, "owned_by": "openai"}

    def _unknown_model(self, name: str) -> Reply:
        return _error(
            404,
            f"The model `{name}` does not exist or you do not have access to it.",
            "invalid_request_error",
            "model_not_found",
        )

    def _chat(self, incoming: Incoming) -> Reply | None:
        try:
            body = json.loads(incoming.body)
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return _error(
                400,
                "We could not parse the JSON body of your request, or 'messages' is missing.",
                "invalid_request_error",
                None,
                "messages",
            )
        if "model" not in body:
            return _error(
                400, "you must provide a model parameter", "invalid_request_error", None, "model"
            )
        request = ChatRequest.from_body(body, incoming.headers)
        self.requests.append(request)
        if request.model not in self.models:
            return self._unknown_model(request.model)
        if body.get("stream"):
            return _error(
                400, "FakeOpenAI does not stream", "invalid_request_error", None, "stream"
            )
        if self.budget is not None and not self.budget.charge(charge_of(body, request.prompt_text)):
            return self._over_budget(request.model)
        injected = self._faults.pop()
        fault = injected.fault if injected else None
        if fault is Fault.rate_limit:
            return self._rate_limited(request.model)
        if fault is Fault.insufficient_quota:
            return _error(
                429,
                "You exceeded your current quota, please check your plan and billing details. "
                "For more information on this error, read the docs: "
                "https://platform.openai.com/docs/guides/error-codes/api-errors.",
                "insufficient_quota",
                "insufficient_quota",
            )
        if fault is Fault.server_error:
            return _error(
                500,
                "The server had an error while processing your request. Sorry about that!",
                "server_error",
                None,
            )
        if fault is Fault.hang and not self.pause(self.hang_seconds):
            return None
        return self._complete(request, injected)

    def _rate_limited(self, model: str) -> Reply:
        reply = _error(
            429,
            f"Rate limit reached for {model} in organization org-fake on requests per min (RPM): "
            f"Limit {self.requests_limit}, Used {self.requests_limit}, Requested 1. "
            f"Please try again in {self.retry_after}s. "
            "Visit https://platform.openai.com/account/rate-limits to learn more.",
            "requests",
            "rate_limit_exceeded",
        )
        reply.headers = {
            "retry-after": self.retry_after,
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": f"{self.retry_after}s",
        }
        return reply

    def _over_budget(self, model: str) -> Reply:
        assert self.budget is not None
        return _error(
            429,
            f"Rate limit reached for {model} in organization org-fake on tokens per min (TPM): "
            f"Limit {self.budget.tokens_per_minute}. "
            "Visit https://platform.openai.com/account/rate-limits to learn more.",
            "tokens",
            "rate_limit_exceeded",
        )

    def _complete(self, request: ChatRequest, injected: _Injected | None) -> Reply | None:
        fault = injected.fault if injected else None
        content: str | None = None
        refusal: str | None = None
        finish_reason = "stop"
        if fault is Fault.refusal:
            refusal = REFUSAL
        elif fault is Fault.content_filter:
            finish_reason = "content_filter"
        else:
            answer = self.responder(request)
            if injected is not None and injected.transform is not None:
                answer = injected.transform(_as_dict(answer))
            content = answer if isinstance(answer, str) else _compact_json(answer)
            if fault is Fault.truncated:
                content = content[: len(content) // 2]
                finish_reason = "length"

        prompt_tokens = estimate_tokens(request.prompt_text)
        completion_tokens = estimate_tokens(content or refusal or "")
        delay = self.time_to_first_token
        if self.tokens_per_second:
            delay += completion_tokens / self.tokens_per_second
        if not self.pause(delay):
            return None

        with self._lock:
            cached_tokens = self._cached_tokens(request, prompt_tokens)
            self._window.append((time.monotonic(), prompt_tokens + completion_tokens))
        completion = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": refusal},
                    "logprobs": None,
                    "finish_reason": finish_reason,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
                "prompt_tokens_details": {"cached_tokens": cached_tokens},
                "completion_tokens_details": {"reasoning_tokens": 0},
            },
        }
        return Reply.json(200, completion, {"openai-processing-ms": str(round(delay * 1000))})

    def _cached_tokens(self, request: ChatRequest, prompt_tokens: int) -> int:
        """Tokens of the longest prefix shared with an earlier prompt to the same model.

        Like OpenAI's automatic caching: only prompts of 1024+ tokens, in 128-token steps, and
        nothing below 1024 cached tokens. Caller holds the lock.
        """
        prompt = request.prompt_text
        seen = self._prompts_seen.setdefault(request.model, [])
        shared_chars = max((_shared_prefix_length(prompt, old) for old in seen), default=0)
        seen.append(prompt)
        if prompt_tokens < CACHE_MIN_TOKENS:
            return 0
        cached = shared_chars // 4 // CACHE_STEP_TOKENS * CACHE_STEP_TOKENS
        return cached if cached >= CACHE_MIN_TOKENS else 0

    def _rate_headers(self) -> dict[str, str]:
        """Per-minute request and token budgets, counted over a sliding window of answers (or
        the enforced budget's, when there is one)."""
        if self.budget is not None:
            return self.budget.headers()
        with self._lock:
            cutoff = time.monotonic() - RATE_WINDOW_SECONDS
            while self._window and self._window[0][0] < cutoff:
                self._window.popleft()
            used_requests = len(self._window)
            used_tokens = sum(tokens for _, tokens in self._window)
        return {
            "x-ratelimit-limit-requests": str(self.requests_limit),
            "x-ratelimit-limit-tokens": str(self.tokens_limit),
            "x-ratelimit-remaining-requests": str(max(self.requests_limit - used_requests, 0)),
            "x-ratelimit-remaining-tokens": str(max(self.tokens_limit - used_tokens, 0)),
            "x-ratelimit-reset-requests": "1s" if used_requests else "0s",
            "x-ratelimit-reset-tokens": "1s" if used_tokens else "0s",
        }
