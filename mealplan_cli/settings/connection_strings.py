"""A connection string checked before libpq reads it, so that no error ever quotes a password.

libpq reads a malformed connection string in ways that put the password where errors print it:
``postgresql://u:p@ss@host`` connects to the host ``ss@host`` (and the error names that host),
``abc%def`` decodes to bytes that are not UTF-8 (psycopg then fails with a traceback), ``x%2``
is quoted whole in "invalid percent-encoded token", a key=value string without ``=`` is quoted
in 'missing "=" after ...'. Such a string never works, so it is refused here, saying what to
change, without quoting any of it. The rules are libpq's own (``conninfo_uri_parse_options``
and ``conninfo_parse`` in ``fe-connect.c``): the user and password end at the first ``@`` or
``/``; the host list ends at ``/`` or ``?``; query parameters are ``name=value`` joined by
``&``; a key=value string is ``key = value`` pairs, a value quoted with ``'`` (``\\`` escapes)
or running to the next white space.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

URL_SCHEMES = ("postgresql://", "postgres://")

FORMS = (
    "write a URL, postgresql://USER@HOST:5432/DATABASE with :PASSWORD after USER and its "
    "special characters percent-encoded (@ as %40, / as %2F, % as %25, a space as %20), or "
    "the key=value form host=... user=... password=... dbname=... (a value with spaces in "
    "single quotes)"
)
"""How to write it, in words no masking mistakes for a password."""

_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_PORT = re.compile(r"^[^:]*(:\d*)?$")


def check_connection_string(dsn: str) -> None:
    """Raise ``ValueError`` saying what is wrong with ``dsn`` (a URL or key=value pairs),
    without quoting any part of it."""
    text = dsn.strip()
    problem = _url_problem(text) if text.startswith(URL_SCHEMES) else _keywords_problem(text)
    if problem:
        raise ValueError(f"not a valid connection string ({problem}): {FORMS}")


def _url_problem(url: str) -> str | None:
    if any(character.isspace() for character in url):
        return "a URL cannot hold white space"
    if _BAD_PERCENT.search(url):
        return "a % that does not start a percent-encoded character such as %25"
    try:
        unquote_to_bytes(url).decode("utf-8")
    except UnicodeDecodeError:
        return "percent-encoded bytes that are not UTF-8 text"
    rest = url.split("://", 1)[1]
    stop = re.search(r"[@/]", rest)
    if stop is not None and stop[0] == "@":
        after = rest[stop.end() :]
    else:
        after = rest
        head = rest[: stop.start()] if stop is not None else rest
        path = rest[len(head) :].split("?", 1)[0]
        if "@" in path and not _PORT.match(head):
            return "a / in the user name or password"
    hosts_end = re.search(r"[/?]", after)
    hosts = after[: hosts_end.start()] if hosts_end is not None else after
    if "@" in hosts:
        return "more than one @ before the host: an @ in the user name or password"
    tail = after[len(hosts) :]
    query = tail.split("?", 1)[1] if "?" in tail else None
    if query is not None and any(piece.count("=") != 1 for piece in query.split("&")):
        return "a query parameter that is not name=value (an & or = inside a value)"
    return None


def _keywords_problem(text: str) -> str | None:
    """libpq's ``conninfo_parse``, reduced to whether it would succeed."""
    position, end = 0, len(text)
    while True:
        while position < end and text[position].isspace():
            position += 1
        if position == end:
            return None
        while position < end and text[position] != "=" and not text[position].isspace():
            position += 1
        while position < end and text[position].isspace():
            position += 1
        if position == end or text[position] != "=":
            return 'a key without "=" (a URL must start with postgresql://)'
        position += 1
        while position < end and text[position].isspace():
            position += 1
        if position < end and text[position] == "'":
            position += 1
            while position < end and text[position] != "'":
                position += 2 if text[position] == "\\" else 1
            if position >= end:
                return "a quoted value without its closing '"
            position += 1
        else:
            while position < end and not text[position].isspace():
                position += 2 if text[position] == "\\" else 1
