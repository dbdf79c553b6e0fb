"""Reading DuckDB relations into pandas for the Python models."""

from __future__ import annotations

import platform
import subprocess
import sys

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from proactive_recs.warehouse.dbt_io import (
    _ROUND_TRIPS,
    _list_rows,
    duckdb_to_pandas,
    to_pandas,
)


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


def test_every_column_type_the_models_read_comes_as_df_gives_it():
    """Text goes through Arrow and the other columns back through DuckDB's own conversion:
    the frame must be the one ``.df()`` gives, for each type the package's tables hold, over
    several batches, and a zoned timestamp (whose pandas form depends on the session's
    TimeZone) must be read the plain way."""
    con = duckdb.connect()
    con.execute("set TimeZone = 'America/New_York'")
    select = """
        select
            case when i % 5 = 0 then null else 'id_' || (i % 37)::varchar end as text_id,
            'unique_' || i::varchar as unique_text,
            case when i % 3 = 0 then null else i end::integer as nullable_int,
            (i / 7)::bigint as big,
            (i % 100)::tinyint as tiny,
            (i % 1000)::smallint as small,
            (i * 0.25)::double as ratio,
            case when i % 9 = 0 then null else [i * 1.0, 2.0]::float[] end as float_list,
            (i * 1.25)::decimal(28, 6) as amount,
            (i * 0.5)::float as weight,
            case when i % 4 = 0 then null else [i * 1.0, 2.0]::double[] end as factors,
            [i * 0.5, -1.0, 1e300]::double[] as profile,
            case when i = 77 then [1.0] else [i * 0.5, 1.0] end::double[] as ragged,
            timestamp '2026-01-01' + to_seconds(i) as occurred_at,
            (timestamp '2026-01-01' + to_seconds(i))::timestamp_ns as occurred_at_ns,
            date '2026-01-01' + (i % 30)::integer as day,
            case when i % 6 = 0 then null else i % 2 = 0 end as flag
        from range(10000) r(i)
        order by i desc
    """
    # every type here takes the Arrow path (else this would test the plain one)
    assert all(_ROUND_TRIPS.fullmatch(str(kind)) for kind in con.sql(select).types)
    expected = con.sql(select).df()
    got = duckdb_to_pandas(con.sql(select), vectors_per_chunk=1)
    pd.testing.assert_frame_equal(got, expected)
    assert len({id(v) for v in got["text_id"].dropna().to_numpy()}) == 37
    assert got["text_id"].isna().sum() == 2000
    # equal-length lists without nulls are read as rows of one block per chunk (compared
    # above with .df()); lists of two lengths, a null list or a null value the plain way
    assert _list_rows(pa.array([[0.5, 1.0], [2.0, 3.0]])) is not None
    for other in ([[0.5, 1.0], [2.0]], [[0.5, 1.0], None], [[0.5, None], [1.0, 2.0]], [[1, 2]]):
        assert _list_rows(pa.array(other)) is None
    rows = _list_rows(pa.array([[0.5, 1.0], [2.0, 3.0]]).slice(1))
    assert len(rows) == 1 and rows[0].tolist() == [2.0, 3.0] and rows[0].flags.writeable

    zoned = (
        "select 'a' || (i % 3)::varchar as k, timestamptz '2026-01-01 12:00:00+00' as at"
        " from range(5) r(i)"
    )
    pd.testing.assert_frame_equal(duckdb_to_pandas(con.sql(zoned)), con.sql(zoned).df())
    untested = "select 'a' || (i % 3)::varchar as k, uuid() as u, 'x'::blob as b from range(5) r(i)"
    assert duckdb_to_pandas(con.sql(untested))["k"].tolist() == ["a0", "a1", "a2", "a0", "a1"]
    text_only = "select 'x' || (i % 4)::varchar as k from range(9000) r(i)"
    pd.testing.assert_frame_equal(
        duckdb_to_pandas(con.sql(text_only), vectors_per_chunk=1), con.sql(text_only).df()
    )


def test_two_threads_read_side_by_side():
    """dbt runs Python models in parallel threads with ``--threads 2``: two reads at once
    must both finish (one converter connection shared by the threads deadlocked)."""
    import threading

    con = duckdb.connect()
    _relation(con)
    expected = con.sql("select * from t order by occurred_at").df()
    results, errors = {}, []

    def read(name):
        try:
            cursor = con.cursor()  # what dbt-duckdb gives each thread
            for _ in range(20):
                results[name] = duckdb_to_pandas(
                    cursor.sql("select * from t order by occurred_at"), vectors_per_chunk=1
                )
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=read, args=(n,), daemon=True) for n in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "the reads deadlocked"
    assert not errors
    for frame in results.values():
        pd.testing.assert_frame_equal(frame, expected)


def test_empty_relation_keeps_columns_and_to_pandas_lower_cases():
    con = duckdb.connect()
    empty = duckdb_to_pandas(_relation(con).filter("false"))
    assert list(empty.columns) == ["user_id", "item_id", "occurred_at", "weight", "flag"]
    assert len(empty) == 0
    frame = to_pandas(con.sql('select 1 as "User_ID", \'a\' as "Item"'))
    assert list(frame.columns) == ["user_id", "item"]
    assert frame.iloc[0].tolist() == [np.int32(1), "a"]


SNOWPARK_LIKE = type("Session", (), {"__module__": "snowflake.snowpark.session"})()


def test_long_recommendation_table_holds_every_output_and_reaches_duckdb_either_way():
    from proactive_recs.recommender.two_stage import score
    from proactive_recs.warehouse.dbt_io import for_session
    from proactive_recs.warehouse.recommender_io import LONG_COLUMNS, long_recommendation_table

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
    table = long_recommendation_table(result)
    assert table.column_names == LONG_COLUMNS
    duckdb_side = for_session(table, duckdb.connect())
    assert duckdb_side is table  # DuckDB scans the Arrow table as it is
    snowpark_side = for_session(table, SNOWPARK_LIKE)
    assert isinstance(snowpark_side, pd.DataFrame)
    assert str(snowpark_side["rank"].dtype) == "Int64"
    assert str(snowpark_side["user_id"].dtype) == "string"
    assert isinstance(snowpark_side.loc[snowpark_side["factors"].notna(), "factors"].iloc[0], list)

    con = duckdb.connect()
    tables = {}
    for name, output in (("arrow", duckdb_side), ("pandas", snowpark_side)):  # noqa: B007
        con.execute("create or replace table t as select * from output")
        types = dict(con.execute("select column_name, column_type from (describe t)").fetchall())
        assert types["factors"] == "DOUBLE[]"
        assert types["rank"] == "BIGINT" and types["user_id"] == "VARCHAR"
        tables[name] = con.execute("select * from t order by all").fetchall()
    assert tables["arrow"] == tables["pandas"]  # same cells whichever way they travel

    con.execute("create or replace table t as select * from duckdb_side")
    counts = dict(con.execute("select record_type, count(*) from t group by 1").fetchall())
    assert counts["user_item"] == len(result.user_item_scores) > 0
    assert counts["item_user"] == len(result.item_user_scores) > 0
    assert counts["user_factor"] == len(result.user_factors) > 0
    assert counts["parameter"] == len(result.params) > 0
    # The user -> item rows carry the scorer's values, ids and ranks included.
    got = con.execute(
        "select user_id, item_id, rank, score, is_fallback, because_item_id from t"
        " where record_type = 'user_item' order by user_id, rank"
    ).fetchall()
    want = result.user_item_scores.sort_values(["user_id", "rank"])
    want = want[["user_id", "item_id", "rank", "score", "is_fallback", "because_item_id"]]
    want = [
        tuple(None if pd.isna(v) else v for v in row)
        for row in want.astype(object).itertuples(index=False)
    ]
    assert got == want
    first = result.user_factors.sort_values("user_id").iloc[0]
    vector = con.execute(
        "select factors from t where record_type = 'user_factor' order by user_id limit 1"
    ).fetchone()[0]
    assert vector == [first[f"factor_{f:02d}"] for f in range(4)]
    assert set(con.execute("select distinct stage from t").fetchall()) == {(result.stage,)}


def test_snowpark_sessions_are_recognised_by_their_module():
    from proactive_recs.warehouse.dbt_io import is_snowpark

    assert not is_snowpark(duckdb.connect())
    assert is_snowpark(SNOWPARK_LIKE)


def test_read_stages_offers_the_latest_matching_row_not_after_the_run():
    """Which stored stages a daily run is offered: fitted as of its run date or before, by
    this library version, preferring the run's own settings; a tz-aware column reads alike."""
    import base64

    import pandas as pd

    from proactive_recs import __version__
    from proactive_recs.recommender.config import RecommenderConfig
    from proactive_recs.recommender.stages import TrainedStages, settings_key
    from proactive_recs.warehouse.recommender_io import read_stages

    ours = RecommenderConfig().as_dict()
    other = {**ours, "factors": 8}

    def row(as_of, settings, version=__version__):
        stages = TrainedStages(as_of=pd.Timestamp(as_of), settings=settings, mf_params={})
        return {
            "stages_id": f"{as_of}-{settings_key(settings)}",
            "fitted_as_of": pd.Timestamp(as_of, tz="UTC"),
            "settings_key": settings_key(settings),
            "library_version": version,
            "payload_base64": base64.b64encode(stages.to_bytes()).decode(),
        }

    table = pd.DataFrame(
        [
            row("2026-10-01", ours),
            row("2026-10-08", other),  # later, but trained with other settings
            row("2026-10-20", ours),  # after the run
            row("2026-10-09", ours, version="0.0.1"),  # another version
        ]
    )
    stages, note = read_stages(table, pd.Timestamp("2026-10-15"), ours)
    assert stages.as_of == pd.Timestamp("2026-10-01") and "2026-10-01" in note
    latest, _ = read_stages(table, pd.Timestamp("2026-10-15"))  # no settings: the latest
    assert latest.as_of == pd.Timestamp("2026-10-08")
    none, why = read_stages(table, pd.Timestamp("2026-09-01"), ours)
    assert none is None and "fitted as of the run date or before" in why
    assert read_stages(None, pd.Timestamp("2026-10-15"))[1].startswith("no recommender_stages")
    # a row of this version in an older layout (written during development) is not used:
    # the run trains its own, and the note says why
    import proactive_recs.recommender.stages as stages_io

    layout = stages_io.FORMAT
    stages_io.FORMAT = layout - 1
    try:
        old_layout = row("2026-10-12", ours)
    finally:
        stages_io.FORMAT = layout
    with_old = pd.concat([table, pd.DataFrame([old_layout])], ignore_index=True)
    refused, why = read_stages(with_old, pd.Timestamp("2026-10-15"), ours)
    assert refused is None and "not usable" in why and f"format {layout - 1}" in why


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or not platform.libc_ver()[0] == "glibc",
    reason="malloc_trim is glibc's",
)
def test_freed_heap_memory_goes_back_to_the_system():
    """What a model frees stays in glibc's heap (the blocks kept alive between them leave
    holes that are never at the heap's top) until return_freed_memory hands it back. In a
    fresh interpreter: a long-lived one (a test worker) may serve the blocks from holes that
    are already resident, and then nothing shows in its RSS."""
    script = """
import gc
from pathlib import Path
from proactive_recs.warehouse.dbt_io import return_freed_memory

def rss_mb():
    status = Path("/proc/self/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmRSS"))
    return int(line.split()[1]) / 1024

blocks, pins = [], []
for k in range(60_000):  # 4 KB each: below glibc's mmap threshold, so from the heap
    blocks.append(bytes(4000) + b"x")
    if k % 16 == 0:
        pins.append(bytes(600) + b"y")
del blocks
gc.collect()
freed = rss_mb()
print(return_freed_memory(), freed - rss_mb(), len(pins))
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    ).stdout.split()
    trimmed, returned_mb, pins = out[0] == "True", float(out[1]), int(out[2])
    assert trimmed and pins == 3750
    assert returned_mb > 150, f"the freed blocks (~240 MB) should leave the process: {returned_mb}"


def _ledger_and_events(con):
    """A send ledger (one send a day) and its events, with a quote in one id."""
    con.execute(
        """
        create or replace table ledger as
        select 's' || i::varchar || case when i = 3 then '''q' else '' end as send_id,
               'i' || (i % 4)::varchar as item_id,
               timestamp '2026-01-01' + to_days(i::integer) as sent_at
        from range(10) r(i)
        """
    )
    con.execute(
        """
        create or replace table events as
        select send_id, 'open' as event_type, sent_at + interval 1 hour as occurred_at
        from ledger, range(2)
        union all select 'ghost', 'open', timestamp '2026-02-01'
        """
    )
    return con.table("ledger"), con.table("events")


def test_rows_since_in_and_matching_filter_relations_and_frames_alike():
    from proactive_recs.warehouse.dbt_io import rows_in, rows_matching, rows_since

    con = duckdb.connect()
    ledger, events = _ledger_and_events(con)
    since = pd.Timestamp("2026-01-07")
    for sends, evts in [(ledger, events), (ledger.df(), events.df())]:
        recent = rows_since(sends, "sent_at", since)
        assert sorted(to_pandas(recent)["send_id"]) == ["s6", "s7", "s8", "s9"]
        assert len(to_pandas(rows_since(sends, "sent_at", None))) == 10
        # the events of those sends only: two each, not the ghost's
        theirs = to_pandas(rows_matching(evts, recent, "send_id"))
        assert sorted(theirs["send_id"]) == sorted(["s6", "s7", "s8", "s9"] * 2)
        # ids with a quote, absent ids, no ids
        picked = to_pandas(rows_in(sends, "send_id", ["s3'q", "s5", "nobody"]))
        assert sorted(picked["send_id"]) == ["s3'q", "s5"]
        assert len(to_pandas(rows_in(sends, "item_id", []))) == 0


def test_rows_in_with_the_session_semi_joins_as_many_values_as_the_run_has():
    """With the model's session the values go in as a relation (semi join), not as an in
    list in the statement: 105,000 ids, quotes among them, give what pandas keeps."""
    from proactive_recs.warehouse.dbt_io import rows_in

    con = duckdb.connect()
    con.execute(
        """
        create table scores as
        select 'i' || (i % 150000)::varchar || case when i % 7 = 0 then '''q' else '' end
                   as item_id,
               i as n
        from range(300000) r(i)
        """
    )
    scores = con.table("scores")
    wanted = [f"i{k}" for k in range(0, 150000, 2)] + [f"i{k}'q" for k in range(0, 150000, 5)]
    got = to_pandas(rows_in(scores, "item_id", wanted, session=con))
    expected = rows_in(scores.df(), "item_id", wanted)
    assert len(expected) > 50000 and expected["item_id"].str.contains("'").any()
    assert sorted(got["n"]) == sorted(expected["n"])
    # the same rows as the in-list form, and none for no values
    assert sorted(to_pandas(rows_in(scores, "item_id", wanted[-500:]))["n"]) == sorted(
        to_pandas(rows_in(scores, "item_id", wanted[-500:], session=con))["n"]
    )
    assert len(to_pandas(rows_in(scores, "item_id", [], session=con))) == 0
