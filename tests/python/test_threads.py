"""Thread limits when several Python threads use the library (dbt runs models in threads)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import scipy.sparse as sp
from threadpoolctl import threadpool_info, threadpool_limits

from proactive_recs.estimators.mf import ImplicitMF
from proactive_recs.estimators.threads import openmp_threads, single_threaded_blas


def _threads(api: str) -> set[int]:
    return {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == api}


@pytest.fixture
def two_blas_threads():
    with threadpool_limits(2, user_api="blas"):
        if _threads("blas") != {2}:
            pytest.skip("this BLAS cannot run two threads here")
        yield


def _in_thread(section, entered: threading.Event, release: threading.Event):
    def body():
        with section():
            entered.set()
            release.wait(10)

    thread = threading.Thread(target=body)
    thread.start()
    assert entered.wait(10)
    return thread


def test_the_first_section_to_close_does_not_restore_blas_under_another(two_blas_threads):
    entered_a, release_a = threading.Event(), threading.Event()
    entered_b, release_b = threading.Event(), threading.Event()
    a = _in_thread(single_threaded_blas, entered_a, release_a)
    b = _in_thread(single_threaded_blas, entered_b, release_b)
    assert _threads("blas") == {1}
    release_a.set()
    a.join()
    # threadpool_limits alone would put back the two threads it saw when `a` opened,
    # under `b`'s feet (BLAS's thread count is one number for the process).
    assert _threads("blas") == {1}
    release_b.set()
    b.join()
    assert _threads("blas") == {2}


def test_mf_factors_do_not_depend_on_what_other_threads_do_with_blas(two_blas_threads):
    rng = np.random.default_rng(0)
    n_users, n_items, nnz = 2000, 3000, 40_000
    matrix = sp.csr_matrix(
        (
            np.ones(nnz, np.float32),
            (rng.integers(0, n_users, nnz), rng.integers(0, n_items, nnz)),
        ),
        shape=(n_users, n_items),
    )

    def fit():
        return ImplicitMF(factors=32, iterations=15, random_state=0).fit(matrix).item_factors_

    alone = fit()
    # The same numbers whatever BLAS was set to outside (its thread count changes them).
    with threadpool_limits(1, user_api="blas"):
        assert np.array_equal(fit(), alone)
    # Another thread's section that opened first and closes in the middle of the fit.
    entered, release = threading.Event(), threading.Event()
    other = _in_thread(single_threaded_blas, entered, release)
    result = {}
    fitting = threading.Thread(target=lambda: result.setdefault("factors", fit()))
    fitting.start()
    time.sleep(0.05)
    release.set()
    other.join()
    fitting.join()
    assert np.array_equal(result["factors"], alone)


def test_openmp_limits_stay_in_their_thread():
    import sklearn.ensemble  # noqa: F401  (loads the OpenMP runtime)

    if not _threads("openmp"):
        pytest.skip("no OpenMP runtime loaded")
    # two threads here (make test runs pytest with OMP_NUM_THREADS=1), one in the other
    with openmp_threads(2):
        assert _threads("openmp") == {2}
        entered, release = threading.Event(), threading.Event()
        other = _in_thread(lambda: openmp_threads(1), entered, release)
        assert _threads("openmp") == {2}  # read from this thread: unchanged
        release.set()
        other.join()
