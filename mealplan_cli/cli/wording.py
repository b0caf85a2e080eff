"""Small helpers for messages that read right (light: imported by every command)."""

from __future__ import annotations


def plural(count: int, noun: str) -> str:
    """``1 job``, ``2 jobs``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"
