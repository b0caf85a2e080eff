"""What a budget call costs the database: ``mealworker_budget_take`` (reserve, first come first
served) against ``mealworker_budget_take_turn`` (fair turns) on the fast path, and a waiting
call's ask behind lines of several lengths. Prints JSON.

    python -m scripts.bench.budget_turns [--calls 3000] [--rounds 5]

One connection, one statement per call (the workers' transports send one too); milliseconds
per call as the client sees them on loopback, the median of interleaved rounds (the machine is
noisy: compare the ratio, not single figures).

* ``fast_path``: a budget with room to spare and nobody waiting, the common case;
* ``waiting_behind_N``: a call asking again while N calls (of 5 users) that do not fit wait
  ahead of it, what each waiting call pays every refresh (2 s) or when its turn is due;
* ``call_tokens_only`` against ``call_usd_with_N_in_flight``: a whole call's two statements
  (``take_turn``, then ``spent``) without a dollar cap, and with one while N other calls'
  worst cases are reserved and not yet spent (each is a row of ``openai_reservations``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg

from scripts.bench.common import fresh_database, server_description

TAKE = "select * from public.mealworker_budget_take(p_key => %s, p_model => 'm', p_tokens => 100)"
TURN = (
    "select * from public.mealworker_budget_take_turn(p_key => %s, p_model => 'm',"
    " p_tokens => %s, p_waiter => %s, p_group => %s, p_stale_ms => 3600000)"
)
LINES = (10, 40, 160)
IN_FLIGHT = (0, 32, 256)
USD = ", p_usd => 0.0001, p_daily_usd_cap => 1000000, p_expires_ms => 600000"
SPENT = "select public.mealworker_budget_spent(%s, 'm', %s, %s, 10, 0, 10, p_reservation => %s)"


def per_call_ms(
    conn: psycopg.Connection[Any], calls: int, query: str, params: Callable[[], Any]
) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        conn.execute(query, params()).fetchall()
    return (time.perf_counter() - started) / calls * 1000


def call_ms(conn: psycopg.Connection[Any], calls: int, in_flight: int | None) -> float:
    """A whole call (take its turn, then tell what it spent); ``in_flight`` None: no dollars
    counted, else that many other calls' worst cases reserved first."""
    key = f"call-{uuid.uuid4().hex[:8]}"
    conn.execute(
        "select public.mealworker_budget_learn(%s, 'm', 1000000000000, 1000000000)", (key,)
    )
    take = TURN[:-1] + (USD + ")" if in_flight is not None else ")")
    for _ in range(in_flight or 0):
        conn.execute(take, (key, 100, uuid.uuid4(), "other")).fetchall()
    usd = 0.0001 if in_flight is not None else None
    started = time.perf_counter()
    for _ in range(calls):
        row = conn.execute(take, (key, 100, uuid.uuid4(), "me")).fetchone()
        reservation = row[-1] if row is not None and in_flight is not None else None
        conn.execute(SPENT, (key, usd, usd, reservation)).fetchall()
    return (time.perf_counter() - started) / calls * 1000


def one_round(conn: psycopg.Connection[Any], calls: int) -> dict[str, float]:
    key = f"fast-{uuid.uuid4().hex[:8]}"
    conn.execute(
        "select public.mealworker_budget_learn(%s, 'm', 1000000000000, 1000000000)", (key,)
    )
    found = {
        "take_fast_path": per_call_ms(conn, calls, TAKE, lambda: (key,)),
        "take_turn_fast_path": per_call_ms(
            conn, calls, TURN, lambda: (key, 100, uuid.uuid4(), "me")
        ),
    }
    for waiting in LINES:
        line = f"line-{uuid.uuid4().hex[:8]}"
        conn.execute("select public.mealworker_budget_learn(%s, 'm', 60000, 1000)", (line,))
        for number in range(waiting):  # calls larger than the bucket: they never leave
            conn.execute(TURN, (line, 10**9, uuid.uuid4(), f"user{number % 5}")).fetchall()
        me = (line, 100, uuid.uuid4(), "me")
        found[f"take_turn_waiting_behind_{waiting}"] = per_call_ms(
            conn, max(calls // 5, 1), TURN, itertools.repeat(me).__next__
        )
    found["call_tokens_only"] = call_ms(conn, calls, None)
    for in_flight in IN_FLIGHT:
        found[f"call_usd_with_{in_flight}_in_flight"] = call_ms(conn, calls, in_flight)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rounds: list[dict[str, float]] = []
    with fresh_database() as url, psycopg.connect(url, autocommit=True) as conn:
        for _ in range(args.rounds):
            rounds.append(one_round(conn, args.calls))
    medians = {name: round(statistics.median(r[name] for r in rounds), 3) for name in rounds[0]}
    print(
        json.dumps(
            {
                "benchmark": "budget_turns",
                "database": server_description(),
                "calls": args.calls,
                "rounds": args.rounds,
                "ms_per_call": medians,
                "fast_path_ratio": round(
                    medians["take_turn_fast_path"] / medians["take_fast_path"], 2
                ),
                "usd_call_ratio": {
                    str(n): round(
                        medians[f"call_usd_with_{n}_in_flight"] / medians["call_tokens_only"], 2
                    )
                    for n in IN_FLIGHT
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
