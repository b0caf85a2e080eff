"""The queue's health in numbers, and thresholds that turn them into an alarm.

``QueueHealth`` reads ``mealworker_queue_stats()`` and derives what operators watch: lag,
throughput, failure and retry rates, silent workers. ``Threshold`` parses ``lag>300`` for
``stats --fail-if``, so a cron job or monitor gets a non-zero exit when something is wrong.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mealplan_cli.ops.errors import ConfigurationError

METRICS = {
    "lag": "seconds the oldest runnable pending job has waited",
    "pending": "jobs waiting",
    "processing": "jobs running",
    "failed_1h": "jobs failed for good in the last hour",
    "failure_rate": "failed / (completed + failed) over the last hour",
    "retry_rate": "retries / (completed + failed) over the last hour",
    "silent_workers": "workers gone: not stopped, no heartbeat for longer than a lease",
    "throughput_5m": "jobs completed per minute over the last 5 minutes",
}

FORGET_AFTER_SECONDS = 3600.0
"""How long ``stats`` keeps listing a worker after its last heartbeat (at least 3 leases)."""


@dataclass(frozen=True)
class QueueHealth:
    raw: dict[str, Any]
    lease_seconds: float

    def _window(self, name: str, window: str) -> int:
        return int((self.raw.get(name) or {}).get(window) or 0)

    @property
    def workers(self) -> list[dict[str, Any]]:
        """The workers seen lately. One that has not heartbeated for longer than a lease
        without stopping is ``gone`` (killed, or cut off from the database): its leases have
        expired. After ``FORGET_AFTER_SECONDS`` without a heartbeat a worker leaves the list,
        so a crash an hour ago does not read as a problem today."""
        workers = []
        for worker in self.raw.get("workers") or []:
            quiet = float(worker.get("seconds_since_seen") or 0)
            if quiet > max(FORGET_AFTER_SECONDS, 3 * self.lease_seconds):
                continue
            silent = worker.get("status") != "stopped" and quiet > self.lease_seconds
            state = "gone" if silent else str(worker.get("status") or "")
            workers.append({**worker, "silent": silent, "state": state})
        return workers

    def metrics(self) -> dict[str, float]:
        by_status = self.raw.get("by_status") or {}
        completed_1h = self._window("completed", "1h")
        failed_1h = self._window("failed", "1h")
        finished = completed_1h + failed_1h
        return {
            "lag": float(self.raw.get("oldest_pending_seconds") or 0.0),
            "pending": float(by_status.get("pending", 0)),
            "processing": float(by_status.get("processing", 0)),
            "failed_1h": float(failed_1h),
            "failure_rate": failed_1h / finished if finished else 0.0,
            "retry_rate": self._window("retried", "1h") / finished if finished else 0.0,
            "silent_workers": float(sum(1 for w in self.workers if w["silent"])),
            "throughput_5m": self._window("completed", "5m") / 5.0,
        }

    def as_json(self) -> dict[str, Any]:
        return {**self.raw, "workers": self.workers, "metrics": self.metrics()}


_COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
}
_THRESHOLD = re.compile(r"^\s*([a-z_0-9]+)\s*(>=|<=|>|<)\s*([0-9.]+)\s*$")


@dataclass(frozen=True)
class Threshold:
    metric: str
    comparison: str
    value: float

    @classmethod
    def parse(cls, text: str) -> Threshold:
        match = _THRESHOLD.match(text)
        if not match or match[1] not in METRICS:
            known = ", ".join(METRICS)
            raise ConfigurationError(
                f"--fail-if {text!r}: write METRIC>VALUE (or <, >=, <=) with a metric of {known}"
            )
        return cls(match[1], match[2], float(match[3]))

    def crossed(self, metrics: dict[str, float]) -> bool:
        return _COMPARISONS[self.comparison](metrics[self.metric], self.value)

    def __str__(self) -> str:
        return f"{self.metric}{self.comparison}{self.value:g}"
