"""One request validation: the database's ``mealworker_request_problem`` and the worker's
``parse_request`` accept exactly the same requests.

The same random requests, valid and invalid, go to both on the real PostgreSQL. The worker reads
a request back from ``jsonb`` (as psycopg and PostgREST hand it over), so that is what Python
validates here too. The vocabulary (slots, diets, allergen families and their aliases) is read
from the Python model, so a word added there and not in SQL fails this test.

Limits of the generated data, each a PostgreSQL limit rather than a choice: no NUL character and
no lone surrogate (``jsonb`` cannot store them), and no NaN or infinity (JSON has none).

One deliberate difference sits outside ``mealworker_request_problem``: ``request_meal_plan``
refuses a body over 64 KB before validating it. Only white space padding can make a valid
request that large (the largest meaningful one is about 12 KB), so the worker never sees one.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from mealplan_cli.mealplans.generation.request import parse_request
from mealplan_cli.mealplans.generation.vocabulary import ALLERGEN_ALIASES, Allergen, Diet, Slot
from mealplan_cli.ops.errors import InvalidRequestError
from tests.helpers import pg

WHITESPACE = [" ", "\t", "\n", "\x0b", "\x1c", "\x1f", "\x85", "\xa0", "\u2009", "\u3000"]
VOCABULARY = {
    "meals": [s.value for s in Slot],
    "diet": [d.value for d in Diet],
    "allergies": [a.value for a in Allergen] + sorted(ALLERGEN_ALIASES),
}
INT_FIELDS = {
    "days": (1, 14),
    "calories": (1200, 5000),
    "household_size": (1, 12),
    "max_cook_minutes": (5, 480),
}
MACRO_FIELDS = {"protein": (5, 60), "carbs": (0, 80), "fat": (10, 80)}


@pytest.fixture(scope="module")
def conn(pg_server_url: str, pg_pool: pg.DatabasePool) -> Iterator[psycopg.Connection[Any]]:
    name = pg_pool.take()
    with psycopg.connect(pg.with_database(pg_server_url, name), autocommit=True) as connection:
        yield connection
    pg_pool.give_back(name)


def both(conn: psycopg.Connection[Any], request: Any) -> tuple[str | None, str | None]:
    """(the database's problem, the worker's problem); None where the request is accepted."""
    row = conn.execute(
        "select v, public.mealworker_request_problem(v) from (select %s::jsonb as v) t",
        (json.dumps(request),),
    ).fetchone()
    assert row is not None
    stored, sql_problem = row
    try:
        parse_request(stored)
        python_problem = None
    except InvalidRequestError as error:
        python_problem = str(error)
    return sql_problem, python_problem


def agree(conn: psycopg.Connection[Any], request: Any) -> None:
    sql_problem, python_problem = both(conn, request)
    event("accepted" if python_problem is None else "refused")
    assert (sql_problem is None) == (python_problem is None), (
        f"request {request!r}: database says {sql_problem!r}, worker says {python_problem!r}"
    )
    if sql_problem is not None and python_problem is not None and isinstance(request, dict):
        field = sql_problem.split(":", 1)[0]
        assert field in python_problem, (request, sql_problem, python_problem)


characters = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")
text = st.text(characters, max_size=12)
padding = st.lists(st.sampled_from(WHITESPACE), max_size=2).map("".join)


@st.composite
def integer_like(draw: st.DrawFn, low: int, high: int) -> Any:
    near = st.integers(low - 3, high + 3)
    digits = draw(near)
    as_text = draw(
        st.sampled_from(
            [
                str(digits),
                f"+{digits}" if digits >= 0 else str(digits),
                f"{digits}.0",
                f"{digits}.",
                "_".join(str(digits)) if digits >= 10 else f"_{digits}",
                f"{digits}e0",
                f"0{digits}" if digits >= 0 else f"-0{-digits}",
            ]
        )
    )
    return draw(
        st.one_of(
            near,
            near.map(float),
            st.floats(low - 3, high + 3, allow_nan=False, allow_infinity=False),
            st.integers(),
            st.booleans(),
            st.builds(lambda a, t, b: a + t + b, padding, st.just(as_text), padding),
            text,
            st.none(),
            st.lists(near, max_size=1),
        )
    )


@st.composite
def word(draw: st.DrawFn, field: str) -> Any:
    known = draw(st.sampled_from(VOCABULARY[field]))
    spelled = draw(
        st.sampled_from(
            [known, known.upper(), known.title(), known.replace("_", "-"), known.replace("_", " ")]
        )
    )
    return draw(
        st.one_of(
            st.builds(lambda a, w, b: a + w + b, padding, st.just(spelled), padding),
            text,
            st.integers(0, 3),
            st.none(),
        )
    )


def choice_list(field: str, max_size: int) -> st.SearchStrategy[Any]:
    words = st.lists(word(field), max_size=max_size)
    texts = st.lists(word(field).filter(lambda w: isinstance(w, str)), max_size=max_size)
    return st.one_of(
        words, texts.map(",".join), texts.map(", ".join), st.none(), st.integers(), st.just({})
    )


short_text = st.one_of(
    st.builds(lambda a, t, b: a + t + b, padding, st.text(characters, max_size=45), padding),
    st.integers(),
    st.none(),
)


def text_list(max_size: int) -> st.SearchStrategy[Any]:
    items = st.lists(short_text, max_size=max_size)
    return st.one_of(
        items,
        st.lists(st.text(characters, max_size=45), max_size=max_size).map(",".join),
        st.none(),
        st.integers(),
    )


macros = st.one_of(
    st.none(),
    st.fixed_dictionaries({k: integer_like(lo, hi) for k, (lo, hi) in MACRO_FIELDS.items()}),
    st.builds(
        lambda p, c: {"protein": p, "carbs": c, "fat": 100 - p - c},
        st.integers(0, 70),
        st.integers(-5, 90),
    ),
    st.dictionaries(st.sampled_from(["protein", "carbs", "fat", "fibre"]), st.integers(0, 100)),
    st.text(characters, max_size=8),
)

FIELDS: dict[str, st.SearchStrategy[Any]] = {
    **{name: integer_like(lo, hi) for name, (lo, hi) in INT_FIELDS.items()},
    "meals": choice_list("meals", 6),
    "diet": choice_list("diet", 7),
    "allergies": choice_list("allergies", 16),
    "exclude": text_list(32),
    "cuisines": text_list(12),
    "notes": st.one_of(
        st.text(characters, max_size=20),
        st.text(characters, min_size=495, max_size=505),
        st.none(),
        st.integers(),
    ),
    "macros": macros,
    "colour": st.text(characters, max_size=3),
}


def spelled(field: str) -> st.SearchStrategy[str]:
    return st.builds(
        lambda a, w, b: a + w + b,
        padding,
        st.sampled_from(VOCABULARY[field]).flatmap(
            lambda w: st.sampled_from([w, w.upper(), w.title(), w.replace("_", "-")])
        ),
        padding,
    )


def valid_choices(field: str, low: int, high: int) -> st.SearchStrategy[Any]:
    items = st.lists(spelled(field), min_size=low, max_size=high)
    return st.one_of(items, items.map(",".join))


nonblank = st.text(characters, min_size=1, max_size=40).filter(lambda t: t.strip() != "")
VALID: dict[str, st.SearchStrategy[Any]] = {
    **{
        name: st.one_of(
            st.integers(lo, hi), st.integers(lo, hi).map(float), st.integers(lo, hi).map(str)
        )
        for name, (lo, hi) in INT_FIELDS.items()
    },
    "meals": valid_choices("meals", 1, 4),
    "diet": valid_choices("diet", 0, 5),
    "allergies": valid_choices("allergies", 0, 14),
    "exclude": st.lists(nonblank.filter(lambda t: "," not in t), max_size=30),
    "cuisines": st.lists(nonblank, max_size=10),
    "notes": st.text(characters, max_size=500),
    "macros": st.builds(
        lambda p, f: {"protein": p, "carbs": 100 - p - f, "fat": f},
        st.integers(5, 60),
        st.integers(10, 35),
    ),
    "colour": st.nothing(),
}


@st.composite
def requests(draw: st.DrawFn) -> Any:
    keys = draw(st.lists(st.sampled_from(sorted(FIELDS)), max_size=5, unique=True))
    if "colour" in keys and draw(st.booleans()):
        keys.remove("colour")
    return {key: draw(st.one_of(VALID[key], VALID[key], VALID[key], FIELDS[key])) for key in keys}


@pytest.mark.slow
@settings(
    max_examples=600,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    request=st.integers(0, 9).flatmap(
        lambda n: requests() if n else st.one_of(st.none(), st.integers(), st.lists(st.integers()))
    )
)
@example(request={"calories": 2000.5})
@example(request={"calories": "2000"})
@example(request={"days": True})
@example(request={"allergies": "nuts, Shell-Fish"})
@example(request={"allergies": ["gluten", "tree nut"]})
@example(request={"allergies": "Tree Nuts, sesame", "diet": ["gluten free", "Dairy-Free"]})
@example(request={"diet": ["gluten  free"]})
@example(request={"exclude": ["\x1c"]})
@example(request={"exclude": "\x1c"})
@example(request={"diet": "\u212aeto"})
@example(request={"macros": {"protein": 4, "carbs": 66, "fat": 30}})
@example(request={"meals": ["breakfast"] * 5})
def test_the_database_and_the_worker_accept_the_same_requests(
    conn: psycopg.Connection[Any], request: Any
) -> None:
    agree(conn, request)


def test_every_word_the_model_knows_is_accepted_by_the_database(
    conn: psycopg.Connection[Any],
) -> None:
    for field, words in VOCABULARY.items():
        for known in words:
            assert both(conn, {field: [known]}) == (None, None), (field, known)


def test_a_fractional_calorie_target_is_refused_by_both(conn: psycopg.Connection[Any]) -> None:
    sql_problem, python_problem = both(conn, {"calories": 2000.5})
    assert sql_problem == "calories: must be a whole number from 1200 to 5000"
    assert python_problem is not None
    assert "calories" in python_problem


def test_an_oversized_request_is_refused_before_validation(database_url: str) -> None:
    user = uuid.uuid4()
    with psycopg.connect(database_url) as c, c.transaction():
        c.execute("set local role authenticated")
        c.execute(
            "select set_config('request.jwt.claims', %s, true)",
            (json.dumps({"role": "authenticated", "sub": str(user)}),),
        )
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="larger than 64 KB"):
            c.execute(
                "select public.request_meal_plan(%s::jsonb)",
                (json.dumps({"exclude": [" " * 70_000 + "kale"]}),),
            )
