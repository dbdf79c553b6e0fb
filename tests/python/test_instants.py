"""The one conversion of time stamps to naive UTC (proactive_recs.data.instants)."""

import pandas as pd
import pytest

from proactive_recs.data.instants import utc_instant, utc_naive


def test_utc_instant_converts_aware_values_and_keeps_naive_ones():
    assert utc_instant("2024-03-10T09:00:00-05:00") == pd.Timestamp("2024-03-10 14:00")
    assert utc_instant(pd.Timestamp("2024-03-10 09:00")) == pd.Timestamp("2024-03-10 09:00")
    # a date alone is midnight UTC
    assert utc_instant("2024-03-10") == pd.Timestamp("2024-03-10 00:00")
    assert utc_instant("2024-03-10").tzinfo is None


@pytest.mark.parametrize("value", [None, "", "not a date", float("nan")])
def test_utc_instant_stops_on_a_missing_or_unparseable_value_naming_it(value):
    with pytest.raises(ValueError, match="var proactive_recs_eval_cutoff is not a time stamp"):
        utc_instant(value, name="var proactive_recs_eval_cutoff")


def test_utc_naive_reads_mixed_offsets_text_and_naive_values_alike():
    values = pd.Series(
        ["2024-01-01T10:00:00+02:00", "2024-01-01 08:00:00", None, "2024-01-01T03:00:00-05:00"]
    )
    out = utc_naive(values)
    assert out.dtype == "datetime64[ns]"
    assert out.iloc[0] == out.iloc[1] == out.iloc[3] == pd.Timestamp("2024-01-01 08:00")
    assert pd.isna(out.iloc[2])


def test_utc_naive_passes_a_naive_ns_column_through_without_a_copy():
    column = pd.Series(pd.to_datetime(["2024-01-01", "2024-01-02"])).astype("datetime64[ns]")
    assert utc_naive(column) is column
    aware = column.dt.tz_localize("Europe/Berlin")
    assert list(utc_naive(aware)) == [
        pd.Timestamp("2023-12-31 23:00"),
        pd.Timestamp("2024-01-01 23:00"),
    ]
