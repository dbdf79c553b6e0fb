"""Weighted implicit-feedback matrix built from the cleaned interactions frame.

The dbt side hands over one row per cleaned interaction (user_id, item_id, occurred_at,
event_type, event_weight, quantity). Everything downstream (matrix factorization,
exclusions, evaluation) works on integer indices, so this module owns the mapping
between ids and matrix positions and the single definition of "how much a user
interacted with an item as of a date":

    confidence(u, i) = log1p( sum over the events e of (u, i) of
                              event_weight(e) * qscale(quantity(e)) * decay(age_days(e)) )
    decay(age) = 0.5 ** (age / half_life_days)      (1 when half_life_days is None)

with ``qscale(q) = log2(1 + q)`` (1 for a single unit, so event weights keep their
meaning, and sub-linear so one wholesale order of 500 units does not outweigh many
separate purchases). The outer log1p compresses heavy repeat buyers the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from proactive_recs.data.instants import utc_naive

__all__ = [
    "InteractionMatrix",
    "build_interaction_matrix",
    "event_strength",
    "interactions_before",
    "new_pairs_matrix",
    "normalise_interactions",
    "text_ids",
]


@dataclass(frozen=True)
class InteractionMatrix:
    """A users x items CSR confidence matrix with the ids of its rows and columns.

    ``matrix[u, i]`` is the confidence of the pair; ``user_ids[u]`` / ``item_ids[i]`` are
    the original ids. Rows/columns may be all-zero when the index was supplied by the
    caller (users or items with no interaction before ``as_of``).

    ``seen`` holds a 1 for every pair with at least one interaction before ``as_of``. It
    is kept apart from ``matrix`` because a long decay can underflow a pair's confidence
    to 0 in float32, and an old purchase must still count as "already interacted" for
    exclusions.
    """

    matrix: sp.csr_matrix
    user_ids: pd.Index
    item_ids: pd.Index
    seen: sp.csr_matrix

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def user_positions(self, ids) -> np.ndarray:
        """Positions of ``ids`` in the user index (-1 for unknown ids)."""
        return self.user_ids.get_indexer(pd.Index(ids))

    def item_positions(self, ids) -> np.ndarray:
        """Positions of ``ids`` in the item index (-1 for unknown ids)."""
        return self.item_ids.get_indexer(pd.Index(ids))


# What the library reads from int_interactions, in this order.
INTERACTION_COLUMNS = (
    "user_id",
    "item_id",
    "occurred_at",
    "event_type",
    "event_weight",
    "quantity",
    "is_conversion",
)


def normalise_interactions(interactions: pd.DataFrame | None) -> pd.DataFrame:
    """The interactions frame in the types the library expects, whatever the warehouse
    returned: string ids, UTC-naive ``datetime64[ns]`` timestamps, float weights and
    quantities (1 when missing), and without rows that cannot be used (null keys,
    non-positive quantity or weight). An empty or None input gives an empty frame with
    the right columns."""
    cols = list(INTERACTION_COLUMNS)
    if interactions is None or len(interactions) == 0:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in cols}).astype(
            {
                "occurred_at": "datetime64[ns]",
                "event_weight": float,
                "quantity": float,
                "is_conversion": bool,
            }
        )
    if _already_normalised(interactions, cols):
        return interactions  # read-only for callers: no copy of a GB-sized frame
    df = interactions.copy()
    for col, default in (("event_type", "purchase"), ("event_weight", 1.0), ("quantity", 1.0)):
        if col not in df:
            df[col] = default
    if "is_conversion" not in df:
        # int_interactions always carries the flag (stg_event_type_weights, the var
        # proactive_recs_conversion_event_types); frames built by hand get its default.
        df["is_conversion"] = df["event_type"].astype(str).str.strip().str.lower() == "purchase"
    df["is_conversion"] = df["is_conversion"].fillna(False).astype(bool)
    df = df[df["user_id"].notna() & df["item_id"].notna() & df["occurred_at"].notna()]
    df["user_id"] = df["user_id"].astype(str)
    df["item_id"] = df["item_id"].astype(str)
    df["occurred_at"] = utc_naive(df["occurred_at"])
    df["event_weight"] = pd.to_numeric(df["event_weight"], errors="coerce").fillna(1.0)
    df["quantity"] = pd.to_numeric(df["quantity"], errors="coerce").fillna(1.0)
    df = df[(df["quantity"] > 0) & (df["event_weight"] > 0)]
    return df[cols].reset_index(drop=True)


def text_ids(ids: pd.Series) -> pd.Series:
    """``ids`` as text; the series itself when it already is (``astype(str)`` makes a new
    array of every cell even then: 20M cells at the benchmark's size L)."""
    return ids if _is_text(ids) else ids.astype(str)


def _is_text(ids: pd.Series) -> bool:
    """Every cell a str (no null, no number): ids as the library keeps them."""
    return pd.api.types.infer_dtype(ids, skipna=False) == "string"


def _already_normalised(frame: pd.DataFrame, cols: list[str]) -> bool:
    """True when ``frame`` is what :func:`normalise_interactions` would return: these
    columns in this order and types, text ids and no row it would drop."""
    if list(frame.columns) != cols:
        return False
    expected = {
        "user_id": np.dtype(object),
        "item_id": np.dtype(object),
        "occurred_at": np.dtype("datetime64[ns]"),
        "event_type": np.dtype(object),
        "event_weight": np.dtype(float),
        "quantity": np.dtype(float),
        "is_conversion": np.dtype(bool),
    }
    # Weights may be 32-bit: what a FLOAT column of the warehouse gives (DuckDB), and what
    # normalising keeps; demanding 64 bits made every read copy the frame a second time.
    floats = ("event_weight", "quantity")
    if any(
        not np.issubdtype(frame[col].dtype, np.floating)
        if col in floats
        else frame[col].dtype != dtype
        for col, dtype in expected.items()
    ):
        return False
    if not isinstance(frame.index, pd.RangeIndex) or frame.index.start != 0:
        return False
    if not (_is_text(frame["user_id"]) and _is_text(frame["item_id"])):
        return False
    return bool(
        frame["occurred_at"].notna().all()
        and (frame["quantity"] > 0).all()
        and (frame["event_weight"] > 0).all()
    )


def interactions_before(interactions: pd.DataFrame, as_of) -> pd.DataFrame:
    """Rows that happened strictly before ``as_of`` (all rows when ``as_of`` is None).

    When every row qualifies the frame itself comes back, not a copy (a GB at 20M rows),
    and when the kept rows are the frame's first ones (a frame in time order), a slice that
    shares their data; callers treat the result as read-only. The kept rows are numbered
    0..n-1, as :func:`normalise_interactions` numbers them: a normalised frame's earlier rows are
    then normalised too, and a fit on them (stage selection's replay, the evaluation's
    and each backtest week's fit) does not copy and re-type them again."""
    if as_of is None or interactions.empty:
        return interactions
    before = (interactions["occurred_at"] < pd.Timestamp(as_of)).to_numpy()
    n_before = int(np.count_nonzero(before))
    if n_before == len(before):
        return interactions
    if before[:n_before].all():
        # The frame is in time order here (the backtest sorts it once): the earlier rows
        # are its first rows, a slice that shares their data instead of a copy of them.
        rows = interactions.iloc[:n_before]
    else:
        rows = interactions[before]
    rows.index = pd.RangeIndex(n_before)  # a new frame: numbering it leaves the caller's alone
    return rows


def event_strength(
    interactions: pd.DataFrame, as_of=None, half_life_days: float | None = None
) -> np.ndarray:
    """Per-row weight: event_weight x log2(1 + quantity) x recency decay.

    Missing ``event_weight`` / ``quantity`` columns count as 1 so that a bare
    (user_id, item_id, occurred_at) frame still works. Ages are measured from ``as_of``
    (or the latest event when None) and clipped at 0 so that a row at ``as_of`` itself
    is not up-weighted.
    """
    n = len(interactions)
    weight = (
        interactions["event_weight"].to_numpy(dtype=np.float64, na_value=1.0)
        if "event_weight" in interactions
        else np.ones(n)
    )
    quantity = (
        interactions["quantity"].to_numpy(dtype=np.float64, na_value=1.0)
        if "quantity" in interactions
        else np.ones(n)
    )
    # Quantities are > 0 after cleaning; the clip keeps a stray 0 from zeroing the pair.
    strength = weight * np.log2(1.0 + np.clip(quantity, 1e-9, None))
    if half_life_days is not None and n:
        occurred = pd.to_datetime(interactions["occurred_at"])
        ref = pd.Timestamp(as_of) if as_of is not None else occurred.max()
        age_days = (ref - occurred).dt.total_seconds().to_numpy() / 86400.0
        strength = strength * 0.5 ** (np.clip(age_days, 0.0, None) / float(half_life_days))
    return strength


def build_interaction_matrix(
    interactions: pd.DataFrame,
    as_of=None,
    *,
    half_life_days: float | None = None,
    user_ids=None,
    item_ids=None,
) -> InteractionMatrix:
    """Confidence matrix of the interactions that happened before ``as_of``.

    Parameters
    ----------
    interactions : frame with user_id, item_id, occurred_at and optionally event_weight,
        quantity (see module docstring).
    as_of : timestamp or None. Only rows with ``occurred_at < as_of`` are used and ages
        are measured from it. None uses every row and measures ages from the last one.
    half_life_days : recency half-life in days; None disables the decay.
    user_ids, item_ids : optional explicit indexes (unique ids). Rows with ids outside
        them are dropped. By default the sorted distinct ids of the used rows, which
        makes the layout independent of the frame's row order.
    """
    rows = interactions_before(interactions, as_of)
    if as_of is None and len(rows):
        as_of = pd.to_datetime(rows["occurred_at"]).max()

    users = (
        pd.Index(user_ids)
        if user_ids is not None
        else pd.Index(np.sort(rows["user_id"].unique()) if len(rows) else [])
    )
    items = (
        pd.Index(item_ids)
        if item_ids is not None
        else pd.Index(np.sort(rows["item_id"].unique()) if len(rows) else [])
    )
    if not users.is_unique or not items.is_unique:
        raise ValueError("user_ids and item_ids must be unique")

    if len(rows) == 0:
        empty = sp.csr_matrix((len(users), len(items)), dtype=np.float32)
        return InteractionMatrix(empty, users, items, empty.copy())

    u = users.get_indexer(rows["user_id"])
    i = items.get_indexer(rows["item_id"])
    strength = event_strength(rows, as_of, half_life_days)
    known = (u >= 0) & (i >= 0)
    # The per-pair aggregation, independent of the frame's row order: a float sum depends
    # on the order of its terms (scipy's coo -> csr adds duplicates in an order that
    # follows the rows), so the events of a pair are added in increasing strength. Two
    # terms add the same either way: only pairs with three or more events are reordered.
    width = max(len(items), 1)
    code = u[known].astype(np.int64) * width + i[known]
    order = np.argsort(code, kind="stable")
    code, value = code[order], strength[known][order]
    if code.size:
        first = np.flatnonzero(np.concatenate([[True], code[1:] != code[:-1]]))
        events = np.diff(np.append(first, code.size))
        many = np.flatnonzero(np.repeat(events >= 3, events))
        if many.size:
            value[many] = value[many][np.lexsort((value[many], code[many]))]
        value = np.add.reduceat(value, first)
        code = code[first]
    summed = sp.csr_matrix((value, (code // width, code % width)), shape=(len(users), len(items)))
    summed.sum_duplicates()
    summed.sort_indices()
    seen = summed.copy()
    seen.data = np.ones_like(seen.data, dtype=np.float32)
    seen = seen.astype(np.float32)
    summed.data = np.log1p(summed.data)
    confidence = summed.astype(np.float32)
    # Explicit zeros would read as observed pairs of zero confidence to the ALS solver.
    confidence.eliminate_zeros()
    return InteractionMatrix(confidence, users, items, seen)


def new_pairs_matrix(
    interactions: pd.DataFrame, base: InteractionMatrix, start, end
) -> sp.csr_matrix:
    """Binary (users x items) matrix, over ``base``'s index, of the pairs with an
    interaction in ``[start, end)`` that ``base`` has not seen (no earlier interaction).

    This is the relevance definition of docs/evaluation.md: what a user newly interacted with
    in a window. Users and items outside ``base``'s index are dropped (they cannot be
    scored).
    """
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    at = interactions["occurred_at"]
    rows = interactions[(at >= start) & (at < end)]
    u = base.user_positions(rows["user_id"])
    i = base.item_positions(rows["item_id"])
    known = (u >= 0) & (i >= 0)
    hits = sp.csr_matrix(
        (np.ones(int(known.sum()), np.float32), (u[known], i[known])),
        shape=(base.n_users, base.n_items),
    )
    hits.sum_duplicates()
    hits.data[:] = 1.0
    new = hits - hits.multiply(base.seen)
    new.eliminate_zeros()
    new = sp.csr_matrix(new, dtype=np.float32)
    new.data[:] = 1.0
    return new
