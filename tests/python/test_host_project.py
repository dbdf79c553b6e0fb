"""The package installed into a dbt project nobody tuned it to, the way a user installs it.

A throwaway host project: its own typed source tables under other names and another schema,
an event vocabulary without `purchase` (view / play / rating, plus a type nobody declared),
no optional attributes beyond the contract, extra columns the package does not know, its
own campaign table, a session time zone that is not UTC, a var of its own called `run_date`.
It installs this repository through `packages.yml` (local path) and `dbt deps`, sets only
vars, and runs `dbt build` with the package's run date unset. The checks read the outputs
the way a send tool and a BI tool would, against the host's own source tables.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import DBT, REPO

pytestmark = pytest.mark.dbt

N_USERS = 300
N_ITEMS = 90
GENRES = ("drama", "comedy", "documentary", "thriller")
UNDECLARED_EVENT = "like"  # not in the host's vocabulary: rejected and named in a warning
SCHEMA = "main_recs"  # the host puts the package's models in its own schema (+schema: recs)

PUBLIC_TABLES = (
    "user_item_scores",
    "item_user_scores",
    "user_category_scores",
    "user_factors",
    "item_factors",
    "model_parameters",
    "notification_audience",
    "notification_sync",
    "notification_log",
    "email_digest",
    "rejected_rows",
    "model_evaluation",
    "campaign_backtest",
)


def _source_tables(now: pd.Timestamp, seed: int = 3) -> dict[str, pd.DataFrame]:
    """A small streaming service: typed columns, its own vocabulary, extra attributes."""
    rng = np.random.default_rng(seed)
    user_ids = [100_000 + n for n in range(N_USERS)]  # BIGINT ids, as many warehouses have
    opted_in = rng.random(N_USERS) > 0.15
    unsubscribed = rng.random(N_USERS) < 0.04
    consent = pd.array(opted_in, dtype="boolean")
    consent[5] = pd.NA  # consent unknown: must not be sent
    users = pd.DataFrame(
        {
            "user_id": user_ids,
            "email": [f"viewer{n}@stream.example" for n in range(N_USERS)],
            "joined_at": [now - pd.Timedelta(days=int(d)) for d in rng.integers(1, 400, N_USERS)],
            "country": rng.choice(["DE", "FR", "US"], N_USERS),
            "timezone": rng.choice(["Europe/Berlin", "Europe/Paris", "America/Chicago"], N_USERS),
            "email_opt_in": consent,
            "unsubscribed_at": [now - pd.Timedelta(days=3) if u else pd.NaT for u in unsubscribed],
            "vip_tier": rng.integers(0, 4, N_USERS).astype("int32"),  # extra column
            "favourite_genre": rng.choice(GENRES, N_USERS),  # extra column
        }
    )
    users["unsubscribed_at"] = pd.to_datetime(users["unsubscribed_at"], utc=True)
    users["joined_at"] = pd.to_datetime(users["joined_at"], utc=True)

    item_ids = [f"T{n:03d}" for n in range(N_ITEMS)]
    genre_of = rng.choice(GENRES, N_ITEMS)
    age_days = rng.integers(30, 300, N_ITEMS)
    age_days[:8] = rng.integers(1, 6, 8)  # new titles: the new-items trigger has work
    until = [pd.NaT] * N_ITEMS
    for n in range(8, 14):  # leaving soon: the expiring trigger has work
        until[n] = now + pd.Timedelta(days=int(rng.integers(1, 6)))
    items = pd.DataFrame(
        {
            "item_id": item_ids,
            "title": [f"Title {n}" for n in range(N_ITEMS)],
            "category": genre_of,
            "price": rng.uniform(0, 15, N_ITEMS).round(2),
            "available_from": [now - pd.Timedelta(days=int(d)) for d in age_days],
            "available_until": until,
            "url": [f"https://stream.example/t/{i}" for i in item_ids],
            "image_url": [f"https://stream.example/i/{i}.jpg" for i in item_ids],
            "studio": rng.choice(["north", "south"], N_ITEMS),  # extra column
        }
    )
    items["available_from"] = pd.to_datetime(items["available_from"], utc=True)
    items["available_until"] = pd.to_datetime(items["available_until"], utc=True)

    rows = []
    for user, genre in zip(user_ids, users["favourite_genre"], strict=True):
        liked = [i for i, g in zip(item_ids, genre_of, strict=True) if g == genre]
        for _ in range(int(rng.integers(8, 40))):
            pool = liked if rng.random() < 0.75 else item_ids
            item = pool[int(rng.integers(len(pool)))]
            index = item_ids.index(item)
            # never before the title was on sale
            days_ago = rng.uniform(0.1, min(150.0, float(age_days[index])))
            rows.append(
                (
                    user,
                    item,
                    now - pd.Timedelta(days=days_ago),
                    rng.choice(["view", "play", "rating"], p=[0.5, 0.35, 0.15]),
                )
            )
    events = pd.DataFrame(rows, columns=["user_id", "item_id", "occurred_at", "event_type"])
    events.loc[events.sample(n=25, random_state=seed).index, "event_type"] = UNDECLARED_EVENT
    # typed TIMESTAMP without zone (UTC wall clock), INTEGER quantity, DOUBLE amount, extras
    events["occurred_at"] = events["occurred_at"].dt.tz_localize(None)
    events["quantity"] = np.int32(1)
    events["amount"] = np.nan
    events["device"] = rng.choice(["tv", "phone"], len(events))
    events = events.sample(frac=1.0, random_state=seed).reset_index(drop=True)  # any order

    sent_to = rng.choice(user_ids, 120)
    sends = pd.DataFrame(
        {
            "send_id": [f"S{n:04d}" for n in range(120)],
            "user_id": sent_to,
            "campaign_id": "weekly_picks",
            "item_id": None,
            "channel": "email",
            "sent_at": [now - pd.Timedelta(days=float(d)) for d in rng.uniform(2, 25, 120)],
        }
    )
    sends["sent_at"] = pd.to_datetime(sends["sent_at"], utc=True)
    send_events = pd.DataFrame(
        {
            "send_id": ["S0000", "S0001", "S0002", "S0003"],
            "event_type": ["open", "click", "unsubscribe", "open"],
            "occurred_at": pd.to_datetime([now - pd.Timedelta(days=1)] * 4, utc=True),
        }
    )
    # The host's own campaigns, typed, without the optional columns the package can default.
    campaigns = pd.DataFrame(
        {
            "campaign_id": ["weekly_picks", "new_titles", "last_call"],
            "campaign_type": ["digest", "item_push", "item_push"],
            "channel": ["email", "email", "email"],
            "trigger": [None, "new_items", "expiring"],
            "trigger_days": pd.array([None, 7, 7], dtype="Int32"),
            "audience_size": pd.array([None, 40, 40], dtype="Int32"),
            "items_per_digest": pd.array([4, None, None], dtype="Int32"),
            "max_sends_per_user_week": pd.array([1, 1, 1], dtype="Int32"),
            # a booster over an extra, typed column of the host's users
            "user_booster": [None, "case when vip_tier >= 2 then 1.5 else 1.0 end", None],
            "is_active": [True, True, True],
        }
    )
    return {
        "customers": users,
        "titles": items,
        "viewing_events": events,
        "crm_sends": sends,
        "crm_send_events": send_events,
        "campaigns": campaigns,
    }


def _write_host_project(root: Path, db: Path) -> None:
    (root / "models").mkdir(parents=True)
    (root / "packages.yml").write_text(
        yaml.safe_dump({"packages": [{"local": str(REPO)}]}, sort_keys=False)
    )
    (root / "profiles.yml").write_text(
        yaml.safe_dump(
            {
                "streaming_shop": {
                    "target": "dev",
                    "outputs": {
                        "dev": {
                            "type": "duckdb",
                            "path": str(db),
                            "schema": "main",
                            "threads": 1,
                            # not UTC: the package must not depend on the session's zone
                            "settings": {"TimeZone": "America/New_York"},
                        }
                    },
                }
            }
        )
    )
    host = {
        "name": "streaming_shop",
        "version": "1.0.0",
        "config-version": 2,
        "profile": "streaming_shop",
        "model-paths": ["models"],
        "vars": {
            # the host's own var of that name: it must not reach the package
            "run_date": "1999-01-01",
            "proactive_recs_source_schema": "shop_raw",
            "proactive_recs_users_table": "customers",
            "proactive_recs_items_table": "titles",
            "proactive_recs_transactions_table": "viewing_events",
            "proactive_recs_notification_sends_table": "crm_sends",
            "proactive_recs_notification_events_table": "crm_send_events",
            "proactive_recs_event_type_weights": {"view": 1, "play": 3, "rating": 4},
            "proactive_recs_conversion_event_types": ["play"],
            "proactive_recs_campaigns_table": "shop_raw.campaigns",
            "proactive_recs_horizon_days": 14,
            # a small catalogue: a short tuning grid and a lighter ranker keep the test quick
            "proactive_recs_recommender_params": {
                "factors": 16,
                "tune_grid": [{"factors": 8}, {"factors": 16}],
                "training_windows": 2,
            },
            "proactive_recs_backtest_weeks": 2,
        },
        "models": {"proactive_recs": {"+schema": "recs"}},
    }
    (root / "dbt_project.yml").write_text(yaml.safe_dump(host, sort_keys=False))
    # one model of the host's own, reading a package output like any ref
    (root / "models" / "crm_daily_send_count.sql").write_text(
        "select count(*) as sends from {{ ref('notification_sync') }}\n"
    )


def _dbt(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    env.pop("DUCKDB_PATH", None)
    return subprocess.run(
        [DBT, *args, "--project-dir", str(root), "--profiles-dir", str(root)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    root = tmp_path_factory.mktemp("host") / "streaming_shop"
    db = root.parent / "warehouse.duckdb"
    now = pd.Timestamp.now("UTC").floor("s")
    tables = _source_tables(now)
    with duckdb.connect(str(db)) as con:
        con.execute("create schema shop_raw")
        for name, frame in tables.items():
            con.register("frame", frame)
            con.execute(f"create table shop_raw.{name} as select * from frame")
            con.unregister("frame")
    _write_host_project(root, db)
    deps = _dbt(root, "deps")
    assert deps.returncode == 0, deps.stdout[-3000:]
    build = _dbt(root, "build")
    assert build.returncode == 0, build.stdout[-6000:]
    return {"root": root, "db": db, "build": build, "tables": tables, "now": now}


def test_the_sources_are_typed(host):
    with duckdb.connect(str(host["db"]), read_only=True) as con:
        types = dict(
            con.execute(
                "select table_name || '.' || column_name, data_type "
                "from information_schema.columns where table_schema = 'shop_raw'"
            ).fetchall()
        )
    assert types["customers.joined_at"] == "TIMESTAMP WITH TIME ZONE"
    assert types["customers.email_opt_in"] == "BOOLEAN"
    assert types["titles.price"] == "DOUBLE"
    assert types["viewing_events.occurred_at"] == "TIMESTAMP_NS"
    assert types["viewing_events.quantity"] == "INTEGER"
    assert types["customers.user_id"] == types["viewing_events.user_id"] == "BIGINT"


def test_the_build_passes_and_names_the_undeclared_event_type(host):
    out = host["build"].stdout
    assert "ERROR=0" in out
    undeclared = int((host["tables"]["viewing_events"]["event_type"] == UNDECLARED_EVENT).sum())
    assert f"{UNDECLARED_EVENT} ({undeclared} rows)" in out
    with duckdb.connect(str(host["db"]), read_only=True) as con:
        (rejected,) = con.execute(
            f"select count(*) from {SCHEMA}.rejected_rows "
            "where source_name = 'transactions' and rejection_reason = 'unknown_event_type'"
        ).fetchone()
    assert rejected == undeclared


def test_every_public_table_is_filled_in_the_hosts_schema(host):
    with duckdb.connect(str(host["db"]), read_only=True) as con:
        for table in PUBLIC_TABLES:
            (n,) = con.execute(f"select count(*) from {SCHEMA}.{table}").fetchone()
            assert n > 0, table
        (sends,) = con.execute("select sends from main.crm_daily_send_count").fetchone()
        relations = {
            (schema, name)
            for schema, name in con.execute(
                "select table_schema, table_name from information_schema.tables"
            ).fetchall()
        }
    assert sends > 0
    # the package's own demo never lands in a host's warehouse
    assert not {name for _, name in relations} & {"raw_users", "raw_transactions", "demo_campaigns"}


def test_run_date_is_now_and_the_hosts_own_run_date_var_does_not_leak(host):
    with duckdb.connect(str(host["db"]), read_only=True) as con:
        run_date, pinned = con.execute(
            f"select run_date, is_run_date_pinned from {SCHEMA}.int_run_context"
        ).fetchone()
    run_date = pd.Timestamp(run_date)
    run_date = run_date.tz_convert(None) if run_date.tzinfo else run_date
    assert not pinned
    assert abs(run_date - host["now"].tz_localize(None)) < pd.Timedelta(minutes=30)


def test_scores_name_only_known_users_and_items(host):
    users = set(host["tables"]["customers"]["user_id"].astype(str))
    items = set(host["tables"]["titles"]["item_id"])
    with duckdb.connect(str(host["db"]), read_only=True) as con:
        for table in ("user_item_scores", "item_user_scores"):
            frame = con.execute(f"select user_id, item_id from {SCHEMA}.{table}").df()
            assert set(frame["user_id"]) <= users, table
            assert set(frame["item_id"]) <= items, table


def test_what_the_send_tool_would_send_goes_only_to_consenting_users(host):
    """From the outside: every row of notification_sync against the host's own consent data."""
    customers = (
        host["tables"]["customers"]
        .assign(user_id=lambda frame: frame["user_id"].astype(str))
        .set_index("user_id")
    )
    sends, events = host["tables"]["crm_sends"], host["tables"]["crm_send_events"]
    opted_out_by_event = set(
        sends.loc[
            sends["send_id"].isin(events.loc[events["event_type"] == "unsubscribe", "send_id"]),
            "user_id",
        ].astype(str)
    )
    with duckdb.connect(str(host["db"]), read_only=True) as con:
        synced = con.execute(
            f"select user_id, channel, campaign_id from {SCHEMA}.notification_sync"
        ).df()
    assert len(synced) > 0
    assert set(synced["campaign_id"]) <= {"weekly_picks", "new_titles", "last_call"}
    recipients = customers.loc[synced["user_id"].unique()]
    assert recipients["email_opt_in"].fillna(False).all()
    assert recipients["unsubscribed_at"].isna().all()
    assert not set(synced["user_id"]) & opted_out_by_event
    # no push consent in the host's data, and no var saying e-mail consent covers it
    assert (synced["channel"] == "email").all()


def test_the_hosts_vocabulary_and_horizon_reach_every_model(host):
    with duckdb.connect(str(host["db"]), read_only=True) as con:
        vocabulary = dict(
            con.execute(
                f"select event_type, is_conversion from {SCHEMA}.stg_event_type_weights"
            ).fetchall()
        )
        horizons = {
            row[0]
            for row in con.execute(
                f"select distinct horizon_days from {SCHEMA}.model_evaluation"
            ).fetchall()
        }
        served_horizon = con.execute(
            f"select value from {SCHEMA}.model_parameters where parameter = 'horizon_days'"
        ).fetchall()
    assert vocabulary == {"view": False, "play": True, "rating": False}
    assert horizons == {14.0}
    assert [float(v) for (v,) in served_horizon] == [14.0]


def test_the_week_old_stages_are_measured_only_when_asked_for(host):
    """By default the weekly evaluation does not fit the served model a second time for
    served_stages_week_old (the demo's vars ask for it: test_dbt_recommendations)."""
    with duckdb.connect(str(host["db"]), read_only=True) as con:
        models = {
            row[0]
            for row in con.execute(
                f"select distinct model from {SCHEMA}.model_evaluation"
            ).fetchall()
        }
    assert {"served", "als"} <= models
    assert "served_stages_week_old" not in models


def test_the_host_selects_the_daily_and_weekly_sets_by_tag(host):
    """dbt reads selectors.yml from the root project only: a host selects by the tags."""
    sets = {}
    for schedule in ("daily", "weekly"):
        listed = _dbt(
            host["root"],
            "ls",
            "--quiet",
            "--output",
            "name",
            "--resource-type",
            "model",
            "--select",
            f"package:proactive_recs,tag:{schedule}",
        )
        assert listed.returncode == 0, listed.stdout[-2000:]
        sets[schedule] = set(listed.stdout.split())
    assert {"notification_sync", "int_send_ledger", "recommendations"} <= sets["daily"]
    assert {"evaluation_results", "campaign_backtest_results"} <= sets["weekly"]
    assert not sets["daily"] & sets["weekly"]


def test_the_weekly_models_can_be_switched_off(host):
    listed = _dbt(
        host["root"],
        "ls",
        "--quiet",
        "--output",
        "name",
        "--resource-type",
        "model",
        "--vars",
        json.dumps({"proactive_recs_enable_evaluation": False}),
    )
    assert listed.returncode == 0, listed.stdout[-2000:]
    names = set(listed.stdout.split())
    assert "notification_sync" in names
    assert not names & {"evaluation_results", "model_evaluation", "campaign_backtest_results"}


def test_the_data_checks_follow_the_hosts_vocabulary(host):
    """`make validate`'s GX suites on the host's warehouse: no event type is hard-coded, the
    conversion share is checked on the host's conversion type (play)."""
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "proactive_recs_tools.validation", "--duckdb", str(host["db"])]
        + ["--schema", SCHEMA, "--vars-file", str(host["root"] / "dbt_project.yml")]
        + ["--no-data-docs"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "stg_transactions" in done.stdout


def test_typed_timestamps_keep_their_instant_in_a_non_utc_session(host):
    """The host's session runs in New York: a TIMESTAMPTZ keeps its offset and a naive
    TIMESTAMP is UTC, so staging holds the same instants as the host's tables."""
    events = host["tables"]["viewing_events"]
    events = events[events["event_type"] != UNDECLARED_EVENT]
    customers = host["tables"]["customers"]
    with duckdb.connect(str(host["db"]), read_only=True) as con:
        first, last = con.execute(
            f"select min(occurred_at), max(occurred_at) from {SCHEMA}.int_interactions"
        ).fetchone()
        joined = con.execute(
            f"select user_id, joined_at from {SCHEMA}.stg_users where user_id = '100007'"
        ).fetchone()
    assert pd.Timestamp(first) == events["occurred_at"].min().floor("us")
    assert pd.Timestamp(last) == events["occurred_at"].max().floor("us")
    expected = customers.loc[customers["user_id"] == 100_007, "joined_at"].iloc[0]
    assert pd.Timestamp(joined[1]) == expected.tz_convert("UTC").tz_localize(None).floor("us")
