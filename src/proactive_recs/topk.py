"""One-pass top-K in both directions: items per user and users per item.

Scores are dot products of user and item vectors (MF factors, or any vectors whose
dot product is the ranking score, e.g. factors augmented with bias columns). Users
are processed in blocks; each block costs one matrix product ``block x all items``,
after which masks, exclusions and boosts are applied and

* the top ``k_items`` items of every user in the block are final, and
* a running top ``k_users`` users of every item is merged with the block's best.

Peak memory is a few copies of one ``block_size x n_items`` float32 block plus the
outputs; the full users x items score matrix never exists.

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
user index in an item's list).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

__all__ = [
    "MIN_BOOST",
    "TopK",
    "apply_boost",
    "group_desc_key",
    "topk_both",
    "topk_pairs",
    "topk_rows",
]

MIN_BOOST = 1e-6
_TARGET_BLOCK_ELEMENTS = 1 << 24  # 64 MB of float32 scores per block


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


def topk_rows(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` columns of every row, best first; among equal scores the lower column
    index wins. ``-inf`` and NaN entries are never selected: rows with fewer than ``k``
    finite entries are padded with index -1 and score -inf."""
    scores = np.asarray(scores, dtype=np.float32)
    if np.isnan(scores).any():
        scores = np.where(np.isnan(scores), -np.inf, scores)
    if k == 0 or scores.shape[0] == 0 or scores.shape[1] == 0:
        return _empty(scores.shape[0], k)
    return _select_above(scores, _kth_lower_bound(scores, k), k)


def _empty(n_rows: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full((n_rows, k), -1, dtype=np.int64), np.full((n_rows, k), -np.inf, np.float32)


def _kth_lower_bound(scores: np.ndarray, k: int) -> np.ndarray:
    """Per row, a value <= the row's k-th largest score, cheaply.

    The k-th largest of a strided subset of the columns cannot exceed the k-th largest
    of the whole row, so every top-k entry is >= it. Sampling every 4th column costs a
    quarter of a full partition and lets about 4 k entries per row through to the exact
    step. Rows too narrow to sample are partitioned in full.
    """
    n_cols = scores.shape[1]
    if n_cols <= k:
        return np.full(scores.shape[0], -np.inf, dtype=np.float32)
    stride = int(np.clip(n_cols // (8 * k), 1, 4))
    sample = scores[:, ::stride]
    m = sample.shape[1]
    return np.partition(sample, m - k, axis=1)[:, m - k]


def _nonzero_2d(mask_fn, n_rows: int, n_cols: int) -> tuple[np.ndarray, np.ndarray]:
    """``np.nonzero`` of a sparse 2-D boolean mask, about 3x faster.

    ``mask_fn(out)`` writes the mask into ``out`` (a view of a zeroed buffer whose rows
    are padded to a multiple of 8). The buffer is scanned 8 bytes at a time as uint64 and
    only the non-zero words are expanded. Returns (rows, cols) in row-major order.
    """
    width = -(-n_cols // 8) * 8
    buf = np.zeros((n_rows, width), dtype=bool)
    mask_fn(buf[:, :n_cols])
    rows, words = np.nonzero(buf.view(np.uint64))
    j, bit = np.nonzero(buf.reshape(n_rows, -1, 8)[rows, words])
    return rows[j], words[j] * 8 + bit


def group_desc_key(group: np.ndarray, vals: np.ndarray) -> np.ndarray:
    """uint64 keys that sort by (group asc, value desc): the group in the high 32 bits, an
    order-reversing bit pattern of the float32 value in the low 32 bits."""
    bits = (np.asarray(vals, dtype=np.float32) + np.float32(0)).view(np.uint32)  # -0 -> +0
    ascending = np.where(bits & np.uint32(0x80000000), ~bits, bits | np.uint32(0x80000000))
    return (np.asarray(group, dtype=np.uint64) << np.uint64(32)) | (~ascending).astype(np.uint64)


def _select_above(scores: np.ndarray, bound: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top k per row among the entries >= ``bound[row]``, by (score desc, column asc).

    ``bound`` must not exceed the row's true k-th largest value. Returns sorted
    (columns, scores) padded with -1 / -inf.
    """
    n_rows, n_cols = scores.shape

    unbounded = np.flatnonzero(bound == -np.inf)

    def mask(out):
        np.greater_equal(scores, bound[:, None], out=out)
        if unbounded.size:  # only there can -inf entries pass ">= bound"
            out[unbounded] &= scores[unbounded] > -np.inf

    rows, cols = _nonzero_2d(mask, n_rows, n_cols)
    vals = scores[rows, cols]
    # Entries arrive row-major with increasing columns; a stable sort on (row, -score)
    # therefore keeps the lower column first among equal scores.
    order = np.argsort(group_desc_key(rows, vals), kind="stable")
    rows, cols, vals = rows[order], cols[order], vals[order]
    rank = np.arange(rows.size) - np.searchsorted(rows, np.arange(n_rows))[rows]
    keep = rank < k
    out_cols, out_val = _empty(n_rows, k)
    out_cols[rows[keep], rank[keep]] = cols[keep]
    out_val[rows[keep], rank[keep]] = vals[keep]
    return out_cols, out_val


class _RunningTopK:
    """Per-item top-k users, fed one block of users at a time (users in increasing order).

    The lists are kept sorted by (score desc, user asc). A block's entry can only enter
    an item's list if it beats the list's worst score strictly (on equal scores the
    listed user has the lower index and wins), so once the lists fill up almost every
    entry is discarded by one vectorised comparison. Survivors are buffered and merged
    in batches with a sorted merge (searchsorted), so the lists are rewritten only a
    logarithmic number of times.
    """

    def __init__(self, n_items: int, k: int):
        self.k = k
        self.ids, self.vals = _empty(n_items, k)
        self._buffer: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._buffered = 0

    def add_block(self, block_t: np.ndarray, first_user: int) -> None:
        """``block_t``: (n_items, block users) scores of users ``first_user, ...``."""
        n_items, n_block = block_t.shape
        bound = self.vals[:, -1].copy()
        strict = bound > -np.inf
        not_full = np.flatnonzero(~strict)
        if not_full.size and n_block > self.k:
            # Lists not yet full accept anything finite; bound them by the block's own
            # k-th best instead, which an entry must reach to make the list at all.
            sub = block_t[not_full]
            bound[not_full] = np.partition(sub, n_block - self.k, axis=1)[:, n_block - self.k]

        def mask(out):
            np.greater(block_t, bound[:, None], out=out)
            # Lists not yet full compare with >=: their bound comes from this block.
            out[not_full] = block_t[not_full] >= bound[not_full, None]
            out &= block_t > -np.inf

        items, cols = _nonzero_2d(mask, n_items, n_block)
        if items.size == 0:
            return
        self._buffer.append((items, cols + first_user, block_t[items, cols]))
        self._buffered += items.size
        # Merging early (half the lists' size) keeps the thresholds tight, which prunes
        # later blocks harder; measured faster than letting the buffer grow larger.
        if 2 * self._buffered >= self.ids.size:
            self.flush()

    def flush(self) -> None:
        if not self._buffer:
            return
        items = np.concatenate([b[0] for b in self._buffer])
        users = np.concatenate([b[1] for b in self._buffer])
        vals = np.concatenate([b[2] for b in self._buffer])
        self._buffer, self._buffered = [], 0
        n_items, k = self.ids.shape
        # Buffered entries are in (block, item, user) order, so a stable sort by
        # (item, score desc) leaves equal scores in increasing user order.
        new_key = group_desc_key(items, vals)
        order = np.argsort(new_key, kind="stable")
        new_key, items, users, vals = new_key[order], items[order], users[order], vals[order]
        run_items = np.repeat(np.arange(n_items), k)
        run_key = group_desc_key(run_items, self.vals.ravel())
        # Merge two sorted sequences; on equal keys the running entry (lower user) first.
        pos_run = np.arange(run_key.size) + np.searchsorted(new_key, run_key, side="left")
        pos_new = np.arange(new_key.size) + np.searchsorted(run_key, new_key, side="right")
        total = run_key.size + new_key.size
        m_items = np.empty(total, np.int64)
        m_users = np.empty(total, np.int64)
        m_vals = np.empty(total, np.float32)
        m_items[pos_run], m_items[pos_new] = run_items, items
        m_users[pos_run], m_users[pos_new] = self.ids.ravel(), users
        m_vals[pos_run], m_vals[pos_new] = self.vals.ravel(), vals
        rank = np.arange(total) - np.searchsorted(m_items, np.arange(n_items))[m_items]
        keep = (rank < k) & (m_vals > -np.inf)
        self.ids, self.vals = _empty(n_items, k)
        self.ids[m_items[keep], rank[keep]] = m_users[keep]
        self.vals[m_items[keep], rank[keep]] = m_vals[keep]


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
    block_size : users per block; by default about 16M scores (64 MB) per block.
    """
    U = np.asarray(user_factors, dtype=np.float32)
    V = np.asarray(item_factors, dtype=np.float32)
    n_users, n_items = U.shape[0], V.shape[0]
    if U.ndim != 2 or V.ndim != 2 or U.shape[1] != V.shape[1]:
        raise ValueError("user_factors and item_factors must be 2-D with the same width")
    if exclude is not None:
        exclude = sp.csr_matrix(exclude)
        if exclude.shape != (n_users, n_items):
            raise ValueError(f"exclude must have shape {(n_users, n_items)}")
    umask = np.ones(n_users, bool) if user_mask is None else np.asarray(user_mask, bool)
    imask = np.ones(n_items, bool) if item_mask is None else np.asarray(item_mask, bool)
    ub = None if user_boost is None else np.asarray(user_boost, np.float32)
    ib = None if item_boost is None else np.asarray(item_boost, np.float32)
    if block_size is None:
        block_size = max(1, _TARGET_BLOCK_ELEMENTS // max(n_items, 1))

    # Finite factors and boosts give finite products; only then is the NaN pass skipped.
    may_be_nan = transform is not None or not all(
        np.isfinite(a).all() for a in (U, V, ub, ib) if a is not None
    )
    ui_idx, ui_val = _empty(n_users, k_items)
    running = _RunningTopK(n_items, k_users)
    VT = np.ascontiguousarray(V.T)

    for start in range(0, n_users, block_size):
        stop = min(start + block_size, n_users)
        active = umask[start:stop]
        if not active.any():
            continue
        S = U[start:stop] @ VT
        if transform is not None:
            S = np.asarray(transform(S), dtype=np.float32)
        if ub is not None or ib is not None:
            b_u = ub[start:stop, None] if ub is not None else np.float32(1)
            b_i = ib[None, :] if ib is not None else np.float32(1)
            S = apply_boost(S, b_u * b_i)
        if may_be_nan:
            S[np.isnan(S)] = -np.inf
        S[~active, :] = -np.inf
        S[:, ~imask] = -np.inf
        if exclude is not None:
            sub = exclude[start:stop]
            rows = np.repeat(np.arange(stop - start), np.diff(sub.indptr))
            S[rows, sub.indices] = -np.inf

        if k_items:
            ui_idx[start:stop], ui_val[start:stop] = _select_above(
                S, _kth_lower_bound(S, k_items), k_items
            )
        if k_users:
            running.add_block(np.ascontiguousarray(S.T), start)

    running.flush()
    return TopK(ui_idx, ui_val, running.ids, running.vals)


def topk_pairs(
    owner: np.ndarray, member: np.ndarray, score: np.ndarray, n_owners: int, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` members per owner from a list of scored (owner, member) pairs.

    Used for the final cut of the two-stage model, whose scores exist only for candidate
    pairs. Same conventions as :func:`topk_both`: (n_owners, k) arrays, best first, ties
    to the lower member index, padding -1 / -inf. Pairs with a non-finite score are
    ignored.
    """
    owner = np.asarray(owner, dtype=np.int64)
    member = np.asarray(member, dtype=np.int64)
    score = np.asarray(score, dtype=np.float32)
    ok = np.isfinite(score)
    owner, member, score = owner[ok], member[ok], score[ok]
    order = np.lexsort((member, -score, owner))
    owner, member, score = owner[order], member[order], score[order]
    rank = np.arange(owner.size) - np.searchsorted(owner, np.arange(n_owners))[owner]
    keep = rank < k
    ids, vals = _empty(n_owners, k)
    ids[owner[keep], rank[keep]] = member[keep]
    vals[owner[keep], rank[keep]] = score[keep]
    return ids, vals
