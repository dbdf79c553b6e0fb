"""Top-K both ways over a warehouse: one partition per (user bucket, item block).

On one machine :func:`~proactive_recs.estimators.topk.topk_both` scores every user against
every item in one pass. On Snowflake that pass is split so that it spreads over the
warehouse's nodes: the users are cut into buckets and the items into blocks, and each
(bucket, block) pair is one partition of a vectorized Python UDTF whose input rows are the
bucket's users and the block's items (a ``side`` column says which). Each partition
scores its users against its items and emits

* for every user, its best ``k_items`` items of the block, and
* for every item, its best ``k_users`` users of the bucket,

each with the score and the global positions of both. SQL then keeps, per user over the
blocks and per item over the buckets, the ``k`` best by (score descending, position
ascending) (macro ``proactive_recs_merge_partitioned_topk``). A user's global top-K is
among the union of its per-block top-Ks, and the tie rule is ``topk_both``'s (the lower
position first), so the merged lists are ``topk_both``'s lists: :func:`score_partitions` is
the same computation on one machine, and the tests compare both with ``topk_both`` and with
the recommender's own MF lists on the demo. The model ``partitioned_mf_scores`` wires it
up on Snowflake.

Nothing here needs Snowpark: :class:`PartitionTopK` is the handler (``end_partition``
receives the partition as a pandas frame), :func:`score_partition` the pure function it
calls, :func:`partition_rows` builds the input rows from the factor tables.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from proactive_recs.estimators.topk import topk_both

__all__ = [
    "INPUT_COLUMNS",
    "OUTPUT_COLUMNS",
    "PartitionTopK",
    "partition_rows",
    "score_partition",
    "score_partitions",
]

# One input row per user of a bucket and per item of a block, in each of its partitions.
INPUT_COLUMNS = [
    "side",  # 'user' or 'item'
    "position",  # global position (users and items each numbered from 0, in id order)
    "factors",  # list of floats
    "servable",  # False: no list and in no list (not eligible, filtered, unavailable)
    "boost",  # multiplier of the score (topk_both's apply_boost rule)
    "excluded",  # user rows: item positions never to recommend to the user (seen)
    "k_items",
    "k_users",
]
OUTPUT_COLUMNS = ["direction", "owner_position", "member_position", "score"]


def _stack(factors) -> np.ndarray:
    return np.asarray([np.asarray(f, dtype=np.float32) for f in factors], dtype=np.float32)


def score_partition(rows: pd.DataFrame) -> pd.DataFrame:
    """The partial lists of one partition (its users against its items): rows of
    :data:`OUTPUT_COLUMNS`, direction 'user_item' (owner = user) or 'item_user'."""
    users = rows[rows["side"] == "user"].sort_values("position", kind="stable")
    items = rows[rows["side"] == "item"].sort_values("position", kind="stable")
    if users.empty or items.empty:
        return pd.DataFrame(columns=OUTPUT_COLUMNS)
    k_items, k_users = int(rows["k_items"].iloc[0]), int(rows["k_users"].iloc[0])
    user_positions = users["position"].to_numpy(np.int64)
    item_positions = items["position"].to_numpy(np.int64)
    # the block's local index of each excluded item position (-1: not in this block)
    local = pd.Index(item_positions)
    rows_, cols_ = [], []
    for row, excluded in enumerate(users["excluded"]):
        if excluded is None or len(excluded) == 0:
            continue
        found = local.get_indexer(np.asarray(excluded, dtype=np.int64))
        found = found[found >= 0]
        rows_.append(np.full(found.size, row))
        cols_.append(found)
    exclude = None
    if rows_:
        r, c = np.concatenate(rows_), np.concatenate(cols_)
        exclude = sp.csr_matrix(
            (np.ones(r.size, np.float32), (r, c)), shape=(len(users), len(items))
        )
    top = topk_both(
        _stack(users["factors"]),
        _stack(items["factors"]),
        k_items=k_items,
        k_users=k_users,
        exclude=exclude,
        user_mask=users["servable"].to_numpy(bool),
        item_mask=items["servable"].to_numpy(bool),
        user_boost=users["boost"].to_numpy(np.float64),
        item_boost=items["boost"].to_numpy(np.float64),
    )
    parts = []
    for direction, lists, scores, owners, members in (
        ("user_item", top.user_items, top.user_item_scores, user_positions, item_positions),
        ("item_user", top.item_users, top.item_user_scores, item_positions, user_positions),
    ):
        filled = lists >= 0
        owner = np.broadcast_to(owners[:, None], lists.shape)[filled]
        parts.append(
            pd.DataFrame(
                {
                    "direction": direction,
                    "owner_position": owner,
                    "member_position": members[lists[filled]],
                    "score": scores[filled].astype(np.float64),
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


class PartitionTopK:
    """The vectorized UDTF handler: Snowflake hands ``end_partition`` the whole partition
    as a pandas frame with :data:`INPUT_COLUMNS` and takes back :data:`OUTPUT_COLUMNS`."""

    def end_partition(self, df: pd.DataFrame) -> pd.DataFrame:
        df = df.copy()
        names = [str(c).lower() for c in df.columns]
        # the arguments by name (Snowflake upper-cases them) or, unnamed, in call order
        df.columns = names if set(INPUT_COLUMNS) <= set(names) else INPUT_COLUMNS
        return score_partition(df[INPUT_COLUMNS])


# Marks end_partition as vectorized the way Snowflake reads it, without importing the
# _snowflake module (which exists only inside Snowflake): @vectorized(input=pandas.DataFrame)
PartitionTopK.end_partition._sf_vectorized_input = pd.DataFrame


def partition_rows(
    users: pd.DataFrame,
    items: pd.DataFrame,
    *,
    n_buckets: int,
    n_blocks: int,
    k_items: int,
    k_users: int,
) -> pd.DataFrame:
    """The UDTF's input: every user once per item block, every item once per user bucket,
    with ``bucket`` and ``block`` to partition by. ``users``/``items``: position, factors,
    servable, boost (and ``excluded`` for users)."""
    if n_buckets < 1 or n_blocks < 1:
        raise ValueError("n_buckets and n_blocks must be >= 1")
    users = users.assign(side="user", bucket=users["position"] % n_buckets)
    items = items.assign(side="item", block=items["position"] % n_blocks, excluded=None)
    per_block = users.merge(pd.DataFrame({"block": range(n_blocks)}), how="cross")
    per_bucket = items.merge(pd.DataFrame({"bucket": range(n_buckets)}), how="cross")
    both = pd.concat([per_block, per_bucket], ignore_index=True)
    both["k_items"], both["k_users"] = int(k_items), int(k_users)
    return both[["bucket", "block", *INPUT_COLUMNS]]


def score_partitions(rows: pd.DataFrame) -> pd.DataFrame:
    """Every partition of :func:`partition_rows` scored as the UDTF would, one at a time."""
    parts = [score_partition(group) for _, group in rows.groupby(["bucket", "block"], sort=True)]
    if not parts:
        return pd.DataFrame(columns=OUTPUT_COLUMNS)
    return pd.concat(parts, ignore_index=True)
