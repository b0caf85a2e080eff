"""Prometheus metrics and a health check for ``work --metrics-port`` (no extra dependency).

The exposition is written here rather than with prometheus_client: importing that adds about
14 MB of RSS (0.26.0, measured with /proc/self/status) to a worker that idles at 37 MB, for a
dozen series. Label values are escaped as the text format requires (``label_value``).

``WorkerMetrics`` is what the worker counts as it goes; ``serve_metrics`` answers
``GET /metrics`` in Prometheus' text format and ``GET /healthz`` with 200 while the worker's loop
is alive and the database answered recently, 503 otherwise.
"""

from __future__ import annotations

import asyncio
import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import accumulate

from mealplan_cli.ops.errors import ConfigurationError


def label_value(text: str) -> str:
    """``text`` quoted for a label: backslash, double quote and line feed escaped, as
    Prometheus' text format requires. A job type is any string an application chose."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


PROCESSING_BUCKETS = (0.01, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
PICKUP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


@dataclass
class Histogram:
    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    observations: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.buckets) + 1)
        """Observations per bucket (not cumulative: one increment per observation, summed up
        when rendered); the last one is above every bound."""

    def observe(self, value: float) -> None:
        self.total += value
        self.observations += 1
        self.counts[bisect_left(self.buckets, value)] += 1

    def render(self, name: str, labels: str = "") -> list[str]:
        prefix = f"{labels}," if labels else ""
        lines = [
            f'{name}_bucket{{{prefix}le="{bound:g}"}} {count}'
            for bound, count in zip(self.buckets, accumulate(self.counts[:-1]), strict=True)
        ]
        lines.append(f'{name}_bucket{{{prefix}le="+Inf"}} {self.observations}')
        braces = f"{{{labels}}}" if labels else ""
        lines += [f"{name}_sum{braces} {self.total:g}", f"{name}_count{braces} {self.observations}"]
        return lines


@dataclass
class BudgetFigures:
    """The fleet's OpenAI budget as this worker last saw it (``mealplans.budget``): per model,
    what it waited and met here, and the fleet's counts of today from the database's answers."""

    waited_seconds: dict[str, float] = field(default_factory=dict)
    """Seconds this worker's calls waited for the budget (rate limits; not deferrals)."""
    refused: dict[str, int] = field(default_factory=dict)
    """429s this worker met although the budget let the call go."""
    tokens_limit: dict[str, int] = field(default_factory=dict)
    """Tokens per minute the budget holds calls to (learned, or OPENAI_TPM_LIMIT), share
    applied."""
    tokens_charged_today: dict[str, int] = field(default_factory=dict)
    capped: dict[str, bool] = field(default_factory=dict)
    """A daily cap holds this model's calls back until the next UTC day."""
    cost_today_usd: float | None = None
    """What the fleet spent today on this key, by the answers' usage (None: price unknown)."""
    daily_tokens_cap: int | None = None
    daily_usd_cap: float | None = None

    def render(self) -> list[str]:
        lines: list[str] = []

        def series(name: str, kind: str, help_text: str, values: dict[str, float]) -> None:
            lines.extend([f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"])
            for model, value in sorted(values.items()):
                lines.append(f"{name}{{model={label_value(model)}}} {value:g}")

        series(
            "mealworker_openai_budget_wait_seconds_total",
            "counter",
            "Seconds OpenAI calls waited for the fleet's budget.",
            {m: round(v, 3) for m, v in self.waited_seconds.items()},
        )
        series(
            "mealworker_openai_budget_refused_total",
            "counter",
            "OpenAI 429s met although the shared budget let the call go.",
            {m: float(v) for m, v in self.refused.items()},
        )
        series(
            "mealworker_openai_budget_tokens_per_minute",
            "gauge",
            "Tokens per minute the budget allows (learned or OPENAI_TPM_LIMIT, share applied).",
            {m: float(v) for m, v in self.tokens_limit.items()},
        )
        series(
            "mealworker_openai_budget_tokens_charged_today",
            "gauge",
            "Tokens the fleet charged to the budget today (UTC).",
            {m: float(v) for m, v in self.tokens_charged_today.items()},
        )
        series(
            "mealworker_openai_daily_cap_reached",
            "gauge",
            "1 while a daily cap holds calls back until the next UTC day.",
            {m: float(v) for m, v in self.capped.items()},
        )
        gauges = (
            (
                "mealworker_openai_cost_today_usd",
                "OpenAI cost today (UTC), the fleet's, in USD.",
                self.cost_today_usd,
            ),
            ("mealworker_openai_daily_cap_usd", "OPENAI_DAILY_USD_CAP.", self.daily_usd_cap),
            (
                "mealworker_openai_daily_cap_tokens",
                "OPENAI_DAILY_TOKEN_CAP.",
                self.daily_tokens_cap,
            ),
        )
        for name, help_text, value in gauges:
            if value is not None:
                lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {value:g}"]
        return lines


@dataclass
class WorkerMetrics:
    done: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    retried: Counter[str] = field(default_factory=Counter)
    deferred: Counter[str] = field(default_factory=Counter)
    """Jobs put back to wait by their handler (a daily cap reached), by job type."""
    errors: Counter[str] = field(default_factory=Counter)
    """Job failures by kind: ProviderUnavailableError and ProviderRejectedError are OpenAI's."""
    processing: dict[str, Histogram] = field(default_factory=dict)
    pickup: Histogram = field(default_factory=lambda: Histogram(PICKUP_BUCKETS))
    openai_tokens: Counter[str] = field(default_factory=Counter)
    openai_cost_usd: float = 0.0
    openai_rate_limited: int = 0
    """429s met although the shared budget let the call go (each waited, none failed a job)."""
    database_errors: int = 0
    active_jobs: Callable[[], int] = lambda: 0
    photo_counts: Callable[[], tuple[int, int]] = lambda: (0, 0)
    """(Unsplash searches, cache hits) so far."""
    budget: Callable[[], BudgetFigures | None] = lambda: None
    """The OpenAI budget's figures, when the worker draws on the fleet's shared budget."""

    def handler_finished(
        self, job_type: str, seconds: float, usage: dict[str, object] | None
    ) -> None:
        """A handler returned: its time and the tokens it spent count, whether or not its
        result is then written (``done`` counts only results the database accepted)."""
        histogram = self.processing.get(job_type)
        if histogram is None:
            histogram = self.processing[job_type] = Histogram(PROCESSING_BUCKETS)
        histogram.observe(seconds)
        if usage:
            for direction in ("input", "output", "cached", "charged"):
                value = usage.get(f"{direction}_tokens")
                if isinstance(value, int):
                    self.openai_tokens[direction] += value
            refused = usage.get("rate_limited")
            if isinstance(refused, int):
                self.openai_rate_limited += refused
            cost = usage.get("cost_usd")
            if isinstance(cost, int | float):
                self.openai_cost_usd += float(cost)

    def render(self) -> str:
        lines: list[str] = []

        def counter(name: str, help_text: str, values: Counter[str], label: str) -> None:
            lines.extend([f"# HELP {name} {help_text}", f"# TYPE {name} counter"])
            for key, value in sorted(values.items()):
                lines.append(f"{name}{{{label}={label_value(key)}}} {value}")

        counter("mealworker_jobs_completed_total", "Jobs completed.", self.done, "job_type")
        counter("mealworker_jobs_failed_total", "Jobs failed for good.", self.failed, "job_type")
        counter("mealworker_jobs_retried_total", "Retries scheduled.", self.retried, "job_type")
        counter(
            "mealworker_jobs_deferred_total",
            "Jobs put back to wait, no attempt spent.",
            self.deferred,
            "job_type",
        )
        counter("mealworker_job_errors_total", "Job failures by kind.", self.errors, "kind")
        lines += [
            "# HELP mealworker_job_processing_seconds Time from claim to result.",
            "# TYPE mealworker_job_processing_seconds histogram",
        ]
        for job_type, histogram in sorted(self.processing.items()):
            lines += histogram.render(
                "mealworker_job_processing_seconds", f"job_type={label_value(job_type)}"
            )
        lines += [
            "# HELP mealworker_pickup_latency_seconds From enqueue to claim (first attempts).",
            "# TYPE mealworker_pickup_latency_seconds histogram",
            *self.pickup.render("mealworker_pickup_latency_seconds"),
            "# HELP mealworker_active_jobs Jobs running now.",
            "# TYPE mealworker_active_jobs gauge",
            f"mealworker_active_jobs {self.active_jobs()}",
        ]
        counter("mealworker_openai_tokens_total", "OpenAI tokens.", self.openai_tokens, "kind")
        searches, hits = self.photo_counts()
        lines += [
            "# HELP mealworker_openai_cost_usd_total Estimated OpenAI cost.",
            "# TYPE mealworker_openai_cost_usd_total counter",
            f"mealworker_openai_cost_usd_total {self.openai_cost_usd:.6f}",
            "# HELP mealworker_openai_rate_limited_total OpenAI 429s the budget did not foresee.",
            "# TYPE mealworker_openai_rate_limited_total counter",
            f"mealworker_openai_rate_limited_total {self.openai_rate_limited}",
            "# HELP mealworker_unsplash_requests_total Unsplash searches.",
            "# TYPE mealworker_unsplash_requests_total counter",
            f"mealworker_unsplash_requests_total {searches}",
            "# HELP mealworker_unsplash_cache_hits_total Photos served from the cache.",
            "# TYPE mealworker_unsplash_cache_hits_total counter",
            f"mealworker_unsplash_cache_hits_total {hits}",
            "# HELP mealworker_database_errors_total Failed database calls.",
            "# TYPE mealworker_database_errors_total counter",
            f"mealworker_database_errors_total {self.database_errors}",
        ]
        budget = self.budget()
        if budget is not None:
            lines += budget.render()
        return "\n".join(lines) + "\n"


@dataclass
class Health:
    """The loop's pulse and the database's last answer, for ``/healthz``."""

    stale_after: float
    last_database_answer: float = field(default_factory=time.monotonic)
    loop_alive: bool = True
    database_down: bool = False
    """The last call to the database failed: unhealthy at once, until one succeeds."""
    refusing: str | None = None
    """Why the database refuses every write now (the worker waits): unhealthy meanwhile."""

    def database_answered(self) -> None:
        self.last_database_answer = time.monotonic()
        self.database_down = False

    def database_failed(self, reason: str = "") -> None:
        self.database_down = True

    def writes_refused(self, reason: str) -> None:
        self.refusing = reason

    def writes_accepted(self) -> None:
        self.refusing = None

    def healthy(self) -> tuple[bool, str]:
        if not self.loop_alive:
            return False, "worker loop stopped"
        if self.database_down:
            silent = time.monotonic() - self.last_database_answer
            return False, f"database unreachable (last answer {silent:.0f}s ago)"
        if self.refusing is not None:
            return False, f"database refuses writes: {self.refusing}"
        silent = time.monotonic() - self.last_database_answer
        if silent > self.stale_after:
            return False, f"no database answer for {silent:.0f}s"
        return True, "ok"


async def serve_metrics(
    metrics: WorkerMetrics, health: Health, port: int, host: str = "0.0.0.0"
) -> asyncio.Server:
    """Start the HTTP endpoint; close the returned server to stop it."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 5)
            while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                pass
            parts = request.decode("latin-1").split()
            path = parts[1] if len(parts) > 1 else "/"
            if path.startswith("/metrics"):
                status, body, kind = 200, metrics.render(), "text/plain; version=0.0.4"
            elif path.startswith("/healthz"):
                ok, reason = health.healthy()
                status, body, kind = (200 if ok else 503), reason + "\n", "text/plain"
            else:
                status, body, kind = 404, "not found: try /metrics or /healthz\n", "text/plain"
            payload = body.encode()
            reason_phrase = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[status]
            writer.write(
                f"HTTP/1.1 {status} {reason_phrase}\r\nContent-Type: {kind}\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
                + payload
            )
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    try:
        return await asyncio.start_server(answer, host, port)
    except OSError as error:
        raise ConfigurationError(
            f"cannot serve metrics on port {port} ({error.strerror}): choose another METRICS_PORT"
        ) from None
