"""How long a refusal holds the worker: a streak of refused rows for ``rows_hold``, a refused
check of no row until a write is accepted (the state machine alone, on a clock of its own)."""

from __future__ import annotations

from mealplan_cli.core.worker.refusals import SYSTEMIC_STREAK, Refusals
from mealplan_cli.ops.errors import DatabaseError
from mealplan_cli.ops.metrics import Health

TRIGGER = DatabaseError("plan is on hold", code="42501")
GRANT = DatabaseError("permission denied for function mealworker_complete_jobs", code="42501")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def held_by_a_streak(clock: Clock) -> Refusals:
    refusals = Refusals(Health(stale_after=5.0), clock=clock, rows_hold=120.0)
    assert not refusals.rows_refused(SYSTEMIC_STREAK - 1)
    assert refusals.one_at_a_time  # since the first refused row, until one is saved
    assert refusals.rows_refused(1)
    refusals.refused("complete jobs", TRIGGER, rows_only=True)
    return refusals


def test_a_streak_holds_for_rows_hold_then_claims_one_job_at_a_time() -> None:
    clock = Clock()
    refusals = held_by_a_streak(clock)
    clock.now = 119.0
    refusals.refused("complete jobs", TRIGGER, rows_only=True)  # the retries, refused again
    assert not refusals.hold_over()
    clock.now = 120.0
    assert refusals.hold_over()
    refusals.release(1, TRIGGER)
    assert not refusals.systemic
    assert refusals.health.healthy()[0]
    assert refusals.one_at_a_time
    assert refusals.rows_refused(1)  # half-open: the next refused row holds again at once
    refusals.accepted()  # a result saved: claiming in full again
    assert not refusals.one_at_a_time
    assert not refusals.rows_refused(1)


def test_a_refused_check_of_no_row_holds_until_accepted() -> None:
    clock = Clock()
    refusals = held_by_a_streak(clock)
    refusals.refused("complete jobs", GRANT)  # the grant is gone meanwhile: no row to blame
    clock.now = 10_000.0
    assert not refusals.hold_over()
    assert refusals.systemic


def test_a_refused_heartbeat_does_not_make_a_streak_hold_endless() -> None:
    clock = Clock()
    refusals = held_by_a_streak(clock)
    refusals.refused("extend the leases", GRANT)
    clock.now = 120.0
    assert refusals.hold_over()
