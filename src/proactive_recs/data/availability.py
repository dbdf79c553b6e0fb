"""Whether an item may be recommended or sent at an instant: ``available_from <= t <
available_until``, a null bound open.

The rule's home for the run is SQL (``int_item_availability``: ``availability_status`` and
``is_available`` as of ``availability_as_of``, the run date). When an items frame carries
that flag for the very instant asked about, the library reads it and decides nothing.
Only for other instants (the evaluation's cutoff, each day the backtest replays) does it
apply the rule to the dates itself, here, once; a test keeps the two equal on the demo.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from proactive_recs.data.instants import utc_instant, utc_naive

__all__ = ["FLAG", "FLAG_AS_OF", "available_at", "upcoming_within"]

FLAG = "is_available"  # int_item_context's flag ...
FLAG_AS_OF = "availability_as_of"  # ... and the instant it holds for


def _bound(items: pd.DataFrame, column: str) -> pd.Series:
    if column not in items:
        return pd.Series(pd.NaT, index=items.index, dtype="datetime64[ns]")
    return utc_naive(items[column])


def _flag_holds_at(items: pd.DataFrame, as_of: pd.Timestamp) -> bool:
    if FLAG not in items or FLAG_AS_OF not in items or items.empty:
        return False
    stamped = utc_naive(items[FLAG_AS_OF])
    return bool(stamped.notna().all() and (stamped == as_of).all())


def available_at(items: pd.DataFrame, as_of) -> np.ndarray:
    """Boolean per row of ``items``: available at ``as_of``.

    SQL's ``is_available`` when the frame carries it for this instant (a null flag is not
    available), else the rule on ``available_from`` / ``available_until``.
    """
    as_of = utc_instant(as_of, name="as_of")
    if _flag_holds_at(items, as_of):
        return items[FLAG].astype("boolean").fillna(False).to_numpy(dtype=bool)
    start, until = _bound(items, "available_from"), _bound(items, "available_until")
    return ((start.isna() | (start <= as_of)) & (until.isna() | (until > as_of))).to_numpy()


def upcoming_within(items: pd.DataFrame, as_of, days: float) -> np.ndarray:
    """Boolean per row: not yet available at ``as_of`` but from within ``days`` after it, and
    not over before it starts (the items a pre-launch audience is built for)."""
    as_of = utc_instant(as_of, name="as_of")
    start, until = _bound(items, "available_from"), _bound(items, "available_until")
    horizon = as_of + pd.Timedelta(days=float(days or 0))
    starts_soon = start.notna() & (start > as_of) & (start <= horizon)
    return (starts_soon & (until.isna() | (until > start))).to_numpy()
