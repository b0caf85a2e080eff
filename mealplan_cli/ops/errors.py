"""The exception tree every part of mealworker raises from.

::

    MealworkerError                  anything the CLI turns into one line and exit code 1
    ├── ConfigurationError           a setting is missing or malformed
    │   └── SettingsError            ``Settings(...)`` built with bad values (also a ValueError)
    ├── DatabaseError                the database refused a call
    │   ├── DatabaseUnavailableError unreachable or connection dropped (retry later)
    │   ├── SchemaMissingError       the migrations have not been applied
    │   └── MigrationEditedError     a migration that already ran was edited since
    ├── JobFailed                    a handler's failure reduced to what the queue records
    ├── JobDeferred                  a handler asks its job to wait until a later time (no failure)
    ├── InvalidRequestError          a meal-plan request breaks its bounds (never retried)
    └── GenerationError              a plan could not be produced
        ├── InfeasibleRequestError   no recipe or plan can satisfy the request (never retried)
        ├── PlanRejectedError        the planner's output kept failing validation
        ├── AnswerUnusableError      one LLM answer could not be used (the planner asks again)
        │   ├── AnswerTruncatedError     it ran past its token limit
        │   └── AnswerUnparseableError   it did not match the schema asked for
        ├── PhotosUnavailableError   Unsplash cannot be asked now (the plan goes on without)
        └── ProviderError            the LLM provider failed
            ├── ProviderUnavailableError   transient: rate limit, 5xx, timeout (retry later)
            │   └── SpendCapReachedError   the operator's daily OpenAI cap is spent (wait)
            │       └── SpendCapTooSmallError  one call costs more than the whole cap (fix it)
            └── ProviderRejectedError      permanent: bad key, quota, refusal (fix, then retry)

``retryable`` tells a caller (the worker) whether trying the same thing again later can succeed.
Every error lives here; ``mealplan_cli.core.db`` re-exports the database ones for its callers.
"""

from __future__ import annotations

from datetime import UTC, datetime


class MealworkerError(Exception):
    """Root of every error mealworker raises on purpose."""

    retryable: bool = False


class ConfigurationError(MealworkerError):
    """A setting is missing or malformed; the message names it and says how to fix it."""


class SettingsError(ConfigurationError, ValueError):
    """Settings built with bad values: every bad one named, none of the values shown."""

    def __init__(self, message: str, problems: list[tuple[str, str]]) -> None:
        super().__init__(message)
        self.problems = problems
        """(setting name, what is wrong) for each bad one, in field order."""


class DatabaseError(MealworkerError):
    """The database refused a call (a constraint, a bad argument, a missing privilege)."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class DatabaseUnavailableError(DatabaseError):
    """The database could not be reached or dropped the connection; trying later may work."""

    retryable = True


class SchemaMissingError(DatabaseError):
    """The mealworker functions are missing or outdated: the migrations have not been applied."""


class MigrationEditedError(DatabaseError):
    """A migration file that already ran was changed afterwards."""


class LegacySchemaError(DatabaseError):
    """The database has tables mealworker cannot use as they are; nothing was changed."""


class ExportConflictError(MealworkerError):
    """The export folder has a different file of the same name; nothing was written."""


class JobFailed(MealworkerError):
    """A handler's failure, reduced to what the queue records: a message and whether to retry."""

    def __init__(self, message: str, retryable: bool, kind: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.kind = kind
        """The exception class behind it, for metrics (``ProviderUnavailableError``...)."""


class JobDeferred(MealworkerError):
    """Raised by a handler whose job cannot go on before ``run_at`` for a reason that passes by
    itself (a daily cap, a closed window): the worker puts the job back to pending until then
    with ``reason`` shown by ``stats``, gives the claim's attempt back, and records a
    ``deferred`` event. Not a failure: no attempt is spent, no retry scheduled. A ``run_at``
    without a time zone is taken as UTC."""

    def __init__(self, run_at: datetime, reason: str) -> None:
        if run_at.tzinfo is None:
            run_at = run_at.replace(tzinfo=UTC)
        super().__init__(f"deferred until {run_at.isoformat()}: {reason}")
        self.run_at = run_at
        self.reason = reason


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


class AnswerUnusableError(GenerationError):
    """One answer of the LLM could not be used; the planner asks again, within its budget."""

    retryable = True


class AnswerTruncatedError(AnswerUnusableError):
    """The answer ran past its token limit."""


class AnswerUnparseableError(AnswerUnusableError):
    """The answer did not match the schema asked for."""


class PhotosUnavailableError(GenerationError):
    """Unsplash cannot be asked now (rate limit, key refused, down); the reason is safe to show.
    The plan is finished without photos rather than failed."""

    retryable = True


class ProviderError(GenerationError):
    """The LLM provider failed."""


class ProviderUnavailableError(ProviderError):
    """A transient provider failure: rate limited, server error, timeout, connection lost."""

    retryable = True


class SpendCapReachedError(ProviderUnavailableError):
    """The operator's daily cap on OpenAI spend (``OPENAI_DAILY_TOKEN_CAP`` or
    ``OPENAI_DAILY_USD_CAP``) is reached; the message says when it resets and how to raise it.
    A meal-plan job waits until ``until`` (the next UTC midnight by the database's clock), or
    the catalogue writes the plan where the operator opted in."""

    def __init__(self, message: str, *, reason: str, until: datetime | None) -> None:
        super().__init__(message)
        self.reason = reason
        """In a few words, for ``stats`` and the job's ``wait_reason``."""
        self.until = until


class SpendCapTooSmallError(SpendCapReachedError):
    """One call's charge is more than the whole daily cap: waiting for the next day cannot
    help, so the job fails with what to change (unless the catalogue may write the plan)."""

    retryable = False


class ProviderRejectedError(ProviderError):
    """A permanent provider failure: bad key, no quota, unknown model, refusal."""
