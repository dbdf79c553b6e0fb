"""Giving freed memory back to the system between the big phases of a run.

glibc keeps what Python and numpy free in its heaps: blocks still in use leave holes that
are never at a heap's top, so the process's resident memory does not fall when a phase's
arrays go. The next phase then takes fresh pages for its own arrays on top of the holes. At
the benchmark's size L that made the weekly fit's category choice, run right after stage
selection, the first backtest week's peak: 10.2 GB, 7.9 GB with the trim below after the
rankers and after stage selection, each trim returning 0.7-1.1 GB (docs/benchmark.md,
session 35). dbt-duckdb runs the Python models
inside the dbt process, one model after the other, so each model calls this first as well:
at size M each model left 150-350 MB that only the trim returned, and at L the process sat at
5-6 GB between models.
"""

from __future__ import annotations

import ctypes
import gc

__all__ = ["return_freed_memory"]


def return_freed_memory() -> bool:
    """Collect garbage cycles, then give the heap memory freed so far back to the system
    (glibc's ``malloc_trim``). Off glibc (macOS, Windows, musl) only the collection happens.
    True when memory was returned."""
    gc.collect()
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # no glibc (e.g. musl), or a sandbox that forbids it
        return False
    return bool(trim(0))
