"""The worker core: claim jobs of the registered types and run them to a written outcome.

``Worker(queue, handlers, config, resources=...)`` is all a program needs; the modules beside
this one are its collaborators, each small enough to test alone: ``claims`` (one record per
claim), ``lifecycle`` (a job from claim to outcome), ``leases`` (lease keeping),
``completions`` (batched, blip-proof writes), ``time_limits`` (one timer per started batch),
``sweeper`` (stale jobs), ``outage`` and ``refusals`` (a database that cannot be reached, or
refuses writes) and ``heap`` (the garbage collector's settings).
"""

from mealplan_cli.core.worker.config import WorkerConfig, default_worker_id, rss_bytes
from mealplan_cli.core.worker.lifecycle import WorkerReport
from mealplan_cli.core.worker.loop import Worker

__all__ = ["Worker", "WorkerConfig", "WorkerReport", "default_worker_id", "rss_bytes"]
