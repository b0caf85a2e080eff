"""SIGTERM and SIGINT for the CLI: the process-wide handler of ``mealplan_cli.signals``.

Kept for the commands' imports; the handling itself (first signal graceful, second at once,
exit 0 before a worker runs) is library code, shared with programs embedding a worker.
"""

from __future__ import annotations

from mealplan_cli.signals import STOP, STOP_SIGNALS, StopSignals

__all__ = ["STOP", "STOP_SIGNALS", "StopSignals"]
