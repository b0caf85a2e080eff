"""The app's side of the database: transactions run as PostgREST runs a signed-in user's
request, and database settings changed the way a project owner would."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row

from tests.helpers.sql import Conn


@contextmanager
def as_role(url: str, role: str, user: uuid.UUID | None = None) -> Iterator[Conn]:
    """A transaction run the way PostgREST runs a request: role and JWT claims set locally."""
    with psycopg.connect(url, row_factory=dict_row) as conn, conn.transaction():
        conn.execute(f"set local role {role}")
        claims = {"role": role, **({"sub": str(user)} if user else {})}
        conn.execute("select set_config('request.jwt.claims', %s, true)", (json.dumps(claims),))
        yield conn


def request_plan(url: str, user: uuid.UUID, request: dict[str, Any], key: str | None = None) -> Any:
    with as_role(url, "authenticated", user) as conn:
        row = conn.execute(
            "select public.request_meal_plan(request => %s::jsonb, idempotency_key => %s) as id",
            (json.dumps(request), key),
        ).fetchone()
    assert row is not None
    return row["id"]


def set_database(url: str, setting: str, value: str) -> None:
    """``alter database ... set``, as an operator configures a Supabase project."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'alter database "{conn.info.dbname}" set {setting} = {value}')
