"""A worker for a job type of your own, built on mealworker's queue: ``count_words``.

Enqueue from Python (below) or from a shell::

    mealworker enqueue --type count_words --payload '{"text": "one two three"}'

then drain them with a worker that handles only this type (it claims nothing else)::

    python examples/word_count.py "some text to count" --until-empty

or let ``mealworker work`` run them beside its own job types, from this checkout's folder::

    mealworker work --handlers examples.word_count:handlers

Settings come from ``.env`` and the environment like any mealworker command (``DATABASE_URL``,
or ``SUPABASE_URL`` with ``SUPABASE_SERVICE_ROLE_KEY``, else the embedded database).
SIGTERM or Ctrl-C stops the worker gracefully; a second one stops it at once.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from mealplan_cli.core.queue import ClaimedJob
from mealplan_cli.handlers import HandlerRegistry, JobContext
from mealplan_cli.ops.errors import InvalidRequestError
from mealplan_cli.runtime import open_runtime
from mealplan_cli.settings.config import Settings

JOB_TYPE = "count_words"


@dataclass
class Counter:
    """Whatever your handlers share (clients, caches...): the worker passes it as
    ``context.resources`` and knows nothing about it."""

    lowercase: bool = True


async def count_words(job: ClaimedJob, context: JobContext) -> dict[str, Any]:
    """Return a dict to store as the job's result; raise a ``MealworkerError`` to fail it
    (retried later when ``error.retryable``)."""
    text = job.payload.get("text")
    if not isinstance(text, str):
        raise InvalidRequestError(f"job {job.id}: the payload needs a text")  # fails at once
    # Under `mealworker work --handlers examples.word_count:handlers` the resources are the
    # worker's own, not a Counter: the defaults then.
    counter = context.resources if isinstance(context.resources, Counter) else Counter()
    words = text.lower().split() if counter.lowercase else text.split()
    return {"words": len(words), "distinct": len(set(words))}


def handlers() -> HandlerRegistry:
    registry = HandlerRegistry()
    registry.register(JOB_TYPE, count_words)
    return registry


async def main(texts: list[str], until_empty: bool, delay: float | None) -> None:
    settings = Settings.load()
    async with open_runtime(settings, handlers=handlers(), resources=Counter()) as rt:
        for text in texts:
            queued = await rt.queue.enqueue(JOB_TYPE, {"text": text}, delay=delay)
            print(f"queued job {queued.job_id}")
        report = await rt.run_worker(until_empty=until_empty)
        print(f"{report.completed} completed, {report.failed} failed")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("texts", nargs="*", help="Texts to enqueue before working.")
    parser.add_argument("--until-empty", action="store_true", help="Drain, then exit.")
    parser.add_argument("--delay", type=float, help="Seconds before the new jobs may run.")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    asyncio.run(main(args.texts, args.until_empty, args.delay))
