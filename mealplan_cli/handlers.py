"""The handler API under the names mealworker 0.1 published, for programs written against it.

``job_handlers`` holds the registry and the job context; ``runtime.builtin_handlers`` the
built-in job types. This module sits above both, so that ``default_handlers()`` (the built-in
handlers, meal plans included) keeps working without the generic layer knowing any domain.
"""

from __future__ import annotations

from mealplan_cli.core.handlers import Handler, HandlerRegistry, JobContext, ping_job
from mealplan_cli.runtime import builtin_handlers as default_handlers

__all__ = ["Handler", "HandlerRegistry", "JobContext", "default_handlers", "ping_job"]
