"""Time stamps the one way the library holds them: naive datetimes in UTC.

The warehouse hands over time stamps as naive UTC, as aware values in any zone, or as text
(a typed or a text source, DuckDB or Snowpark). Every module converts through these two
functions, so "the run's instant" and "when a row happened" mean the same thing everywhere.
A date without a time means midnight UTC.
"""

from __future__ import annotations

import pandas as pd

__all__ = ["utc_instant", "utc_naive"]


def utc_instant(value, *, name: str = "run date") -> pd.Timestamp:
    """One instant as a naive UTC ``Timestamp``; blank or unparseable stops naming ``name``."""
    try:
        instant = pd.Timestamp(value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} is not a time stamp: {value!r}") from error
    if pd.isna(instant):
        raise ValueError(f"{name} is not a time stamp: {value!r}")
    return instant.tz_convert("UTC").tz_localize(None) if instant.tzinfo is not None else instant


def utc_naive(values) -> pd.Series:
    """A Series of naive UTC datetimes (ns) from naive, aware, mixed-offset or text values.

    Naive values are taken as UTC. Already-naive datetime columns pass through without a
    copy (interaction columns run to tens of millions of rows).
    """
    series = values if isinstance(values, pd.Series) else pd.Series(values)
    if not pd.api.types.is_datetime64_any_dtype(series):
        # value by value: with format="ISO8601", pandas 2.3 reads a naive value that follows
        # an aware one in that value's offset instead of UTC (tested)
        series = pd.to_datetime(series, utc=True, format="mixed")
    if getattr(series.dt, "tz", None) is not None:
        series = series.dt.tz_convert("UTC").dt.tz_localize(None)
    return series if series.dtype == "datetime64[ns]" else series.astype("datetime64[ns]")
