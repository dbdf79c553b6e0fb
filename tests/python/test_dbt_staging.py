"""The dbt staging layer on real DuckDB: bad sources, empty sources, the demo's books."""

from __future__ import annotations

import json

import duckdb
import pytest

from conftest import DEMO_VARS, REPO, run_dbt

pytestmark = pytest.mark.dbt

CONTRACT = {
    # loyalty_group is not required, but the shipped campaigns' booster reads it
    "raw_users": [
        "user_id",
        "email",
        "joined_at",
        "country",
        "timezone",
        "email_opt_in",
        "unsubscribed_at",
        "loyalty_group",
    ],
    "raw_items": [
        "item_id",
        "title",
        "category",
        "price",
        "available_from",
        "available_until",
        "url",
        "image_url",
    ],
    "raw_transactions": ["user_id", "item_id", "occurred_at", "event_type", "quantity", "amount"],
    "raw_notification_sends": [
        "send_id",
        "user_id",
        "campaign_id",
        "item_id",
        "channel",
        "sent_at",
    ],
    "raw_notification_events": ["send_id", "event_type", "occurred_at"],
}


def make_empty_sources(path, schema="raw", drop_column=None):
    with duckdb.connect(str(path)) as con:
        con.execute(f"create schema {schema}")
        for table, columns in CONTRACT.items():
            kept = [c for c in columns if (table, c) != drop_column]
            column_list = ", ".join(f"{c} varchar" for c in kept)
            con.execute(f"create table {schema}.{table} ({column_list})")


def test_missing_required_column_stops_the_build_naming_source_and_column(tmp_path):
    path = tmp_path / "bad.duckdb"
    make_empty_sources(path, drop_column=("raw_items", "available_until"))
    result = run_dbt(
        ["build", "--exclude", "tag:demo_data"],
        path,
        {"proactive_recs_source_schema": "raw", "proactive_recs_run_date": "2026-11-01"},
    )
    assert result.returncode != 0
    assert "source 'items'" in result.stdout
    assert "missing required column(s): available_until" in result.stdout


def test_empty_sources_build_green_with_empty_outputs(tmp_path):
    path = tmp_path / "empty.duckdb"
    make_empty_sources(path)
    result = run_dbt(
        ["build", "--exclude", "tag:demo_data"],
        path,
        {
            "proactive_recs_source_schema": "raw",
            "proactive_recs_run_date": "2026-11-01",
            "proactive_recs_allow_empty": ["users", "items", "interactions"],
        },
    )
    assert result.returncode == 0, result.stdout[-4000:]
    with duckdb.connect(str(path), read_only=True) as con:
        for model in ("stg_users", "stg_items", "stg_transactions", "rejected_rows"):
            assert con.execute(f"select count(*) from main.{model}").fetchone() == (0,)


def test_empty_sources_stop_the_build_unless_a_var_says_empty_is_expected(tmp_path):
    path = tmp_path / "empty.duckdb"
    make_empty_sources(path)
    result = run_dbt(
        ["build", "--exclude", "tag:demo_data"],
        path,
        {"proactive_recs_source_schema": "raw", "proactive_recs_run_date": "2026-11-01"},
    )
    assert result.returncode != 0
    assert "proactive_recs: users is empty" in result.stdout
    assert "proactive_recs_allow_empty" in result.stdout


def test_demo_rejections_match_what_the_generator_planted(demo_con):
    manifest = json.loads((REPO / "seeds" / "demo" / "generation_manifest.json").read_text())
    for source_name in (
        "users",
        "items",
        "transactions",
        "notification_sends",
        "notification_events",
    ):
        expected = manifest["sources"][source_name]
        got = dict(
            demo_con.execute(
                "select rejection_reason, count(*) from main.rejected_rows "
                "where source_name = ? group by 1",
                [source_name],
            ).fetchall()
        )
        assert got == {k: v for k, v in expected["rejected"].items() if v}, source_name
        # the rows the models read: staging's clean rows, less those naming an unknown id
        kept = f"stg_{source_name}" if source_name in ("users", "items") else f"int_{source_name}"
        (clean,) = demo_con.execute(f"select count(*) from main.{kept}").fetchone()
        assert clean == expected["clean_rows"], source_name


def test_notification_log_rerun_of_the_same_run_date_adds_nothing(demo_db, tmp_path):
    copy = tmp_path / "rerun.duckdb"
    copy.write_bytes(demo_db.read_bytes())
    count = "select count(*) from main.notification_log"
    with duckdb.connect(str(copy), read_only=True) as con:
        (before,) = con.execute(count).fetchone()
        (planned,) = con.execute("select count(*) from main.notification_audience").fetchone()
    assert before == planned > 0
    rerun = run_dbt(["build", "--select", "notification_plan+"], copy, DEMO_VARS)
    assert rerun.returncode == 0, rerun.stdout[-4000:]
    with duckdb.connect(str(copy), read_only=True) as con:
        assert con.execute(count).fetchone() == (before,)
        # nor does the sync table, which a reverse-ETL tool reads incrementally
        assert con.execute("select count(*) from main.notification_sync").fetchone() == (
            con.execute(
                "select count(*) from main.notification_audience where not is_holdout"
            ).fetchone()
        )


def test_lines_that_tie_on_the_key_but_differ_elsewhere_are_kept_the_same_way_every_build(
    demo_copy,
):
    """Two lines alike on every key column (user, item, time, type, quantity) but not on
    amount: which one staging keeps, and which audit id each gets, must not depend on the
    source's row order or on dbt's threads (Online Retail has such lines: the same product
    twice in one invoice at two prices)."""
    with duckdb.connect(str(demo_copy)) as con:
        first = con.sql(
            "select user_id, item_id, occurred_at, event_type, quantity"
            " from main.raw_transactions where amount is not null limit 1"
        ).fetchone()
        for amount in ("1.00", "2.00", "3.00"):
            con.execute(
                "insert into main.raw_transactions values (?, ?, ?, ?, ?, ?)", [*first, amount]
            )
    builds = []
    for seed, threads in ((1, "1"), (2, "2")):
        with duckdb.connect(str(demo_copy)) as con:
            con.execute(
                "create or replace table main.raw_transactions as select * from "
                f"main.raw_transactions order by hash(concat_ws('|', *columns(*)), {seed})"
            )
        result = run_dbt(
            ["run", "--select", "+stg_transactions", "--threads", threads], demo_copy, DEMO_VARS
        )
        assert result.returncode == 0, result.stdout[-3000:]
        with duckdb.connect(str(demo_copy), read_only=True) as con:
            builds.append(
                {
                    table: sorted(con.sql(f"select * from main.{table}").fetchall(), key=repr)
                    for table in ("stg_transactions_audited", "stg_transactions")
                }
            )
    assert builds[0] == builds[1]
    kept = [row for row in builds[0]["stg_transactions"] if row[:2] == first[:2]]
    assert kept, "the planted line is kept once"
