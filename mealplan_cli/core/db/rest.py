"""The rest transport: Supabase's Data API (PostgREST) through supabase-py's async client.

What the original Node worker had: ``SUPABASE_URL`` and ``SUPABASE_SERVICE_ROLE_KEY`` (a legacy
JWT or a new ``sb_secret_...`` key). Every call is ``rpc(function, params)``; PostgREST runs it in
one transaction as ``service_role``. There is no LISTEN here: the worker polls.

The client's own retries are off: a 503 or a dropped connection becomes
``DatabaseUnavailableError``, which the worker retries with backoff like any outage.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Any
from uuid import UUID

import httpx

from mealplan_cli.core.db import sqlstate
from mealplan_cli.core.db.base import (
    DatabaseError,
    DatabaseUnavailableError,
    Row,
    SchemaMissingError,
)
from mealplan_cli.ops.redact import SecretValue, mask_positions

_UNAVAILABLE_CODES = ("PGRST000", "PGRST001", "502", "503", "504")
"""PostgREST's own: it cannot reach the database, or a proxy in front of it cannot reach it."""
_KEY_CODES = ("PGRST301", "PGRST302", "PGRST303")
"""PostgREST's own: the key (a JWT) is refused. Only then, or when PostgreSQL's privilege
check or authentication refuses, may a message name the key."""

REQUEST_TIMEOUT_SECONDS = 6.0
"""Well under the service role's 8 s statement timeout, so a slow call fails on our side."""


def _jsonable(value: Any) -> Any:
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def _rows(function: str, data: Any) -> list[Row]:
    """PostgREST's result shapes as the rows ``Database.call`` promises."""
    if data is None:
        return []
    if isinstance(data, list):
        return [item if isinstance(item, dict) else {function: item} for item in data]
    if isinstance(data, dict):
        return [data]
    return [{function: data}]


def _translate(error: Any, function: str, key: str) -> DatabaseError:
    """An ``APIError`` as one of ours, keeping code, message and hint, never the key."""
    code = str(getattr(error, "code", "") or "")
    message = str(getattr(error, "message", "") or error)
    hint = getattr(error, "hint", None)
    text = f"{function}: {message}" + (f" (hint: {hint})" if hint else "")
    text = mask_positions(text.replace(key, "***"))
    state = sqlstate.lookup(code)
    if code == "PGRST202" or state.error is SchemaMissingError:
        return SchemaMissingError(
            f"{text}; the mealworker functions are missing or outdated: apply the migrations "
            "(`mealworker migrate` with DATABASE_URL, or `mealworker migrate --sql` in "
            "Supabase's SQL editor)",
            code=code,
        )
    if code in _KEY_CODES or state.meaning is sqlstate.Meaning.AUTHENTICATION:
        return DatabaseError(
            f"{text}; check SUPABASE_SERVICE_ROLE_KEY (it must be the service role key or an "
            "sb_secret_ key, not the anon key)",
            code=code,
        )
    if sqlstate.privilege_check(code, message):
        return DatabaseError(
            f"{text}; the key's role lacks a privilege: grant it to service_role, or use the "
            "service role key (SUPABASE_SERVICE_ROLE_KEY) rather than the anon key",
            code=code,
        )
    if code in _UNAVAILABLE_CODES or state.error is DatabaseUnavailableError:
        return DatabaseUnavailableError(f"database unavailable: {text}", code=code)
    return DatabaseError(text, code=code or None)


class RestDatabase:
    """A ``Database`` over Supabase's Data API."""

    transport = "rest"
    supports_listen = False

    def __init__(self, url: str, key: SecretValue, *, timeout: float = REQUEST_TIMEOUT_SECONDS):
        self.url = url
        self._key = key
        self._timeout = timeout
        self._http: httpx.AsyncClient | None = None
        self._client: Any = None

    async def open(self) -> RestDatabase:
        from postgrest.exceptions import APIError  # supabase-py loads only with this transport
        from supabase import acreate_client
        from supabase.lib.client_options import AsyncClientOptions

        self._api_error: type[Exception] = APIError
        self._http = httpx.AsyncClient(timeout=self._timeout)
        options = AsyncClientOptions(
            postgrest_client_timeout=self._timeout,
            postgrest_client_retry=False,
            httpx_client=self._http,
            auto_refresh_token=False,
            persist_session=False,
        )
        try:
            self._client = await acreate_client(self.url, self._key.get_secret_value(), options)
        except Exception as error:  # the client validates URL and key before any request
            await self._http.aclose()
            message = str(error).replace(self._key.get_secret_value(), "***")
            raise DatabaseError(
                f"cannot use SUPABASE_URL {mask_positions(self.url)}: {mask_positions(message)}"
            ) from None
        return self

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    async def call(self, function: str, **params: Any) -> list[Row]:
        return _rows(function, await self._rpc(function, params))

    async def value(self, function: str, **params: Any) -> Any:
        data = await self._rpc(function, params)
        return None if data == [] else data

    async def listen(self, channel: str, on_notify: Callable[[str], None]) -> None:
        raise NotImplementedError("the rest transport cannot LISTEN; the worker polls")

    async def _rpc(self, function: str, params: dict[str, Any]) -> Any:
        payload = {name: _jsonable(value) for name, value in params.items()}
        try:
            response = await self._client.rpc(function, payload).execute()
        except httpx.TimeoutException:
            raise DatabaseUnavailableError(
                f"{function}: no answer from {self.url} within {self._timeout:g}s"
            ) from None
        except httpx.TransportError as error:
            raise DatabaseUnavailableError(
                f"{function}: cannot reach {self.url} ({type(error).__name__})"
            ) from None
        except Exception as error:
            if isinstance(error, self._api_error):
                raise _translate(error, function, self._key.get_secret_value()) from None
            raise
        return response.data
