"""What a SQLSTATE means to mealworker: one table for every transport and for the worker.

The psycopg and PostgREST transports both turn a refused call into one of the errors of
``mealplan_cli.ops.errors``; the worker then decides from the code whether the same write may pass
later (``temporary``). Written once, here, so the two transports cannot drift apart: the same
SQLSTATE is the same error class whichever way it came. What each transport adds is its own
wording (which setting to check) and its own codes (PostgREST's ``PGRST...``, a driver's
connection errors without a SQLSTATE).

An entry is an exact code (``55P03``) or a prefix (``57P``, the class ``08``); the longest
entry that starts the code wins.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from mealplan_cli.ops.errors import DatabaseError, DatabaseUnavailableError, SchemaMissingError


class Meaning(Enum):
    UNAVAILABLE = "the database cannot be reached or cannot serve now"
    CONFLICT = "this write collided with another (a deadlock, a lock, a serialization failure)"
    SCHEMA_MISSING = "a function, table or schema mealworker needs is missing"
    AUTHENTICATION = "the credentials were refused"
    PRIVILEGE = "the role lacks a privilege (or a trigger raised with the same code)"
    REFUSED = "the database refused this call (a trigger, a constraint, a bad argument)"


@dataclass(frozen=True)
class State:
    meaning: Meaning
    error: type[DatabaseError]
    temporary: bool
    """The same call may succeed later (so it is retried, a job after its attempts)."""


_UNAVAILABLE = State(Meaning.UNAVAILABLE, DatabaseUnavailableError, True)
_CONFLICT = State(Meaning.CONFLICT, DatabaseError, True)
_SCHEMA = State(Meaning.SCHEMA_MISSING, SchemaMissingError, False)

TABLE: dict[str, State] = {
    "08": _UNAVAILABLE,  # connection exception
    "53": _UNAVAILABLE,  # insufficient resources (out of connections, disk, memory)
    "57P": _UNAVAILABLE,  # the server shutting down, starting up, or the session closed
    "57014": _UNAVAILABLE,  # a statement timeout: a slow moment, tried again as an outage
    "40": _CONFLICT,  # serialization failure, deadlock
    "55P03": _CONFLICT,  # lock not available
    "42883": _SCHEMA,  # undefined function
    "42P01": _SCHEMA,  # undefined table
    "3F000": _SCHEMA,  # invalid schema name
    "28": State(Meaning.AUTHENTICATION, DatabaseError, False),
    "42501": State(Meaning.PRIVILEGE, DatabaseError, False),
}

REFUSED = State(Meaning.REFUSED, DatabaseError, False)
"""Any other code, or none: the database's own words, not retried."""

_PRIVILEGE_CHECK = re.compile(r"permission denied for [a-z ]+ ")


def lookup(code: str | None) -> State:
    """What ``code`` means: the longest entry of ``TABLE`` it starts with, else ``REFUSED``."""
    if code:
        for length in (5, 3, 2):
            state = TABLE.get(code[:length])
            if state is not None:
                return state
    return REFUSED


def temporary(code: str | None) -> bool:
    """Whether a call refused with ``code`` may pass later (a deadlock may; a trigger's
    refusal or a missing grant may not)."""
    return lookup(code).temporary


def privilege_check(code: str | None, message: str) -> bool:
    """The server's own "permission denied for table ..." (a missing grant), not a trigger
    that raised with the same SQLSTATE 42501 (its text says nothing about credentials)."""
    return lookup(code).meaning is Meaning.PRIVILEGE and bool(_PRIVILEGE_CHECK.match(message))
