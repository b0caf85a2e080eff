"""The waits of every retry, from the one policy module: what the loops wait is what it says."""

from __future__ import annotations

from mealplan_cli.ops.retry_policies import (
    DATABASE_AT_START,
    REFUSED_WRITES,
    REMINDERS,
    Backoff,
)


def steps(backoff: Backoff, count: int) -> list[float]:
    return [backoff.next() for _ in range(count)]


def test_a_backoff_doubles_to_its_cap_and_starts_again_when_reset() -> None:
    refused = Backoff(REFUSED_WRITES)
    assert steps(refused, 8) == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    refused.reset()
    assert refused.next() == 0.5
    assert steps(Backoff(REMINDERS), 6) == [5.0, 10.0, 20.0, 40.0, 60.0, 60.0]
    assert steps(Backoff(DATABASE_AT_START), 7) == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
