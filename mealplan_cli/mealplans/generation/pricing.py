"""Estimated OpenAI cost per call, from a per-model price table that settings can override."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Price:
    """US dollars per million tokens."""

    input: float
    cached_input: float
    output: float


PRICES: dict[str, Price] = {
    "gpt-5-nano": Price(0.05, 0.005, 0.40),
    "gpt-5-mini": Price(0.25, 0.025, 2.00),
    "gpt-5": Price(1.25, 0.125, 10.00),
    "gpt-4.1-nano": Price(0.10, 0.025, 0.40),
    "gpt-4.1-mini": Price(0.40, 0.10, 1.60),
    "gpt-4.1": Price(2.00, 0.50, 8.00),
    "gpt-4o-mini": Price(0.15, 0.075, 0.60),
    "gpt-4o": Price(2.50, 1.25, 10.00),
}
"""OpenAI's published list prices; dated snapshots ("gpt-4o-mini-2024-07-18") use their family's."""


def price_for(model: str, override: Price | None = None) -> Price | None:
    """The price of ``model``: the override, else the longest family name it starts with."""
    if override is not None:
        return override
    for family in sorted(PRICES, key=len, reverse=True):
        if model == family or model.startswith(family + "-"):
            return PRICES[family]
    return None


def cost_usd(
    price: Price | None, input_tokens: int, cached_tokens: int, output_tokens: int
) -> float:
    if price is None:
        return 0.0
    uncached = max(input_tokens - cached_tokens, 0)
    return (
        uncached * price.input + cached_tokens * price.cached_input + output_tokens * price.output
    ) / 1_000_000


def worst_case_usd(price: Price | None, prompt_tokens: int, completion_tokens: int) -> float | None:
    """The most a call can cost before it is sent: its prompt's estimate, all of it uncached,
    and every completion token it reserves (None when the price is unknown)."""
    if price is None:
        return None
    return (prompt_tokens * price.input + completion_tokens * price.output) / 1_000_000
