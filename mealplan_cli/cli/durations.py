"""Durations as operators type them: ``90s``, ``10m``, ``24h``, ``7d``."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import typer

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, option: str | None = None, *, also: str = "") -> timedelta:
    """``text`` as a duration; a typo is refused naming ``option`` (and ``also``: what else
    the option takes)."""
    match = _DURATION.match(text.lower())
    if not match:
        message = f"{text!r} is not a duration like 90s, 10m, 24h or 7d"
        raise typer.BadParameter(
            f"{message}, {also}" if also else message,
            param_hint=f"'{option}'" if option else None,
        )
    return timedelta(seconds=float(match[1]) * _UNITS[match[2]])


def ago(text: str | None, option: str | None = None) -> datetime | None:
    """The moment ``text`` (a duration) before now, or None."""
    return None if text is None else datetime.now(UTC) - parse_duration(text, option)
