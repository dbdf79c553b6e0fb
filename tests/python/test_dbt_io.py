"""Reading DuckDB relations into pandas for the Python models."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd

from proactive_recs.dbt_io import duckdb_to_pandas, to_pandas


def _relation(con):
    con.execute(
        """
        create or replace table t as
        select
            'user_' || (i % 97)::varchar as user_id,
            case when i % 11 = 0 then null else 'item_' || (i % 13)::varchar end as item_id,
            timestamp '2026-01-01' + to_seconds(i) as occurred_at,
            (i % 5)::float as weight,
            case when i % 7 = 0 then null else i % 2 = 0 end as flag
        from range(20000) r(i)
        """
    )
    return con.sql("select * from t order by occurred_at")


def test_chunked_read_equals_df_and_shares_repeated_strings():
    con = duckdb.connect()
    expected = _relation(con).df()
    # 2 vectors per chunk: 4,096 rows, so five chunks and a partial one
    got = duckdb_to_pandas(_relation(con), vectors_per_chunk=2)
    pd.testing.assert_frame_equal(got, expected)
    assert got["item_id"].isna().sum() == expected["item_id"].isna().sum() > 0
    # one object per distinct value, whatever chunk the cell came from
    assert len({id(v) for v in got["user_id"].to_numpy()}) == 97
    assert len({id(v) for v in got["item_id"].dropna().to_numpy()}) == 13


def test_empty_relation_keeps_columns_and_to_pandas_lower_cases():
    con = duckdb.connect()
    empty = duckdb_to_pandas(_relation(con).filter("false"))
    assert list(empty.columns) == ["user_id", "item_id", "occurred_at", "weight", "flag"]
    assert len(empty) == 0
    frame = to_pandas(con.sql('select 1 as "User_ID", \'a\' as "Item"'))
    assert list(frame.columns) == ["user_id", "item"]
    assert frame.iloc[0].tolist() == [np.int32(1), "a"]


def test_factor_vectors_reach_duckdb_as_double_lists_either_way():
    from proactive_recs.recommender_io import long_recommendation_frame
    from proactive_recs.serving import score

    rng = np.random.default_rng(0)
    interactions = pd.DataFrame(
        {
            "user_id": rng.integers(0, 80, 3000).astype(str),
            "item_id": rng.integers(0, 60, 3000).astype(str),
            "occurred_at": pd.Timestamp("2026-01-01")
            + pd.to_timedelta(rng.integers(0, 90, 3000), unit="D"),
        }
    )
    result = score(interactions, params={"factors": 4, "tune": False, "second_stage": False})
    con = duckdb.connect()
    tables = {}
    for arrays in (True, False):
        frame = long_recommendation_frame(result, factor_arrays=arrays)  # noqa: F841 (read by SQL)
        con.execute("create or replace table t as select * from frame")
        types = dict(con.execute("select column_name, column_type from (describe t)").fetchall())
        assert types["factors"] == "DOUBLE[]"
        tables[arrays] = con.execute(
            "select user_id, factors from t where record_type = 'user_factor' order by user_id"
        ).fetchall()
    assert len(tables[True]) == len(result.user_factors) > 0
    assert tables[True] == tables[False]  # same numbers whichever way they travel
    first = result.user_factors.sort_values("user_id").iloc[0]
    assert tables[True][0][1] == [first[f"factor_{f:02d}"] for f in range(4)]


def test_snowpark_sessions_are_recognised_by_their_module():
    from proactive_recs.dbt_io import is_snowpark

    assert not is_snowpark(duckdb.connect())
    fake = type("Session", (), {"__module__": "snowflake.snowpark.session"})()
    assert is_snowpark(fake)
