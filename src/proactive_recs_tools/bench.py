"""Benchmark: matrix factorization fit, two-way top-K and (optionally) the whole dbt pipeline.

Usage::

    python -m proactive_recs_tools.bench --size S|M|L [--json] [--k 50] [--factors 64] [--pipeline]
    python -m proactive_recs_tools.bench --size L --pipeline-only --pipeline-vars vars/bench_L.yml

Synthetic data comes from :mod:`proactive_recs_tools.generate` (dirt off):

====  =========  =======  ============
size  users      items    interactions
====  =========  =======  ============
S        10,000    2,000       200,000
M       100,000   20,000     2,000,000
L     1,000,000  100,000    20,000,000
====  =========  =======  ============

Everything timed is timed in this one process, and only ratios of times measured in the
same run are reported as ratios (the machine may be shared). Sections that are repeated
alternate their order between repeats and report the fastest repeat.

1. **Fit**: our :class:`~proactive_recs.estimators.mf.ImplicitMF` against ``implicit``'s ALS
   alone on the same confidence matrix with the same hyper-parameters (both with one BLAS thread):
   ``fit_ours_s``, ``fit_implicit_s``, ``ratio_fit``.
2. **Two-way top-K** on our fitted factors, excluding already-seen pairs: our
   :func:`~proactive_recs.estimators.topk.topk_both` (``ours_s``) against ``implicit``'s batch
   ``recommend()`` for every user plus ``recommend()`` of the transposed model for every
   item (``implicit_s``), and against the floor of the bare float32 ``users x items``
   products (``gemm_s``): the faster of the products as topk_both computes them (each
   numba thread its own chunks of users, one BLAS thread each, nothing selected;
   ``gemm_per_thread_s``) and numpy's product over 64 MB blocks of users with the
   threaded BLAS (``gemm_numpy_blocks_s``, the floor of earlier runs). topk_both's
   numba kernel is compiled (or loaded from numba's on-disk cache) by the warm-up, not
   in the timed runs; the one-time cost is reported apart: ``topk_compile_s`` (first
   call in a fresh process with an empty numba cache) and ``topk_cache_load_s`` (the
   same with the cache filled). A sample of users and items is checked against
   implicit's lists and against exact float64 scores, up to ties. ``--profile`` splits
   one topk_both call into phases (``topk_breakdown``).
3. **Memory**: peak RSS of the process (``ru_maxrss``), of each stage (``VmHWM`` reset
   through ``/proc/self/clear_refs`` before the stage), of the generator and of dbt (their
   own processes, read with ``wait4``). A size whose estimated peak exceeds
   ``MemAvailable`` is refused before anything runs.
4. ``--pipeline``: the generated raw tables are loaded as VARCHAR into a scratch DuckDB
   file (schema ``bench_raw``) and ``dbt build --exclude tag:demo_data`` runs on them with
   the demo vars (``--pipeline-vars FILE`` lays a scale profile over them); wall time,
   dbt's peak RSS and per-node timings from ``run_results.json``. ``--pipeline-only`` skips
   steps 1-3 (generate, load, build only) and reads the build against the floor
   (``ratio_vs_floor``): implicit's fit and its two ``recommend()`` calls on the same
   interactions, timed right before and right after the timed build (``floor_runs_s``;
   ``floor_s`` is their mean), so that both sides of the ratio see the machine as it was.

With ``--json`` the last line of stdout is one JSON object with every figure. ``--save
DIR`` writes ``DIR/<size>.json`` and ``DIR/<size>.md``; a run without ``--pipeline``
carries the dbt figures of the file it replaces over, marked as coming from that earlier
run (``pipeline_from_previous_run``); a ``--pipeline-only`` run merges its dbt figures into
the file it finds (``pipeline_run`` names it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "SIZES",
    "InsufficientMemory",
    "SizeSpec",
    "estimate_memory",
    "machine_info",
    "main",
    "run",
]

REPO = Path(__file__).resolve().parents[2]
N_DAYS = 180
DEFAULT_K = 50
DEFAULT_FACTORS = 64
# ImplicitMF / serving defaults (serving.DEFAULT_PARAMS), used for both fits.
REGULARIZATION = 0.05
ALPHA = 1.0
ITERATIONS = 15
RAW_SCHEMA = "bench_raw"
PIPELINE_SELECTORS = ("all", "daily", "weekly")
EXIT_REFUSED = 3
MIN_FREE_MB = 1024  # dbt is killed if the machine's available memory falls under this
MB = 1 << 20

TX_COLUMNS = ["user_id", "item_id", "occurred_at", "event_type", "quantity"]
DEFAULT_EVENT_WEIGHTS = {"view": 1.0, "wishlist": 2.0, "add_to_cart": 3.0, "purchase": 5.0}


@dataclass(frozen=True)
class SizeSpec:
    name: str
    n_users: int
    n_items: int
    n_transactions: int
    repeats: int  # of the top-K section
    fit_repeats: int = 1


SIZES: dict[str, SizeSpec] = {
    "tiny": SizeSpec("tiny", 400, 120, 6_000, 1, 1),  # hidden: for the tests
    "S": SizeSpec("S", 10_000, 2_000, 200_000, 5, 5),
    "M": SizeSpec("M", 100_000, 20_000, 2_000_000, 3, 3),
    # One top-K run (~30 min on 2 cores); two fits so that each goes first once.
    "L": SizeSpec("L", 1_000_000, 100_000, 20_000_000, 1, 2),
}


class InsufficientMemory(RuntimeError):
    """The estimated peak memory of a run exceeds what the machine has available."""


# ----------------------------------------------------------------------------- machine


def _meminfo() -> dict[str, int]:
    """``/proc/meminfo`` in bytes (empty off Linux)."""
    out: dict[str, int] = {}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, _, rest = line.partition(":")
            parts = rest.split()
            if parts:
                out[key] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    except OSError:
        pass
    return out


def mem_available_bytes() -> int:
    info = _meminfo()
    if "MemAvailable" in info:
        return info["MemAvailable"]
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:  # noqa: BLE001 - a missing package is just reported as None
        return None


def machine_info() -> dict[str, Any]:
    """Cores, memory, CPU model, BLAS and library versions."""
    from threadpoolctl import threadpool_info

    import proactive_recs.estimators.mf  # noqa: F401 - loads implicit's OpenMP runtime for the listing

    try:
        import implicit.cpu.als  # noqa: F401
    except ImportError:
        pass
    blas = [
        {k: p.get(k) for k in ("internal_api", "version", "num_threads", "threading_layer")}
        for p in threadpool_info()
        if p.get("user_api") == "blas"
    ]
    info = _meminfo()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "cores": os.cpu_count(),
        "cores_usable": usable,
        "memory_total_gb": round(info.get("MemTotal", 0) / 2**30, 1),
        "memory_available_gb": round(info.get("MemAvailable", 0) / 2**30, 1),
        "cpu_model": _cpu_model(),
        "load_average_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": _version("scipy"),
        "pandas": _version("pandas"),
        "implicit": _version("implicit"),
        "numba": _version("numba"),
        "duckdb": _version("duckdb"),
        "dbt_core": _version("dbt-core"),
        "blas": blas,
    }


# ------------------------------------------------------------------------------ memory


def estimate_memory(
    n_users: int,
    n_items: int,
    n_transactions: int,
    factors: int = DEFAULT_FACTORS,
    k: int = DEFAULT_K,
    pipeline: bool = False,
    pipeline_limit_bytes: float | None = None,
) -> dict[str, int]:
    """Estimated peak bytes of a run, by component (``total`` = what must be available).

    The generator runs in its own process before the benchmark proper, so the total is
    the larger of the generator's peak and the benchmark process's peak (plus dbt's when
    ``pipeline``: it also runs alone). Per-row constants were measured at S/M/L on
    CPython 3.11 / numpy 2 / pyarrow (see docs/benchmark.md) and rounded up.
    """
    u, i, t, f = int(n_users), int(n_items), int(n_transactions), int(factors)
    base = 300 * MB  # interpreter + numpy/scipy/pandas/pyarrow/implicit
    generator = 200 * MB + 350 * t + 500 * u + 1_000 * i
    # Arrow columns read back + parsed columns + build_interaction_matrix temporaries.
    interactions = 200 * t
    # confidence + seen CSR (float32 + int32 per stored pair), implicit's alpha copy and
    # transpose inside fit, and the transposed seen matrix given to implicit.
    matrix = 48 * t + 40 * (u + i)
    # ours, implicit's, their contiguous copies and the transposed model: ~6 copies.
    factor_bytes = 6 * 4 * f * (u + i)
    # topk_both: one chunk of scores per thread; the numpy GEMM floor: one 64 MB block;
    # implicit: 100-row batches of scores over all items (users) and their filtered copies.
    from proactive_recs.estimators.topk import default_block_size

    threads = os.cpu_count() or 1
    chunk_elements = min(u, default_block_size(i)) * i
    block_elements = min(u * i, max(1 << 24, i))
    block_scores = 4 * (threads * chunk_elements + block_elements) + 4 * 4 * 100 * (u + i)
    # ours: int64 ids + float32 scores both ways, plus per thread a buffer of 2k + 16
    # uint64 keys per item (the running user lists); implicit: int32 ids + float32 scores.
    outputs = 12 * k * (u + i) + threads * 8 * (2 * k + 16) * i + 8 * k * (u + i)
    bench = base + interactions + matrix + factor_bytes + block_scores + outputs
    parts = {
        "generator": generator,
        "interactions": interactions,
        "matrix": matrix,
        "factors": factor_bytes,
        "block_scores": block_scores,
        "topk_outputs": outputs,
        "bench_process": bench,
    }
    total = max(generator, bench)
    if pipeline:
        # dbt runs the recommender, the evaluation and the backtest Python models (two at
        # a time) on pandas frames: measured 4.5 GB at S and over 12 GB at M.
        parts["dbt"] = 4 * 1024 * MB + 5_000 * t + factor_bytes
        if pipeline_limit_bytes is not None:
            # The watchdog kills dbt at the limit: it never holds more than that.
            parts["dbt"] = min(parts["dbt"], int(pipeline_limit_bytes))
        total = max(total, parts["dbt"])
    parts["total"] = int(total)
    return {key: int(value) for key, value in parts.items()}


def check_memory(
    spec: SizeSpec,
    factors: int,
    k: int,
    pipeline: bool,
    pipeline_limit_bytes: float | None = None,
) -> dict[str, int]:
    """Raise :class:`InsufficientMemory` when the estimate exceeds ``MemAvailable``."""
    est = estimate_memory(
        spec.n_users, spec.n_items, spec.n_transactions, factors, k, pipeline, pipeline_limit_bytes
    )
    available = mem_available_bytes()
    if est["total"] > available:
        parts = ", ".join(
            f"{key} {value / 2**30:.2f} GB" for key, value in est.items() if key != "total"
        )
        raise InsufficientMemory(
            f"refusing size {spec.name} ({spec.n_users:,} users, {spec.n_items:,} items, "
            f"{spec.n_transactions:,} interactions): estimated peak memory "
            f"{est['total'] / 2**30:.2f} GB ({parts}) exceeds the "
            f"{available / 2**30:.2f} GB available (MemAvailable)"
        )
    return est


def _vm_hwm_mb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _reset_hwm() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _self_maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _Stages:
    """Wall time and peak RSS per stage.

    Resetting VmHWM also resets what ``getrusage(RUSAGE_SELF).ru_maxrss`` reports for a
    live process (both read the same high-water mark), so the process peak is tracked
    here: the high-water mark is read before every reset and at the end.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.peak_mb: dict[str, float | None] = {}
        self._overall = 0.0

    def overall_peak_mb(self) -> float:
        """Peak RSS of this process so far (MB)."""
        current = _vm_hwm_mb()
        if current is None:
            return _self_maxrss_mb()
        self._overall = max(self._overall, current)
        return self._overall

    @contextmanager
    def __call__(self, name: str):
        self.overall_peak_mb()
        resettable = _reset_hwm()
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
            peak = _vm_hwm_mb() if resettable else None
            previous = self.peak_mb.get(name)
            if peak is not None and previous is not None:
                peak = max(peak, previous)
            self.peak_mb[name] = None if peak is None else round(peak, 1)
            self.overall_peak_mb()


def _run_child(command: list[str], log: Path, **kwargs) -> tuple[int, float, float]:
    """Run ``command`` with its output in ``log``; (exit code, wall seconds, peak RSS MB)."""
    start = time.perf_counter()
    with open(log, "wb") as sink:
        proc = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, **kwargs)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, time.perf_counter() - start, usage.ru_maxrss / 1024


# -------------------------------------------------------------------------------- data


def _generate_child(out: Path, n_users: int, n_items: int, n_tx: int, seed: int, full: bool):
    """In the generator process: write the raw tables as parquet (all five when ``full``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .generate import generate, write

    data = generate(n_users, n_items, N_DAYS, n_transactions=n_tx, seed=seed, dirt=False)
    out.mkdir(parents=True, exist_ok=True)
    if full:
        write(data, out, fmt="parquet")
    else:
        frame = data.tables["transactions"][TX_COLUMNS]
        table = pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(None)
        pq.write_table(table, out / "raw_transactions.parquet", compression="zstd")


def _event_weights() -> dict[str, float]:
    path = REPO / "seeds" / "reference" / "event_type_weights.csv"
    if not path.exists():
        return dict(DEFAULT_EVENT_WEIGHTS)
    import pandas as pd

    table = pd.read_csv(path)
    return {str(e): float(w) for e, w in zip(table["event_type"], table["weight"], strict=True)}


def load_interactions(path: Path):
    """The cleaned-interactions frame (what int_interactions hands to the recommender) from
    the raw transactions parquet: text ids, UTC timestamps, event weights, quantities."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=TX_COLUMNS)
    occurred = pc.cast(
        pc.cast(table["occurred_at"], pa.timestamp("s", tz="UTC")), pa.timestamp("s")
    )
    encoded = pc.dictionary_encode(table["event_type"]).combine_chunks()
    weights = _event_weights()
    names = [
        str(v or "purchase").strip().lower() or "purchase" for v in encoded.dictionary.to_pylist()
    ]
    lookup = np.array([weights.get(n, np.nan) for n in names], dtype=np.float64)
    event_weight = lookup[encoded.indices.to_numpy(zero_copy_only=False)]
    quantity = pc.cast(table["quantity"], pa.float64()).to_numpy()
    string = pd.StringDtype("pyarrow")
    frame = pd.DataFrame(
        {
            "user_id": table["user_id"].to_pandas(types_mapper=lambda _t: string),
            "item_id": table["item_id"].to_pandas(types_mapper=lambda _t: string),
            "occurred_at": occurred.to_pandas(),
            "event_weight": event_weight,
            "quantity": quantity,
        }
    )
    return frame[np.isfinite(event_weight) & (quantity > 0)].reset_index(drop=True)


# ----------------------------------------------------------------------------- fitting


def _fit_ours(matrix, factors: int, threads: int, seed: int):
    from proactive_recs.estimators.mf import ImplicitMF

    return ImplicitMF(
        factors=factors,
        regularization=REGULARIZATION,
        alpha=ALPHA,
        iterations=ITERATIONS,
        use_cg=True,
        num_threads=threads,
        random_state=seed,
    ).fit(matrix)


def _fit_implicit(matrix, factors: int, threads: int, seed: int):
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(
            factors=factors,
            regularization=REGULARIZATION,
            alpha=ALPHA,
            iterations=ITERATIONS,
            use_cg=True,
            num_threads=threads,
            random_state=seed,
            dtype=np.float32,
        )
        model.fit(matrix, show_progress=False)
    return model


# ------------------------------------------------------------------------------- top-K


def _numpy_block_users(n_items: int) -> int:
    """Users per block of :func:`gemm_floor`'s numpy variant: 64 MB of float32 scores (the
    blocks of topk_both before its numba kernel; kept as a floor for continuity)."""
    return max(1, (1 << 24) // max(n_items, 1))


def gemm_floor(U: np.ndarray, V: np.ndarray, block_size: int) -> float:
    """Seconds for the bare float32 products ``U[block] @ V.T`` over all user blocks,
    computed by numpy (threaded BLAS) into one reused buffer, nothing selected."""
    VT = np.ascontiguousarray(V.T)
    buf = np.empty((min(block_size, U.shape[0]), V.shape[0]), dtype=np.float32)
    start = time.perf_counter()
    for s in range(0, U.shape[0], block_size):
        e = min(s + block_size, U.shape[0])
        np.matmul(U[s:e], VT, out=buf[: e - s])
    return time.perf_counter() - start


_PER_THREAD_PRODUCTS = None


def _per_thread_products_kernel():
    """The products loop of topk_both's kernel alone (compiled once, lazily)."""
    global _PER_THREAD_PRODUCTS
    if _PER_THREAD_PRODUCTS is None:
        import numba

        @numba.njit(parallel=True, nogil=True)
        def products(U, VT, S, chunk):
            n_parts = S.shape[0] // chunk
            n = U.shape[0]
            for t in numba.prange(n_parts):
                a, b = t * n // n_parts, (t + 1) * n // n_parts
                for c0 in range(a, b, chunk):
                    c1 = min(c0 + chunk, b)
                    np.dot(U[c0:c1], VT, S[t * chunk : t * chunk + c1 - c0])

        _PER_THREAD_PRODUCTS = products
    return _PER_THREAD_PRODUCTS


def gemm_floor_per_thread(U: np.ndarray, V: np.ndarray, chunk: int | None = None) -> float:
    """Seconds for the products exactly as topk_both computes them, nothing selected:
    the users split into one contiguous range per numba thread, each thread computing
    its range ``chunk`` users at a time with a single-threaded BLAS into its own buffer."""
    import numba
    from threadpoolctl import threadpool_limits

    from proactive_recs.estimators.topk import default_block_size

    U = np.ascontiguousarray(U, dtype=np.float32)
    VT = np.ascontiguousarray(np.asarray(V, dtype=np.float32).T)
    parts = max(1, numba.get_num_threads())
    chunk = chunk or default_block_size(VT.shape[1])
    chunk = max(1, min(chunk, -(-U.shape[0] // parts)))
    buf = np.empty((parts * chunk, VT.shape[1]), np.float32)
    kernel = _per_thread_products_kernel()
    with threadpool_limits(1, user_api="blas"):
        kernel(U[:1], VT, buf, chunk)  # compile outside the timing
        start = time.perf_counter()
        kernel(U, VT, buf, chunk)
        return time.perf_counter() - start


def measure_jit() -> dict[str, Any]:
    """One-time cost of topk_both's numba kernels, each measured in a fresh process: the
    first calls (both directions, with and without a transform) with an empty numba
    cache directory (compilation, ``topk_compile_s``), then again with that directory
    filled (``topk_cache_load_s``). Imports are timed apart and not included."""
    code = (
        "import time, numpy as np\n"
        "t0 = time.perf_counter()\n"
        "from proactive_recs.estimators.topk import topk_both\n"
        "t1 = time.perf_counter()\n"
        "U, V = np.ones((5, 2)), np.ones((4, 2))\n"
        "topk_both(U, V, k_items=2, k_users=2)\n"
        "topk_both(U, V, k_items=2, k_users=2, transform=np.tanh)\n"
        "t2 = time.perf_counter()\n"
        "print(t1 - t0, t2 - t1)\n"
    )
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="proactive_recs_numba_") as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        for key in ("topk_compile_s", "topk_cache_load_s"):
            done = subprocess.run(
                [sys.executable, "-c", code], env=env, capture_output=True, text=True
            )
            if done.returncode != 0:
                raise RuntimeError(f"measuring the numba compilation failed:\n{done.stderr}")
            imports, first_calls = (float(x) for x in done.stdout.split()[-2:])
            out[key] = round(first_calls, 3)
        out["topk_import_s"] = round(imports, 3)
    return out


def _implicit_model(user_factors: np.ndarray, item_factors: np.ndarray, threads: int):
    """An implicit ALS model holding the given factors (only used to recommend)."""
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, "blas"):  # the constructor warns about a threaded BLAS
        model = AlternatingLeastSquares(factors=user_factors.shape[1], num_threads=threads)
    model.user_factors = user_factors
    model.item_factors = item_factors
    return model


def implicit_two_way(forward, backward, seen, seen_t, k: int, blas_threads: int | None = 1):
    """implicit's batch recommend for all users, then for all items on the transposed
    model. Returns (user lists, item lists, seconds users, seconds items).

    ``blas_threads=1`` is implicit's own advice (its batches already run in parallel
    OpenMP threads; a threaded BLAS underneath oversubscribes the cores) and is about 2x
    faster at M on 2 cores than the default; None leaves BLAS as it is.
    """
    from threadpoolctl import threadpool_limits

    n_users, n_items = seen.shape
    with threadpool_limits(blas_threads, "blas"):
        start = time.perf_counter()
        ui = forward.recommend(
            np.arange(n_users), seen, N=min(k, n_items), filter_already_liked_items=True
        )
        mid = time.perf_counter()
        iu = backward.recommend(
            np.arange(n_items), seen_t, N=min(k, n_users), filter_already_liked_items=True
        )
        end = time.perf_counter()
    return ui, iu, mid - start, end - mid


def _compare_lists(ids_a, scores_a, ids_b, scores_b, tol):
    """Do two best-first top-K lists agree up to ties? Scores must match pairwise within
    ``tol``; members scoring clearly above the K-th (by more than 2 tol) must be in both.
    Entries with a score below -1e30 are padding (-inf for us, -FLT_MAX for implicit)."""
    a_ok, b_ok = scores_a > -1e30, scores_b > -1e30
    if a_ok.sum() != b_ok.sum():
        return False
    sa, sb = scores_a[a_ok], scores_b[b_ok]
    if sa.size == 0:
        return True
    if not np.allclose(sa, sb, rtol=0, atol=tol):
        return False
    kth = min(sa[-1], sb[-1])
    clear_a = set(ids_a[a_ok][sa > kth + 2 * tol].tolist())
    clear_b = set(ids_b[b_ok][sb > kth + 2 * tol].tolist())
    return clear_a <= set(ids_b[b_ok].tolist()) and clear_b <= set(ids_a[a_ok].tolist())


def _exact_lists(Q, P, rows, seen, k, chunk: int = 16):
    """float64 top-k of ``Q[rows] @ P.T`` with ``seen`` pairs excluded (padding -inf),
    a few rows at a time so that the check stays small next to the benchmark."""
    P64 = P.astype(np.float64)
    kk = min(k, P.shape[0])
    ids = np.empty((len(rows), kk), dtype=np.int64)
    vals = np.empty((len(rows), kk), dtype=np.float64)
    for s in range(0, len(rows), chunk):
        part = rows[s : s + chunk]
        scores = Q[part].astype(np.float64) @ P64.T
        sub = seen[part].tocoo()
        scores[sub.row, sub.col] = -np.inf
        if kk < scores.shape[1]:
            cand = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
        else:
            cand = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
        cand_vals = np.take_along_axis(scores, cand, axis=1)
        order = np.lexsort((cand, -cand_vals), axis=1)
        ids[s : s + chunk] = np.take_along_axis(cand, order, axis=1)
        vals[s : s + chunk] = np.take_along_axis(cand_vals, order, axis=1)
    return ids, vals


def _count_seen(seen, users: np.ndarray, items: np.ndarray) -> int:
    """How many of the (user, item) pairs (index -1 = padding) are stored in ``seen``."""
    ok = (users >= 0) & (items >= 0)
    n_items = np.int64(seen.shape[1])
    rows = np.repeat(np.arange(seen.shape[0], dtype=np.int64), np.diff(seen.indptr))
    keys = np.sort(rows * n_items + seen.indices.astype(np.int64))
    if keys.size == 0:
        return 0
    users, items = users[ok], items[ok]
    hits, step = 0, 1 << 22
    for s in range(0, users.size, step):
        wanted = users[s : s + step].astype(np.int64) * n_items + items[s : s + step]
        pos = np.minimum(np.searchsorted(keys, wanted), keys.size - 1)
        hits += int((keys[pos] == wanted).sum())
    return hits


def check_topk(top, ui, iu, U, V, seen, seen_t, k, sample=200, seed=0) -> dict[str, Any]:
    """Check our lists on a sample of users and items against implicit's and against
    exact float64 scores, up to ties; and that no listed pair was already seen."""
    rng = np.random.default_rng(seed)
    n_users, n_items = seen.shape
    users = np.sort(rng.choice(n_users, size=min(sample, n_users), replace=False))
    items = np.sort(rng.choice(n_items, size=min(sample, n_items), replace=False))
    scale = float(np.abs(U).sum(axis=1).max() * np.abs(V).max()) or 1.0
    tol = 1e-5 * scale
    out: dict[str, Any] = {"users_checked": int(users.size), "items_checked": int(items.size)}
    ex_u = _exact_lists(U, V, users, seen, k)
    ex_i = _exact_lists(V, U, items, seen_t, k)
    bad = {"user_vs_implicit": 0, "user_vs_exact": 0, "item_vs_implicit": 0, "item_vs_exact": 0}
    for row, u in enumerate(users):
        ours = (top.user_items[u], top.user_item_scores[u])
        bad["user_vs_implicit"] += not _compare_lists(*ours, ui[0][u], ui[1][u], tol)
        bad["user_vs_exact"] += not _compare_lists(*ours, ex_u[0][row], ex_u[1][row], tol)
    for row, j in enumerate(items):
        ours = (top.item_users[j], top.item_user_scores[j])
        bad["item_vs_implicit"] += not _compare_lists(*ours, iu[0][j], iu[1][j], tol)
        bad["item_vs_exact"] += not _compare_lists(*ours, ex_i[0][row], ex_i[1][row], tol)
    # Exclusions, on every list: no (user, item) pair of ours may be a seen pair.
    k_u, k_i = top.user_items.shape[1], top.item_users.shape[1]
    seen_hits = _count_seen(seen, np.repeat(np.arange(n_users), k_u), top.user_items.ravel())
    seen_hits += _count_seen(seen, top.item_users.ravel(), np.repeat(np.arange(n_items), k_i))
    out.update({f"mismatches_{key}": int(value) for key, value in bad.items()})
    out["seen_pairs_listed"] = seen_hits
    out["tolerance"] = tol
    out["passed"] = bool(sum(bad.values()) == 0 and seen_hits == 0)
    return out


def profile_topk(U, V, seen, k) -> dict[str, float]:
    """Wall time of one topk_both call (both directions, seen pairs excluded) split into
    phases, timed around topk's internal steps:

    * ``setup_s``: argument checks, masks, the exclusions' CSR, buffers (Python);
    * ``kernel_s``: the numba kernel: every product and the selection in both directions;
    * ``products_s``: the same products alone, timed right after (see
      :func:`gemm_floor_per_thread`), and ``selection_s = kernel_s - products_s``;
    * ``merge_s``: merging the threads' user lists of every item.
    """
    from proactive_recs.estimators import topk

    timings = {"run": 0.0, "finish": 0.0}
    originals = {name: getattr(topk._Selector, name) for name in timings}

    def timed(name):
        def wrapper(self, *args, **kwargs):
            start = time.perf_counter()
            try:
                return originals[name](self, *args, **kwargs)
            finally:
                timings[name] += time.perf_counter() - start

        return wrapper

    try:
        for name in timings:
            setattr(topk._Selector, name, timed(name))
        start = time.perf_counter()
        topk.topk_both(U, V, k_items=k, k_users=k, exclude=seen)
        wall = time.perf_counter() - start
    finally:
        for name, fn in originals.items():
            setattr(topk._Selector, name, fn)
    products = gemm_floor_per_thread(U, V)
    return {
        "wall_s": round(wall, 3),
        "setup_s": round(wall - timings["run"] - timings["finish"], 3),
        "kernel_s": round(timings["run"], 3),
        "products_s": round(products, 3),
        "selection_s": round(max(timings["run"] - products, 0.0), 3),
        "merge_s": round(timings["finish"], 3),
    }


# ---------------------------------------------------------------------------- pipeline


def read_vars_file(path: Path | None) -> dict[str, Any]:
    """dbt vars from a YAML file (a mapping); {} for None. A clear error otherwise."""
    import yaml

    if path is None:
        return {}
    values = yaml.safe_load(Path(path).read_text())
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ValueError(f"--pipeline-vars {path}: expected a YAML mapping of dbt vars")
    return values


def _dbt_vars(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The demo vars (less the demo's extra week-old-stages evaluation), then ``extra`` (a
    scale profile such as vars/bench_L.yml), then the benchmark's raw schema."""
    path = REPO / "vars" / "demo.yml"
    values = read_vars_file(path) if path.exists() else {}
    return {
        **values,
        # the package default, not the demo's: the week-old-stages check is a second fit
        "proactive_recs_evaluate_week_old_stages": False,
        **(extra or {}),
        "proactive_recs_source_schema": RAW_SCHEMA,
        # the package's default campaigns: the generated raw schema has no campaign table
        "proactive_recs_campaigns_table": None,
    }


def _tree_rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and its descendants (MB; 0 once gone)."""
    total, todo, done = 0.0, [pid], set()
    while todo:
        p = todo.pop()
        if p in done:
            continue
        done.add(p)
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
            for task in Path(f"/proc/{p}/task").iterdir():
                children = (task / "children").read_text().split()
                todo.extend(int(c) for c in children)
        except (OSError, ValueError):
            continue
    return total


def _cpu_ticks() -> tuple[int, int] | None:
    """(busy, total) clock ticks of the whole machine since boot, from /proc/stat; None
    where there is none (not Linux)."""
    try:
        with open("/proc/stat") as stat:
            ticks = [int(v) for v in stat.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    idle = ticks[3] + ticks[4]  # idle and iowait
    return sum(ticks) - idle, sum(ticks)


def _watch_child(
    command: list[str],
    log: Path,
    limit_mb: float | None,
    timeout_s: float | None = None,
    interval: float = 0.5,
    **kwargs,
) -> dict[str, Any]:
    """Run ``command``, sampling its resident memory; kill it (its own process group) if
    it goes over ``limit_mb``, if the machine's MemAvailable falls under
    ``MIN_FREE_MB`` (other processes need memory too) or if it runs longer than
    ``timeout_s``. Returns exit code, wall seconds, peak RSS (the larger of wait4's and
    the sampled process tree's), the samples as (epoch seconds, MB of the tree) and
    ``cpu``: (epoch seconds, cores the whole machine kept busy since the sample before),
    which says where a run is serial (a node at 1.0 of 2 cores leaves one idle)."""
    start_wall, start = time.time(), time.perf_counter()
    samples: list[tuple[float, float]] = []
    cpu: list[tuple[float, float]] = []
    cores, last_ticks = os.cpu_count() or 1, _cpu_ticks()
    killed = timed_out = False
    with open(log, "wb") as sink:
        proc = subprocess.Popen(
            command, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True, **kwargs
        )
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            rss = _tree_rss_mb(proc.pid)
            samples.append((time.time(), rss))
            ticks = _cpu_ticks()
            if ticks and last_ticks and ticks[1] > last_ticks[1]:
                busy = (ticks[0] - last_ticks[0]) / (ticks[1] - last_ticks[1])
                cpu.append((samples[-1][0], round(cores * busy, 2)))
            last_ticks = ticks
            over = (limit_mb is not None and rss > limit_mb) or (
                mem_available_bytes() < MIN_FREE_MB * MB
            )
            late = timeout_s is not None and time.perf_counter() - start > timeout_s
            if (over or late) and not (killed or timed_out):
                killed, timed_out = over, late and not over
                os.killpg(proc.pid, 9)
            time.sleep(interval)
    proc.returncode = os.waitstatus_to_exitcode(status)
    sampled = max((mb for _, mb in samples), default=0.0)
    return {
        "exit_code": proc.returncode,
        "seconds": time.perf_counter() - start,
        "started": start_wall,
        "peak_rss_mb": max(usage.ru_maxrss / 1024, sampled),
        "killed_over_limit": killed,
        "killed_timeout": timed_out,
        "samples": samples,
        "cpu": cpu,
    }


def _epoch(text: str | None) -> float | None:
    if not text:
        return None
    from datetime import UTC, datetime

    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _node_summary(
    results: list[dict],
    samples: list[tuple[float, float]],
    cpu: list[tuple[float, float]] | None = None,
) -> dict[str, Any]:
    """Per-node seconds (dbt's run_results.json), the largest RSS of the dbt process
    sampled while the node executed (with 2 threads, nodes can overlap) and, given ``cpu``
    (:func:`_watch_child`'s), ``cores_busy``: the machine's mean busy cores over the
    samples taken while it executed (nodes running beside it included; None for a node
    shorter than the sampling interval)."""
    statuses: dict[str, int] = {}
    by_type: dict[str, float] = {}
    nodes = []
    times = np.array([t for t, _ in samples]) if samples else np.empty(0)
    mbs = np.array([m for _, m in samples]) if samples else np.empty(0)
    cpu_times = np.array([t for t, _ in cpu]) if cpu else np.empty(0)
    cpu_cores = np.array([c for _, c in cpu]) if cpu else np.empty(0)
    for r in results:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
        kind = r["unique_id"].split(".")[0]
        seconds = float(r.get("execution_time") or 0.0)
        by_type[kind] = by_type.get(kind, 0.0) + seconds
        peak = cores_busy = None
        for timing in r.get("timing") or []:
            if timing.get("name") != "execute":
                continue
            a, b = _epoch(timing.get("started_at")), _epoch(timing.get("completed_at"))
            if a is not None and b is not None and times.size:
                inside = (times >= a - 0.5) & (times <= b + 0.5)
                if inside.any():
                    peak = round(float(mbs[inside].max()), 1)
            if a is not None and b is not None and cpu_times.size:
                # a sample covers the interval before it: those ending inside the node
                inside = (cpu_times > a) & (cpu_times <= b)
                if inside.any():
                    cores_busy = round(float(cpu_cores[inside].mean()), 2)
        node = {
            "node": r["unique_id"],
            "seconds": round(seconds, 2),
            "status": r["status"],
            "peak_rss_mb": peak,
        }
        if cpu is not None:
            node["cores_busy"] = cores_busy
        nodes.append(node)
    nodes.sort(key=lambda n: n["seconds"], reverse=True)
    return {
        "pipeline_status_counts": statuses,
        "pipeline_seconds_by_type": {k: round(v, 2) for k, v in sorted(by_type.items())},
        "pipeline_slowest_nodes": nodes[:12],
    }


_LOG_LINE = re.compile(
    r"(\d+) of (\d+) (START|OK|PASS|ERROR|FAIL|WARN|SKIP)\S*\s+(.*?)\s*\.{2,}.*?"
    r"(?:in ([\d.]+)s\])?\s*$"
)


def _log_progress(text: str) -> dict[str, Any]:
    """Nodes finished (with seconds) and nodes still running, from dbt's console log."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    started: dict[str, str] = {}
    finished: list[dict[str, Any]] = []
    total = None
    for line in text.splitlines():
        m = _LOG_LINE.search(line)
        if not m:
            continue
        index, total, status, what, seconds = m.groups()
        if status == "START":
            started[index] = what
        else:
            started.pop(index, None)
            finished.append(
                {"node": what, "seconds": float(seconds or 0.0), "status": status.lower()}
            )
    finished.sort(key=lambda n: n["seconds"], reverse=True)
    return {
        "pipeline_nodes_total": None if total is None else int(total),
        "pipeline_nodes_finished": len(finished),
        "pipeline_running_when_stopped": sorted(started.values()),
        "pipeline_slowest_finished": finished[:8],
    }


def run_pipeline(
    raw_dir: Path,
    work: Path,
    limit_mb: float | None = None,
    timeout_s: float | None = None,
    threads: int = 1,
    extra_vars: dict[str, Any] | None = None,
    selector: str = "all",
    around_timed_build=None,
) -> dict[str, Any]:
    """Load the raw parquet files into a scratch DuckDB file (schema ``bench_raw``, every
    column VARCHAR) and run ``dbt build`` on them in its own process, killed if its memory
    goes over ``limit_mb`` or it outlasts ``timeout_s``.

    ``selector``: ``all`` (every model but the demo seeds), ``daily`` or ``weekly`` (the
    selectors of selectors.yml), each timed in its steady state after an untimed set-up
    (its seconds kept as ``pipeline_setup_s``): ``weekly`` reads the daily tables, so a
    daily build runs first; ``daily`` reuses the weekly training, so the models up to
    ``recommender_stages`` are built first (a daily run after a weekly one).

    ``around_timed_build``: a callable run right before and right after the timed build
    (after the set-up); what it returns is kept as ``floor_before`` and ``floor_after``."""
    import duckdb

    if not (REPO / "dbt_project.yml").exists():
        raise RuntimeError(f"--pipeline needs the dbt project next to the package ({REPO})")
    db = work / "pipeline.duckdb"
    start = time.perf_counter()
    with duckdb.connect(str(db)) as con:
        con.execute(f"create schema if not exists {RAW_SCHEMA}")
        for path in sorted(raw_dir.glob("raw_*.parquet")):
            con.execute(
                f"create or replace table {RAW_SCHEMA}.{path.stem} as "
                f"select * from read_parquet('{path}')"
            )
    load_s = time.perf_counter() - start
    dbt = str(Path(sys.executable).parent / "dbt")
    if selector not in PIPELINE_SELECTORS:
        raise ValueError(f"selector must be one of {PIPELINE_SELECTORS}, got {selector!r}")
    selection = ["--exclude", "tag:demo_data"] if selector == "all" else ["--selector", selector]
    command = [
        dbt,
        "build",
        *selection,
        "--vars",
        json.dumps(_dbt_vars(extra_vars)),
        "--threads",
        str(threads),
        "--target-path",
        str(work / "target"),
        "--log-path",
        str(work / "logs"),
    ]
    env = {
        **os.environ,
        "DUCKDB_PATH": str(db),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        # DuckDB's buffer pool lives in the dbt process, next to the Python models' frames,
        # and keeps what the SQL models cached up to its limit: 2GB (4GB until session 27)
        # took ~1 GB off the L daily peak (docs/benchmark.md, session 27).
        "DUCKDB_MEMORY_LIMIT": os.environ.get("DUCKDB_MEMORY_LIMIT", "2GB"),
    }
    setup: dict[str, Any] = {}
    # cautious: only the tests of the models built (eager would also run the tests that
    # merely touch a selected model, e.g. relationships from the score tables to stg_items)
    before = {
        "weekly": ["--selector", "daily"],
        "daily": ["--select", "+recommender_stages", "--indirect-selection", "cautious"],
    }
    if selector in before:
        # untimed, so not held to the timed run's memory limit (only to the machine's)
        prior = [*command[:2], *before[selector], *command[4:]]
        first = _watch_child(prior, work / "dbt_setup.log", None, timeout_s, cwd=REPO, env=env)
        setup = {
            "pipeline_setup": " ".join(before[selector]),
            "pipeline_setup_s": round(first["seconds"], 2),
            "pipeline_setup_peak_rss_mb": round(first["peak_rss_mb"], 1),
            "pipeline_setup_exit_code": first["exit_code"],
            "pipeline_load_s": round(load_s, 2),
        }
        if first["exit_code"] != 0:
            log = (work / "dbt_setup.log").read_text(errors="replace").splitlines()
            return {
                **setup,
                "pipeline_exit_code": first["exit_code"],
                "pipeline_log_tail": log[-30:],
            }
    around: dict[str, Any] = {}
    if around_timed_build is not None:
        around["floor_before"] = around_timed_build()
    run_ = _watch_child(command, work / "dbt_build.log", limit_mb, timeout_s, cwd=REPO, env=env)
    if around_timed_build is not None:
        around["floor_after"] = around_timed_build()
    out: dict[str, Any] = {
        **setup,
        **around,
        "pipeline_selector": selector,
        "pipeline_load_s": round(load_s, 2),
        "pipeline_s": round(run_["seconds"], 2),
        "pipeline_peak_rss_mb": round(run_["peak_rss_mb"], 1),
        "pipeline_exit_code": run_["exit_code"],
        "pipeline_memory_limit_mb": None if limit_mb is None else round(limit_mb),
        "pipeline_threads": threads,
        "pipeline_vars": dict(extra_vars or {}),
        "pipeline_killed_over_limit": run_["killed_over_limit"],
        "pipeline_killed_timeout": run_["killed_timeout"],
        # RSS of the dbt process tree over time, at most 60 points: [seconds, MB].
        "pipeline_rss_timeline": [
            [round(t - run_["started"], 1), round(mb)]
            for t, mb in run_["samples"][:: max(1, len(run_["samples"]) // 60)]
        ],
        # the machine's mean busy cores over the build (of os.cpu_count())
        "pipeline_cores_busy": (
            round(float(np.mean([c for _, c in run_["cpu"]])), 2) if run_["cpu"] else None
        ),
    }
    results_path = work / "target" / "run_results.json"
    if results_path.exists():
        results = json.loads(results_path.read_text())["results"]
        out.update(_node_summary(results, run_["samples"], run_["cpu"]))
    else:  # killed: no run_results.json; what the log says was done and still running
        out.update(_log_progress((work / "dbt_build.log").read_text(errors="replace")))
    if run_["exit_code"] != 0:
        log = (work / "dbt_build.log").read_text(errors="replace").splitlines()
        out["pipeline_log_tail"] = log[-30:]
    return out


# --------------------------------------------------------------------------------- run


def _warm_up(X, seen, factors: int, threads: int, seed: int, k: int) -> None:
    """One small call of everything timed, so that no timing pays for imports, the
    OpenMP/BLAS thread pools, first-touch of the libraries' code or the compilation (or
    cache load) of topk_both's numba kernel (measured apart by :func:`measure_jit`)."""
    from proactive_recs.estimators.topk import topk_both

    rows = min(X.shape[0], 2_000)
    sub, sub_seen = X[:rows], seen[:rows]
    mf = _fit_ours(sub, min(factors, 8), threads, seed)
    peer = _fit_implicit(sub, min(factors, 8), threads, seed)
    U, V = np.asarray(peer.user_factors), np.asarray(peer.item_factors)
    topk_both(U, V, k_items=k, k_users=k, exclude=sub_seen)
    gemm_floor(mf.user_factors_, mf.item_factors_, _numpy_block_users(V.shape[0]))
    gemm_floor_per_thread(mf.user_factors_, mf.item_factors_)
    implicit_two_way(
        _implicit_model(U, V, 0), _implicit_model(V, U, 0), sub_seen, sub_seen.T.tocsr(), k
    )


def _min_of(values: list[float]) -> float:
    return float(min(values)) if values else float("nan")


def run(
    spec: SizeSpec,
    *,
    k: int = DEFAULT_K,
    factors: int = DEFAULT_FACTORS,
    pipeline: bool = False,
    repeats: int | None = None,
    fit_threads: int = 0,
    seed: int = 0,
    profile: bool = False,
    profile_users: int | None = None,
    workdir: Path | None = None,
    keep: bool = False,
    pipeline_mem_limit_mb: float | None = None,
    pipeline_timeout_min: float | None = None,
    pipeline_threads: int = 1,
    pipeline_vars: dict[str, Any] | None = None,
    pipeline_only: bool = False,
    pipeline_selector: str = "all",
    log=None,
) -> dict[str, Any]:
    """Run the benchmark for one size and return every figure (see the module doc).
    ``pipeline_only``: generate the data and run the dbt build, without the fit and top-K
    timings (at L they take half an hour)."""
    import scipy.sparse as sp

    from proactive_recs.data.interactions import build_interaction_matrix

    def say(message: str) -> None:
        if log is not None:
            print(f"[bench {spec.name}] {message}", file=log, flush=True)

    pipeline = pipeline or pipeline_only
    estimate = check_memory(
        spec,
        factors,
        k,
        pipeline,
        None if pipeline_mem_limit_mb is None else pipeline_mem_limit_mb * MB,
    )
    fit_repeats = spec.fit_repeats if repeats is None else int(repeats)
    repeats = spec.repeats if repeats is None else int(repeats)
    stages = _Stages()
    work = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="proactive_recs_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "size": spec.name,
        "requested": {
            "users": spec.n_users,
            "items": spec.n_items,
            "interactions": spec.n_transactions,
        },
        "k": k,
        "factors": factors,
        "regularization": REGULARIZATION,
        "alpha": ALPHA,
        "iterations": ITERATIONS,
        "fit_threads": fit_threads,
        "repeats": repeats,
        "fit_repeats": fit_repeats,
        "seed": seed,
        "pipeline_only": pipeline_only,
        "load_average_1m_start": round(os.getloadavg()[0], 2),
        "memory_estimate_mb": {key: round(v / MB) for key, v in estimate.items()},
    }
    try:
        raw = work / "raw"
        say("generating data (own process)")
        command = [
            sys.executable,
            "-m",
            "proactive_recs_tools.bench",
            "--_generate",
            str(raw),
            "--users",
            str(spec.n_users),
            "--items",
            str(spec.n_items),
            "--transactions",
            str(spec.n_transactions),
            "--seed",
            str(seed),
        ] + (["--_all-tables"] if pipeline else [])
        code, seconds, peak = _run_child(command, work / "generate.log")
        if code != 0:
            tail = (work / "generate.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"the generator failed with exit code {code}:\n{tail}")
        result["generate_s"] = round(seconds, 2)
        result["generator_peak_rss_mb"] = round(peak, 1)

        say("building the interaction matrix")
        with stages("load"):
            frame = load_interactions(raw / "raw_transactions.parquet")
        n_rows = len(frame)
        with stages("build_matrix"):
            inter = build_interaction_matrix(frame)
        del frame
        X, seen = inter.matrix, inter.seen
        n_users, n_items = X.shape
        result.update(
            {
                "n_users": int(n_users),
                "n_items": int(n_items),
                "n_interactions": int(n_rows),
                "nnz": int(X.nnz),
            }
        )
        if pipeline_only:
            # The floor is timed right before and right after the timed build, after its
            # untimed set-up: this machine's speed drifts over the minutes a set-up takes,
            # and a ratio of two timings twenty minutes apart measured that drift.
            def floor() -> dict[str, Any]:
                say("the floor: implicit's fit and its two recommend() calls")
                with stages("floor"):
                    return implicit_floor(X, seen, factors, fit_threads, seed, k)

            def snapshot_stages() -> None:
                result["stage_s"] = {key: round(v, 3) for key, v in stages.seconds.items()}
                result["stage_peak_rss_mb"] = dict(stages.peak_mb)
                result["bench_peak_rss_mb"] = round(stages.overall_peak_mb(), 1)

            snapshot_stages()
            out = _finish_pipeline(
                result,
                raw,
                work,
                pipeline_mem_limit_mb,
                pipeline_timeout_min,
                pipeline_threads,
                pipeline_vars,
                say,
                selector=pipeline_selector,
                floor=floor,
            )
            snapshot_stages()
            out["peak_rss_mb"] = max(out["peak_rss_mb"], out["bench_peak_rss_mb"])
            return out

        say("compiling topk's numba kernel in fresh processes (one-time cost, timed apart)")
        with stages("jit"):
            result.update(measure_jit())
        say("warming up (imports, thread pools, numba kernels)")
        _warm_up(X, seen, factors, fit_threads, seed, k)

        say(f"fitting ({fit_repeats} repeat(s), alternating)")
        U, V = _time_fits(X, factors, fit_threads, seed, fit_repeats, stages, result)

        seen = sp.csr_matrix(seen, dtype=np.float32)
        with stages("transpose_seen"):
            start = time.perf_counter()
            seen_t = seen.T.tocsr()
            result["transpose_seen_s"] = round(time.perf_counter() - start, 6)
        top, ui, iu = _time_topk(U, V, seen, seen_t, k, factors, repeats, stages, result, say)

        say("checking the lists")
        with stages("check"):
            result["correctness"] = check_topk(top, ui, iu, U, V, seen, seen_t, k, seed=seed)
        result["correct"] = result["correctness"]["passed"]
        del ui, iu, top

        if profile:
            say("profiling topk_both")
            rows = n_users if profile_users is None else min(n_users, int(profile_users))
            with stages("profile"):
                result["topk_breakdown"] = profile_topk(U[:rows], V, seen[:rows], k)
            result["topk_profile_users"] = int(rows)

        result["stage_s"] = {key: round(v, 3) for key, v in stages.seconds.items()}
        result["stage_peak_rss_mb"] = dict(stages.peak_mb)
        result["bench_peak_rss_mb"] = round(stages.overall_peak_mb(), 1)
        if not pipeline:
            result["peak_rss_mb"] = round(
                max(result["bench_peak_rss_mb"], result["generator_peak_rss_mb"]), 1
            )
            result["machine"] = machine_info()
            return result
        return _finish_pipeline(
            result,
            raw,
            work,
            pipeline_mem_limit_mb,
            pipeline_timeout_min,
            pipeline_threads,
            pipeline_vars,
            say,
        )
    finally:
        if not keep and workdir is None:
            shutil.rmtree(work, ignore_errors=True)


def _time_fits(X, factors, fit_threads, seed, fit_repeats, stages, result) -> tuple:
    """Our fit against implicit's ALS alone, alternating their order each repeat; the
    fastest repeat of each and the paired ratios go into ``result``. Returns our factors."""
    fits_ours, fits_implicit = [], []
    mf = peer = None
    for r in range(fit_repeats):
        order = ("ours", "implicit") if r % 2 == 0 else ("implicit", "ours")
        for who in order:
            with stages(f"fit_{who}"):
                start = time.perf_counter()
                if who == "ours":
                    mf = _fit_ours(X, factors, fit_threads, seed)
                    fits_ours.append(time.perf_counter() - start)
                else:
                    peer = _fit_implicit(X, factors, fit_threads, seed)
                    fits_implicit.append(time.perf_counter() - start)
    result["fit_ours_s"] = round(_min_of(fits_ours), 6)
    result["fit_implicit_s"] = round(_min_of(fits_implicit), 6)
    result["ratio_fit"] = round(_min_of(fits_ours) / _min_of(fits_implicit), 4)
    result["ratio_fit_median"] = round(float(np.median(np.divide(fits_ours, fits_implicit))), 4)
    result["fit_runs_s"] = {
        "ours": [round(x, 6) for x in fits_ours],
        "implicit": [round(x, 6) for x in fits_implicit],
    }
    result["fit_same_factors"] = bool(
        np.array_equal(mf.user_factors_, np.asarray(peer.user_factors))
        and np.array_equal(mf.item_factors_, np.asarray(peer.item_factors))
    )
    U, V = mf.user_factors_, mf.item_factors_
    del peer
    return U, V


def _time_topk(U, V, seen, seen_t, k, factors, repeats, stages, result, say) -> tuple:
    """Our two-way top-K against implicit's two recommend() calls and the bare matrix
    products, alternating their order each repeat; figures into ``result``. Returns the
    lists of the last repeat (ours, implicit's users, implicit's items) for the checks."""
    import numba

    from proactive_recs.estimators.topk import default_block_size, topk_both

    n_users, n_items = U.shape[0], V.shape[0]
    forward = _implicit_model(U, V, 0)
    backward = _implicit_model(V, U, 0)
    block = _numpy_block_users(n_items)
    threads = max(1, numba.get_num_threads())
    # users per product, per numba thread (as topk_both caps it)
    result["block_users"] = min(default_block_size(n_items), -(-n_users // threads))
    result["topk_threads"] = threads
    result["gemm_numpy_block_users"] = block

    say(f"two-way top-{k} ({repeats} repeat(s), alternating)")
    t_ours, t_impl_u, t_impl_i, t_gemm_np, t_gemm_thread = [], [], [], [], []
    top = ui = iu = None
    for r in range(repeats):
        order = ["ours", "implicit", "gemm"]
        if r % 2 == 1:
            order.reverse()
        for who in order:
            with stages(f"topk_{who}"):
                if who == "ours":
                    top = None
                    start = time.perf_counter()
                    top = topk_both(U, V, k_items=k, k_users=k, exclude=seen)
                    t_ours.append(time.perf_counter() - start)
                elif who == "implicit":
                    ui = iu = None
                    ui, iu, tu, ti = implicit_two_way(forward, backward, seen, seen_t, k)
                    t_impl_u.append(tu)
                    t_impl_i.append(ti)
                else:
                    t_gemm_np.append(gemm_floor(U, V, block))
                    t_gemm_thread.append(gemm_floor_per_thread(U, V))
    t_impl = [a + b for a, b in zip(t_impl_u, t_impl_i, strict=True)]
    t_gemm = [min(a, b) for a, b in zip(t_gemm_np, t_gemm_thread, strict=True)]
    ours_s, implicit_s, gemm_s = _min_of(t_ours), _min_of(t_impl), _min_of(t_gemm)
    result.update(
        {
            "ours_s": round(ours_s, 6),
            "implicit_s": round(implicit_s, 6),
            "implicit_users_s": round(_min_of(t_impl_u), 6),
            "implicit_items_s": round(_min_of(t_impl_i), 6),
            "gemm_s": round(gemm_s, 6),
            "gemm_per_thread_s": round(_min_of(t_gemm_thread), 6),
            "gemm_numpy_blocks_s": round(_min_of(t_gemm_np), 6),
            "ratio_vs_implicit": round(ours_s / implicit_s, 4),
            "ratio_vs_gemm": round(ours_s / gemm_s, 4),
            "topk_runs_s": {
                "ours": [round(x, 3) for x in t_ours],
                "implicit": [round(x, 3) for x in t_impl],
                "gemm": [round(x, 3) for x in t_gemm],
                "gemm_per_thread": [round(x, 3) for x in t_gemm_thread],
                "gemm_numpy_blocks": [round(x, 3) for x in t_gemm_np],
            },
            # Paired per-repeat ratios (measured seconds apart): robust to load drift.
            "ratio_vs_implicit_median": round(float(np.median(np.divide(t_ours, t_impl))), 4),
            "ratio_vs_gemm_median": round(float(np.median(np.divide(t_ours, t_gemm))), 4),
            "gemm_gflops": round(2.0 * n_users * n_items * factors / gemm_s / 1e9, 1),
        }
    )
    return top, ui, iu


def _finish_pipeline(
    result, raw, work, limit_mb, timeout_min, threads, extra_vars, say, selector="all", floor=None
):
    """Run the pipeline and read it against the floor. ``floor`` (a callable returning
    :func:`implicit_floor`'s figures) is timed right before and right after the timed
    build, and ``floor_s`` is the mean of the two (both kept, with a ratio for each)."""
    say(f"dbt pipeline, selector {selector} (own process)")
    limit = limit_mb
    if limit is None:  # leave 1.5 GB to everything else on the machine
        limit = mem_available_bytes() / MB - 1536
    timeout = None if timeout_min is None else 60.0 * timeout_min
    result.update(
        run_pipeline(
            raw,
            work,
            limit,
            timeout,
            threads=threads,
            extra_vars=extra_vars,
            selector=selector,
            around_timed_build=floor,
        )
    )
    around = [result.pop(key) for key in ("floor_before", "floor_after") if key in result]
    if around:
        # means of the unrounded seconds, rounded once: floor_s is then fit + recommend
        # and the mean of the two runs to within rounding (summing rounded parts drifted)
        fit_s = float(np.mean([f["fit_s"] for f in around]))
        recommend_s = float(np.mean([f["recommend_s"] for f in around]))
        result["floor_fit_s"] = round(fit_s, 2)
        result["floor_recommend_s"] = round(recommend_s, 2)
        result["floor_s"] = round(fit_s + recommend_s, 2)
        result.update({key: around[0][key] for key in ("floor_k", "floor_factors")})
        result["floor_runs_s"] = [round(f["fit_s"] + f["recommend_s"], 3) for f in around]
    peaks = [result["bench_peak_rss_mb"], result["generator_peak_rss_mb"]]
    result["peak_rss_mb"] = round(max(peaks + [result.get("pipeline_peak_rss_mb") or 0.0]), 1)
    # The figures of the pipeline benchmark, measured in this one run: the dbt build's wall
    # time against the floor (implicit alone), and the dbt process tree's peak memory.
    wall = result.get("pipeline_s")
    floor_s = result.get("floor_s")
    result["selector"] = selector
    result["wall_s"] = wall
    result["ratio_vs_floor"] = round(wall / floor_s, 2) if wall and floor_s else None
    if wall and result.get("floor_runs_s"):
        # against the floor timed just before and just after: how much the drift moved it
        result["ratio_vs_floor_runs"] = [round(wall / f, 2) for f in result["floor_runs_s"]]
    result["dbt_peak_rss_mb"] = result.get("pipeline_peak_rss_mb")
    result["slowest_nodes"] = [
        {key: node[key] for key in ("node", "seconds", "peak_rss_mb", "cores_busy") if key in node}
        for node in result.get("pipeline_slowest_nodes", [])[:5]
    ]
    result["machine"] = machine_info()
    return result


def implicit_floor(X, seen, factors: int, threads: int, seed: int, k: int) -> dict[str, Any]:
    """What a bare recommender costs on the same interactions: implicit's ALS fit plus its
    two batch ``recommend()`` calls (items per user, users per item). The pipeline's wall
    time is read against it (``ratio_vs_floor``)."""
    import scipy.sparse as sp

    start = time.perf_counter()
    model = _fit_implicit(X, factors, threads, seed)
    fit_s = time.perf_counter() - start
    backward = _implicit_model(model.item_factors, model.user_factors, threads)
    seen_t = sp.csr_matrix(seen.T)
    _, _, users_s, items_s = implicit_two_way(model, backward, seen, seen_t, k)
    # unrounded: the pipeline benchmark averages two of these and rounds once
    return {
        "fit_s": fit_s,
        "recommend_s": users_s + items_s,
        "floor_k": k,
        "floor_factors": factors,
    }


# ------------------------------------------------------------------------------ output


def _fmt(value, digits=2) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


TARGETS = {"ratio_fit": 1.1, "ratio_vs_implicit": 0.6, "ratio_vs_gemm": 2.0}


def format_table(r: dict[str, Any]) -> str:
    """A readable plain-text table of one result."""
    lines = [
        f"proactive_recs benchmark, size {r['size']}: {r['n_users']:,} users x "
        f"{r['n_items']:,} items, {r['n_interactions']:,} interactions ({r['nnz']:,} pairs); "
        f"factors {r['factors']}, K {r['k']}, "
        f"best of {r['fit_repeats']} fits / {r['repeats']} top-K runs",
        "",
    ]
    rows = [
        ("fit: ours (ImplicitMF)", r["fit_ours_s"], "s"),
        ("fit: implicit ALS alone", r["fit_implicit_s"], "s"),
        ("ratio_fit (target <= 1.1)", r["ratio_fit"], ""),
        ("top-K: ours (topk_both, both ways)", r["ours_s"], "s"),
        ("top-K: implicit recommend, users", r["implicit_users_s"], "s"),
        ("top-K: implicit recommend, items", r["implicit_items_s"], "s"),
        ("top-K: implicit total", r["implicit_s"], "s"),
        ("top-K: bare GEMM floor", r["gemm_s"], "s"),
        ("  products as topk_both does them", r.get("gemm_per_thread_s"), "s"),
        ("  numpy, 64 MB blocks", r.get("gemm_numpy_blocks_s"), "s"),
        ("ratio_vs_implicit (target <= 0.6)", r["ratio_vs_implicit"], ""),
        ("ratio_vs_gemm (target <= 2)", r["ratio_vs_gemm"], ""),
        ("correctness check passed", r["correct"], ""),
        ("topk numba compile, one-time (not timed above)", r.get("topk_compile_s"), "s"),
        ("topk numba cache load, one-time", r.get("topk_cache_load_s"), "s"),
        ("peak RSS, benchmark process", r["bench_peak_rss_mb"], "MB"),
        ("peak RSS, generator process", r["generator_peak_rss_mb"], "MB"),
    ]
    if "pipeline_s" in r:
        earlier = " (earlier run)" if r.get("pipeline_from_previous_run") else ""
        rows += [
            (f"dbt build wall time{earlier}", r["pipeline_s"], "s"),
            ("peak RSS, dbt", r["pipeline_peak_rss_mb"], "MB"),
            ("dbt exit code", r["pipeline_exit_code"], ""),
        ]
    rows.append(("peak RSS, overall", r["peak_rss_mb"], "MB"))
    width = max(len(label) for label, _, _ in rows)
    for label, value, unit in rows:
        text = _fmt(value, 3 if not unit else 2)
        lines.append(f"  {label:<{width}}  {text:>12} {unit}")
    lines.append("")
    lines.append("  stage                       seconds   peak RSS MB")
    for name, seconds in r["stage_s"].items():
        lines.append(
            f"  {name:<24} {seconds:>10.2f}   {_fmt(r['stage_peak_rss_mb'].get(name), 0):>11}"
        )
    if r.get("topk_breakdown"):
        lines.append("")
        lines.append(
            f"  topk_both wall time by phase ({r['topk_profile_users']:,} users; "
            "products timed alone right after):"
        )
        for key, value in r["topk_breakdown"].items():
            lines.append(f"    {key:<24} {value:>9.2f} s")
    m = r["machine"]
    lines.append("")
    lines.append(
        f"  machine: {m['cpu_model']}, {m['cores']} cores, {m['memory_total_gb']} GB; "
        f"Python {m['python']}, numpy {m['numpy']}, implicit {m['implicit']}"
    )
    return "\n".join(lines)


def format_pipeline_table(r: dict[str, Any]) -> str:
    """Plain-text figures of a ``--pipeline-only`` run (no fit / top-K timings)."""
    if "pipeline_s" not in r:  # the untimed set-up failed: say so, with its log's tail
        return "\n".join(
            [
                f"proactive_recs dbt pipeline, size {r['size']}: the set-up "
                f"({r.get('pipeline_setup')}) failed after {r.get('pipeline_setup_s')} s, "
                f"peak {r.get('pipeline_setup_peak_rss_mb')} MB, exit "
                f"{r.get('pipeline_setup_exit_code')}",
                *r.get("pipeline_log_tail", []),
            ]
        )
    lines = [
        f"proactive_recs dbt pipeline, size {r['size']}: {r['n_users']:,} users x "
        f"{r['n_items']:,} items, {r['n_interactions']:,} interactions ({r['nnz']:,} pairs)",
        "",
        f"  vars on top of vars/demo.yml: {json.dumps(r.get('pipeline_vars') or {})}",
        f"  generator                {r['generate_s']:>10.1f} s  "
        f"{r['generator_peak_rss_mb']:>9,.0f} MB",
        f"  load into DuckDB         {r['pipeline_load_s']:>10.1f} s",
        f"  dbt build ({r['pipeline_threads']} thread(s))   {r['pipeline_s']:>10.1f} s  "
        f"{r['pipeline_peak_rss_mb']:>9,.0f} MB peak RSS, exit {r['pipeline_exit_code']}"
        + (
            f", {r['pipeline_cores_busy']:.2f} cores busy on average"
            if r.get("pipeline_cores_busy") is not None
            else ""
        ),
    ]
    if r.get("pipeline_selector", "all") != "all":
        lines.insert(3, f"  selector: {r['pipeline_selector']}")
    if r.get("pipeline_setup_s") is not None:
        lines.append(
            f"  (set-up first, untimed: {r['pipeline_setup']}  {r['pipeline_setup_s']:.1f} s, "
            f"{r.get('pipeline_setup_peak_rss_mb') or 0:,.0f} MB peak RSS)"
        )
    if r.get("floor_s"):
        lines.append(
            f"  floor: implicit fit + 2 recommend() {r['floor_s']:>6.1f} s  "
            f"(fit {r['floor_fit_s']:.1f} s, k {r['floor_k']}); "
            f"ratio_vs_floor {_fmt(r.get('ratio_vs_floor'))}"
        )
    if r.get("floor_runs_s"):
        lines.append(
            "  (floor timed right before and right after the timed build: "
            + " s, ".join(f"{f:.1f}" for f in r["floor_runs_s"])
            + " s; ratios "
            + ", ".join(_fmt(x) for x in r.get("ratio_vs_floor_runs") or [])
            + ")"
        )
    if r.get("pipeline_killed_over_limit") or r.get("pipeline_killed_timeout"):
        why = "memory limit" if r.get("pipeline_killed_over_limit") else "timeout"
        lines.append(
            f"  killed by the benchmark ({why}); running: "
            f"{', '.join(r.get('pipeline_running_when_stopped') or []) or '-'}"
        )
    if r.get("pipeline_slowest_nodes"):
        lines += [
            "",
            "  slowest nodes                                   seconds   peak RSS MB  cores busy",
        ]
        for row in r["pipeline_slowest_nodes"]:
            node = row["node"].split(".")[-1]
            lines.append(
                f"  {node:<44} {row['seconds']:>10.1f}   "
                f"{_fmt(row.get('peak_rss_mb'), 0):>11}  {_fmt(row.get('cores_busy'), 2):>10}"
                f"  {row['status']}"
            )
    return "\n".join(lines)


def merge_pipeline_run(previous: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    """``previous`` (a saved full benchmark) with the dbt figures of ``result`` (a
    ``--pipeline-only`` run), which are marked as coming from that run (``pipeline_run``)."""
    merged = {k: v for k, v in previous.items() if not k.startswith("pipeline_")}
    merged.update({k: v for k, v in result.items() if k.startswith("pipeline_")})
    merged["pipeline_run"] = {
        "command": result.get("command"),
        "generate_s": result.get("generate_s"),
        "generator_peak_rss_mb": result.get("generator_peak_rss_mb"),
        "load_average_1m_start": result.get("load_average_1m_start"),
        "load_average_1m_end": (result.get("machine") or {}).get("load_average_1m"),
    }
    merged["peak_rss_mb"] = round(
        max(previous.get("peak_rss_mb", 0.0), result.get("pipeline_peak_rss_mb", 0.0)), 1
    )
    return merged


def _gemm_variant_rows(r: dict[str, Any]) -> list[str]:
    if "gemm_per_thread_s" not in r:
        return []
    return [
        f"| - products as topk_both computes them (per numba thread, 1 BLAS thread each, "
        f"{r['block_users']:,} users at a time) | {r['gemm_per_thread_s']:.2f} s | |",
        f"| - numpy, {r['gemm_numpy_block_users']:,}-user blocks (64 MB), threaded BLAS | "
        f"{r['gemm_numpy_blocks_s']:.2f} s | |",
    ]


def _jit_rows(r: dict[str, Any]) -> list[str]:
    if "topk_compile_s" not in r:
        return []
    return [
        f"| topk numba kernels: compile, one-time, fresh process (not in the timings above) | "
        f"{r['topk_compile_s']:.2f} s | |",
        f"| topk numba kernels: load from the on-disk cache, fresh process | "
        f"{r['topk_cache_load_s']:.2f} s | |",
    ]


def format_markdown(r: dict[str, Any]) -> str:
    """Short markdown summary with the machine description (bench/results/<size>.md)."""
    m = r["machine"]
    blas = ", ".join(f"{b['internal_api']} {b['version']}" for b in m["blas"]) or "unknown"

    def verdict(key):
        return "met" if r[key] <= TARGETS[key] else "missed"

    lines = [
        f"# Benchmark, size {r['size']}",
        "",
        f"{r['n_users']:,} users x {r['n_items']:,} items, {r['n_interactions']:,} "
        f"interactions ({r['nnz']:,} distinct pairs); {r['factors']} factors, K = {r['k']}, "
        f"best of {r['fit_repeats']} fits and {r['repeats']} top-K runs, alternating "
        f"the order. Produced by `{r.get('command', 'python -m proactive_recs_tools.bench')}`.",
        "",
        "| figure | value | target |",
        "| --- | ---: | --- |",
        f"| fit, ours (ImplicitMF) | {r['fit_ours_s']:.2f} s | |",
        f"| fit, implicit ALS alone | {r['fit_implicit_s']:.2f} s | |",
        f"| ratio_fit | {r['ratio_fit']:.3f} | <= 1.1 ({verdict('ratio_fit')}) |",
        f"| top-K both ways, ours | {r['ours_s']:.2f} s | |",
        f"| top-K, implicit (users + items) | {r['implicit_s']:.2f} s "
        f"({r['implicit_users_s']:.2f} + {r['implicit_items_s']:.2f}) | |",
        f"| bare GEMM floor | {r['gemm_s']:.2f} s ({r['gemm_gflops']} GFLOP/s) | |",
        *_gemm_variant_rows(r),
        f"| ratio_vs_implicit | {r['ratio_vs_implicit']:.3f} | <= 0.6 "
        f"({verdict('ratio_vs_implicit')}) |",
        f"| ratio_vs_gemm | {r['ratio_vs_gemm']:.3f} | <= 2 ({verdict('ratio_vs_gemm')}) |",
        f"| correctness (sample vs implicit and exact) | "
        f"{'passed' if r['correct'] else 'FAILED'} | |",
        *_jit_rows(r),
        f"| peak RSS, benchmark process | {r['bench_peak_rss_mb']:,.0f} MB | |",
        f"| peak RSS, generator process | {r['generator_peak_rss_mb']:,.0f} MB | |",
    ]
    previous = r.get("pipeline_from_previous_run")
    if "pipeline_s" in r:
        earlier = "earlier run, see below; " if previous else ""
        lines += [
            f"| dbt build ({earlier}load {r['pipeline_load_s']:.1f} s before it) | "
            f"{r['pipeline_s']:.1f} s, exit {r['pipeline_exit_code']} | |",
            f"| peak RSS, dbt | {r['pipeline_peak_rss_mb']:,.0f} MB | |",
        ]
        if r.get("pipeline_killed_over_limit") or r.get("pipeline_killed_timeout"):
            why = (
                f"over the {r['pipeline_memory_limit_mb']:,} MB memory limit"
                if r.get("pipeline_killed_over_limit")
                else "timeout"
            )
            running = ", ".join(r.get("pipeline_running_when_stopped") or []) or "-"
            lines.append(f"| dbt killed by the benchmark | {why} | |")
            if r.get("pipeline_nodes_total") is not None:
                lines.append(
                    f"| dbt nodes finished before | {r.get('pipeline_nodes_finished')} of "
                    f"{r.get('pipeline_nodes_total')} (running: {running}) | |"
                )
    if r.get("pipeline_vars"):
        lines += ["", f"dbt vars on top of vars/demo.yml: `{json.dumps(r['pipeline_vars'])}`."]
    separate = r.get("pipeline_run")
    if separate:
        lines += [
            "",
            f"The dbt figures come from a separate run, `{separate['command']}` (generator "
            f"{separate['generate_s']:.0f} s, {separate['generator_peak_rss_mb']:,.0f} MB; "
            f"1-min load average {separate['load_average_1m_start']} at its start and "
            f"{separate['load_average_1m_end']} at its end); all other figures come from the "
            "run named at the top.",
        ]
    if previous:
        lines += [
            "",
            "The dbt build was not re-run: its figures (the dbt rows above"
            + (", the slowest nodes below" if r.get("pipeline_slowest_nodes") else "")
            + f") come from the earlier run `{previous.get('command')}`"
            + (f" ({previous['note']})" if previous.get("note") else "")
            + "; all other figures come from this run.",
        ]
    lines += [
        "",
        "Stages of the benchmark process:",
        "",
        "| stage | seconds (all repeats) | peak RSS MB |",
        "| --- | ---: | ---: |",
    ]
    for name, seconds in r["stage_s"].items():
        lines.append(f"| {name} | {seconds:.2f} | {_fmt(r['stage_peak_rss_mb'].get(name), 0)} |")
    if r.get("topk_breakdown"):
        lines += [
            "",
            f"topk_both wall time by phase (one more call on {r['topk_profile_users']:,} "
            "users; `products_s` = the kernel's products timed alone right after, "
            "`selection_s` = `kernel_s` - `products_s`):",
            "",
            "| phase | seconds |",
            "| --- | ---: |",
        ]
        for key, value in r["topk_breakdown"].items():
            lines.append(f"| {key} | {value:.2f} |")
    if r.get("pipeline_slowest_nodes"):
        lines += [
            "",
            "Slowest dbt nodes (seconds from run_results.json; peak RSS of the dbt process "
            "and the machine's mean busy cores, both sampled while the node ran; other nodes "
            "may overlap with 2 threads):",
            "",
            "| node | seconds | peak RSS MB | cores busy | status |",
            "| --- | ---: | ---: | ---: | --- |",
        ]
        for row in r["pipeline_slowest_nodes"]:
            lines.append(
                f"| `{row['node']}` | {row['seconds']:.1f} | "
                f"{_fmt(row.get('peak_rss_mb'), 0)} | {_fmt(row.get('cores_busy'), 2)} | "
                f"{row['status']} |"
            )
    lines += [
        "",
        f"Machine: {m['cpu_model']}, {m['cores']} cores ({m['cores_usable']} usable), "
        f"{m['memory_total_gb']} GB RAM ({m['memory_available_gb']} GB available at the end), "
        f"1-min load average {r['load_average_1m_start']} at the start and "
        f"{m['load_average_1m']} at the end (the machine was shared); {m['os']}; Python "
        f"{m['python']}, numpy {m['numpy']}, scipy {m['scipy']}, pandas {m['pandas']}, "
        f"implicit {m['implicit']}, numba {m.get('numba', '-')}, duckdb {m['duckdb']}, "
        f"dbt-core {m['dbt_core']}; BLAS {blas}.",
        "",
        "Memory: MB = MiB (2^20 bytes) and GB = GiB throughout, the RAM above included; the "
        "`--pipeline-mem-limit-gb 12` watchdog kills dbt above 12,288 MB. The dbt build's peak "
        "RSS is the kernel's maximum for the process (wait4); a node's is the largest sample "
        "(every ~0.5 s) taken while it ran.",
        "",
    ]
    return "\n".join(lines)


def carry_pipeline_over(result: dict[str, Any], previous: dict[str, Any]) -> dict[str, Any]:
    """``result`` with the dbt figures (``pipeline_*``) of ``previous`` when ``result`` has
    none (a run without ``--pipeline`` saved over one with it), marked as such in
    ``pipeline_from_previous_run`` (the earlier run's command). Otherwise ``result``."""
    if "pipeline_s" in result or "pipeline_s" not in previous:
        return result
    merged = dict(result)
    merged.update({key: v for key, v in previous.items() if key.startswith("pipeline_")})
    merged["pipeline_from_previous_run"] = previous.get("pipeline_from_previous_run") or {
        "command": previous.get("command"),
        "note": "carried over by a later run without --pipeline",
    }
    return merged


# -------------------------------------------------------------------------------- main


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m proactive_recs_tools.bench",
        description="Benchmark the MF fit, the two-way top-K and optionally the dbt pipeline.",
    )
    parser.add_argument("--size", choices=sorted(SIZES), help="S, M or L")
    parser.add_argument("--json", action="store_true", help="last stdout line: one JSON object")
    parser.add_argument("--k", type=int, default=DEFAULT_K, help="list length both ways")
    parser.add_argument("--factors", type=int, default=DEFAULT_FACTORS)
    parser.add_argument("--pipeline", action="store_true", help="also run the dbt build")
    parser.add_argument(
        "--repeats", type=int, default=None, help="default: 5 for S, 3 for M, 1 for L"
    )
    parser.add_argument(
        "--fit-threads",
        type=int,
        default=0,
        help="ALS threads of both fits and of the floor (default 0 = all cores, the package's"
        " num_threads default)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="split one more topk_both call into phases"
    )
    parser.add_argument(
        "--profile-users", type=int, default=None, help="profile on the first N users only"
    )
    parser.add_argument(
        "--pipeline-mem-limit-gb",
        type=float,
        default=None,
        help="kill dbt above this RSS (default: MemAvailable at its start - 1.5 GB)",
    )
    parser.add_argument(
        "--pipeline-timeout-min", type=float, default=None, help="kill dbt after this long"
    )
    parser.add_argument(
        "--pipeline-threads",
        type=int,
        default=1,
        help="dbt threads (default 1: the heavy Python models run one after another, so "
        "their memory does not add up)",
    )
    parser.add_argument(
        "--pipeline-vars",
        type=Path,
        default=None,
        help="YAML of dbt vars laid over vars/demo.yml for the dbt build (e.g. vars/bench_L.yml)",
    )
    parser.add_argument(
        "--pipeline-only",
        action="store_true",
        help="generate the data and run the dbt build only (no fit / top-K timings); with "
        "--save, its figures are merged into the saved <size>.json",
    )
    parser.add_argument(
        "--pipeline-selector",
        choices=PIPELINE_SELECTORS,
        default="all",
        help="what the dbt build runs: all (default), daily or weekly (selectors.yml)",
    )
    parser.add_argument("--save", type=Path, default=None, help="write <size>.json and .md here")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch dir (kept)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch dir")
    parser.add_argument("--seed", type=int, default=0)
    # Hidden: a custom size, and the generator process's entry point.
    parser.add_argument("--users", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--items", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--transactions", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--_generate", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--_all-tables", action="store_true", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args._generate is not None:
        _generate_child(
            args._generate,
            args.users,
            args.items,
            args.transactions,
            args.seed,
            args._all_tables,
        )
        return 0
    custom = (args.users, args.items, args.transactions)
    if any(v is not None for v in custom):
        if args.size is not None or any(v is None for v in custom):
            parser.error("give either --size or all of --users, --items, --transactions")
        spec = SizeSpec("custom", args.users, args.items, args.transactions, 1, 1)
    elif args.size is None:
        parser.error("--size is required")
    else:
        spec = SIZES[args.size]
    try:
        result = run(
            spec,
            k=args.k,
            factors=args.factors,
            pipeline=args.pipeline,
            repeats=args.repeats,
            fit_threads=args.fit_threads,
            seed=args.seed,
            profile=args.profile,
            profile_users=args.profile_users,
            workdir=args.workdir,
            keep=args.keep,
            pipeline_mem_limit_mb=(
                None if args.pipeline_mem_limit_gb is None else args.pipeline_mem_limit_gb * 1024
            ),
            pipeline_timeout_min=args.pipeline_timeout_min,
            pipeline_threads=args.pipeline_threads,
            pipeline_vars=read_vars_file(args.pipeline_vars),
            pipeline_only=args.pipeline_only,
            pipeline_selector=args.pipeline_selector,
            log=sys.stderr,
        )
    except InsufficientMemory as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_REFUSED
    shown = sys.argv[1:] if argv is None else argv
    result["command"] = " ".join(["python -m proactive_recs_tools.bench", *map(str, shown)])
    if args.save is not None:
        args.save.mkdir(parents=True, exist_ok=True)
        saved = args.save / f"{spec.name}.json"
        markdown_path = args.save / f"{spec.name}.md"
        if args.pipeline_only and args.pipeline_selector != "all":
            # one file per size and selector, never merged: pipeline_<size>_<selector>.json
            saved = args.save / f"pipeline_{spec.name}_{args.pipeline_selector}.json"
            markdown_path = saved.with_suffix(".md")
            table = format_pipeline_table(result)
            markdown = (
                f"# dbt pipeline, size {spec.name}, selector {args.pipeline_selector}\n\n"
                f"```\n{table}\n```\n"
            )
        elif args.pipeline_only:
            if saved.exists():
                result = merge_pipeline_run(json.loads(saved.read_text()), result)
                markdown = format_markdown(result)
            else:
                table = format_pipeline_table(result)
                markdown = f"# dbt pipeline, size {spec.name}\n\n```\n{table}\n```\n"
        else:
            if saved.exists():
                try:
                    result = carry_pipeline_over(result, json.loads(saved.read_text()))
                except (ValueError, OSError) as exc:
                    print(f"not carrying dbt figures over from {saved}: {exc}", file=sys.stderr)
            markdown = format_markdown(result)
        saved.write_text(json.dumps(result, indent=2) + "\n")
        markdown_path.write_text(markdown)
    print(
        format_pipeline_table(result)
        if args.pipeline_only and "ours_s" not in result
        else format_table(result)
    )
    if args.json:
        print(json.dumps(result, sort_keys=True))
    return 0 if result.get("pipeline_exit_code", 0) == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
