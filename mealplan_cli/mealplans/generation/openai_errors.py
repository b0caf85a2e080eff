"""How the OpenAI planner reads the SDK's failures: which to retry, how long to wait, and the
one-line message (saying what to do) for the ones it gives up on."""

from __future__ import annotations

import openai
import pydantic
from tenacity import RetryCallState

from mealplan_cli.ops.errors import ProviderRejectedError, ProviderUnavailableError
from mealplan_cli.ops.retry_policies import OPENAI_BACKOFF, OPENAI_MAX_RETRY_AFTER


def retry_wait(state: RetryCallState) -> float:
    """Honour the server's Retry-After; otherwise back off exponentially with jitter."""
    error = state.outcome.exception() if state.outcome else None
    response = getattr(error, "response", None)
    if response is not None:
        for header, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
            value = response.headers.get(header)
            try:
                if value is not None:
                    return min(max(float(value) / divisor, 0.0), OPENAI_MAX_RETRY_AFTER)
            except ValueError:
                pass
    return float(OPENAI_BACKOFF(state))


def transient(error: BaseException) -> bool:
    if isinstance(error, openai.RateLimitError):
        return error.code != "insufficient_quota"
    return isinstance(error, openai.APIConnectionError | openai.InternalServerError)


def provider_error(error: openai.APIError, model: str, attempts: int) -> Exception:
    """The SDK's exception as one of ours, with a message that says what to do."""
    if isinstance(error, openai.RateLimitError) and error.code == "insufficient_quota":
        return ProviderRejectedError(
            "OpenAI says the account has no quota left (insufficient_quota): add credit or raise "
            "the limit under Billing, then requeue the job"
        )
    if transient(error):
        kind = type(error).__name__
        return ProviderUnavailableError(
            f"OpenAI unavailable after {attempts} attempt{'' if attempts == 1 else 's'} "
            f"({kind}), a temporary failure"
        )
    if isinstance(error, openai.AuthenticationError):
        return ProviderRejectedError("OpenAI rejected the API key (401): check OPENAI_API_KEY")
    if isinstance(error, openai.PermissionDeniedError):
        return ProviderRejectedError(
            f"OpenAI denied access (403): the key's project may not be allowed to use {model}"
        )
    if isinstance(error, openai.NotFoundError):
        return ProviderRejectedError(
            f"OpenAI does not know the model {model!r} (404): set OPENAI_MODEL to one your key "
            "can use"
        )
    status = getattr(error, "status_code", None)
    return ProviderRejectedError(
        f"OpenAI refused the request (HTTP {status}, {type(error).__name__}): {error.message}"
    )


def first_error(error: pydantic.ValidationError) -> str:
    first = error.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"{where}: {first['msg']}" if where else str(first["msg"])
