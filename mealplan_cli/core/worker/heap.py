"""The worker's garbage-collector settings: what a process that runs for days and handles
thousands of short jobs a second needs of Python's cyclic collector.

Both settings are the process's, not the worker's: a program that embeds the worker and chose
its own (froze its heap, set a threshold) keeps them.
"""

from __future__ import annotations

import gc


def settle_garbage_collector() -> None:
    """Called once as a worker starts."""
    freeze_start_up_heap()
    collect_young_objects_less_often()


def freeze_start_up_heap() -> None:
    """Move what the process has loaded so far out of the cyclic garbage collector's reach.

    A worker runs for days, and its modules, settings and pools live as long as it does; yet
    every full collection walked them all again, about 10 ms of stall each (a job picked up
    late), several times per 20,000 jobs. Frozen, they are still freed by reference counting;
    only their cycles are no longer looked for. Done once per process, and not at all where
    the program froze its own heap already.

    Only the young generations are collected first: a full collection took 10-12 ms of every
    start (about 35,000 objects walked, 80 freed), a young one 1 ms (40 freed). The other few
    dozen unreachable objects of the start-up, a few kilobytes, stay frozen for the life of
    the process.
    """
    if gc.get_freeze_count() == 0:
        gc.collect(1)
        gc.freeze()


YOUNG_OBJECTS_PER_COLLECTION = 10_000
"""How many new objects the garbage collector lets pile up before it looks for cycles among
them, in a worker (Python's default: 700)."""

_PYTHON_DEFAULT_YOUNG_OBJECTS = 700


def collect_young_objects_less_often() -> None:
    """Let the cyclic garbage collector look at new objects every 10,000 rather than every 700.

    A busy worker's young objects are its running jobs' (tasks, claims, rows), nearly all freed
    by reference counting a few milliseconds later. Collected every 700, each of them was
    walked while still alive, and walked again in the older generation it was moved to: 36 ms
    of a 690 ms run of 20,000 no-op jobs (250 young, 22 middle and 2-3 full collections). Every
    10,000, most are gone before a collection comes: 1.045x jobs/s (8 alternated runs each;
    1.024x at 5,000, 1.046x at 20,000), for at most a few MB more between collections. Left
    alone where the program set its own threshold, and on Pythons whose default is not 700
    (3.14's incremental collector).
    """
    young, middle, old = gc.get_threshold()
    if young == _PYTHON_DEFAULT_YOUNG_OBJECTS:
        gc.set_threshold(YOUNG_OBJECTS_PER_COLLECTION, middle, old)
