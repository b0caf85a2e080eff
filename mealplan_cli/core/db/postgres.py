"""The postgres transport: psycopg 3, async, a small pool, LISTEN on a connection of its own.

Calls are ``select * from public.fn(p_a => $1::type, ...)``, the types read once per function
from the catalogue so that arrays, json and uuids reach the function exactly as declared.
Prepared statements are off (``prepare_threshold=None``), so the same code works through
Supabase's transaction pooler; LISTEN needs a direct or session-pooler connection.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.adapt import PyFormat
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb, set_json_loads
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from mealplan_cli.core.db import sqlstate
from mealplan_cli.core.db.base import (
    DatabaseError,
    DatabaseUnavailableError,
    Row,
    SchemaMissingError,
)
from mealplan_cli.ops.errors import ConfigurationError, MealworkerError
from mealplan_cli.ops.redact import Redactor, redact_dsn

log = logging.getLogger("mealworker.db")

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")
_SIGNATURE_SQL = """
select pg_get_function_identity_arguments(p.oid)
from pg_catalog.pg_proc p join pg_catalog.pg_namespace n on n.oid = p.pronamespace
where n.nspname = 'public' and p.proname = %s
"""


_REASON_PREFIXES = re.compile(
    r"^(connection failed: )?(connection to server (at|on) .*? failed: )?(FATAL: +)?", re.DOTALL
)
_ADVICE = (
    ("password authentication failed", "check the user and password in DATABASE_URL"),
    ("no password supplied", "put the password in DATABASE_URL"),
    ("role", "check the user name in DATABASE_URL (Supabase's pooler: postgres.<project-ref>)"),
    ("tenant or user not found", "check the user (postgres.<project-ref>) and the pooler host"),
    (
        "database",
        "check the database name in DATABASE_URL (a URL's path, or dbname=; Supabase: postgres)",
    ),
    ("connection refused", "check the host and port in DATABASE_URL, and that PostgreSQL runs"),
    ("resolve host", "check the host name in DATABASE_URL"),
    ("translate host name", "check the host name in DATABASE_URL"),
    ("timeout", "check the host, the port and any firewall between here and the database"),
    ("ssl", "add or remove sslmode in DATABASE_URL to match the server"),
)


def redact_url(url: str) -> str:
    """A connection string in any form with its password masked, fit for logs and errors."""
    return redact_dsn(url)


def connect_failure(error: psycopg.Error, url: str, timeout: float) -> MealworkerError:
    """Why a connection could not open, in one line with what to do, never the password.

    A malformed connection string is a configuration error; anything else is the database
    being unavailable (which a worker retries).
    """
    mask = Redactor(dsns=[url]).mask
    text = " ".join(str(error).split())
    reason = mask(_REASON_PREFIXES.sub("", text).split(" Is the server running")[0]).strip()
    if isinstance(error, psycopg.errors.ConnectionTimeout):
        return timed_out(url, timeout)
    if not isinstance(error, psycopg.OperationalError):
        return ConfigurationError(
            f"DATABASE_URL is not a valid connection string ({reason}): write "
            "postgresql://USER:PASSWORD@HOST:5432/DATABASE (percent-encode special characters) "
            "or the keyword form host=... user=... password=... dbname=..."
        )
    lowered = reason.lower()
    advice = next(
        (hint for key, hint in _ADVICE if key in lowered),
        "check DATABASE_URL and that the server is running and reachable",
    )
    return DatabaseUnavailableError(f"cannot connect to {redact_dsn(url)}: {reason}; {advice}")


def timed_out(url: str, timeout: float) -> DatabaseUnavailableError:
    return DatabaseUnavailableError(
        f"cannot connect to {redact_dsn(url)}: timed out after {timeout:g}s; check the host, "
        "the port and any firewall between here and the database "
        "(DATABASE_CONNECT_TIMEOUT_SECONDS sets the wait)"
    )


async def connect(
    url: str, *, connect_timeout: float = 5, **kwargs: Any
) -> psycopg.AsyncConnection[Any]:
    """One connection, failing within ``connect_timeout`` seconds with the driver's reason.

    The deadline covers the host name lookup too, which libpq's own timeout does not.
    """
    wait = max(2, round(connect_timeout))
    try:
        async with asyncio.timeout(wait + 0.5):
            return await psycopg.AsyncConnection.connect(url, connect_timeout=wait, **kwargs)
    except TimeoutError:
        raise timed_out(url, wait) from None
    except psycopg.Error as error:
        raise connect_failure(error, url, wait) from None


_BINARY_TYPES = frozenset({"bigint[]", "uuid[]"})
"""Sent in binary: the batch calls pass hundreds of job ids and lease tokens, and the text
format checks every element for quoting (about 3 us a job, against under 1 in binary)."""


def _adapt(value: Any, pg_type: str) -> Any:
    if pg_type == "uuid[]" and value and not all(v is None or type(v) is UUID for v in value):
        return [None if v is None else str(v) for v in value]  # one element type per array
    if pg_type in _BINARY_TYPES:
        return value
    if pg_type in ("jsonb", "json"):
        return None if value is None else Jsonb(value)
    if pg_type in ("jsonb[]", "json[]"):
        return None if value is None else [None if v is None else Jsonb(v) for v in value]
    if isinstance(value, UUID):
        return str(value)
    return value


def _json_loads(data: str | bytes) -> Any:
    # json.loads on bytes first works out their encoding; PostgreSQL's are always UTF-8.
    return json.loads(data.decode() if isinstance(data, bytes) else data)


async def _configure(conn: psycopg.AsyncConnection[Any]) -> None:
    set_json_loads(_json_loads, conn)


def _translate(error: psycopg.Error, function: str) -> DatabaseError:
    """A driver error as one of ours, by the SQLSTATE table (``db.sqlstate``) both transports
    share. psycopg counts deadlocks, lock waits and refused passwords as operational errors
    too; the table keeps them what they are (a caller decides whether to try again): retried
    blindly as an outage, a trigger raising a deadlock would be tried until the lease ran out.
    An operational error with a code the table does not know, or none, is a connection that
    failed."""
    code = error.sqlstate or None
    detail = error.diag.message_primary or str(error).strip().splitlines()[0]
    state = sqlstate.lookup(code)
    unreachable = isinstance(error, psycopg.OperationalError) and state is sqlstate.REFUSED
    if unreachable or state.error is DatabaseUnavailableError:
        return DatabaseUnavailableError(f"database unavailable: {detail}", code=code)
    if state.error is SchemaMissingError:
        return SchemaMissingError(
            f"{function}: {detail}; the mealworker schema is missing or outdated: "
            "run `mealworker migrate`",
            code=code,
        )
    if state.meaning is sqlstate.Meaning.AUTHENTICATION:
        return DatabaseError(
            f"{function}: authentication failed ({detail}); check the user and password in "
            "DATABASE_URL",
            code=code,
        )
    if sqlstate.privilege_check(code, detail) and "at RAISE" not in (error.diag.context or ""):
        return DatabaseError(
            f"{function}: {detail}; the role in DATABASE_URL lacks a privilege: grant it, or "
            "connect as the database owner or service_role",
            code=code,
        )
    # Anything else is the database's own words: a trigger's refusal (whatever SQLSTATE it
    # raised with, 42501 included) says nothing about the credentials.
    return DatabaseError(f"{function}: {detail}", code=code)


class PostgresDatabase:
    """A ``Database`` over a psycopg connection pool."""

    supports_listen = True

    def __init__(
        self,
        url: str,
        *,
        transport: str = "postgres",
        min_size: int = 1,
        max_size: int = 4,
        connect_timeout: float = 5,
    ) -> None:
        self.url = url
        self.transport = transport
        self.connect_timeout = connect_timeout
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[Row]] = AsyncConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            kwargs={
                "autocommit": True,
                "prepare_threshold": None,
                "row_factory": dict_row,
                "connect_timeout": max(2, round(connect_timeout)),
            },
            configure=_configure,
            open=False,
            timeout=10,
            reconnect_timeout=0,
        )
        self._signatures: dict[str, list[tuple[str, str]]] = {}
        self._queries: dict[tuple[str, str, tuple[str, ...]], tuple[bytes, dict[str, str]]] = {}
        self._closed = asyncio.Event()

    async def open(self) -> PostgresDatabase:
        """Open the pool, or fail at once with the driver's reason.

        One plain connection goes first: the pool would retry a refused or misconfigured
        connection in silence until its timeout, then say only that it timed out.
        """
        probe = await connect(self.url, connect_timeout=self.connect_timeout)
        await probe.close()
        try:
            await self._pool.open(wait=True, timeout=self.connect_timeout + 10)
        except PoolTimeout:
            await self._pool.close()
            raise DatabaseUnavailableError(
                f"cannot connect to {redact_url(self.url)}: the pool could not open its "
                "connections in time; check the server's connection limit"
            ) from None
        return self

    async def close(self) -> None:
        self._closed.set()
        await self._pool.close()

    async def call(self, function: str, **params: Any) -> list[Row]:
        return await self._execute(function, params, "select * from public.{}({})")

    async def value(self, function: str, **params: Any) -> Any:
        rows = await self._execute(function, params, "select public.{}({}) as value")
        return rows[0]["value"] if rows else None

    async def _execute(self, function: str, params: dict[str, Any], template: str) -> list[Row]:
        if not _IDENTIFIER.match(function):
            raise ValueError(f"not a function name: {function!r}")
        try:
            async with self._pool.connection() as conn:
                key = (function, template, tuple(params))
                known = self._queries.get(key)
                if known is None:
                    known = self._queries[key] = await self._query(conn, function, params, template)
                query, types = known
                values = {name: _adapt(value, types[name]) for name, value in params.items()}
                cursor = await conn.execute(query, values)
                return await cursor.fetchall() if cursor.description else []
        except PoolTimeout:
            raise DatabaseUnavailableError("database unavailable: no connection in time") from None
        except psycopg.Error as error:
            raise _translate(error, function) from None

    async def _query(
        self,
        conn: psycopg.AsyncConnection[Row],
        function: str,
        params: dict[str, Any],
        template: str,
    ) -> tuple[bytes, dict[str, str]]:
        """The call's text and its parameters' types, composed once per function and set of
        parameter names (the hot calls are made thousands of times a second)."""
        types = dict(await self._signature(conn, function))
        unknown = set(params) - set(types)
        if unknown:
            raise SchemaMissingError(
                f"{function} has no parameter {', '.join(sorted(unknown))}: the schema "
                "is outdated: run `mealworker migrate`"
            )
        arguments = sql.SQL(", ").join(
            sql.SQL("{} => {}::{}").format(
                sql.Identifier(name),
                sql.Placeholder(
                    name, PyFormat.BINARY if types[name] in _BINARY_TYPES else PyFormat.AUTO
                ),
                sql.SQL(types[name]),
            )
            for name in params
        )
        query = sql.SQL(template).format(sql.Identifier(function), arguments)
        return query.as_bytes(conn), types

    async def _signature(
        self, conn: psycopg.AsyncConnection[Row], function: str
    ) -> list[tuple[str, str]]:
        known = self._signatures.get(function)
        if known is not None:
            return known
        rows = await (await conn.execute(_SIGNATURE_SQL, (function,))).fetchall()
        if not rows:
            raise SchemaMissingError(
                f"function public.{function} does not exist: run `mealworker migrate`"
            )
        text = next(iter(rows[0].values())) or ""
        pairs = []
        for part in filter(None, (p.strip() for p in str(text).split(","))):
            name, _, pg_type = part.partition(" ")
            pairs.append((name, pg_type))
        self._signatures[function] = pairs
        return pairs

    async def listen(self, channel: str, on_notify: Callable[[str], None]) -> None:
        """Call ``on_notify`` for each notification on ``channel`` until cancelled.

        A dropped connection is re-opened with backoff; ``on_notify("")`` after each
        (re)connection lets the caller look for anything sent while it was away.
        """
        delay = 0.5
        while not self._closed.is_set():
            try:
                conn = await connect(
                    self.url, connect_timeout=self.connect_timeout, autocommit=True
                )
            except MealworkerError as error:
                log.warning("LISTEN connection failed (%s); retrying in %.1fs", error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30)
                continue
            try:
                await conn.execute(sql.SQL("listen {}").format(sql.Identifier(channel)))
                delay = 0.5
                on_notify("")
                async for notify in conn.notifies():
                    on_notify(notify.payload)
            except psycopg.Error as error:
                log.warning("LISTEN connection lost (%s); reconnecting", redact_url(str(error)))
            finally:
                await conn.close()
