"""Supabase's Data API (PostgREST behind the API gateway) on loopback, for RPC calls only.

PostgREST cannot be installed on the test machines, so this server stands in for it: the real
``supabase``/``postgrest`` clients (or plain ``httpx``) call ``/rest/v1/rpc/<function>`` and
the fake runs the function in a real PostgreSQL database, the way PostgREST does:

- the gateway part: an ``apikey`` header is required; an ``sb_secret_...`` key (in
  ``Authorization``, or in ``apikey`` when ``Authorization`` is absent) becomes a short-lived
  service_role JWT, as Supabase's gateway does;
- the PostgREST part: the JWT is verified (HS256, ``exp``/``nbf``/``iat`` with PostgREST's 30 s
  of clock skew); one transaction per request, read-only for GET and for STABLE/IMMUTABLE
  functions, with the impersonated role's own settings (``ALTER ROLE ... SET``) applied and the
  ``request.*`` settings set; ``set local role``; arguments matched to parameters by name
  through ``pg_catalog`` so SQL defaults apply; results turned into JSON by PostgreSQL itself
  (``json_agg``/``to_json``); errors as ``{"code", "message", "details", "hint"}`` with
  PostgREST's mapping from SQLSTATE to HTTP status.

The database connection stands in for PostgREST's ``authenticator``: the URL is usually a
superuser's, so only the roles in ``FakePostgrest.roles`` may be impersonated, as on Supabase.
Unlike PostgREST, the fake has no schema cache: a function created a moment ago is callable at
once, without ``NOTIFY pgrst, 'reload schema'``.

Not served: tables and views (``/rest/v1/<table>``), filters/``select``/ordering on RPC results,
bulk calls (a JSON array body), CSV, and HEAD (the shared harness answers only GET, POST and
DELETE). Asking for one of those gets a 400 ``PGRST127`` saying so, never a silent wrong answer.
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from http.cookies import CookieError, SimpleCookie
from typing import Any, Self
from urllib.parse import unquote
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from tests.fakes import FaultQueue, Incoming, LoopbackServer, Reply

__all__ = [
    "DEFAULT_JWT_SECRET",
    "FakePostgrest",
    "JwtError",
    "PostgrestFault",
    "RecordedRequest",
    "Stats",
    "make_jwt",
    "mask_secret",
    "status_for_sqlstate",
    "verify_jwt",
]

DEFAULT_JWT_SECRET = "super-secret-jwt-token-with-at-least-32-characters"
SUPABASE_ROLES = ("anon", "authenticated", "service_role")
REST_PREFIX = "/rest/v1"
CLOCK_SKEW_SECONDS = 30
# Supabase's legacy API keys are JWTs issued once and valid for about ten years.
LEGACY_KEY_ISSUED_AT = 1_700_000_000
LEGACY_KEY_EXPIRES_AT = 4_102_444_800  # 2100-01-01
# What the gateway mints for a secret or publishable key lives only as long as the request.
MINTED_TOKEN_SECONDS = 60
EXTRA_SEARCH_PATH = ("public", "extensions")

JSON_UTF8 = "application/json; charset=utf-8"
OBJECT_MEDIA_TYPE = "application/vnd.pgrst.object+json"
ARRAY_MEDIA_TYPE = "application/vnd.pgrst.array+json"
PLAIN_JSON_MEDIA_TYPES = ("application/json", "application/*", "*/*")
BAD_GATEWAY_HTML = (
    "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1>"
    "</center><hr><center>cloudflare</center></body></html>"
)

_ROUTINES_SQL = """
select p.proname,
       coalesce(p.proargnames, '{}'::text[]),
       coalesce(p.proargmodes::text[], '{}'::text[]),
       array(select pg_catalog.format_type(t.oid, null)
               from pg_catalog.unnest(coalesce(p.proallargtypes, p.proargtypes::pg_catalog.oid[]))
                    with ordinality as t (oid, n)
              order by t.n),
       p.pronargdefaults,
       p.proretset,
       p.provolatile::text,
       p.prorettype = 'pg_catalog.void'::pg_catalog.regtype,
       rt.typtype = 'c' or p.prorettype = 'pg_catalog.record'::pg_catalog.regtype
  from pg_catalog.pg_proc p
  join pg_catalog.pg_namespace n on n.oid = p.pronamespace
  join pg_catalog.pg_type rt on rt.oid = p.prorettype
 where n.nspname = %s and p.proname = %s and p.prokind = 'f'
 order by p.oid
"""

_FUNCTION_NAMES_SQL = """
select distinct p.proname
  from pg_catalog.pg_proc p
  join pg_catalog.pg_namespace n on n.oid = p.pronamespace
 where n.nspname = %s and p.prokind = 'f'
"""

# Database-wide settings first, so that the ones for this database win.
_ROLE_SETTINGS_SQL = """
select pg_catalog.split_part(c.setting, '=', 1),
       pg_catalog.substr(c.setting, pg_catalog.strpos(c.setting, '=') + 1)
  from pg_catalog.pg_db_role_setting s
  join pg_catalog.pg_roles r on r.oid = s.setrole
  cross join lateral pg_catalog.unnest(s.setconfig) with ordinality as c (setting, n)
 where r.rolname = %s
   and s.setdatabase in (0, (select d.oid from pg_catalog.pg_database d
                              where d.datname = pg_catalog.current_database()))
 order by s.setdatabase, c.n
"""

_REQUEST_SETTINGS_SQL = """
select pg_catalog.set_config('search_path', %s, true),
       pg_catalog.set_config('request.jwt.claims', %s, true),
       pg_catalog.set_config('request.method', %s, true),
       pg_catalog.set_config('request.path', %s, true),
       pg_catalog.set_config('request.headers', %s, true),
       pg_catalog.set_config('request.cookies', %s, true)
"""

_RESPONSE_SETTINGS_SQL = """
select nullif(pg_catalog.current_setting('response.headers', true), ''),
       nullif(pg_catalog.current_setting('response.status', true), '')
"""


class PostgrestFault(StrEnum):
    """Misbehaviour served to the next requests, queued with ``FakePostgrest.inject``.

    - ``db_down``: 503 ``PGRST000``, as PostgREST answers while it cannot reach the database;
      the database is not touched.
    - ``drop_connection``: the socket is closed before anything runs; the client sees
      ``httpx.RemoteProtocolError``.
    - ``drop_response``: the call runs and commits, then the socket is closed without an
      answer: the case that makes retrying a POST unsafe unless the function is idempotent.
    - ``slow``: wait ``seconds`` (so a client timeout can trip), then serve normally.
    - ``bad_gateway``: 502 with an HTML page from the proxy in front, not PostgREST JSON.
    """

    db_down = "db_down"
    drop_connection = "drop_connection"
    drop_response = "drop_response"
    slow = "slow"
    bad_gateway = "bad_gateway"


@dataclass(frozen=True)
class _Injected:
    fault: PostgrestFault
    seconds: float = 0.0


@dataclass
class RecordedRequest:
    """One request as received. ``authorization`` and ``apikey`` are masked.

    ``role`` is the role the request was served as (None when it was refused before that);
    ``status`` is None when no answer was sent (a dropped connection).
    """

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    role: str | None = None
    status: int | None = None
    fault: PostgrestFault | None = None

    @property
    def function(self) -> str | None:
        prefix = f"{REST_PREFIX}/rpc/"
        return unquote(self.path.removeprefix(prefix)) if self.path.startswith(prefix) else None

    def json(self) -> Any:
        return json.loads(self.body) if self.body.strip() else None


@dataclass(frozen=True)
class Stats:
    """Counters since the server was created. ``transactions`` counts calls that reached a
    function (one transaction each); ``max_concurrent`` is the most requests in flight at once."""

    requests: int = 0
    transactions: int = 0
    commits: int = 0
    rollbacks: int = 0
    faults: int = 0
    max_concurrent: int = 0


class JwtError(Exception):
    """A token PostgREST refuses: ``PGRST301`` (cannot be decoded or verified) or ``PGRST303``
    (its claims are not acceptable, e.g. expired)."""

    def __init__(self, code: str, message: str, details: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


# --- JWT (HS256) ------------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)


def _compact_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _key(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def make_jwt(claims: Mapping[str, Any], secret: str | bytes) -> str:
    """An HS256 JWT of ``claims``, as Supabase Auth (or the dashboard, for API keys) signs them."""
    header = _b64url(_compact_json({"alg": "HS256", "typ": "JWT"}))
    signing_input = f"{header}.{_b64url(_compact_json(dict(claims)))}"
    signature = hmac.new(_key(secret), signing_input.encode("ascii"), hashlib.sha256).digest()
    return f"{signing_input}.{_b64url(signature)}"


def verify_jwt(token: str, secret: str | bytes, *, now: float | None = None) -> dict[str, Any]:
    """The claims of ``token``, checked as PostgREST checks them; raises ``JwtError``."""
    parts = token.split(".")
    if len(parts) != 3:
        raise JwtError("PGRST301", f"Expected 3 parts in JWT; got {len(parts)}")
    try:
        header = json.loads(_b64url_decode(parts[0]))
        payload = _b64url_decode(parts[1])
        signature = _b64url_decode(parts[2])
        signing_input = f"{parts[0]}.{parts[1]}".encode("ascii")
    except ValueError as error:  # bad base64, bad JSON, non-ASCII
        raise JwtError("PGRST301", "JWT cryptographic operation failed") from error
    algorithm = header.get("alg") if isinstance(header, dict) else None
    if algorithm != "HS256":
        raise JwtError(
            "PGRST301", "Wrong or unsupported encoding algorithm", f"Unsupported alg: {algorithm}"
        )
    expected = hmac.new(_key(secret), signing_input, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, signature):
        raise JwtError(
            "PGRST301",
            "No suitable key or wrong key type",
            "None of the keys was able to decode the JWT",
        )
    try:
        claims = json.loads(payload)
    except ValueError as error:
        raise JwtError("PGRST303", "Parsing claims failed") from error
    if not isinstance(claims, dict):
        raise JwtError("PGRST303", "Parsing claims failed")
    _check_time_claims(claims, time.time() if now is None else now)
    return claims


def _check_time_claims(claims: dict[str, Any], now: float) -> None:
    def number(name: str) -> float | None:
        value = claims.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise JwtError("PGRST303", f"The JWT '{name}' claim must be a number")
        return float(value)

    exp, nbf, iat = number("exp"), number("nbf"), number("iat")
    if exp is not None and now - CLOCK_SKEW_SECONDS > exp:
        raise JwtError("PGRST303", "JWT expired")
    if nbf is not None and now + CLOCK_SKEW_SECONDS < nbf:
        raise JwtError("PGRST303", "JWT not yet valid")
    if iat is not None and now + CLOCK_SKEW_SECONDS < iat:
        raise JwtError("PGRST303", "JWT issued at future")


def mask_secret(value: str) -> str:
    """A key or ``Bearer`` header shown as its scheme, first six and last four characters."""
    scheme, _, token = value.partition(" ") if " " in value else ("", "", value)
    shown = f"{token[:6]}...{token[-4:]}" if len(token) > 16 else "*" * 8
    return f"{scheme} {shown}" if scheme else shown


# --- errors -----------------------------------------------------------------------------------


def _body(code: str | None, message: str, details: Any = None, hint: Any = None) -> bytes:
    return json.dumps({"code": code, "details": details, "hint": hint, "message": message}).encode()


def _pgrst_error(
    status: int,
    code: str,
    message: str,
    details: Any = None,
    hint: Any = None,
    headers: Mapping[str, str] | None = None,
) -> Reply:
    """An error from PostgREST itself: JSON body, and ``Proxy-Status`` naming the code."""
    return Reply(
        status,
        _body(code, message, details, hint),
        JSON_UTF8,
        {"Proxy-Status": f"PostgREST; error={code}", **(headers or {})},
    )


def _gateway_error(status: int, message: str, hint: str | None = None) -> Reply:
    """An error from the API gateway (Kong): no PostgREST code."""
    return Reply(status, _body(None, message, None, hint), "application/json; charset=utf-8")


def _jwt_error(error: JwtError) -> Reply:
    quoted = error.message.replace("\\", "\\\\").replace('"', '\\"')
    return _pgrst_error(
        401,
        error.code,
        error.message,
        error.details,
        headers={"WWW-Authenticate": f'Bearer error="invalid_token", error_description="{quoted}"'},
    )


def _not_implemented(details: str) -> Reply:
    return _pgrst_error(400, "PGRST127", "Feature not implemented", f"FakePostgrest: {details}")


_PREFIX_STATUS = (
    ("09", 500),
    ("0L", 403),
    ("0P", 403),
    ("25", 500),
    ("28", 403),
    ("2D", 500),
    ("38", 500),
    ("39", 500),
    ("3B", 500),
    ("40", 500),
    ("53", 503),
    ("54", 500),
    ("55", 500),
    ("57", 500),
    ("58", 500),
    ("F0", 500),
    ("HV", 500),
    ("P0", 500),
    ("XX", 500),
)
_EXACT_STATUS = {
    "23503": 409,
    "23505": 409,
    "25006": 405,
    "53400": 500,
    "57P01": 503,
    "P0001": 400,
    "42P01": 404,
    "42P17": 500,
}


def status_for_sqlstate(sqlstate: str, message: str, *, authenticated: bool) -> int:
    """PostgREST's HTTP status for a database error (``mapSQLtoHTTP`` in its Error.hs)."""
    if sqlstate.startswith("08"):
        return 503
    if sqlstate in _EXACT_STATUS:
        return _EXACT_STATUS[sqlstate]
    if sqlstate == "21000":
        return 400 if message.endswith("requires a WHERE clause") else 500
    if sqlstate == "22023":  # a JWT naming a role that does not exist
        return 401 if message.startswith("role") and message.endswith("does not exist") else 400
    if sqlstate == "42883":
        return 406 if message.startswith("function xmlagg(") else 404
    if sqlstate == "42501":
        return 403 if authenticated else 401
    if sqlstate.startswith("PT"):
        digits = sqlstate[2:]
        return int(digits) if digits.isdigit() and 100 <= int(digits) <= 599 else 500
    for prefix, status in _PREFIX_STATUS:
        if sqlstate.startswith(prefix):
            return status
    return 400


def _database_error(error: psycopg.Error, *, authenticated: bool) -> Reply:
    sqlstate = error.sqlstate or "XX000"
    diag = error.diag
    message = diag.message_primary or str(error)
    if sqlstate == "PGRST":
        return _raised_pgrst(message, diag.message_detail)
    status = status_for_sqlstate(sqlstate, message, authenticated=authenticated)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    return _pgrst_error(
        status, sqlstate, message, diag.message_detail, diag.message_hint, headers=headers
    )


def _raised_pgrst(message: str, detail: str | None) -> Reply:
    """``RAISE SQLSTATE 'PGRST'`` with a JSON message and a JSON detail: full response control."""
    try:
        body = json.loads(message)
        if not isinstance(body, dict) or "code" not in body or "message" not in body:
            raise ValueError(message)
    except ValueError:
        return _pgrst_error(
            500,
            "PGRST121",
            "Could not parse JSON in the \"RAISE SQLSTATE 'PGRST'\" error",
            f"Invalid JSON value for MESSAGE: '{message}'",
            "MESSAGE must be a JSON object with obligatory keys: 'code', 'message' and optional "
            "keys: 'details', 'hint'.",
        )
    try:
        if detail is None:
            raise ValueError("DETAIL is missing in the RAISE statement")
        control = json.loads(detail)
        if not isinstance(control, dict) or "status" not in control or "headers" not in control:
            raise ValueError(f"Invalid JSON value for DETAIL: '{detail}'")
        status = int(control["status"])
        headers = {str(k): str(v) for k, v in dict(control["headers"]).items()}
    except (ValueError, TypeError) as error:
        return _pgrst_error(
            500,
            "PGRST121",
            "Could not parse JSON in the \"RAISE SQLSTATE 'PGRST'\" error",
            str(error) if detail is None else f"Invalid JSON value for DETAIL: '{detail}'",
            "DETAIL must be a JSON object with obligatory keys: 'status', 'headers' and optional "
            "key: 'status_text'.",
        )
    return Reply(
        status,
        _body(str(body["code"]), str(body["message"]), body.get("details"), body.get("hint")),
        JSON_UTF8,
        {"Proxy-Status": f"PostgREST; error={body['code']}", **headers},
    )


# --- functions as the schema cache sees them --------------------------------------------------


@dataclass(frozen=True)
class _Param:
    name: str
    type: str
    required: bool
    variadic: bool = False


@dataclass(frozen=True)
class _Routine:
    schema: str
    name: str
    params: tuple[_Param, ...]  # input parameters (IN, INOUT, VARIADIC), in order
    out_names: tuple[str, ...]  # OUT, INOUT and TABLE columns
    returns_set: bool
    returns_void: bool
    returns_composite: bool
    volatility: str  # i, s or v

    @classmethod
    def from_row(cls, schema: str, row: Sequence[Any]) -> _Routine:
        name, names, modes, types, default_count, retset, volatility, void, composite = row
        count = len(types)
        modes = list(modes) or ["i"] * count
        names = list(names) or [""] * count
        inputs = [
            (names[i], types[i], modes[i]) for i in range(count) if modes[i] in ("i", "b", "v")
        ]
        required = len(inputs) - default_count
        params = tuple(
            _Param(n, t, index < required, mode == "v") for index, (n, t, mode) in enumerate(inputs)
        )
        outs = tuple(names[i] for i in range(count) if modes[i] in ("o", "b", "t"))
        return cls(schema, name, params, outs, retset, void, composite or bool(outs), volatility)

    @property
    def takes_json_body(self) -> bool:
        return (
            len(self.params) == 1
            and not self.params[0].name
            and self.params[0].type in ("json", "jsonb")
        )

    def accepts(self, keys: frozenset[str]) -> bool:
        """PostgREST's rule: every required parameter given, nothing that is not a parameter."""
        names = {p.name for p in self.params}
        return {p.name for p in self.params if p.required} <= keys <= names

    def described(self) -> str:
        params = ", ".join(f"{p.name} => {p.type}" for p in self.params)
        return f"{self.schema}.{self.name}({params})"


@dataclass(frozen=True)
class _Auth:
    role: str
    claims: dict[str, Any]
    authorization: str | None  # the header as PostgREST sees it, after the gateway


@dataclass(frozen=True)
class _Call:
    method: str
    schema: str
    function: str
    args: dict[str, Any] | None  # None: a JSON body that is not an object
    body_text: str
    single: bool
    strip_nulls: bool
    exact_count: bool


def _no_rpc(call: _Call, overloads: Sequence[_Routine], all_names: Sequence[str]) -> Reply:
    qualified = f"{call.schema}.{call.function}"
    keys = sorted(call.args or {})
    if keys:
        listed = ", ".join(keys)
        message = f"Could not find the function {qualified}({listed}) in the schema cache"
        searched = f" with parameter{'s' if len(keys) > 1 else ''} {listed}"
    else:
        message = f"Could not find the function {qualified} without parameters in the schema cache"
        searched = " without parameters"
    if call.method == "POST":
        searched += " or with a single unnamed json/jsonb parameter"
    details = (
        f"Searched for the function {qualified}{searched}, "
        "but no matches were found in the schema cache."
    )
    hint = None
    if overloads:
        candidates = ["(" + ", ".join(sorted(p.name for p in r.params)) + ")" for r in overloads]
        close = difflib.get_close_matches("(" + ", ".join(keys) + ")", candidates, 1, 0.33)
        if close:
            hint = f"Perhaps you meant to call the function {qualified}{close[0]}"
    else:
        close = difflib.get_close_matches(call.function, list(all_names), 1, 0.75)
        if close:
            hint = f"Perhaps you meant to call the function {call.schema}.{close[0]}"
    return _pgrst_error(404, "PGRST202", message, details, hint)


def _ambiguous(routines: Sequence[_Routine]) -> Reply:
    return _pgrst_error(
        300,
        "PGRST203",
        "Could not choose the best candidate function between: "
        + ", ".join(r.described() for r in routines),
        None,
        "Try renaming the parameters or the function itself in the database so function "
        "overloading can be resolved",
    )


def _choose(routines: Sequence[_Routine], call: _Call) -> tuple[_Routine, bool] | Reply | None:
    """The function to call and whether it takes the whole body; None when there is none."""
    keys = frozenset(call.args) if call.args is not None else None
    named = [r for r in routines if keys is not None and r.accepts(keys)]
    whole_body = [r for r in routines if call.method == "POST" and r.takes_json_body]
    if len(named) == 1:
        return named[0], False
    if len(named) > 1:
        return _ambiguous(named)
    if len(whole_body) == 1:
        return whole_body[0], True
    if len(whole_body) > 1:
        return _ambiguous(whole_body)
    return None


def _call_query(routine: _Routine, call: _Call, whole_body: bool) -> tuple[sql.Composed, list[Any]]:
    """The statement that calls ``routine`` and renders its result as JSON text (and a row count).

    POST arguments go through ``json_to_record`` typed by the parameters, as in PostgREST, so a
    JSON array reaches a ``bigint[]`` and an object a ``jsonb``; GET arguments are text, cast to
    each parameter's type. Only the given arguments are passed (named notation), so defaults apply.
    """
    function = sql.SQL("{}.{}").format(sql.Identifier(routine.schema), sql.Identifier(routine.name))
    params: list[Any] = []
    arguments: list[sql.Composable] = []
    sources: list[sql.Composable] = []
    args = call.args or {}
    given = [p for p in routine.params if p.name in args]
    if whole_body:
        arguments.append(sql.SQL("%s::{}").format(sql.SQL(routine.params[0].type)))
        params.append(call.body_text)
    elif given and call.method == "GET":
        for p in given:
            arguments.append(
                sql.SQL("{}{} => %s::text::{}").format(
                    sql.SQL("variadic " if p.variadic else ""),
                    sql.Identifier(p.name),
                    sql.SQL(p.type),
                )
            )
            params.append(args[p.name])
    elif given:
        columns = sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(p.name), sql.SQL(p.type)) for p in given
        )
        sources.append(
            sql.SQL("pg_catalog.json_to_record(%s::json) as pgrst_args ({})").format(columns)
        )
        params.append(call.body_text)
        for p in given:
            arguments.append(
                sql.SQL("{}{} => pgrst_args.{}").format(
                    sql.SQL("variadic " if p.variadic else ""),
                    sql.Identifier(p.name),
                    sql.Identifier(p.name),
                )
            )
    invocation = sql.SQL("{}({})").format(function, sql.SQL(", ").join(arguments))
    from_args = sql.SQL(" from {}").format(sources[0]) if sources else sql.SQL("")

    if routine.returns_void:
        return sql.SQL("select {}{}").format(invocation, from_args), params
    if not routine.returns_set and not routine.returns_composite:
        return (
            sql.SQL("select coalesce(pg_catalog.to_json({})::text, 'null'), 1{}").format(
                invocation, from_args
            ),
            params,
        )

    alias: sql.Composable
    element: sql.Composable
    if len(routine.out_names) == 1:
        # One OUT parameter (or a one-column TABLE) makes PostgreSQL return a bare scalar,
        # whose whole-row reference is that scalar; PostgREST still answers an object.
        column = sql.Identifier(routine.out_names[0])
        alias = sql.SQL("pgrst_call ({})").format(column)
        element = sql.SQL("pg_catalog.json_build_object({}, pgrst_call.{})").format(
            sql.Literal(routine.out_names[0]), column
        )
    elif routine.returns_composite:
        alias = sql.SQL("pgrst_call")
        element = sql.SQL("pgrst_call.*")
    else:
        alias = sql.SQL("pgrst_call (pgrst_scalar)")
        element = sql.SQL("pgrst_call.pgrst_scalar")
    one = call.single or not routine.returns_set
    rendered: sql.Composable = (
        sql.SQL("pg_catalog.json_agg({}) -> 0").format(element)
        if one
        else sql.SQL("coalesce(pg_catalog.json_agg({}), '[]'::json)").format(element)
    )
    if call.strip_nulls and routine.returns_composite:
        rendered = sql.SQL("pg_catalog.json_strip_nulls({})").format(rendered)
    items = [*sources, sql.SQL("{} as {}").format(invocation, alias)]
    query = sql.SQL("select coalesce(({})::text, 'null'), pg_catalog.count(*) from {}").format(
        rendered, sql.SQL(", ").join(items)
    )
    return query, params


def _guc_headers(raw: str | None) -> dict[str, str] | Reply:
    if raw is None:
        return {}
    try:
        items = json.loads(raw)
        if not isinstance(items, list):
            raise ValueError(raw)
        headers: dict[str, str] = {}
        for item in items:
            if not isinstance(item, dict) or len(item) != 1:
                raise ValueError(raw)
            ((name, value),) = item.items()
            if not isinstance(value, str):
                raise ValueError(raw)
            headers[name] = value
        return headers
    except ValueError:
        return _pgrst_error(
            500,
            "PGRST111",
            "response.headers guc must be a JSON array composed of objects with a single key "
            "and a string value",
        )


def _negotiate(accept: str | None) -> tuple[bool, bool] | Reply:
    """(single object?, strip nulls?) for an Accept header."""
    if not accept:
        return False, False
    offered = []
    for item in accept.split(","):
        media, *options = (part.strip() for part in item.split(";"))
        media = media.lower()
        offered.append(media)
        stripped = any(o.replace(" ", "").lower() == "nulls=stripped" for o in options)
        if media == OBJECT_MEDIA_TYPE:
            return True, stripped
        if media == ARRAY_MEDIA_TYPE:
            return False, stripped
        if media in PLAIN_JSON_MEDIA_TYPES:
            return False, False
    return _pgrst_error(
        406, "PGRST107", "None of these media types are available: " + ", ".join(offered)
    )


def _cookies(header: str | None) -> dict[str, str]:
    if not header:
        return {}
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except CookieError:
        return {}
    return {name: morsel.value for name, morsel in jar.items()}


# --- the server -------------------------------------------------------------------------------


def _legacy_key_claims(role: str) -> dict[str, Any]:
    return {
        "iss": "supabase",
        "ref": "fakeproject",
        "role": role,
        "iat": LEGACY_KEY_ISSUED_AT,
        "exp": LEGACY_KEY_EXPIRES_AT,
    }


def _configure_connection(conn: psycopg.Connection[Any]) -> None:
    # Supabase databases run in UTC; timestamps in answers must not depend on this machine.
    conn.execute("set timezone to 'UTC'")
    conn.commit()


class FakePostgrest(LoopbackServer):
    """``/rest/v1/rpc/<function>`` over the database at ``database_url``.

    ``base_url`` is what ``acreate_client`` takes (supabase-py appends ``/rest/v1``).
    ``anon_key``/``service_role_key`` are legacy JWT keys signed with ``jwt_secret``;
    ``secret_keys`` (``sb_secret_...``) act as service_role and ``publishable_keys``
    (``sb_publishable_...``) as anon. ``requests`` holds every request in arrival order.
    """

    def __init__(
        self,
        database_url: str,
        *,
        jwt_secret: str = DEFAULT_JWT_SECRET,
        anon_key: str | None = None,
        service_role_key: str | None = None,
        secret_keys: Sequence[str] = (),
        publishable_keys: Sequence[str] = (),
        schemas: Sequence[str] = ("public",),
        roles: Sequence[str] = SUPABASE_ROLES,
        anon_role: str = "anon",
        pool_size: int = 4,
        pool_timeout: float = 10.0,
    ) -> None:
        super().__init__()
        if not schemas:
            raise ValueError("at least one schema must be exposed")
        self.database_url = database_url
        self.jwt_secret = jwt_secret
        self._anon_key = anon_key or make_jwt(_legacy_key_claims("anon"), jwt_secret)
        self._service_role_key = service_role_key or make_jwt(
            _legacy_key_claims("service_role"), jwt_secret
        )
        self.secret_keys = list(secret_keys)
        self.publishable_keys = list(publishable_keys)
        self.schemas = list(schemas)
        self.roles = list(roles)
        self.anon_role = anon_role
        self.pool_size = pool_size
        self.pool_timeout = pool_timeout
        self.requests: list[RecordedRequest] = []
        self._faults: FaultQueue[_Injected] = FaultQueue()
        self._lock = threading.Lock()
        self._counters: Counter[str] = Counter()
        self._in_flight = 0
        self._connections_in_use = 0
        self._pool: ConnectionPool[psycopg.Connection[Any]] | None = None

    # -- keys and tokens

    @property
    def base_url(self) -> str:
        return self.origin

    @property
    def rest_url(self) -> str:
        return f"{self.origin}{REST_PREFIX}"

    @property
    def anon_key(self) -> str:
        return self._anon_key

    @property
    def service_role_key(self) -> str:
        return self._service_role_key

    def make_jwt(self, claims: Mapping[str, Any]) -> str:
        """``claims`` signed with this server's secret."""
        return make_jwt(claims, self.jwt_secret)

    def user_jwt(
        self,
        user_id: str | UUID,
        *,
        expires_in: float = 3600,
        claims: Mapping[str, Any] | None = None,
    ) -> str:
        """A signed-in user's access token as Supabase Auth issues it (role ``authenticated``).

        A negative ``expires_in`` gives an expired token; PostgREST allows 30 s of clock skew,
        so expire it by more than that to see ``PGRST303``.
        """
        now = int(time.time())
        exp = int(now + expires_in)
        return self.make_jwt(
            {
                "iss": f"{self.origin}/auth/v1",
                "sub": str(user_id),
                "aud": "authenticated",
                "exp": exp,
                "iat": min(now, exp - 1),
                "role": "authenticated",
                "aal": "aal1",
                "session_id": str(uuid.uuid4()),
                "is_anonymous": False,
                **(claims or {}),
            }
        )

    # -- faults and records

    def inject(
        self, fault: PostgrestFault | str, times: int = 1, *, seconds: float | None = None
    ) -> None:
        """Serve ``fault`` to the next ``times`` requests, after any already queued."""
        fault = PostgrestFault(fault)
        if (fault is PostgrestFault.slow) != (seconds is not None):
            raise ValueError("seconds= goes with the slow fault, and only with it")
        self._faults.push(_Injected(fault, seconds or 0.0), times)

    @property
    def pending_faults(self) -> list[PostgrestFault]:
        return [injected.fault for injected in self._faults.pending()]

    def clear_faults(self) -> None:
        self._faults.clear()

    @property
    def stats(self) -> Stats:
        with self._lock:
            return Stats(**self._counters)

    def calls(self) -> Counter[str]:
        """How many requests named each function, whatever their outcome."""
        with self._lock:
            return Counter(r.function for r in self.requests if r.function is not None)

    def requests_for(self, function: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.function == function]

    def _count(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._counters[name] += amount

    # -- lifecycle

    def start(self) -> Self:
        if self._pool is not None:
            raise RuntimeError("FakePostgrest is already running")
        pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            self.database_url,
            min_size=1,
            max_size=self.pool_size,
            open=False,
            timeout=self.pool_timeout,
            kwargs={"autocommit": False, "application_name": "fake-postgrest"},
            configure=_configure_connection,
            check=ConnectionPool.check_connection,
            name="fake-postgrest",
        )
        pool.open(wait=False)
        self._pool = pool
        try:
            super().start()
        except BaseException:
            self._pool = None
            pool.close()
            raise
        return self

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            pool, self._pool = self._pool, None
            if pool is not None:
                pool.close(timeout=5)

    # -- serving

    def handle(self, request: Incoming) -> Reply | None:
        headers = {
            name: mask_secret(value) if name in ("authorization", "apikey") else value
            for name, value in request.headers.items()
        }
        record = RecordedRequest(
            request.method, request.path, dict(request.query), headers, request.body
        )
        with self._lock:
            self.requests.append(record)
            self._counters["requests"] += 1
            self._in_flight += 1
            self._counters["max_concurrent"] = max(
                self._counters["max_concurrent"], self._in_flight
            )
        try:
            reply = self._serve(request, record)
        finally:
            with self._lock:
                self._in_flight -= 1
        record.status = reply.status if reply is not None else None
        return reply

    def _serve(self, request: Incoming, record: RecordedRequest) -> Reply | None:
        injected = self._faults.pop()
        if injected is not None:
            record.fault = injected.fault
            self._count("faults")
            if injected.fault is PostgrestFault.drop_connection:
                return None
            if injected.fault is PostgrestFault.db_down:
                return _pgrst_error(
                    503,
                    "PGRST000",
                    "Database connection error. Retrying the connection.",
                    "connection to server failed: Connection refused (injected fault)",
                )
            if injected.fault is PostgrestFault.bad_gateway:
                return Reply(502, BAD_GATEWAY_HTML.encode(), "text/html")
            if injected.fault is PostgrestFault.slow and not self.pause(injected.seconds):
                return None
        reply = self._gateway(request, record)
        if injected is not None and injected.fault is PostgrestFault.drop_response:
            return None
        return reply

    def _gateway(self, request: Incoming, record: RecordedRequest) -> Reply | None:
        """What Supabase's API gateway does before PostgREST sees the request."""
        if request.path != REST_PREFIX and not request.path.startswith(f"{REST_PREFIX}/"):
            return _gateway_error(404, "no Route matched with those values")
        apikey = request.headers.get("apikey")
        if not apikey:
            return _gateway_error(
                401,
                "No API key found in request",
                "No `apikey` request header or url param was found.",
            )
        known = {self.anon_key, self.service_role_key, *self.secret_keys, *self.publishable_keys}
        if apikey not in known:
            return _gateway_error(
                401,
                "Invalid API key",
                "Double check your Supabase `anon` or `service_role` API key.",
            )
        authorization = request.headers.get("authorization")
        if authorization is None and apikey.startswith("sb_"):
            authorization = f"Bearer {apikey}"
        if authorization is not None:
            scheme, _, token = authorization.strip().partition(" ")
            token = token.strip()
            if scheme.lower() == "bearer" and token.startswith("sb_"):
                if token in self.secret_keys:
                    role = "service_role"
                elif token in self.publishable_keys:
                    role = self.anon_role
                else:
                    return _gateway_error(
                        401,
                        "Invalid API key",
                        "Double check your Supabase `anon` or `service_role` API key.",
                    )
                now = int(time.time())
                minted = self.make_jwt(
                    {"iss": "supabase", "role": role, "iat": now, "exp": now + MINTED_TOKEN_SECONDS}
                )
                authorization = f"Bearer {minted}"
        return self._postgrest(request, record, authorization)

    def _authenticate(self, authorization: str | None) -> _Auth | Reply:
        anonymous = _Auth(self.anon_role, {"role": self.anon_role}, authorization)
        if authorization is None:
            return anonymous
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer":
            return anonymous
        token = token.strip()
        if not token:
            return _jwt_error(JwtError("PGRST301", "Empty JWT is sent in Authorization header"))
        try:
            claims = verify_jwt(token, self.jwt_secret)
        except JwtError as error:
            return _jwt_error(error)
        role = claims.get("role")
        if not isinstance(role, str) or not role:
            role = self.anon_role
        return _Auth(role, claims, authorization)

    def _postgrest(
        self, request: Incoming, record: RecordedRequest, authorization: str | None
    ) -> Reply | None:
        auth = self._authenticate(authorization)
        if isinstance(auth, Reply):
            return auth
        record.role = auth.role
        path = request.path.removeprefix(REST_PREFIX) or "/"
        if not path.startswith("/rpc/"):
            return _pgrst_error(
                404,
                "PGRST125",
                "Invalid path specified in request URL",
                f"FakePostgrest serves only {REST_PREFIX}/rpc/<function>, not {request.path}",
            )
        function = unquote(path.removeprefix("/rpc/"))
        if not function or "/" in function:
            return _pgrst_error(404, "PGRST125", "Invalid path specified in request URL")
        if request.method not in ("GET", "POST"):
            return _pgrst_error(405, "PGRST101", f"Cannot use the {request.method} method on RPC")

        profile_header = "accept-profile" if request.method == "GET" else "content-profile"
        schema = request.headers.get(profile_header) or self.schemas[0]
        if schema not in self.schemas:
            return _pgrst_error(
                406,
                "PGRST106",
                f"Invalid schema: {schema}",
                None,
                "Only the following schemas are exposed: " + ", ".join(self.schemas),
            )
        negotiated = _negotiate(request.headers.get("accept"))
        if isinstance(negotiated, Reply):
            return negotiated
        single, strip_nulls = negotiated
        prefer = [p.strip().lower() for p in request.headers.get("prefer", "").split(",")]
        exact_count = any(p in ("count=exact", "count=planned", "count=estimated") for p in prefer)

        query = dict(request.query)
        select = query.pop("select", "*")
        if select.replace(" ", "") != "*":
            return _not_implemented("select= on RPC results is not served")
        args: dict[str, Any] | None
        if request.method == "GET":
            args, body_text = query, "{}"
        else:
            if query:
                return _not_implemented(f"filters on RPC results are not served: {sorted(query)}")
            body_text = request.body.decode("utf-8", "replace").strip() or "{}"
            try:
                parsed = json.loads(body_text)
            except ValueError:
                return _pgrst_error(400, "PGRST102", "Empty or invalid json")
            if isinstance(parsed, list):
                return _not_implemented("bulk RPC calls (a JSON array body) are not served")
            args = parsed if isinstance(parsed, dict) else None
        call = _Call(
            request.method, schema, function, args, body_text, single, strip_nulls, exact_count
        )
        return self._execute(call, auth, request)

    def _execute(self, call: _Call, auth: _Auth, request: Incoming) -> Reply | None:
        pool = self._pool
        if pool is None:
            return None
        try:
            with pool.connection() as conn:
                with self._lock:
                    self._connections_in_use += 1
                try:
                    return self._transaction(conn, call, auth, request)
                except psycopg.Error as error:
                    if error.sqlstate is None:
                        raise
                    conn.rollback()
                    self._count("rollbacks")
                    return _database_error(error, authenticated=auth.role != self.anon_role)
                finally:
                    with self._lock:
                        self._connections_in_use -= 1
        except PoolTimeout:
            return self._no_connection()
        except PoolClosed:
            return None  # stop() is under way; nobody is listening
        except psycopg.Error as error:  # the connection broke mid-request
            return _pgrst_error(
                503, "PGRST001", "Database client error. Retrying the connection.", str(error)
            )

    def _no_connection(self) -> Reply:
        """PostgREST tells a full pool (504) from an unreachable database (503)."""
        with self._lock:
            busy = self._connections_in_use >= self.pool_size
        if not busy:
            try:
                psycopg.connect(self.database_url, connect_timeout=2).close()
            except psycopg.Error as error:
                return _pgrst_error(
                    503,
                    "PGRST000",
                    "Database connection error. Retrying the connection.",
                    str(error),
                )
        return _pgrst_error(504, "PGRST003", "Timed out acquiring connection from connection pool.")

    def _transaction(
        self, conn: psycopg.Connection[Any], call: _Call, auth: _Auth, request: Incoming
    ) -> Reply:
        with conn.cursor() as cur:
            # format_type qualifies every type outside pg_catalog under this search_path, so
            # the casts built from it do not depend on the search_path set for the call.
            cur.execute("select pg_catalog.set_config('search_path', 'pg_catalog', true)")
            cur.execute(_ROUTINES_SQL, (call.schema, call.function))
            routines = [_Routine.from_row(call.schema, row) for row in cur.fetchall()]
            chosen = _choose(routines, call)
            if chosen is None:
                names: list[str] = []
                if not routines:
                    cur.execute(_FUNCTION_NAMES_SQL, (call.schema,))
                    names = [row[0] for row in cur.fetchall()]
                conn.rollback()
                return _no_rpc(call, routines, names)
            if isinstance(chosen, Reply):
                conn.rollback()
                return chosen
            routine, whole_body = chosen
            self._count("transactions")

            if call.method == "GET" or routine.volatility != "v":
                cur.execute("set transaction read only")
            cur.execute(_ROLE_SETTINGS_SQL, (auth.role,))
            for name, value in cur.fetchall():
                cur.execute("select pg_catalog.set_config(%s, %s, true)", (name, value))
            search_path = ", ".join(
                sql.Identifier(s).as_string(conn)
                for s in dict.fromkeys((call.schema, *EXTRA_SEARCH_PATH))
            )
            headers = {name: value for name, value in request.headers.items()}
            if auth.authorization is not None:
                headers["authorization"] = auth.authorization
            cur.execute(
                _REQUEST_SETTINGS_SQL,
                (
                    search_path,
                    json.dumps(auth.claims),
                    call.method,
                    request.path.removeprefix(REST_PREFIX),
                    json.dumps(headers),
                    json.dumps(_cookies(request.headers.get("cookie"))),
                ),
            )
            if auth.role not in self.roles:
                cur.execute("select 1 from pg_catalog.pg_roles where rolname = %s", (auth.role,))
                if cur.fetchone() is not None:  # exists, but not granted to the authenticator
                    conn.rollback()
                    self._count("rollbacks")
                    return _pgrst_error(
                        403, "42501", f'permission denied to set role "{auth.role}"'
                    )
            cur.execute(sql.SQL("set local role {}").format(sql.Identifier(auth.role)))

            query, params = _call_query(routine, call, whole_body)
            cur.execute(query, params)
            result = None if routine.returns_void else cur.fetchone()
            cur.execute(_RESPONSE_SETTINGS_SQL)
            settings = cur.fetchone()
        guc_headers, guc_status = settings if settings is not None else (None, None)

        extra_headers = _guc_headers(guc_headers)
        status = 200
        if guc_status is not None:
            status = int(guc_status) if guc_status.isdigit() else 0
            if not 100 <= status <= 599:
                extra_headers = _pgrst_error(
                    500, "PGRST112", "response.status guc must be a valid status code"
                )
        if isinstance(extra_headers, Reply):
            conn.rollback()
            self._count("rollbacks")
            return extra_headers

        if result is None:
            conn.commit()
            self._count("commits")
            return Reply(204 if guc_status is None else status, b"", JSON_UTF8, extra_headers)
        body, rows = result
        if call.single and rows != 1:
            # PostgREST undoes the call when the client asked for exactly one row.
            conn.rollback()
            self._count("rollbacks")
            return _pgrst_error(
                406,
                "PGRST116",
                "Cannot coerce the result to a single JSON object",
                f"The result contains {rows} rows",
            )
        conn.commit()
        self._count("commits")
        total = str(rows) if call.exact_count else "*"
        content_range = f"0-{rows - 1}/{total}" if rows else f"*/{total}"
        content_type = f"{OBJECT_MEDIA_TYPE}; charset=utf-8" if call.single else JSON_UTF8
        return Reply(
            status,
            body.encode(),
            content_type,
            {"Content-Range": content_range, **extra_headers},
        )
