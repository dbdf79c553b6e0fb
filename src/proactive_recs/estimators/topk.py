"""One-pass top-K in both directions: items per user and users per item.

Scores are dot products of user and item vectors (MF factors, or any vectors whose
dot product is the ranking score, e.g. factors augmented with bias columns). Masked-out
users and items are dropped up front (they get no list and appear in no list), so only
active users x active items are ever scored; the full users x items score matrix never
exists.

The work is one compiled (numba) kernel. The active users are split into one contiguous
range per numba thread ("part"); each part walks its range in increasing order, a chunk
of users at a time: a single-threaded BLAS product ``chunk x active items`` into the
part's own buffer, then, per row of the chunk, while it is still in cache,

* the boosts and the row's exclusions are applied in place,
* the row's own top ``k_items`` is selected (final once the row is done),
* every entry is offered to the part's running top ``k_users`` of its item.

Candidates are kept in buffers of about ``2 k`` uint64 keys that sort by (score desc,
index asc); a full buffer is shrunk to a set holding its best ``k`` and the shrink sets
the list's pruning threshold. Rows are scanned in increasing item order and every part
sees its users in increasing order, so an entry equal to the threshold always has a
higher index than the ``k`` kept ones and loses: only a strictly greater score enters.
The comparisons with both thresholds run 64 entries at a time into a bit mask
(vectorised), and only the set bits are visited. A row starts from a threshold taken
from the maxima of runs of the row (a cheap lower bound of its ``k``-th best); an
item's threshold also rises to what the other parts have already established. After
the last chunk the parts' buffers of every item are merged. ``-inf`` and NaN never pass
a strict comparison and are never selected; lists with fewer finite candidates than
``k`` are padded. With a ``transform`` (arbitrary Python) the products and the
transform run in numpy on blocks of users and the kernel selects from the blocks.

Peak memory: one chunk of scores per thread (about 8 MB by default), per thread a
buffer of ``2 k_users + 16`` keys (8 bytes) per item, and the outputs.

While the kernel runs, BLAS is limited to one thread (threadpoolctl; the numba threads
already occupy the cores, see ``numba.set_num_threads``), and calls from several Python
threads of one process take turns.

The kernels are compiled on first use (10-20 s) and cached on disk next to this module
(numba ``cache=True``; later processes load them in well under a second); when no cache
location is writable they are compiled once per process instead, with a warning.

Boosting rule (documented choice): with ``b = user_boost[u] * item_boost[i]``,
``boosted = s * b`` when ``s >= 0`` and ``s / b`` when ``s < 0``. The map is continuous
and increasing in ``s`` for a fixed ``b`` (so boosts never reorder a user's equally
boosted candidates) and increasing in ``b`` for a fixed ``s`` whatever the sign of
``s``: a boost > 1 always moves a candidate up, < 1 always moves it down. Plain
multiplication would push a negative score *down* when boosted. When scores are
probabilities (the served two-stage model) the rule is plain multiplication, i.e. the
boost scales the expected value. Boosts are clipped below at ``MIN_BOOST`` so that a
boost of 0 buries a candidate without turning it into an exclusion.

Ties are broken deterministically: the lower index wins (item index in a user's list,
user index in an item's list). Results do not depend on the block size or the number
of threads.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numba
import numpy as np
import scipy.sparse as sp
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic

from proactive_recs.estimators.threads import single_threaded_blas

__all__ = [
    "MIN_BOOST",
    "TopK",
    "apply_boost",
    "default_block_size",
    "distinct_pairs",
    "empty_topk",
    "merge_topk",
    "owner_blocks",
    "topk_both",
    "topk_pairs",
    "topk_rows",
    "topk_shared_score",
]

MIN_BOOST = 1e-6
_TARGET_CHUNK_BYTES = 8 << 20
_MIN_CHUNK_ROWS = 128


def default_block_size(n_items: int) -> int:
    """Users per product (per thread) when ``block_size`` is not given: about 8 MB of
    float32 scores, so that the threads' chunks are still in cache (32 MB L3 on the
    benchmark machine, shared by 2 threads) when the kernel reads them back, but at
    least 128 users: every product repacks all the item factors, which costs a third
    of the product's time at 64 users with 64 factors (measured at 18k items: 64 users
    slower than 128 and 256; 16 and 32 slower still)."""
    return max(_MIN_CHUNK_ROWS, _TARGET_CHUNK_BYTES // (4 * max(int(n_items), 1)))


@dataclass(frozen=True)
class TopK:
    """Result of :func:`topk_both`. Index arrays are padded with -1, scores with -inf."""

    user_items: np.ndarray  # (n_users, k_items) int64 item indices, best first
    user_item_scores: np.ndarray  # (n_users, k_items) float32
    item_users: np.ndarray  # (n_items, k_users) int64 user indices, best first
    item_user_scores: np.ndarray  # (n_items, k_users) float32


def apply_boost(scores: np.ndarray, boost) -> np.ndarray:
    """Sign-aware boost: ``s * b`` for ``s >= 0`` and ``s / b`` for ``s < 0`` (see module doc)."""
    b = np.maximum(np.asarray(boost, dtype=scores.dtype), MIN_BOOST)
    return np.where(scores >= 0, scores * b, scores / b).astype(scores.dtype, copy=False)


# ------------------------------------------------------------------------ the kernel


def _jit(signature=None, **options):
    """``numba.njit(cache=True, **options)``, without the cache when numba finds no
    writable cache directory (it raises at decoration time then).

    ``signature``: the one type signature to compile, at import. The helpers called from
    other compiled functions take one: otherwise numba compiles a helper again for every
    argument type its callers pass (an int64 or uint64 index, a literal 0 or 16: ``_nth``
    8 times, ``_best_sorted`` 6 times), and compiling is what a fresh process spends its
    first minute on (each time where there is no cache to read, e.g. a package imported
    from a zip, as Snowflake procedures import it)."""

    def decorate(fn):
        given = () if signature is None else (signature,)
        try:
            return numba.njit(*given, cache=True, **options)(fn)
        except RuntimeError as exc:  # "cannot cache function ...: no locator available"
            warnings.warn(
                f"numba cannot cache {fn.__name__} ({exc}); compiling it in every process",
                RuntimeWarning,
                stacklevel=2,
            )
            return numba.njit(*given, cache=False, **options)(fn)

    return decorate


_NEG_INF = np.float32(-np.inf)
_POS_INF = np.float32(np.inf)
_MIN_BOOST32 = np.float32(MIN_BOOST)
_LOW32 = np.uint64(0xFFFFFFFF)
_SIGN32 = np.uint64(0x80000000)
_SHIFT32 = np.uint64(32)
_SEGMENT = 64  # entries compared at once into a bit mask
_SAMPLE = 16  # keys sampled for the pivot of a buffer compaction
_SHORT = 64  # lists up to this long are insertion-sorted
_ORDERED_POS_INF = np.int32(0x7F800000)
_ORDERED_NEG_INF = np.int32(-0x7F800001)

# Hot loops index with unsigned integers: numba then emits no negative-index wraparound
# code, which would keep LLVM from vectorising them. They also index 2-D arrays with
# (row, column) instead of taking row views, which would cost reference counting.


@_jit(inline="always")
def _u(i):
    return np.uint64(i)


# Candidates are held as uint64 keys that sort ascending in the order (score desc,
# index asc): an order-reversing bit pattern of the float32 score in the high 32 bits,
# the index in the low 32 bits. Every key of a list is distinct (distinct indices).


@_jit(inline="always")
def _key(s, x):
    bits = np.uint64(np.float32(s + np.float32(0)).view(np.uint32))  # -0 -> +0
    ascending = (bits ^ _LOW32) if bits & _SIGN32 else (bits | _SIGN32)
    return ((ascending ^ _LOW32) << _SHIFT32) | np.uint64(x)


@_jit(inline="always")
def _key_score(key):
    ascending = (key >> _SHIFT32) ^ _LOW32
    bits = (ascending ^ _SIGN32) if ascending & _SIGN32 else (ascending ^ _LOW32)
    return np.uint32(bits).view(np.float32)


@_jit(inline="always")
def _key_index(key):
    return np.int64(key & _LOW32)


@_jit("void(uint64[:, ::1], int64, int64, int64)")
def _nth(a, r, n, k):
    """Reorder ``a[r, :n]`` (distinct keys) so that ``a[r, :k]`` are its ``k`` smallest
    and ``a[r, k - 1]`` the largest of them (quickselect, median-of-3 pivots)."""
    lo, hi, target = 0, n - 1, k - 1
    while lo < hi:
        x, y, z = a[r, lo], a[r, (lo + hi) >> 1], a[r, hi]
        pivot = max(min(x, y), min(max(x, y), z))
        i, j = lo, hi
        while i <= j:
            while a[r, i] < pivot:
                i += 1
            while a[r, j] > pivot:
                j -= 1
            if i <= j:
                a[r, i], a[r, j] = a[r, j], a[r, i]
                i += 1
                j -= 1
        if target <= j:
            hi = j
        elif target >= i:
            lo = i
        else:
            break


@_jit("int64(uint64[:, ::1], int64, int64, int64)")
def _best_sorted(a, r, n, k):
    """Put the ``min(n, k)`` smallest of the keys ``a[r, :n]`` first, in increasing
    order; returns ``min(n, k)``. (Insertion sort for the short lists it usually gets:
    about twice as fast as a selection followed by numba's sort at 60 keys.)"""
    if n > k and (n > _SHORT or k > _SHORT):
        _nth(a, r, n, k)
        n = k
    if n > _SHORT:
        a[r, :n].sort()
        return n
    for i in range(1, n):
        x = a[r, i]
        j = i - 1
        while j >= 0 and a[r, j] > x:
            a[r, j + 1] = a[r, j]
            j -= 1
        a[r, j + 1] = x
    return min(n, k)


@_jit("Tuple((int64, float32))(uint64[:, ::1], int64, int64, int64)")
def _compact(a, r, n, k):
    """Shrink the ``n > k`` keys buffered in ``a[r]`` to a set that still holds the ``k``
    best; returns (new length, new pruning threshold).

    The pivot is a key of a 16-key sample, of the rank at which about ``k + n / 16``
    keys of the whole buffer lie at or below it (cheap, and a few more than ``k`` kept
    keys are harmless); the keys above it are dropped, as the at least ``k`` kept keys
    all beat them. The threshold is the pivot's score: a later entry has a higher index
    than every kept key, so it can only enter with a strictly greater score. Falls back
    to an exact selection of ``k`` when the pivot would keep too much.
    """
    step = n // _SAMPLE
    for j in range(_SAMPLE):  # the sample to the front
        a[r, j], a[r, j * step] = a[r, j * step], a[r, j]
    q = min(_SAMPLE, (_SAMPLE * k + n - 1) // n + 1)
    _nth(a, r, _SAMPLE, q)
    pivot = a[r, q - 1]
    limit = (n + k) // 2
    while True:
        count = 0
        for j in range(n):
            count += a[_u(r), _u(j)] <= pivot
        if count >= k or q == _SAMPLE:
            break
        nxt = a[r, q]  # the next sample key up: the smallest of a[r, q:_SAMPLE]
        for j in range(q + 1, _SAMPLE):
            nxt = min(nxt, a[r, j])
        pivot = nxt
        q += 1
    if count < k or count > limit:
        _nth(a, r, n, k)
        return k, _key_score(a[r, k - 1])
    w = 0
    for j in range(n):
        x = a[r, j]
        a[r, w] = x
        w += x <= pivot
    return w, _key_score(pivot)


@intrinsic
def _ctz(typingctx, x):
    """Count of trailing zero bits of a non-zero uint64 (LLVM ``cttz``)."""

    def codegen(context, builder, signature, args):
        return builder.cttz(args[0], ir.Constant(ir.IntType(1), 1))

    return types.uint64(types.uint64), codegen


@_jit(inline="always")
def _ordered_bits(x):
    """int32 bits of a float32 mapped so that integer order is float order (-0 just below
    +0, NaN outside [-inf, +inf]); the map is its own inverse."""
    return x ^ ((x >> np.int32(31)) & np.int32(0x7FFFFFFF))


@_jit("float32(int32[:, ::1], int64, int64, int32[:, ::1], int64)")
def _row_floor(bits, r, k, maxima, t):
    """A threshold below which no entry of row ``r`` can be among its ``k`` best, or -inf
    (``bits``: the int32 view of the score block; ``maxima[t]``: scratch).

    The row is cut into runs of a multiple of 16 entries (at least ``k`` runs, about
    ``2 k`` when the row is long enough); the ``k``-th largest of the runs' maxima, being
    ``k`` distinct entries of the row, cannot exceed the row's ``k``-th largest. The
    maxima are taken on order-preserving integer bits, which vectorises whatever NaN the
    row holds; a run whose maximum is a NaN is dropped. The result is returned one
    float32 step lower, so that entries equal to it still pass a strict ``>``.
    """
    n_cols = bits.shape[1]
    width = 16 * max(1, n_cols // (32 * k))
    n_runs = min(n_cols // width, maxima.shape[1])
    if n_runs < k:
        return _NEG_INF
    row = _u(r)
    for b in range(n_runs):
        base = _u(b * width)
        m = _ORDERED_NEG_INF
        for j in range(width):
            m = max(m, _ordered_bits(bits[row, base + _u(j)]))
        maxima[t, b] = m if m <= _ORDERED_POS_INF else _ORDERED_NEG_INF
    lo, hi, target = 0, n_runs - 1, k - 1  # quickselect: k-th largest
    while lo < hi:
        pivot = maxima[t, (lo + hi) >> 1]
        i, j = lo, hi
        while i <= j:
            while maxima[t, i] > pivot:
                i += 1
            while maxima[t, j] < pivot:
                j -= 1
            if i <= j:
                maxima[t, i], maxima[t, j] = maxima[t, j], maxima[t, i]
                i += 1
                j -= 1
        if target <= j:
            hi = j
        elif target >= i:
            lo = i
        else:
            break
    kth = np.int32(_ordered_bits(maxima[t, target])).view(np.float32)
    if kth == _NEG_INF:
        return _NEG_INF
    return np.float32(np.nextafter(kth, _NEG_INF))


@_jit()
def _select_rows(
    S, bits, r0, c0, c1, t, row_ids, col_ids, ub, ib, has_boost, ex_ptr, ex_idx, k_rows,
    out_idx, out_val, row_keys, maxima, col_thr, col_own, col_keys, col_n, k_cols,
):  # fmt: skip
    """Select from rows ``r0 ..`` of ``S``, the scores of users ``c0 .. c1 - 1``, in thread
    part ``t``: per row, apply the boosts and the exclusions, select the row's best
    ``k_rows`` into ``out_*[row_ids[u]]`` and offer its entries to the column buffers.

    The row's threshold starts at :func:`_row_floor`. Most entries beat neither
    threshold: 64 entries at a time are compared at once into a bit mask (the fixed
    trip count lets LLVM vectorise the comparisons) and only the set bits are visited.
    (One call per chunk of rows, written out: every call of a compiled function and
    every inlined helper with array arguments costs atomic reference counting, on
    arrays shared by the threads.)
    """
    n_cols = S.shape[1]
    cap_rows, cap_cols = row_keys.shape[1], col_keys.shape[1]
    part = _u(t)
    for u in range(c0, c1):
        r = r0 + u - c0
        row = _u(r)
        if has_boost:
            bu = ub[u]
            for i in range(n_cols):
                s = S[row, _u(i)]
                boost = max(bu * ib[_u(i)], _MIN_BOOST32)
                S[row, _u(i)] = s * boost if s >= 0 else s / boost
        for p in range(ex_ptr[u], ex_ptr[u + 1]):
            S[r, ex_idx[p]] = _NEG_INF
        n = 0
        row_thr = _row_floor(bits, r, k_rows, maxima, t) if k_rows > 0 else _POS_INF
        for i0 in range(0, n_cols, _SEGMENT):
            mask = np.uint64(0)
            if i0 + _SEGMENT <= n_cols:
                base = _u(i0)
                for j in range(_SEGMENT):
                    hit = S[row, base + _u(j)] > min(row_thr, col_thr[part, base + _u(j)])
                    mask |= np.uint64(hit) << _u(j)  # (thresholds are never NaN)
            else:  # the row's last, shorter segment
                for i in range(i0, n_cols):
                    if S[r, i] > row_thr or S[r, i] > col_thr[t, i]:
                        mask |= np.uint64(1) << _u(i - i0)
            while mask:
                i = i0 + np.int64(_ctz(mask))
                mask &= mask - np.uint64(1)
                s = S[r, i]
                if s > row_thr:
                    row_keys[t, n] = _key(s, i)
                    n += 1
                    if n == cap_rows:
                        n, row_thr = _compact(row_keys, t, n, k_rows)
                if s > col_thr[t, i]:
                    c = t * n_cols + i
                    m = col_n[t, i]
                    col_keys[c, m] = _key(s, u)
                    m += 1
                    if m == cap_cols:
                        m, own = _compact(col_keys, c, m, k_cols)
                        col_own[t, i] = own
                        col_thr[t, i] = max(col_thr[t, i], own)
                    col_n[t, i] = m
        if k_rows > 0:
            n = _best_sorted(row_keys, t, n, k_rows)
            dest = row_ids[u]
            for j in range(n):
                out_idx[dest, j] = col_ids[_key_index(row_keys[t, j])]
                out_val[dest, j] = _key_score(row_keys[t, j])


@_jit("void(float32[:, ::1], float32[:, ::1], int64)")
def _share_thresholds(col_thr, col_own, t):
    """Raise part ``t``'s column thresholds to what the other parts have established.

    ``col_own[p, c]`` is the threshold of part ``p``'s own buffer of column ``c``: at
    least ``k`` of its entries score at least that much, so an entry of another part
    scoring strictly less cannot make the column's list. (Another part's entries may
    have lower or higher indices, so ties are let through: one float32 step lower.)
    The other parts write their row of ``col_own`` concurrently; thresholds only rise,
    so a stale value is merely a weaker bound.
    """
    n_parts, n_cols = col_own.shape
    for p in range(n_parts):
        if p == t:
            continue
        for c in range(n_cols):
            v = col_own[p, c]
            if v > col_thr[t, c]:
                col_thr[t, c] = max(col_thr[t, c], np.float32(np.nextafter(v, _NEG_INF)))


@_jit(parallel=True, nogil=True)
def _kernel(
    U, VT, S, lo, hi, chunk, fused, row_ids, col_ids, ub, ib, has_boost, ex_ptr, ex_idx,
    k_rows, out_idx, out_val, row_keys, row_maxima, col_keys, col_n, col_thr, col_own,
    k_cols,
):  # fmt: skip
    """Select over the compact users ``lo .. hi - 1``, split into one contiguous range per
    thread part ``t`` (``col_thr.shape[0]`` parts), each walked in increasing order.

    ``fused``: part ``t`` computes its users' scores ``chunk`` at a time into its rows
    ``S[t * chunk : (t + 1) * chunk]`` with a single-threaded BLAS product
    ``U[users] @ VT``, then selects from them while they are in cache. Otherwise ``S``
    already holds the scores of users ``lo .. hi - 1`` (row ``u - lo``). Scores are
    modified in place (boosts, exclusions).

    Rows: the best ``k_rows`` columns, written to ``out_*[row_ids[u]]`` as ``col_ids``
    (``k_rows == 0``: none). Columns: entries beating ``col_thr[t, c]`` are appended to
    the running buffer ``col_keys[t * n_cols + c, :col_n[t, c]]`` of part ``t``, shrunk
    when full (``col_thr`` is +inf when ``k_cols == 0``).
    """
    n_parts = col_thr.shape[0]
    bits = S.view(np.int32)
    for t in numba.prange(n_parts):
        a = lo + t * (hi - lo) // n_parts
        b = lo + (t + 1) * (hi - lo) // n_parts
        step = chunk if fused else max(b - a, 1)
        for c0 in range(a, b, step):
            c1 = min(c0 + step, b)
            base = t * chunk if fused else c0 - lo
            if fused:
                np.dot(U[c0:c1], VT, S[base : base + c1 - c0])
            if k_cols > 0 and n_parts > 1:
                _share_thresholds(col_thr, col_own, t)
            # t as int64: prange types it int64 or uint64 by the pass, and each type would
            # compile _select_rows again
            _select_rows(
                S, bits, base, c0, c1, np.int64(t), row_ids, col_ids, ub, ib, has_boost, ex_ptr,
                ex_idx, k_rows, out_idx, out_val, row_keys, row_maxima, col_thr, col_own,
                col_keys, col_n, k_cols,
            )  # fmt: skip


@_jit(parallel=True, nogil=True)
def _merge_columns(col_keys, col_n, k, col_ids, row_ids, out_idx, out_val):
    """Merge the thread parts' buffers of every column into its best-first list of at
    most ``k`` rows, written to ``out_*[col_ids[c]]`` as ``row_ids``."""
    n_parts, n_cols = col_n.shape
    cap = col_keys.shape[1]
    for c in numba.prange(n_cols):
        merged = np.empty((1, n_parts * cap), np.uint64)
        n = 0
        for t in range(n_parts):
            m = col_n[t, c]
            merged[0, n : n + m] = col_keys[t * n_cols + c, :m]
            n += m
        n = _best_sorted(merged, 0, n, k)
        dest = col_ids[c]
        for j in range(n):
            out_idx[dest, j] = row_ids[_key_index(merged[0, j])]
            out_val[dest, j] = _key_score(merged[0, j])


def empty_topk(n_rows: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-K lists with every slot empty: ids -1 (int64), scores -inf (float32)."""
    return np.full((n_rows, k), -1, dtype=np.int64), np.full((n_rows, k), -np.inf, np.float32)


def _n_parts() -> int:
    """Thread parts of a selection: one per numba thread (``numba.set_num_threads``)."""
    return max(1, numba.get_num_threads())


def _capacity(k: int) -> int:
    """Buffer length of a list of length ``k``: appends between two compactions."""
    return 2 * k + 16


class _Selector:
    """Buffers and kernel calls of one selection (see :func:`topk_both`).

    ``user_ids``/``item_ids`` map compact (active) indices to output rows and listed
    indices; ``out_ui``/``out_iu`` are the padded (indices, scores) outputs.
    """

    def __init__(self, user_ids, item_ids, out_ui, out_iu, k_items, k_users, ub, ib, ex):
        self.user_ids, self.item_ids = user_ids, item_ids
        self.out_ui, self.out_iu = out_ui, out_iu
        n_users, n_items = user_ids.size, item_ids.size
        self.k_rows = min(k_items, n_items)
        self.k_cols = min(k_users, n_users)
        self.parts = parts = _n_parts()
        self.row_keys = np.empty((parts, _capacity(self.k_rows)), np.uint64)
        self.row_maxima = np.empty((parts, 4 * self.k_rows + 4), np.int32)
        cols = n_items if self.k_cols else 1
        self.col_keys = np.empty((parts * cols, _capacity(self.k_cols)), np.uint64)
        self.col_n = np.zeros((parts, cols), np.int64)
        # +inf thresholds: a direction with k = 0 is never entered.
        self.col_thr = np.full((parts, n_items), -np.inf if self.k_cols else np.inf, np.float32)
        self.col_own = np.full((parts, cols), -np.inf, np.float32)
        self.has_boost = ub is not None or ib is not None
        self.ub = ub if ub is not None else np.ones(n_users if self.has_boost else 1, np.float32)
        self.ib = ib if ib is not None else np.ones(n_items if self.has_boost else 1, np.float32)
        self.ex_ptr, self.ex_idx = ex

    def run(self, U, VT, S, lo, hi, chunk, fused) -> None:
        _kernel(
            U, VT, S, lo, hi, chunk, fused, self.user_ids, self.item_ids, self.ub, self.ib,
            self.has_boost, self.ex_ptr, self.ex_idx, self.k_rows, *self.out_ui,
            self.row_keys, self.row_maxima, self.col_keys, self.col_n, self.col_thr,
            self.col_own, self.k_cols,
        )  # fmt: skip

    def finish(self) -> None:
        if self.k_cols:
            _merge_columns(
                self.col_keys, self.col_n, self.k_cols, self.item_ids, self.user_ids,
                *self.out_iu,
            )  # fmt: skip


# One fused selection at a time per process: each already uses every core.
_FUSED_LOCK = threading.Lock()


@contextmanager
def _one_blas_thread() -> Iterator[None]:
    """The fused kernel's section: exclusive (see ``_FUSED_LOCK``), with BLAS limited to
    one thread (the numba threads already use every core; see proactive_recs.estimators.threads)."""
    with _FUSED_LOCK, single_threaded_blas():
        yield


def _no_exclusions(n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros(n_rows + 1, np.int64), np.zeros(0, np.int32)


def _checked_exclusions(exclude: sp.spmatrix, shape: tuple[int, int]) -> sp.csr_matrix:
    """``exclude`` as CSR, refused unless it has one row per owner and one column per member."""
    exclude = sp.csr_matrix(exclude)
    if exclude.shape != shape:
        raise ValueError(f"exclude must have shape {shape}")
    return exclude


def _compact_exclusions(exclude: sp.csr_matrix, umask, imask) -> tuple[np.ndarray, np.ndarray]:
    """CSR (indptr, indices) of the stored entries of ``exclude`` between active users
    and active items, in compact indices."""
    indptr = exclude.indptr.astype(np.int64, copy=False)
    if umask.all() and imask.all():
        return indptr, exclude.indices.astype(np.int32, copy=False)
    rows = np.repeat(np.cumsum(umask) - 1, np.diff(indptr))
    rows[~np.repeat(umask, np.diff(indptr))] = -1
    cols = np.where(imask, np.cumsum(imask) - 1, -1)[exclude.indices]
    keep = (rows >= 0) & (cols >= 0)
    counts = np.bincount(rows[keep], minlength=int(umask.sum()))
    ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return ptr, cols[keep].astype(np.int32)


def topk_both(
    user_factors: np.ndarray,
    item_factors: np.ndarray,
    *,
    k_items: int,
    k_users: int,
    exclude: sp.spmatrix | None = None,
    user_mask: np.ndarray | None = None,
    item_mask: np.ndarray | None = None,
    user_boost: np.ndarray | None = None,
    item_boost: np.ndarray | None = None,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    block_size: int | None = None,
) -> TopK:
    """Top ``k_items`` items per user and top ``k_users`` users per item in one pass.

    Parameters
    ----------
    user_factors, item_factors : (n_users, f) and (n_items, f); score = dot product.
    k_items, k_users : list lengths (0 skips that direction).
    exclude : optional (n_users, n_items) sparse matrix; stored entries are pairs that
        must not be recommended in either direction (e.g. already purchased).
    user_mask, item_mask : optional boolean arrays; False removes the user (item) from
        both directions: it gets no list and appears in no list.
    user_boost, item_boost : optional non-negative multipliers (default 1), applied to
        the (transformed) score before the cut with the rule of :func:`apply_boost`.
    transform : optional elementwise monotone map applied to raw dot products before
        boosting (e.g. ``scipy.special.expit`` to boost probabilities instead of logits).
    block_size : users per BLAS product, per thread (with a ``transform``: per thread
        and block); by default :func:`default_block_size` (about 8 MB of scores).
    """
    U = np.asarray(user_factors, dtype=np.float32)
    V = np.asarray(item_factors, dtype=np.float32)
    if U.ndim != 2 or V.ndim != 2 or U.shape[1] != V.shape[1]:
        raise ValueError("user_factors and item_factors must be 2-D with the same width")
    n_users, n_items = U.shape[0], V.shape[0]
    k_items, k_users = int(k_items), int(k_users)
    if k_items < 0 or k_users < 0:
        raise ValueError("k_items and k_users must be >= 0")
    if exclude is not None:
        exclude = _checked_exclusions(exclude, (n_users, n_items))
    umask = np.ones(n_users, bool) if user_mask is None else np.asarray(user_mask, bool)
    imask = np.ones(n_items, bool) if item_mask is None else np.asarray(item_mask, bool)
    if umask.shape != (n_users,) or imask.shape != (n_items,):
        raise ValueError("user_mask and item_mask must have one entry per user / item")
    ui = empty_topk(n_users, k_items)
    iu = empty_topk(n_items, k_users)
    user_ids = np.flatnonzero(umask)
    item_ids = np.flatnonzero(imask)
    if user_ids.size == 0 or item_ids.size == 0 or (k_items == 0 and k_users == 0):
        return TopK(*ui, *iu)

    def compact(boost, mask, ids):
        if boost is None:
            return None
        boost = np.asarray(boost, np.float32)
        return np.ascontiguousarray(boost if mask.all() else boost[ids])

    ub, ib = compact(user_boost, umask, user_ids), compact(item_boost, imask, item_ids)
    Uc = np.ascontiguousarray(U if umask.all() else U[user_ids])
    VT = np.ascontiguousarray((V if imask.all() else V[item_ids]).T)
    ex = (
        _no_exclusions(user_ids.size)
        if exclude is None
        else _compact_exclusions(exclude, umask, imask)
    )
    sel = _Selector(user_ids, item_ids, ui, iu, k_items, k_users, ub, ib, ex)

    n_active, n_cols = user_ids.size, item_ids.size
    chunk = max(1, int(block_size or default_block_size(n_cols)))
    if transform is None:
        # Each thread part computes and selects its own chunks: no hand-over between
        # BLAS threads and kernel threads, and the scores are read back from cache. One
        # BLAS thread per part (the parts already use every core).
        chunk = min(chunk, -(-n_active // sel.parts))
        S = np.empty((sel.parts * chunk, n_cols), np.float32)
        with _one_blas_thread():
            sel.run(Uc, VT, S, 0, n_active, chunk, True)
    else:
        # The transform is Python: blocks of users are scored by numpy, transformed,
        # then selected by the kernel.
        block = min(sel.parts * chunk, n_active)
        S = np.empty((block, n_cols), np.float32)
        for lo in range(0, n_active, block):
            hi = min(lo + block, n_active)
            np.matmul(Uc[lo:hi], VT, out=S[: hi - lo])
            out = np.asarray(transform(S[: hi - lo]), dtype=np.float32)
            if out.shape != (hi - lo, n_cols):
                raise ValueError("transform must be elementwise (same shape out as in)")
            S[: hi - lo] = out
            sel.run(Uc, VT, S[: hi - lo], lo, hi, chunk, False)
    sel.finish()
    return TopK(*ui, *iu)


def topk_rows(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` columns of every row, best first; among equal scores the lower column
    index wins. ``-inf`` and NaN entries are never selected: rows with fewer than ``k``
    finite entries are padded with index -1 and score -inf. (The row direction of the
    :func:`topk_both` kernel.)"""
    scores = np.require(scores, np.float32, ["C", "W"])
    n_rows, n_cols = scores.shape
    out = empty_topk(n_rows, int(k))
    if k == 0 or n_rows == 0 or n_cols == 0:
        return out
    sel = _Selector(
        np.arange(n_rows), np.arange(n_cols), out, None, int(k), 0, None, None,
        _no_exclusions(n_rows),
    )  # fmt: skip
    # No boosts or exclusions: the kernel only reads the scores. (The factors are unused.)
    unused = np.zeros((1, 1), np.float32)
    sel.run(unused, unused, scores, 0, n_rows, 1, False)
    return out


def _index_array(values) -> np.ndarray:
    values = np.asarray(values)
    return values if values.dtype in (np.int32, np.int64) else values.astype(np.int64)


def topk_pairs(
    owner: np.ndarray, member: np.ndarray, score: np.ndarray, n_owners: int, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` members per owner from a list of scored (owner, member) pairs.

    Used for the final cut of the two-stage model, whose scores exist only for candidate
    pairs. Same conventions as :func:`topk_both`: (n_owners, k) arrays, best first, ties
    to the lower member index (then to the earlier pair), padding -1 / -inf. Pairs with a
    non-finite score are ignored.

    The pairs are bucketed by owner in one linear pass and each owner's best ``k`` are
    selected from its bucket (a few hundred pairs) as uint64 keys, in parallel: tens of
    millions of candidate pairs never go through a global sort, and no owner sorts more
    than its ``k`` best (at M a block of 8.4M pairs: 0.47 -> 0.15 s by user, 0.73 -> 0.30 s
    by item, against an argsort of every bucket). Scores come back from the keys, so a
    score of -0 is listed as 0.
    """
    # int32 indices (the candidate pairs') are taken as they are: a copy costs as much
    # as the selection
    owner, member = (_index_array(a) for a in (owner, member))
    score = np.asarray(score, dtype=np.float32)
    ok = np.isfinite(score)
    if not ok.all():
        owner, member, score = owner[ok], member[ok], score[ok]
    ids, vals = empty_topk(n_owners, k)
    if owner.size == 0 or k <= 0:
        return ids, vals
    if member.dtype == np.int64 and int(member.max()) >= 2**32:
        raise ValueError("topk_pairs: member indices must be below 2**32 (they are key bits)")
    starts, order = _bucket_by_owner(owner, n_owners)
    longest = int(np.diff(starts).max())
    tasks = min(n_owners, 8 * numba.get_num_threads())  # a few per thread: balance
    _select_per_owner(starts, order, member, score, ids, vals, longest, tasks)
    return ids, vals


def topk_shared_score(
    member_score: np.ndarray,
    n_owners: int,
    k: int,
    *,
    exclude: sp.spmatrix | None = None,
    owner_mask: np.ndarray | None = None,
    member_mask: np.ndarray | None = None,
    member_boost: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` members per owner when every owner ranks the members by one shared score.

    What :func:`topk_both` gives for a rank-one product whose owner side is constant (e.g.
    each user's most popular items, each item's most active users), without scoring every
    owner x member pair: the members are sorted once (boosted score descending, index
    ascending) and each owner takes the first ``k`` that it does not exclude. At 1M users x
    100k items the product scanned 10^11 scores per call; this walks about ``k`` per owner.

    ``exclude``: (n_owners, n_members) sparse, stored entries never listed. ``owner_mask``
    False: no list. ``member_mask`` False: in no list. ``member_boost``: the rule of
    :func:`apply_boost`. Same conventions as :func:`topk_both`: (n_owners, k) arrays, best
    first, padding -1 / -inf, -inf and NaN scores never listed. (An owner-side boost cannot
    change an owner's order; :func:`topk_both` applies it in float32, which can only turn
    two nearly equal scores into a tie.)
    """
    score = np.asarray(member_score, dtype=np.float32).ravel()
    n_members = score.size
    ids, vals = empty_topk(int(n_owners), int(k))
    if k <= 0 or n_owners == 0:
        return ids, vals
    members = np.arange(n_members)
    if member_mask is not None:
        members = np.flatnonzero(np.asarray(member_mask, dtype=bool))
    boosted = score[members]
    if member_boost is not None:
        boosted = apply_boost(boosted, np.asarray(member_boost, dtype=np.float32)[members])
    finite = boosted > -np.inf  # also drops NaN
    members, boosted = members[finite], boosted[finite]
    rank = np.argsort(-boosted, kind="stable")  # members ascending: ties to the lower index
    order, order_val = members[rank], boosted[rank]
    owners = np.arange(int(n_owners))
    if owner_mask is not None:
        owners = np.flatnonzero(np.asarray(owner_mask, dtype=bool))
    if exclude is None:
        ex_ptr, ex_idx = _no_exclusions(int(n_owners))
    else:
        exclude = _checked_exclusions(exclude, (int(n_owners), n_members))
        if not exclude.has_sorted_indices:
            exclude = exclude.sorted_indices()
        ex_ptr = exclude.indptr.astype(np.int64, copy=False)
        ex_idx = exclude.indices.astype(np.int32, copy=False)
    _first_not_excluded(order, order_val, owners, ex_ptr, ex_idx, ids, vals)
    return ids, vals


@_jit(parallel=True, nogil=True)
def _first_not_excluded(order, order_val, owners, ex_ptr, ex_idx, ids, vals):
    """Per owner, the first ``ids.shape[1]`` members of ``order`` outside its (sorted)
    exclusions, found by binary search."""
    k = ids.shape[1]
    for t in numba.prange(owners.size):
        o = owners[t]
        lo, hi = ex_ptr[o], ex_ptr[o + 1]
        n = 0
        for j in range(order.size):
            if n == k:
                break
            m = order[j]
            a, b = lo, hi
            while a < b:
                mid = (a + b) // 2
                if ex_idx[mid] < m:
                    a = mid + 1
                else:
                    b = mid
            if a < hi and ex_idx[a] == m:
                continue
            ids[o, n] = m
            vals[o, n] = order_val[j]
            n += 1


def owner_blocks(owner: np.ndarray, max_pairs: int) -> list[tuple[int, int]]:
    """(start, stop) ranges of about ``max_pairs`` pairs over ``owner`` sorted ascending,
    cut only where the owner changes: each block holds every pair of its owners, so a
    top-K per owner computed in a block is final. An owner with more than ``max_pairs``
    pairs makes its block larger."""
    owner = np.asarray(owner)
    n = owner.size
    if n == 0:
        return []
    step = max(1, int(max_pairs))
    cuts = np.searchsorted(owner, owner[step::step])  # each cut moved back to its owner's start
    bounds = np.unique(np.r_[0, cuts, n])
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]


def merge_topk(ids: np.ndarray, vals: np.ndarray, new_ids: np.ndarray, new_vals: np.ndarray):
    """Merge the top-K lists ``new_ids`` / ``new_vals`` into ``ids`` / ``vals`` in place.

    Both are (n_owners, k) lists in :func:`topk_pairs`'s conventions (best first, ties to
    the lower member, padding -1 / -inf) over disjoint sets of members per owner, e.g.
    the top-K per item of two blocks of users: the result is the top-K of the union,
    exactly what one :func:`topk_pairs` over all the pairs gives.
    """
    if ids.shape != new_ids.shape or vals.shape != new_vals.shape or ids.shape != vals.shape:
        raise ValueError(
            f"merge_topk: shapes differ ({ids.shape}, {vals.shape}, {new_ids.shape},"
            f" {new_vals.shape})"
        )
    _merge_sorted_rows(ids, vals, new_ids, new_vals)


@_jit(parallel=True, nogil=True)
def _merge_sorted_rows(ids, vals, new_ids, new_vals):
    n, k = ids.shape
    for o in numba.prange(n):
        if k == 0 or new_ids[o, 0] < 0:
            continue  # nothing new for this owner
        old_ids = ids[o].copy()
        old_vals = vals[o].copy()
        a = 0
        b = 0
        for r in range(k):
            a_ok = a < k and old_ids[a] >= 0
            b_ok = b < k and new_ids[o, b] >= 0
            if not a_ok and not b_ok:
                break  # the rest stays padding (a row's entries after padding are padding)
            take_old = a_ok and (
                not b_ok
                or old_vals[a] > new_vals[o, b]
                or (old_vals[a] == new_vals[o, b] and old_ids[a] < new_ids[o, b])
            )
            if take_old:
                ids[o, r] = old_ids[a]
                vals[o, r] = old_vals[a]
                a += 1
            else:
                ids[o, r] = new_ids[o, b]
                vals[o, r] = new_vals[o, b]
                b += 1


@_jit()
def _bucket_by_owner(owner, n_owners):
    """Bucket starts per owner and the pair positions in owner order (stable)."""
    counts = np.zeros(n_owners + 1, dtype=np.int64)
    for o in owner:
        counts[o + 1] += 1
    starts = np.cumsum(counts)
    fill = starts[:-1].copy()
    order = np.empty(owner.size, dtype=np.int64)
    for p in range(owner.size):
        o = owner[p]
        order[fill[o]] = p
        fill[o] += 1
    return starts, order


@_jit(parallel=True, nogil=True)
def _select_per_owner(starts, order, member, score, ids, vals, longest, tasks):
    """Each owner's best ``ids.shape[1]`` pairs: its bucket's pairs written as keys (score
    descending, member ascending: :func:`_key`) into a buffer of the task's, partially
    selected and sorted there (:func:`_best_sorted`). The member and the score are read
    back from the key, so nothing is gathered or allocated per owner."""
    k = ids.shape[1]
    n_owners = starts.size - 1
    for task in numba.prange(tasks):
        buffer = np.empty((1, longest), dtype=np.uint64)
        for o in range(task * n_owners // tasks, (task + 1) * n_owners // tasks):
            begin, end = starts[o], starts[o + 1]
            for r in range(end - begin):
                p = order[begin + r]
                buffer[0, r] = _key(score[p], member[p])
            n = _best_sorted(buffer, 0, end - begin, k)
            for r in range(n):
                ids[o, r] = _key_index(buffer[0, r])
                vals[o, r] = _key_score(buffer[0, r])


def distinct_pairs(
    n_owners: int, owner_lists=(), member_lists=(), *, consume: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (owner, member) pairs of several top-K lists, sorted by (owner, member).

    ``owner_lists`` are (n_owners, k) arrays (row = owner, entries = members); the arrays of
    ``member_lists`` go the other way (row = member, entries = owners). Padding (-1) is
    skipped. Candidate generation unites a few such lists with tens of millions of entries:
    the pairs are written once into per-owner segments and each segment is sorted and
    de-duplicated on its own, instead of concatenating all proposals and building a
    sparse pattern from them (which held several copies at once). With ``consume`` (the two
    arguments then Python lists), both arguments are emptied once every list is written, so
    that the caller's last reference goes and its memory with it before the pairs are
    compacted (the lists are ~1 GB at a million users).
    """
    counts = np.zeros(n_owners, dtype=np.int64)
    for lists in owner_lists:
        _count_per_row(np.asarray(lists), counts)
    for lists in member_lists:
        _count_per_entry(np.asarray(lists), counts)
    starts = np.zeros(n_owners + 1, dtype=np.int64)
    np.cumsum(counts, out=starts[1:])
    # int32 when the indices fit (always, short of 2**31 users or items): the proposals
    # and the candidate pairs are the largest arrays of a scoring run (~200M pairs at 1M
    # users), so neither is ever held in int64
    largest = max(
        [n_owners]
        + [int(np.max(lists, initial=-1)) + 1 for lists in owner_lists]
        + [np.shape(lists)[0] for lists in member_lists]
    )
    index_type = np.int32 if largest < 2**31 else np.int64
    members = np.empty(int(starts[-1]), dtype=index_type)
    fill = starts[:-1].copy()
    for lists in owner_lists:
        _fill_per_row(np.asarray(lists), fill, members)
    for lists in member_lists:
        _fill_per_entry(np.asarray(lists), fill, members)
    if consume:
        lists = None
        owner_lists.clear()
        member_lists.clear()
    kept = _sort_unique_segments(starts, members)
    pairs = np.empty(int(kept.sum()), dtype=index_type)
    _compact_segments(starts, kept, members, pairs)
    del members
    owners = np.repeat(np.arange(n_owners, dtype=pairs.dtype), kept)
    return owners, pairs


@_jit()
def _count_per_row(lists, counts):
    for r in range(lists.shape[0]):
        for c in range(lists.shape[1]):
            if lists[r, c] >= 0:
                counts[r] += 1


@_jit()
def _count_per_entry(lists, counts):
    for r in range(lists.shape[0]):
        for c in range(lists.shape[1]):
            if lists[r, c] >= 0:
                counts[lists[r, c]] += 1


@_jit()
def _fill_per_row(lists, fill, out):
    for r in range(lists.shape[0]):
        for c in range(lists.shape[1]):
            if lists[r, c] >= 0:
                out[fill[r]] = lists[r, c]
                fill[r] += 1


@_jit()
def _fill_per_entry(lists, fill, out):
    for r in range(lists.shape[0]):
        for c in range(lists.shape[1]):
            owner = lists[r, c]
            if owner >= 0:
                out[fill[owner]] = r
                fill[owner] += 1


@_jit(parallel=True)
def _sort_unique_segments(starts, values):
    """Sort each segment in place and move its distinct values to its front; returns the
    number of distinct values per segment."""
    n = starts.size - 1
    kept = np.zeros(n, dtype=np.int64)
    for s in numba.prange(n):
        lo, hi = starts[s], starts[s + 1]
        if lo == hi:
            continue
        values[lo:hi] = np.sort(values[lo:hi])
        w = lo
        for p in range(lo + 1, hi):
            if values[p] != values[w]:
                w += 1
                values[w] = values[p]
        kept[s] = w - lo + 1
    return kept


@_jit()
def _compact_segments(starts, kept, values, out):
    """The first ``kept[s]`` values of each segment ``s``, one after the other, into ``out``."""
    w = 0
    for s in range(kept.size):
        out[w : w + kept[s]] = values[starts[s] : starts[s] + kept[s]]
        w += kept[s]
