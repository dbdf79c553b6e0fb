"""campaign_lift on a world built by hand: its SQL as dbt compiles it, run on DuckDB tables
whose every conversion is known, against counts and intervals computed here."""

from __future__ import annotations

import math

import duckdb
import pandas as pd
import pytest
from test_lift_intervals import Z, wilson

from conftest import DEMO_VARS, run_dbt

RUN = pd.Timestamp("2026-10-05")  # a Monday: the week of planning starts here
LATER = pd.Timestamp("2026-11-20")  # the measuring run: every horizon has passed


def _world():
    log, conversions = [], []

    def plan(campaign, channel, user, item, holdout, run=RUN):
        log.append((f"{campaign}|{user}|{item}|{run}", run, user, channel, campaign, item, holdout))

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
    # a digest (no item): only the halo is measured
    for k in range(6):
        plan("digest", "email", f"t{k}", None, False)
    plan("digest", "email", "h2", None, True)
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
    return frame, pd.concat([interactions, views], ignore_index=True)


@pytest.fixture(scope="module")
def lift(tmp_path_factory):
    work = tmp_path_factory.mktemp("lift")
    path = work / "scenario.duckdb"
    vars_ = {**DEMO_VARS, "proactive_recs_horizon_days": 30}
    done = run_dbt(["compile", "--select", "campaign_lift"], path, vars_)
    assert done.returncode == 0, done.stdout[-3000:]
    compiled = next((work / "target" / "compiled").rglob("campaign_lift.sql")).read_text()
    log, interactions = _world()
    with duckdb.connect(str(path)) as con:
        con.register("log_frame", log)
        con.register("interactions_frame", interactions)
        con.execute("create table main.notification_log as select * from log_frame")
        con.execute("create table main.int_interactions as select * from interactions_frame")
        con.execute(f"create table main.int_run_context as select timestamp '{LATER}' as run_date")
        return con.execute(compiled).df().set_index("campaign_id")


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


def test_digests_get_their_halo_and_no_holdout_gets_a_reason(lift):
    digest = lift.loc["digest"]
    assert pd.isna(digest["conversions_treated"]) and pd.isna(digest["lift_abs"])
    assert (digest["users_treated"], digest["users_holdout"]) == (6, 1)
    # t0..t5 all bought the push's item within the digest's horizon: halo for the digest too
    assert (digest["halo_conversions_treated"], digest["halo_conversions_holdout"]) == (6, 0)
    assert "digest" in digest["reason"]
    welcome = lift.loc["welcome"]
    assert welcome["users_holdout"] == 0 and pd.isna(welcome["lift_abs"])
    assert pd.isna(welcome["lift_abs_lower"]) and "no holdout" in welcome["reason"]
