"""campaign_lift on a world built by hand: its SQL as dbt compiles it, run on DuckDB tables
whose every conversion is known, against counts and intervals computed here."""

from __future__ import annotations

import hashlib
import math

import duckdb
import pandas as pd
import pytest
from test_lift_intervals import Z, wilson

from conftest import DEMO_VARS, run_dbt

RUN = pd.Timestamp("2026-10-05")  # a Monday: the week of planning starts here
LATER = pd.Timestamp("2026-11-20")  # the measuring run: every horizon has passed


WEEK2 = RUN + pd.Timedelta(days=7)


def _world():
    log, conversions, digest_items = [], [], []

    def plan(campaign, channel, user, item, holdout, run=RUN, carried=()):
        key = f"{campaign}|{user}|{item}|{run}"
        log.append((key, run, user, channel, campaign, item, holdout))
        for rank, carried_item in enumerate(carried, start=1):
            digest_items.append((key, carried_item, rank, run, user, campaign, holdout, run))

    def buy(user, item, at):
        conversions.append((user, item, at))

    # item push: 40 sent users (10 buy the pushed item within 30 days), 20 held out (1 buys)
    for k in range(40):
        plan("push_a", "push", f"t{k}", "i1", False)
        if k < 10:
            buy(f"t{k}", "i1", RUN + pd.Timedelta(days=3))
    for k in range(20):
        plan("push_a", "push", f"h{k}", "i1", True)
    buy("h0", "i1", RUN + pd.Timedelta(days=29))
    # not conversions of the push: before the run, after the horizon, another item (halo)
    buy("t20", "i1", RUN - pd.Timedelta(days=1))
    buy("t21", "i1", RUN + pd.Timedelta(days=30))
    buy("t22", "i9", RUN + pd.Timedelta(days=2))
    buy("h1", "i9", RUN + pd.Timedelta(days=2))
    # a user planned twice in the week counts once: converts with the second item
    plan("push_a", "push", "t0", "i2", False, RUN + pd.Timedelta(days=2))
    # a digest (no item of its own in the log): its items are in notification_digest_log;
    # t0..t3 carried i1 (which they bought), t4 and t5 only i8 (bought by nobody)
    for k in range(6):
        plan("digest", "email", f"t{k}", None, False, carried=("i1", "i8") if k < 4 else ("i8",))
    plan("digest", "email", "h2", None, True, carried=("i8",))
    # a digest planned before its items were logged: only the halo can be measured
    plan("old_digest", "email", "t1", None, False)
    plan("old_digest", "email", "h1", None, True)
    # the holdout salt changed on RUN + 3 days, in the middle of this campaign's week
    plan("salted", "push", "x1", "i4", False, RUN + pd.Timedelta(days=2))
    plan("salted", "push", "x2", "i4", True, RUN + pd.Timedelta(days=3))
    # a second week of the push: 10 more sent users (2 buy), 5 more held out (none buys)
    for k in range(10):
        plan("push_a", "push", f"s{k}", "i1", False, WEEK2)
        if k < 2:
            buy(f"s{k}", "i1", WEEK2 + pd.Timedelta(days=1))
    for k in range(5):
        plan("push_a", "push", f"g{k}", "i1", True, WEEK2)
    # t1 (who bought i1 in week 1) is planned again in week 2 and buys nothing more: one more
    # user in week 2, still one user (and one conversion) since launch
    plan("push_a", "push", "t1", "i5", False, WEEK2)
    # no holdout at all
    plan("welcome", "email", "w0", "i3", False)
    buy("w0", "i3", RUN + pd.Timedelta(days=1))
    columns = ["send_key", "run_date", "user_id", "channel", "campaign_id", "item_id", "is_holdout"]
    frame = pd.DataFrame(log, columns=columns)
    frame["score"], frame["expected_value"] = 0.5, 0.1
    frame["scheduled_send_at"] = frame["run_date"].where(~frame["is_holdout"])
    frame["logged_at"] = frame["run_date"]
    interactions = pd.DataFrame(conversions, columns=["user_id", "item_id", "occurred_at"])
    interactions["event_type"], interactions["is_conversion"] = "purchase", True
    interactions["event_weight"], interactions["quantity"] = 5.0, 1.0
    # a view is never a conversion
    views = interactions.assign(event_type="view", is_conversion=False)
    digests = pd.DataFrame(
        digest_items,
        columns=[
            "send_key",
            "item_id",
            "item_rank",
            "run_date",
            "user_id",
            "campaign_id",
            "is_holdout",
            "logged_at",
        ],
    )
    day = pd.Timedelta(days=1)
    settings = pd.DataFrame(
        {
            "run_date": [RUN, RUN + 2 * day, RUN + 3 * day, WEEK2],
            "holdout_salt_fingerprint": ["salt a", "salt a", "salt b", "salt b"],
            "holdout_share": [0.05] * 4,
            "logged_at": [RUN, RUN + 2 * day, RUN + 3 * day, WEEK2],
        }
    )
    return frame, pd.concat([interactions, views], ignore_index=True), digests, settings


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    work = tmp_path_factory.mktemp("lift")
    path = work / "scenario.duckdb"
    vars_ = {**DEMO_VARS, "proactive_recs_horizon_days": 30}
    done = run_dbt(["compile", "--select", "campaign_lift"], path, vars_)
    assert done.returncode == 0, done.stdout[-3000:]
    compiled = next((work / "target" / "compiled").rglob("campaign_lift.sql")).read_text()
    log, interactions, digests, settings = _world()
    with duckdb.connect(str(path)) as con:
        con.register("log_frame", log)
        con.register("interactions_frame", interactions)
        con.register("digests_frame", digests)
        con.execute("create table main.notification_log as select * from log_frame")
        con.execute("create table main.notification_digest_log as select * from digests_frame")
        con.register("settings_frame", settings)
        con.execute(
            "create table main.notification_holdout_settings as select * from settings_frame"
        )
        con.execute("create table main.int_interactions as select * from interactions_frame")
        con.execute(f"create table main.int_run_context as select timestamp '{LATER}' as run_date")
        frame = con.execute(compiled).df()
    # the first week of each campaign by campaign_id; the push's second week apart
    return frame[frame["week_start"] == RUN].set_index("campaign_id"), frame


@pytest.fixture(scope="module")
def lift(built):
    return built[0]


def test_counts_are_the_users_and_their_conversions_in_the_horizon(lift):
    push = lift.loc["push_a"]
    assert (push["users_treated"], push["users_holdout"]) == (40, 20)
    assert (push["conversions_treated"], push["conversions_holdout"]) == (10, 1)
    # halo: any item, same window: t22 and h1 bought something else
    assert (push["halo_conversions_treated"], push["halo_conversions_holdout"]) == (11, 2)
    assert push["week_start"] == RUN and bool(push["is_complete"]) and pd.isna(push["reason"])


def test_the_lift_and_its_interval_are_newcombes(lift):
    push = lift.loc["push_a"]
    p1, p0 = 10 / 40, 1 / 20
    l1, u1, l0, u0 = (
        wilson(10, 40, "lower"),
        wilson(10, 40, "upper"),
        wilson(1, 20, "lower"),
        (wilson(1, 20, "upper")),
    )
    assert push["lift_abs"] == pytest.approx(p1 - p0)
    assert push["lift_abs_lower"] == pytest.approx(p1 - p0 - math.hypot(p1 - l1, u0 - p0))
    assert push["lift_abs_upper"] == pytest.approx(p1 - p0 + math.hypot(u1 - p1, p0 - l0))
    assert push["lift_rel"] == pytest.approx(p1 / p0 - 1)
    pbar = (p1 + p0) / 2
    term = Z * math.sqrt(2 * pbar * (1 - pbar)) + 0.841621 * math.sqrt(
        p1 * (1 - p1) + p0 * (1 - p0)
    )
    assert push["users_needed_per_group"] == math.ceil(term**2 / (p1 - p0) ** 2)


def test_a_digest_converts_with_its_own_items_and_an_unlogged_one_gets_a_reason(lift):
    digest = lift.loc["digest"]
    assert (digest["users_treated"], digest["users_holdout"]) == (6, 1)
    # t0..t3 bought i1, which their digest carried; t4 and t5 bought it too, but theirs did not
    assert (digest["conversions_treated"], digest["conversions_holdout"]) == (4, 0)
    assert digest["lift_abs"] == pytest.approx(4 / 6) and pd.isna(digest["reason"])
    assert (digest["halo_conversions_treated"], digest["halo_conversions_holdout"]) == (6, 0)
    old = lift.loc["old_digest"]
    assert pd.isna(old["conversions_treated"]) and pd.isna(old["lift_abs"])
    assert pd.isna(old["cumulative_lift_abs"]) and "not logged" in old["reason"]
    assert (old["halo_conversions_treated"], old["halo_conversions_holdout"]) == (1, 1)
    welcome = lift.loc["welcome"]
    assert welcome["users_holdout"] == 0 and pd.isna(welcome["lift_abs"])
    assert pd.isna(welcome["lift_abs_lower"]) and "no holdout" in welcome["reason"]


def test_the_cumulative_lift_adds_the_weeks_up_and_takes_newcombes_interval(built):
    _, frame = built
    push = frame[frame["campaign_id"] == "push_a"].set_index("week_start")
    first, second = push.loc[RUN], push.loc[WEEK2]
    assert (second["users_treated"], second["users_holdout"]) == (11, 5)
    assert (second["conversions_treated"], second["conversions_holdout"]) == (2, 0)
    assert first["cumulative_users_treated"] == first["users_treated"] == 40
    # distinct users since launch: t1, planned in both weeks, counts once
    assert (second["cumulative_users_treated"], second["cumulative_users_holdout"]) == (50, 25)
    counts = (second["cumulative_conversions_treated"], second["cumulative_conversions_holdout"])
    assert counts == (12, 1)
    p1, p0 = 12 / 50, 1 / 25
    assert second["cumulative_lift_abs"] == pytest.approx(p1 - p0)
    lower = p1 - p0 - math.hypot(p1 - wilson(12, 50, "lower"), wilson(1, 25, "upper") - p0)
    upper = p1 - p0 + math.hypot(wilson(12, 50, "upper") - p1, p0 - wilson(1, 25, "lower"))
    assert second["cumulative_lift_abs_lower"] == pytest.approx(lower)
    assert second["cumulative_lift_abs_upper"] == pytest.approx(upper)
    # the interval narrows as the weeks add up
    width = second["cumulative_lift_abs_upper"] - second["cumulative_lift_abs_lower"]
    assert width < first["lift_abs_upper"] - first["lift_abs_lower"]


def test_a_week_planned_under_two_salts_says_so(built):
    _, frame = built
    salted = frame[frame["campaign_id"] == "salted"].iloc[0]
    assert salted["holdout_salts"] == 2
    assert salted["holdout_salt_changed_at"] == RUN + pd.Timedelta(days=3)
    assert "salt changed" in salted["reason"]
    push = frame[frame["campaign_id"] == "push_a"].set_index("week_start")
    # the push's first week ran before the change under one salt; its second week after it
    assert push.loc[RUN, "holdout_salts"] == 1 and pd.isna(push.loc[RUN, "holdout_salt_changed_at"])
    assert push.loc[WEEK2, "holdout_salts"] == 1
    assert push.loc[WEEK2, "holdout_salt_changed_at"] == RUN + pd.Timedelta(days=3)
    assert pd.isna(push.loc[WEEK2, "reason"])


def test_each_run_records_its_holdout_salt_and_a_rerun_adds_nothing(tmp_path):
    """notification_holdout_settings over three runs: the package default, then a salt set by
    the var (its fingerprint, never the salt itself), and a re-run of the same date."""
    path = tmp_path / "settings.duckdb"
    select = ["run", "--select", "int_run_context", "notification_holdout_settings"]

    def run(day, rules):
        vars_ = {
            **DEMO_VARS,
            "proactive_recs_run_date": day,
            "proactive_recs_frequency_rules": rules,
        }
        done = run_dbt(select, path, vars_)
        assert done.returncode == 0, done.stdout[-3000:]

    run("2026-11-01", {})
    run("2026-11-02", {"holdout_salt": "spring's draw", "holdout_share": 0.1})
    run("2026-11-02", {"holdout_salt": "another", "holdout_share": 0.1})  # same date: nothing
    with duckdb.connect(str(path), read_only=True) as con:
        rows = con.execute(
            "select run_date, holdout_salt_fingerprint, holdout_share "
            "from main.notification_holdout_settings order by run_date"
        ).fetchall()
    assert [r[0] for r in rows] == [pd.Timestamp("2026-11-01"), pd.Timestamp("2026-11-02")]
    assert rows[0][1:] == ("package default", None)
    assert rows[1][1] == hashlib.md5(b"spring's draw").hexdigest()
    assert rows[1][2] == 0.1


def _digest_macro(name: str, relation: str) -> str:
    import jinja2

    from conftest import REPO

    macros = (REPO / "macros" / "cross_db" / "json_arrays.sql").read_text()
    call = f"{{{{ {name}('{relation}', 'digest_items_json') }}}}"
    return jinja2.Environment().from_string(macros + call).render()


def test_digest_items_are_read_from_the_json_array_on_duckdb_and_parse_on_snowflake():
    """The plan's JSON array of a digest, one row per item, on DuckDB (run) and Snowflake
    (rendered and parsed with sqlfluff's Snowflake grammar: no account here)."""
    import json

    import sqlfluff

    digests = pd.DataFrame(
        {
            "send_key": ["d1", "d2", "d3", "p1"],
            "digest_items_json": [
                json.dumps(
                    [{"item_id": "i7", "rank": 1, "title": "A"}, {"item_id": "i2", "rank": 2}]
                ),
                # an id that looks like a number stays the text it is
                json.dumps([{"price": 3.5, "rank": 1, "item_id": "00123"}]),
                "[]",  # a digest left with no item: no row
                None,  # an item push: no digest items
            ],
        }
    )
    with duckdb.connect() as con:
        con.register("audience", digests)
        rows = con.execute(
            f"select * from ({_digest_macro('default__digest_item_rows', 'audience')}) "
            "order by send_key, item_rank"
        ).fetchall()
    assert rows == [("d1", "i7", 1), ("d1", "i2", 2), ("d2", "00123", 1)]
    snowflake = _digest_macro("snowflake__digest_item_rows", "analytics.recs.notification_audience")
    sqlfluff.parse(snowflake, dialect="snowflake")  # raises on a parse error
    assert "lateral flatten(input => parse_json(digests.digest_items_json))" in snowflake
