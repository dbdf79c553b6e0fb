"""Thread limits that stay right when several Python threads use the library at once.

dbt-duckdb runs Python models in threads of one process (``--threads 2``: two at a time).
threadpoolctl's limits are not equally local:

* OpenMP (implicit's solver loops, scikit-learn's boosting) reads its thread count per
  calling thread, so a limit set in one model's thread does not reach another model;
* OpenBLAS (pthreads build, as in the numpy and scipy wheels) has one process-wide thread
  count. threadpoolctl >= 3.6 lets only one "controlling" Python thread change it: in any
  other thread ``threadpool_limits(1, "blas")`` silently does nothing. Older versions let
  every thread change it, and the first ``with`` block to close restores the count under
  the others.

implicit's ALS gives different factors with one BLAS thread than with two (its Y'Y product
sums in another order: the demo's factors moved by up to 7e-3), so a model fitted in the
"wrong" thread or at the wrong moment came out different, and two demo builds of the same
code differed. Here every section that needs single-threaded BLAS enters one
reference-counted section: the first to open (in any thread) takes control of BLAS and sets
one thread, the last to close puts the count back; in between it stays at one.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from threadpoolctl import threadpool_limits

__all__ = ["openmp_threads", "single_threaded_blas"]

_lock = threading.Lock()
_open_sections = 0
_blas_limiter = None  # threadpoolctl's limiter of the outermost open section


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """BLAS limited to one thread for the whole process while any such section is open."""
    global _open_sections, _blas_limiter
    with _lock:
        if _open_sections == 0:
            _take_blas_control()
            _blas_limiter = threadpool_limits(1, user_api="blas")
        _open_sections += 1
    try:
        yield
    finally:
        with _lock:
            _open_sections -= 1
            if _open_sections == 0:
                _take_blas_control()  # the last section may close in another thread
                _blas_limiter.restore_original_limits()
                _blas_limiter = None
                _take_blas_control()  # leave no thread in control, as a closed ``with`` does


def _take_blas_control() -> None:
    """Let the calling thread change OpenBLAS's thread count (threadpoolctl >= 3.6 gives
    that right to one thread at a time; older versions have no such rule)."""
    try:
        from threadpoolctl import OpenBLASController
    except ImportError:  # pragma: no cover - threadpoolctl < 3.5 has no such class
        return
    clear = getattr(OpenBLASController, "clear_controlling_thread", None)
    if clear is not None:
        clear(force=True)


@contextmanager
def openmp_threads(limit: int | None) -> Iterator[None]:
    """OpenMP threads of the calling thread (None: leave them as they are)."""
    with threadpool_limits(limits=limit, user_api="openmp"):
        yield
