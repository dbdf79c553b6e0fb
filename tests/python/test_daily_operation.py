"""Promises in daily operation, on real dbt builds of the demo (issue 13).

Each test runs the package the way a scheduled job does (consecutive daily runs on one
database, run_date unset, dirty sources) and checks what a send tool would actually send
(the sendable rows of notification_audience), not the package's own flags.
"""

from __future__ import annotations

import duckdb
import pandas as pd
import pytest

from conftest import DEMO_VARS, run_dbt
from proactive_recs.notifications.frequency import FrequencyRules
from proactive_recs_tools.simulate import RULES, _clean_sends, check

pytestmark = pytest.mark.dbt

# Everything needed to send today (the evaluation and the backtest are not).
DAILY = ["build", "--selector", "daily"]


def _sendable(path) -> pd.DataFrame:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.sql(
            "select user_id, email, channel, campaign_id, item_id, scheduled_send_at as sent_at "
            "from main.notification_audience where not is_holdout"
        ).df()


def test_caps_hold_over_consecutive_daily_runs_without_write_back(demo_copy):
    """Three daily runs, nothing written back: the planned sends of earlier runs still count
    (before the send ledger one user got an e-mail every day and the digest every day)."""
    sent = []
    days = ("2026-11-01T06:00:00", "2026-11-02T06:00:00", "2026-11-03T06:00:00")
    for day in days:
        # the last run is the scheduled `dbt build`; the first two skip the data tests (the
        # same models, the same plan: ~20 s each of a CI run kept)
        command = DAILY if day == days[-1] else ["run", *DAILY[1:]]
        result = run_dbt(command, demo_copy, {**DEMO_VARS, "proactive_recs_run_date": day})
        assert result.returncode == 0, result.stdout[-4000:]
        sent.append(_sendable(demo_copy).assign(run=day))
    sent = pd.concat(sent, ignore_index=True)
    # the same planned send is not planned again by the next run
    assert not sent.duplicated(["user_id", "campaign_id", "item_id", "sent_at"]).any()
    with duckdb.connect(str(demo_copy), read_only=True) as con:
        history = _clean_sends(con.sql("select * from main.raw_notification_sends").df())
        users = con.sql("select * from main.raw_users").df()
    rules = FrequencyRules()
    violations = check(sent.assign(suppressed_when_planned=False), history, users, rules)
    assert violations == dict.fromkeys(RULES, 0)
    digests = sent[sent["campaign_id"] == "weekly_digest"]
    assert not digests["user_id"].duplicated().any(), "the weekly digest went out twice in 3 days"
    assert sent["run"].nunique() == 3 and len(sent) > 0
    # The holdout, never sent, is planned under the same caps, spacing and repeats: what it
    # would have been sent over the three runs, where it would have been sent, keeps them.
    with duckdb.connect(str(demo_copy), read_only=True) as con:
        held = con.sql(
            "select user_id, channel, campaign_id, item_id, run_date, "
            "timezone('UTC', holdout_send_at) as sent_at from main.notification_holdout "
            "where holdout_send_at is not null"  # a demo database from before the column
        ).df()
    assert held["run_date"].nunique() >= 3
    held_violations = check(held.assign(suppressed_when_planned=False), history, users, rules)
    for rule in ("cap_per_user", "cap_per_mailbox", "min_spacing", "item_repeat"):
        assert held_violations[rule] == 0, (rule, held_violations)
    # An upgrade: a holdout table from a version without holdout_send_at. The ledger counts
    # its rows at their run date; the next build appends the column, old rows null.
    with duckdb.connect(str(demo_copy)) as con:
        con.execute("alter table main.notification_holdout drop column holdout_send_at")
    vars_ = {**DEMO_VARS, "proactive_recs_run_date": "2026-11-03T06:00:00"}
    ledger = run_dbt(
        ["run", "--select", "int_send_ledger", "notification_holdout"], demo_copy, vars_
    )
    assert ledger.returncode == 0, ledger.stdout[-4000:]
    with duckdb.connect(str(demo_copy), read_only=True) as con:
        held_rows = con.sql(
            "select count(*) from main.int_send_ledger where ledger_source = 'notification_holdout'"
        ).fetchone()[0]
        columns = [r[0] for r in con.sql("describe main.notification_holdout").fetchall()]
    assert held_rows > 0 and "holdout_send_at" in columns


def test_run_date_unset_builds_everything_for_now(demo_copy):
    """The production default: no run_date var means the invocation's start, in every model.
    (One backtest week instead of four: the weeks only repeat what the first one reads.)"""
    unpinned = {k: v for k, v in DEMO_VARS.items() if k != "proactive_recs_run_date"}
    unpinned["proactive_recs_backtest_weeks"] = 1
    result = run_dbt(["build", "--exclude", "tag:demo_data"], demo_copy, unpinned)
    assert result.returncode == 0, result.stdout[-4000:]
    with duckdb.connect(str(demo_copy), read_only=True) as con:
        (run_date, pinned) = con.execute(
            "select run_date, is_run_date_pinned from main.int_run_context"
        ).fetchone()
        (audience_run,) = con.execute(
            "select distinct run_date from main.notification_audience"
        ).fetchone()
        (n_scores,) = con.execute("select count(*) from main.user_item_scores").fetchone()
    assert not pinned
    assert abs(pd.Timestamp.now("UTC").tz_localize(None) - pd.Timestamp(run_date)) < pd.Timedelta(
        hours=1
    )
    assert pd.Timestamp(audience_run) == pd.Timestamp(run_date)
    assert n_scores > 0  # not an empty popularity fallback


def test_a_run_date_before_the_latest_logged_run_stops_unless_backfill_is_allowed(demo_copy):
    earlier = {**DEMO_VARS, "proactive_recs_run_date": "2026-10-25"}
    stopped = run_dbt(["build", "--select", "int_run_context"], demo_copy, earlier)
    assert stopped.returncode != 0
    assert "earlier than the latest logged run" in stopped.stdout
    assert "proactive_recs_allow_backfill" in stopped.stdout
    allowed = run_dbt(
        ["build", "--select", "int_run_context"],
        demo_copy,
        {**earlier, "proactive_recs_allow_backfill": True},
    )
    assert allowed.returncode == 0, allowed.stdout[-4000:]


@pytest.mark.parametrize("bad_run_date", ["2026-11-01'; drop table x; --", "next tuesday"])
def test_a_run_date_that_is_not_a_date_stops_naming_the_var(demo_copy, bad_run_date):
    result = run_dbt(
        ["build", "--select", "int_run_context"],
        demo_copy,
        {**DEMO_VARS, "proactive_recs_run_date": bad_run_date},
    )
    assert result.returncode != 0
    assert "var proactive_recs_run_date" in result.stdout


def test_a_source_that_loses_most_rows_stops_before_the_public_tables_are_replaced(demo_copy):
    """'oui'/'non' consent rejects every user (and with them every transaction and send):
    the build must stop, name the source, reasons and counts, and leave the last audience."""
    with duckdb.connect(str(demo_copy)) as con:
        (before,) = con.execute("select count(*) from main.notification_audience").fetchone()
        con.execute(
            "update main.raw_users set email_opt_in = case when email_opt_in = 'true' "
            "then 'oui' else 'non' end"
        )
    result = run_dbt(DAILY, demo_copy, DEMO_VARS)
    assert result.returncode != 0
    assert "source 'users' lost" in result.stdout
    assert "unparseable_value" in result.stdout
    with duckdb.connect(str(demo_copy), read_only=True) as con:
        assert con.execute("select count(*) from main.notification_audience").fetchone() == (
            before,
        )


PUBLIC_TABLES = [
    "user_item_scores",
    "item_user_scores",
    "prelaunch_item_user_scores",
    "unscored_items",
    "user_category_scores",
    "notification_audience",
    "email_digest",
    "rejected_candidates",
    "notification_sync",
    "notification_holdout",
    "rejected_rows",
    "run_diagnostics",
]
# the run's own timestamps: when the build happened, not what it decided
BUILD_TIMESTAMPS = {"updated_at", "logged_at", "first_planned_at"}


def test_shuffled_sources_and_two_threads_give_identical_public_tables(demo_db, demo_copy):
    """Every source in another row order, dbt with 2 threads: the daily public tables equal
    the demo build's (pinned, 1 thread), every column but the build's own timestamps."""
    with duckdb.connect(str(demo_copy)) as con:
        for table in (
            "raw_users",
            "raw_items",
            "raw_transactions",
            "raw_notification_sends",
            "raw_notification_events",
        ):
            con.execute(
                f"create or replace table main.{table} as select * from main.{table} "
                f"order by hash(concat_ws('|', *columns(*)), 42)"
            )
    result = run_dbt([*DAILY, "--threads", "2"], demo_copy, DEMO_VARS)
    assert result.returncode == 0, result.stdout[-4000:]
    with duckdb.connect() as con:
        con.execute(f"attach '{demo_db}' as reference (read_only)")
        con.execute(f"attach '{demo_copy}' as shuffled (read_only)")
        for table in PUBLIC_TABLES:
            columns = [
                c
                for (c,) in con.execute(
                    "select column_name from information_schema.columns "
                    "where table_catalog = 'reference' and table_name = ? "
                    "order by ordinal_position",
                    [table],
                ).fetchall()
                if c not in BUILD_TIMESTAMPS
            ]
            assert columns, table
            select = ", ".join(f'"{c}"' for c in columns)
            # A daily run that trains the recommender itself (a diagnostic says so) serves
            # the same scores as one that reuses the stored stages; only that diagnostic may
            # differ (`make build` trains the stages before the reference's daily run).
            where = (
                " where diagnostic != 'stages_trained_in_run'" if table == "run_diagnostics" else ""
            )
            for a, b in (("reference", "shuffled"), ("shuffled", "reference")):
                (n,) = con.execute(
                    f"select count(*) from (select {select} from {a}.main.{table}{where} "
                    f"except all select {select} from {b}.main.{table}{where})"
                ).fetchone()
                assert n == 0, f"{table}: {n} rows of {a} not in {b}"
