"""One SQLSTATE table for both transports: the same code is the same error class, whether it
came through psycopg or through PostgREST (real exception classes of both libraries, built as
the libraries build them from a server's answer)."""

from __future__ import annotations

import psycopg
import pytest
from postgrest.exceptions import APIError

from mealplan_cli.core.db import postgres, rest, sqlstate
from mealplan_cli.core.worker.refusals import may_pass
from mealplan_cli.ops.errors import DatabaseError, DatabaseUnavailableError, SchemaMissingError

KEY = "service-role-key-0123456789"

CODES = {
    "08006": DatabaseUnavailableError,  # connection failure
    "53300": DatabaseUnavailableError,  # too many connections
    "57P01": DatabaseUnavailableError,  # admin shutdown
    "57P04": DatabaseUnavailableError,  # database dropped
    "57014": DatabaseUnavailableError,  # statement timeout
    "40001": DatabaseError,  # serialization failure
    "40P01": DatabaseError,  # deadlock
    "55P03": DatabaseError,  # lock not available
    "42883": SchemaMissingError,  # undefined function
    "42P01": SchemaMissingError,  # undefined table
    "3F000": SchemaMissingError,  # invalid schema name
    "28P01": DatabaseError,  # password authentication failed
    "42501": DatabaseError,  # insufficient privilege
    "P0001": DatabaseError,  # raise exception
    "23505": DatabaseError,  # unique violation
}


def over_postgres(code: str, message: str) -> DatabaseError:
    return postgres._translate(psycopg.errors.lookup(code)(message), "mealworker_complete_jobs")


def over_rest(code: str, message: str) -> DatabaseError:
    error = APIError({"code": code, "message": message, "hint": None, "details": None})
    return rest._translate(error, "mealworker_complete_jobs", KEY)


@pytest.mark.parametrize(("code", "expected"), sorted(CODES.items()))
def test_both_transports_map_a_sqlstate_to_the_same_error(
    code: str, expected: type[DatabaseError]
) -> None:
    for error in (over_postgres(code, "the server's words"), over_rest(code, "the server's words")):
        assert type(error) is expected, (code, error)
        assert error.code == code
        assert may_pass(error) is sqlstate.temporary(code)


@pytest.mark.parametrize("over", [over_postgres, over_rest])
def test_a_missing_grant_is_told_from_a_trigger_raising_the_same_code(over: object) -> None:
    translate = over_postgres if over is over_postgres else over_rest
    grant = translate("42501", "permission denied for function mealworker_complete_jobs ")
    trigger = translate("42501", "plan 7 is on hold for review by the app")
    assert "lacks a privilege" in str(grant)
    assert "privilege" not in str(trigger)
    assert "service_role" not in str(trigger)


def test_the_table_takes_the_longest_entry_and_knows_no_code_as_a_refusal() -> None:
    assert sqlstate.lookup("55P03").meaning is sqlstate.Meaning.CONFLICT  # not class 55
    assert sqlstate.lookup("55000") is sqlstate.REFUSED
    assert sqlstate.lookup("57P03").error is DatabaseUnavailableError
    assert sqlstate.lookup("57000") is sqlstate.REFUSED
    assert sqlstate.lookup(None) is sqlstate.REFUSED
    assert sqlstate.lookup("") is sqlstate.REFUSED
    temporary = {code for code in CODES if sqlstate.temporary(code)}
    assert temporary == {"08006", "53300", "57P01", "57P04", "57014", "40001", "40P01", "55P03"}
