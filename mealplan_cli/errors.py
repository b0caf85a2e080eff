"""The exception tree every part of mealworker raises from.

::

    MealworkerError                  anything the CLI turns into one line and exit code 1
    ├── ConfigurationError           a setting is missing or malformed
    ├── InvalidRequestError          a meal-plan request breaks its bounds (never retried)
    └── GenerationError              a plan could not be produced
        ├── InfeasibleRequestError   no recipe or plan can satisfy the request (never retried)
        ├── PlanRejectedError        the planner's output kept failing validation
        └── ProviderError            the LLM provider failed
            ├── ProviderUnavailableError   transient: rate limit, 5xx, timeout (retry later)
            └── ProviderRejectedError      permanent: bad key, quota, refusal (fix, then retry)

``retryable`` tells a caller (the worker, in the next issue) whether trying the same request
again later can succeed.
"""

from __future__ import annotations


class MealworkerError(Exception):
    """Root of every error mealworker raises on purpose."""

    retryable: bool = False


class ConfigurationError(MealworkerError):
    """A setting is missing or malformed; the message names it and says how to fix it."""


class InvalidRequestError(MealworkerError):
    """A meal-plan request is malformed or out of bounds."""


class GenerationError(MealworkerError):
    """A meal plan could not be generated."""


class InfeasibleRequestError(GenerationError):
    """The request is valid but no plan can meet it (too few recipes fit its constraints)."""


class PlanRejectedError(GenerationError):
    """The planner's output failed validation even after repair attempts."""

    def __init__(self, message: str, reasons: list[str] | None = None) -> None:
        super().__init__(message)
        self.reasons = reasons or []


class ProviderError(GenerationError):
    """The LLM provider failed."""


class ProviderUnavailableError(ProviderError):
    """A transient provider failure: rate limited, server error, timeout, connection lost."""

    retryable = True


class ProviderRejectedError(ProviderError):
    """A permanent provider failure: bad key, no quota, unknown model, refusal."""
