"""Pausing Python's cyclic garbage collector around bulk work that makes many objects and few cycles.

Why: the collector runs every ~700 net container allocations and, in its older generations, walks every
live container. Loading 2,400 Sigma rules or mapping a 5,000-event batch allocates hundreds of thousands
of dicts and lists and creates next to no reference cycles, so those walks free nothing: measured, half
the CPU time of a SigmaHQ rule load (2.1 -> 1.0 s) and ~13% of the embedded ingest pipeline. Reference
counting still frees everything that is not in a cycle while paused; what is, waits for the next
collection after the pause (bounded by one load or one batch).
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """Disable the cyclic GC for the block; it is re-enabled (if it was on) even when the block raises."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def freeze_long_lived() -> None:
    """Move every object alive now out of the collector's reach for the rest of the process.

    Why: after ``build_app`` the heap is mostly the compiled rule set (2,400 SigmaHQ rules: pySigma objects,
    closures, automata), alive until exit. Each full collection walks all of it to free nothing; in a
    ``run --once`` over the SigmaHQ set the one or two full collections cost ~0.4 CPU-s of a 3.9 s run
    (issue 10). Only for a process whose current objects live until it exits (``run --once``): a frozen
    object is never collected, so a service that reloads rules would leak the cycles of every old set.
    """
    gc.freeze()
