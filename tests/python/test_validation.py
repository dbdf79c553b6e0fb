"""GX validation (proactive_recs_tools.validation) on small hand-made DuckDB files.

The in-process tests share one GX import; the CLI tests run the module as a user would and
check its exit code and messages.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from proactive_recs.notifications.backtest import POLICIES
from proactive_recs_tools.validation import (
    EXIT_FAILED,
    EXIT_MISSING,
    EXIT_OK,
    Settings,
    rolling_sends,
    validate,
)

REPO = Path(__file__).resolve().parents[2]
RUN_DATE = "2026-11-01"
TS = pd.Timestamp


def clean_tables() -> dict[str, pd.DataFrame]:
    """Sources, staging, eligibility, campaigns and every output, all valid."""
    users = ["u1", "u2", "u3", "u4"]
    raw_users = pd.DataFrame(
        {
            "user_id": users + [" "],  # one blank id: dirt at a small rate is expected...
            "email": [f"{u}@example.com" for u in users] + [""],
            "joined_at": ["2026-01-01 10:00:00+00:00"] * 5,
            "country": ["DE", "FR", "US", "DE", "DE"],
            "timezone": ["Europe/Berlin", "Europe/Paris", None, "UTC", None],
            "email_opt_in": ["true", "true", "true", "false", "true"],
            "unsubscribed_at": [None] * 5,
            "loyalty_group": ["new", "loyal", "regular", "new", "new"],
        }
    )
    # ...but the mostly threshold is per table: 20 good rows keep the share above 0.95.
    extra = pd.DataFrame({c: raw_users[c].iloc[0] for c in raw_users.columns}, index=range(20))
    extra["user_id"] = [f"x{i}" for i in range(20)]
    raw_users = pd.concat([raw_users, extra], ignore_index=True)
    raw_items = pd.DataFrame(
        {
            "item_id": ["i1", "i2", "i3"],
            "title": ["Mug", "Lamp", "Desk"],
            "category": ["kitchen", "home", "home"],
            "price": ["5.0", "20.5", "120"],
            "available_from": ["2026-10-01 00:00:00+00:00"] * 3,
            "available_until": [None] * 3,
            "url": ["/i1", "/i2", "/i3"],
            "image_url": ["/i1.png", "/i2.png", "/i3.png"],
            "brand": ["a", "b", "c"],
        }
    )
    raw_transactions = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u2", "u3"],
            "item_id": ["i1", "i2", "i2", "i3"],
            "occurred_at": ["2026-10-20 12:00:00+00:00"] * 4,
            "event_type": ["view", "purchase", "", "add_to_cart"],
            "quantity": ["1", "1", "2", "1"],
            "amount": ["", "20.5", "41", ""],
        }
    )
    raw_sends = pd.DataFrame(
        {
            "send_id": ["s1", "s2"],
            "user_id": ["u1", "u2"],
            "campaign_id": ["weekly_digest", "new_arrivals"],
            "item_id": [None, "i3"],
            "channel": ["email", "push"],
            "sent_at": ["2026-10-20 09:00:00+00:00", "2026-10-29 09:00:00+00:00"],
        }
    )
    raw_events = pd.DataFrame(
        {
            "send_id": ["s1", "s1"],
            "event_type": ["delivered", "open"],
            "occurred_at": ["2026-10-20 09:01:00+00:00", "2026-10-20 10:00:00+00:00"],
        }
    )

    stg_users = pd.DataFrame(
        {
            "user_id": users,
            "email": [f"{u}@example.com" for u in users],
            "joined_at": [TS("2026-01-01 10:00")] * 4,
            "country": ["DE", "FR", "US", "DE"],
            "timezone": ["Europe/Berlin", "Europe/Paris", None, "UTC"],
            "email_opt_in": [True, True, True, False],
            "unsubscribed_at": pd.Series([pd.NaT] * 4, dtype="datetime64[us]"),
            "loyalty_group": ["new", "loyal", "regular", "new"],
        }
    )
    stg_items = pd.DataFrame(
        {
            "item_id": ["i1", "i2", "i3"],
            "title": ["Mug", "Lamp", "Desk"],
            "category": ["kitchen", "home", "home"],
            "price": [5.0, 20.5, 120.0],
            "available_from": [TS("2026-10-01")] * 3,
            "available_until": pd.Series([pd.NaT] * 3, dtype="datetime64[us]"),
            "url": ["/i1", "/i2", "/i3"],
            "image_url": ["/i1.png", "/i2.png", "/i3.png"],
        }
    )
    stg_transactions = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u2", "u3"],
            "item_id": ["i1", "i2", "i2", "i3"],
            "occurred_at": [TS("2026-10-20 12:00")] * 4,
            "event_type": ["view", "purchase", "purchase", "add_to_cart"],
            "quantity": [1.0, 1.0, 2.0, 1.0],
            "amount": [None, 20.5, 41.0, None],
            "event_weight": [1.0, 5.0, 5.0, 3.0],
        }
    )
    stg_sends = pd.DataFrame(
        {
            "send_id": ["s1", "s2"],
            "user_id": ["u1", "u2"],
            "campaign_id": ["weekly_digest", "new_arrivals"],
            "item_id": [None, "i3"],
            "channel": ["email", "push"],
            "sent_at": [TS("2026-10-20 09:00"), TS("2026-10-29 09:00")],
        }
    )
    stg_events = pd.DataFrame(
        {
            "send_id": ["s1", "s1"],
            "event_type": ["delivered", "open"],
            "occurred_at": [TS("2026-10-20 09:01"), TS("2026-10-20 10:00")],
        }
    )
    eligibility = pd.DataFrame(
        {
            "user_id": users,
            "is_suppressed": [False, False, False, True],
            "suppression_reason": [None, None, None, "not_opted_in"],
        }
    )
    weights = pd.DataFrame(
        {
            "event_type": ["view", "wishlist", "add_to_cart", "purchase"],
            "weight": [1.0, 2.0, 3.0, 5.0],
            "is_conversion": [False, False, False, True],
        }
    )
    campaigns = pd.DataFrame(
        {
            "campaign_id": ["weekly_digest", "new_arrivals"],
            "campaign_type": ["digest", "item_push"],
            "channel": ["email", "push"],
            "audience_size": pd.array([None, 2], dtype="Int64"),
            "max_sends_per_user_week": [1, 2],
        }
    )

    pairs = [(u, i) for u in ["u1", "u2", "u3"] for i in ["i1", "i2", "i3"]]
    user_item_scores = pd.DataFrame(
        {
            "user_id": [u for u, _ in pairs],
            "item_id": [i for _, i in pairs],
            "rank": [1, 2, 3] * 3,
            "score": [0.9, 0.5, 0.1] * 3,
        }
    )
    item_user_scores = pd.DataFrame(
        {
            "item_id": [i for _, i in pairs],
            "user_id": [u for u, _ in pairs],
            "rank": [1, 1, 1, 2, 2, 2, 3, 3, 3],
            "score": [0.8, 0.8, 0.8, 0.4, 0.4, 0.4, 0.2, 0.2, 0.2],
        }
    )
    model_evaluation = pd.DataFrame(
        {
            "model": ["served", "popularity", "served", "served", "heavy_users"],
            "direction": [
                "user_to_item",
                "user_to_item",
                "user_to_item",
                "item_to_user",
                "item_to_user",
            ],
            "segment": ["all"] * 5,
            "metric": ["ndcg", "ndcg", "coverage", "recall", "recall"],
            "k": pd.array([10, 10, None, 50, 50], dtype="Int64"),
            "value": [0.21, 0.12, 0.6, 0.4, 0.35],
        }
    )
    audience = pd.DataFrame(
        {
            "send_key": ["k1", "k2", "k3", "k4"],
            "user_id": ["u1", "u1", "u2", "u3"],
            "email": ["u1@example.com", "u1@example.com", "u2@example.com", "u3@example.com"],
            "channel": ["email", "push", "push", "push"],
            "campaign_id": ["weekly_digest", "new_arrivals", "new_arrivals", "new_arrivals"],
            "item_id": [None, "i1", "i1", "i2"],
            "rank": [1, 2, 1, 1],
            "score": [0.7, 0.5, 0.4, 0.3],
            "scheduled_send_at": [
                TS("2026-11-01 08:00"),
                TS("2026-11-02 08:00"),
                TS("2026-11-01 08:00"),
                pd.NaT,
            ],
            "is_holdout": [False, False, False, True],
        }
    )
    digest = pd.DataFrame(
        {
            "user_id": ["u1"],
            "email": ["u1@example.com"],
            "items": [
                json.dumps([{"item_id": "i2", "title": "Lamp", "url": "/i2", "price": 20.5}])
            ],
        }
    )
    notification_log = audience[["send_key"]].assign(run_date=TS(RUN_DATE))
    policies = list(POLICIES)  # the backtest's own list, in its order
    metrics = [
        "sends",
        "conversions",
        "conversions_per_send",
        "users_reached",
        "p95_sends_per_user_week",
        "max_sends_per_user_week",
    ]
    values = {
        "sends": 100.0,
        "conversions": 5.0,
        "conversions_per_send": 0.05,
        "users_reached": 60.0,
        "p95_sends_per_user_week": 2.0,
        "max_sends_per_user_week": 3.0,
    }
    backtest = pd.DataFrame(
        [(p, m, values[m] * (1 if p == "configured" else 2)) for p in policies for m in metrics],
        columns=["policy", "metric", "value"],
    )
    backtest.loc[backtest["metric"] == "conversions_per_send", "value"] = 0.05
    return {
        "raw_users": raw_users,
        "raw_items": raw_items,
        "raw_transactions": raw_transactions,
        "raw_notification_sends": raw_sends,
        "raw_notification_events": raw_events,
        "stg_users": stg_users,
        "stg_items": stg_items,
        "stg_transactions": stg_transactions,
        "stg_notification_sends": stg_sends,
        "stg_notification_events": stg_events,
        "int_user_eligibility": eligibility,
        "stg_event_type_weights": weights,
        "stg_campaigns": campaigns,
        "user_item_scores": user_item_scores,
        "item_user_scores": item_user_scores,
        "model_evaluation": model_evaluation,
        "notification_audience": audience,
        "email_digest": digest,
        "notification_log": notification_log,
        "campaign_backtest": backtest,
    }


def write_db(path: Path, tables: dict[str, pd.DataFrame]) -> Path:
    with duckdb.connect(str(path)) as con:
        for name, frame in tables.items():
            con.register("incoming", frame)
            con.execute(f'create table "{name}" as select * from incoming')
            con.unregister("incoming")
    return path


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "proactive_recs_tools.validation", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


SETTINGS = Settings(run_date=RUN_DATE)


def messages(report) -> list[str]:
    return [f.message() for f in report.failures]


def test_clean_database_passes(tmp_path):
    db = write_db(tmp_path / "clean.duckdb", clean_tables())
    report = validate(db, SETTINGS, tmp_path / "docs")
    assert report.exit_code == EXIT_OK, "\n".join(report.lines())
    suites = {r.check.suite for r in report.results}
    assert suites == {"sources", "staging", "outputs"}
    assert "user_category_scores" in report.skipped  # not in the fixture: skipped, not failed
    assert (tmp_path / "docs" / "index.html").exists()
    names = {r.check.name for r in report.results}
    assert "notification_audience [joined to int_user_eligibility]" in names
    assert "notification_audience [sends per user and channel, rolling 7 days]" in names


def test_duplicated_send_key_fails_naming_expectation_and_table(tmp_path):
    tables = clean_tables()
    tables["notification_audience"].loc[1, "send_key"] = "k1"
    db = write_db(tmp_path / "dup.duckdb", tables)
    report = validate(db, SETTINGS)
    assert report.exit_code == EXIT_FAILED
    found = [m for m in messages(report) if "expect_column_values_to_be_unique" in m]
    assert found == [
        "FAILED expect_column_values_to_be_unique(column=send_key) on "
        "notification_audience: 2 unexpected of 4 (e.g. k1, k1)"
    ]


def test_suppressed_user_in_audience_fails(tmp_path):
    tables = clean_tables()
    audience = tables["notification_audience"]
    extra = audience.iloc[[2]].assign(
        send_key="k5", user_id="u4", email="u4@example.com", item_id="i3"
    )
    tables["notification_audience"] = pd.concat([audience, extra], ignore_index=True)
    db = write_db(tmp_path / "suppressed.duckdb", tables)
    report = validate(db, SETTINGS)
    assert report.exit_code == EXIT_FAILED
    assert messages(report) == [
        "FAILED expect_column_values_to_be_in_set(column=is_suppressed, value_set=[False]) on "
        "notification_audience [joined to int_user_eligibility]: 1 unexpected of 5 "
        "(e.g. True)"
    ]


def test_rule_violations_in_outputs_are_each_named(tmp_path):
    tables = clean_tables()
    audience = tables["notification_audience"]
    # u2 gets three more pushes within a week: 1 history + 4 run sends > cap 2, and the
    # campaign cap of 2; item i1 then goes to 3 users > audience_size 2.
    more = pd.DataFrame(
        {
            "send_key": ["k6", "k7", "k8"],
            "user_id": ["u2", "u2", "u3"],
            "email": ["u2@example.com", "u2@example.com", "u3@example.com"],
            "channel": ["push"] * 3,
            "campaign_id": ["new_arrivals"] * 3,
            "item_id": ["i2", "i3", "i1"],
            "rank": [2, 3, 2],
            "score": [0.3, 0.2, 0.1],
            "scheduled_send_at": [TS("2026-11-02 08:00"), TS("2026-11-03 08:00"), pd.NaT],
            "is_holdout": [False, False, True],
        }
    )
    tables["notification_audience"] = pd.concat([audience, more], ignore_index=True)
    tables["user_item_scores"].loc[2, "rank"] = 4  # u1's ranks 1, 2, 4: a gap
    tables["model_evaluation"].loc[0, "value"] = 1.5
    tables["email_digest"].loc[0, "items"] = "[]"
    backtest = tables["campaign_backtest"]
    backtest.loc[
        (backtest["policy"] == "configured") & (backtest["metric"] == "max_sends_per_user_week"),
        "value",
    ] = 9.0
    db = write_db(tmp_path / "rules.duckdb", tables)
    report = validate(db, SETTINGS)
    text = "\n".join(messages(report))
    assert report.exit_code == EXIT_FAILED
    expected = [
        "expect_column_pair_values_a_to_be_greater_than_b(column_A=cap, column_B=sends_7d, "
        "or_equal=True, ignore_row_if=either_value_is_missing) on notification_audience "
        "[sends per user and channel, rolling 7 days]: 1 unexpected",
        "(column_A=campaign_cap, column_B=sends_7d, or_equal=True) on notification_audience "
        "[sends per user and campaign, rolling 7 days]: 1 unexpected",
        "(column_A=audience_size, column_B=n_users, or_equal=True) on notification_audience "
        "[users per campaign and item]: 1 unexpected",
        "expect_column_pair_values_to_be_equal(column_A=max_rank, column_B=n_rows) on "
        "user_item_scores [ranks per user_id]: 1 unexpected",
        "expect_column_values_to_be_between(column=value, min_value=0, max_value=1) on "
        "model_evaluation [metric in ndcg, recall, precision, map, coverage, ece, capture]: "
        "1 unexpected",
        "expect_column_values_to_be_between(column=items_array_length, min_value=1) on "
        "email_digest: 1 unexpected",
        # no vars: the planner's own defaults, adaptive cadence on, so the bound is the sum of
        # the cadence ceilings (5 e-mails + 3 pushes)
        "expect_column_values_to_be_between(column=value, min_value=0, max_value=8) on "
        "campaign_backtest [configured max_sends_per_user_week]: 1 unexpected",
    ]
    for part in expected:
        assert part in text, text
    assert len(report.failures) == len(expected), text


def test_caps_from_options_and_vars(tmp_path):
    tables = clean_tables()
    tables["notification_audience"].loc[2, "channel"] = "push"
    db = write_db(tmp_path / "caps.duckdb", tables)
    # u2: one push in the history + one in the run = 2 pushes in 7 days.
    strict = validate(db, Settings(run_date=RUN_DATE, caps={"push": 1}))
    assert any("sends per user and channel" in m for m in messages(strict))
    assert strict.context["caps_origin"] == "--cap"
    relaxed = validate(
        db,
        Settings(
            vars={
                "proactive_recs_run_date": RUN_DATE,
                "proactive_recs_frequency_rules": {"adaptive_cadence": True},
            }
        ),
    )
    assert relaxed.exit_code == EXIT_OK
    assert relaxed.context["caps"] == {"email": 5, "push": 3}


def test_rolling_sends_counts_history_and_run_in_each_window():
    audience = pd.DataFrame(
        {
            "user_id": ["a", "a", "a", "b"],
            "channel": ["push"] * 4,
            "scheduled_send_at": [
                TS("2026-11-01 08:00"),
                TS("2026-11-05 08:00"),
                TS("2026-11-09 08:00"),
                TS("2026-11-01 08:00"),
            ],
            "is_holdout": [False, False, False, True],
        }
    )
    history = pd.DataFrame(
        {
            "user_id": ["a", "a", "b"],
            "channel": ["push", "email", "push"],
            "sent_at": [TS("2026-10-25 09:00"), TS("2026-10-31 09:00"), TS("2026-10-31 09:00")],
        }
    )
    out = rolling_sends(audience, history, "channel")
    # a: the window ending 11-05 holds 11-01 and 11-05 (10-25 is > 7 days back) = 2; the one
    # ending 11-01 holds 10-25 and 11-01 = 2; b is a holdout: no row.
    assert out.to_dict("records") == [{"user_id": "a", "channel": "push", "sends_7d": 2}]


def test_score_not_finite_fails(tmp_path):
    tables = clean_tables()
    tables["item_user_scores"].loc[0, "score"] = np.inf
    db = write_db(tmp_path / "inf.duckdb", tables)
    text = "\n".join(messages(validate(db, SETTINGS)))
    assert (
        "expect_column_values_to_be_between(column=score, min_value=-float_max, "
        "max_value=float_max) on item_user_scores: 1 unexpected"
    ) in text


def test_half_built_database_skips_outputs(tmp_path):
    tables = {
        k: v
        for k, v in clean_tables().items()
        if k.startswith(("raw_", "stg_")) and k != "stg_campaigns"
    }
    db = write_db(tmp_path / "half.duckdb", tables)
    report = validate(db, SETTINGS)
    text = "\n".join(report.lines())
    assert report.exit_code == EXIT_OK, text
    assert "not built, skipped: user_item_scores, item_user_scores" in text
    assert "note: " not in text  # notes only concern outputs that exist


def test_cli_failure_message_and_exit_code(tmp_path):
    tables = clean_tables()
    tables["notification_audience"].loc[[1, 2], "send_key"] = "k1"
    db = write_db(tmp_path / "dup.duckdb", tables)
    result = run_cli("--duckdb", str(db), "--run-date", RUN_DATE, "--no-data-docs")
    assert result.returncode == EXIT_FAILED
    assert (
        "FAILED expect_column_values_to_be_unique(column=send_key) on "
        "notification_audience: 3 unexpected"
    ) in result.stderr
    assert "  FAILED notification_audience " in result.stdout  # the per-table status line
    assert "Traceback" not in result.stderr


def test_empty_database_reports_missing_tables_without_traceback(tmp_path):
    db = tmp_path / "empty.duckdb"
    duckdb.connect(str(db)).close()
    result = run_cli("--duckdb", str(db), "--data-docs", str(tmp_path / "docs"))
    assert result.returncode == EXIT_MISSING
    assert "Traceback" not in result.stderr + result.stdout
    missing_line = next(line for line in result.stderr.splitlines() if line.startswith("missing: "))
    for table in ("raw_users", "raw_transactions", "stg_users", "stg_notification_events"):
        assert table in missing_line
    assert "not built, skipped: user_item_scores" in result.stdout


def test_missing_staging_table_is_required(tmp_path):
    tables = clean_tables()
    del tables["stg_items"]
    db = write_db(tmp_path / "nostg.duckdb", tables)
    report = validate(db, SETTINGS)
    assert report.exit_code == EXIT_MISSING
    assert report.problems()[-1] == "missing: stg_items"


def test_missing_column_is_named_once(tmp_path):
    tables = clean_tables()
    tables["raw_users"] = tables["raw_users"].drop(columns=["timezone"])
    db = write_db(tmp_path / "nocol.duckdb", tables)
    assert messages(validate(db, SETTINGS)) == [
        "FAILED expect_column_to_exist(column=timezone) on raw_users: column not found"
    ]


def test_missing_file_is_reported(tmp_path):
    result = run_cli("--duckdb", str(tmp_path / "nope.duckdb"))
    assert result.returncode == EXIT_MISSING
    assert "no such DuckDB file" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.dbt
def test_demo_build_passes(demo_db, tmp_path):
    """The real pipeline on the demo seeds meets every expectation that applies to it."""
    from proactive_recs_tools.validation import load_vars

    vars_ = load_vars([REPO / "dbt_project.yml", REPO / "vars" / "demo.yml"])
    report = validate(demo_db, Settings(vars=vars_), tmp_path / "docs")
    assert report.exit_code == EXIT_OK, "\n".join(report.lines())


def test_sources_in_another_schema(tmp_path):
    tables = clean_tables()
    db = write_db(
        tmp_path / "schema.duckdb", {k: v for k, v in tables.items() if not k.startswith("raw_")}
    )
    with duckdb.connect(str(db)) as con:
        con.execute("create schema shop")
        for name in [k for k in tables if k.startswith("raw_")]:
            con.register("incoming", tables[name])
            con.execute(
                f"create table shop.{name.replace('raw_', 'src_')} as select * from incoming"
            )
            con.unregister("incoming")
    renamed = {
        s: f"src_{s}"
        for s in ("users", "items", "transactions", "notification_sends", "notification_events")
    }
    missing = validate(db, Settings(run_date=RUN_DATE, source_schema="shop"))
    assert missing.problems()[-1].startswith("missing: shop.raw_users, shop.raw_items")
    report = validate(
        db,
        Settings(
            vars={
                "proactive_recs_run_date": RUN_DATE,
                "proactive_recs_source_schema": "shop",
                **{f"proactive_recs_{s}_table": t for s, t in renamed.items()},
            }
        ),
    )
    assert report.exit_code == EXIT_OK, "\n".join(report.lines())
    assert {r.check.name for r in report.results if r.check.suite == "sources"} == set(
        renamed.values()
    )
