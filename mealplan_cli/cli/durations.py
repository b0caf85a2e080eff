"""Durations as operators type them: ``90s``, ``10m``, ``24h``, ``7d``; and times as they read
them, in UTC minutes."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any, overload

import typer

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, option: str | None = None, *, also: str = "") -> timedelta:
    """``text`` as a duration; a typo is refused naming ``option`` (and ``also``: what else
    the option takes)."""
    match = _DURATION.match(text.lower())
    if not match:
        message = f"{text!r} is not a duration like 90s, 10m, 24h or 7d"
        raise _refused(f"{message}, {also}" if also else message, option)
    try:
        return timedelta(seconds=float(match[1]) * _UNITS[match[2]])
    except OverflowError:
        raise _refused(f"{text!r} is too long a duration", option) from None


@overload
def ago(
    text: str, option: str | None = None, *, now: datetime | None = None, also: str = ""
) -> datetime: ...
@overload
def ago(
    text: str | None, option: str | None = None, *, now: datetime | None = None, also: str = ""
) -> datetime | None: ...


def ago(
    text: str | None,
    option: str | None = None,
    *,
    now: datetime | None = None,
    also: str = "",
) -> datetime | None:
    """The moment ``text`` (a duration) before ``now`` (default: now), or None."""
    if text is None:
        return None
    duration = parse_duration(text, option, also=also)
    try:
        return (now or datetime.now(UTC)) - duration
    except OverflowError:
        raise _refused(f"{text!r} reaches back before the year 1", option) from None


def _refused(message: str, option: str | None) -> typer.BadParameter:
    return typer.BadParameter(message, param_hint=f"'{option}'" if option else None)


def utc_minutes(value: Any) -> str:
    """A time from the database (a datetime, or its ISO text over REST) as UTC minutes,
    ``2024-05-02 00:00 UTC``; ``-`` for none, and text that is no time as it is."""
    if value is None:
        return "-"
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError:
            return str(value)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
