"""Closed-loop simulation: the daily pipeline against a simulated e-mail/push tool.

``python -m proactive_recs_tools.simulate --days 28 --write-back-delay 1`` (``make simulate``):

1. generates a world with :func:`proactive_recs_tools.generate.generate` (dirty rows included) and
   plants second accounts that share a mailbox with an existing user (the address in
   another case), loads it into a scratch DuckDB file (schema ``sim_raw``, text columns);
2. for each day, runs the daily part of ``dbt build`` with ``run_date`` = that day at
   ``--run-hour`` UTC (every model and test except the evaluation and the backtest);
3. plays the send tool: it sends every row of ``notification_sync`` (the sendable rows,
   append-only) it has not sent yet, at ``scheduled_send_at``, and draws the user's responses
   from the generator's response model (open, click and conversion rise with the user's
   planted taste for the item's category; unsubscribes fall with it);
4. writes the sends, their events and the purchases they caused back into the sources once
   ``--write-back-delay`` days have passed since they happened (0 = as soon as they
   happen, ``never`` = nothing is ever written back);
5. checks every promise from the tool's own send records, never from the package's tables:
   per user and per mailbox and channel, sends in any rolling 7 days at most the adaptive
   ceiling (the history the package was given counts too); at least
   ``min_hours_between_sends`` between two sends to a user; no item twice to a user within the
   repeat window; no send to a user whose opt-out the sources showed when it was planned (a
   conservative reading of the raw rows: any row of the id or of its mailbox that is not an
   explicit opt-in, has an unsubscribe date, or an opt-out event); no holdout user; every
   send outside the quiet hours in the user's zone.

The world also lives without sends: users buy on their own every day (``organic_purchases``:
the holdout's baseline); with ``--active-hours`` each user has a planted hour and a send's
chance to be opened falls with the distance from it (``World.timing``); ``--send-effect``
scales a send's chance to convert (0: sends change nothing). After the last run the horizon
passes with no sends, everything due reaches the sources, and ``campaign_lift`` is built and
compared with the planted lift (``planted_lift``, ``lift_recovery``).

It prints a table per day and, last, one JSON line: days, sends, violations (a count per
rule), conversions_per_send (drawn), expected_conversions_per_send (the response model's
mean over the sends made), carpet_bomb_conversions_per_send (the same model's mean if every
reachable user were sent the day's most popular available item every day, at the run),
planned_per_user_week (sent and holdout), mean_timing and lift (per campaign: measured,
interval, planted, recovered).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from proactive_recs.notifications.frequency import FrequencyRules, is_holdout, resolve_timezone

REPO = Path(__file__).resolve().parents[2]
RAW_SCHEMA = "sim_raw"
SOURCES = ("users", "items", "transactions", "notification_sends", "notification_events")
OPT_OUT_EVENTS = ("unsubscribe", "bounce", "complaint")
RULES = (
    "cap_per_user",
    "cap_per_mailbox",
    "min_spacing",
    "item_repeat",
    "suppressed",
    "holdout",
    "quiet_hours",
)
# The generator's response funnel (generate._make_notifications): base + slope x relevance.
OPEN = (0.08, 0.5)
CLICK = (0.12, 0.5)
CONVERT = (0.08, 0.4)
UNSUBSCRIBE = (0.002, 0.01)  # base + slope x (1 - relevance), e-mail only
DIGEST_ITEMS_READ = 3  # a digest's relevance: the best of its first items
# Behaviour without any send, so that the holdout has something to be compared on: each day a
# user buys ORGANIC_PURCHASES_PER_DAY items on average, spread over the available items by
# the user's taste for their categories (uniform within a category).
ORGANIC_PURCHASES_PER_DAY = 0.015
# Planted habits (--active-hours): a send's chance of being opened falls with the distance
# between the hour it arrives (user's local time) and the user's planted hour, to
# TIMING_FLOOR of it far away (a Gaussian of TIMING_WIDTH_HOURS in between).
TIMING_FLOOR = 0.35
TIMING_WIDTH_HOURS = 2.0


@dataclass
class World:
    """What the simulated tool knows: the raw tables it keeps writing to and the truth."""

    tables: dict[str, pd.DataFrame]
    taste: np.ndarray  # users x categories, by the original user's row
    categories: tuple[str, ...]
    taste_row: dict[str, int]  # user_id (second accounts included) -> taste row
    initial_sends: pd.DataFrame  # clean parse of the generated history (for the checks)
    items: pd.DataFrame  # the clean items: item_id, category, available_from/_until (UTC)
    organic: np.ndarray  # taste rows x items: chance of buying the item on a day, no send
    active_hour: np.ndarray | None  # planted local hour per taste row (None: no habits)
    zone: tuple[str, ...]  # the zone that hour is local to, per taste row
    send_effect: float = 1.0  # scales a send's chance to convert (0: sends change nothing)
    pending: list[tuple[pd.Timestamp, str, dict]] = field(default_factory=list)

    def timing(self, user_id: str, at: pd.Timestamp) -> float:
        """How much of a send's open chance its arrival hour keeps (1 without habits)."""
        row = self.taste_row.get(user_id)
        if self.active_hour is None or row is None:
            return 1.0
        local = pd.Timestamp(at).tz_localize("UTC").tz_convert(self.zone[row])
        hour = local.hour + local.minute / 60
        distance = abs(hour - self.active_hour[row] - 0.5)  # the planted hour's middle
        distance = min(distance, 24 - distance)
        bump = np.exp(-0.5 * (distance / TIMING_WIDTH_HOURS) ** 2)
        return float(TIMING_FLOOR + (1 - TIMING_FLOOR) * bump)

    def available(self, day: pd.Timestamp) -> np.ndarray:
        """Items on sale at some moment of the UTC day starting at ``day``."""
        start, end = self.items["available_from"], self.items["available_until"]
        next_day = day + pd.Timedelta(days=1)
        return ((start.isna() | (start < next_day)) & (end.isna() | (end >= day))).to_numpy()


# --------------------------------------------------------------------------- world


def _text(value) -> str | None:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    value = str(value).strip()
    return value or None


def _clean_items(raw: pd.DataFrame, categories: tuple[str, ...]) -> pd.DataFrame:
    """The generator's clean items (ids i00001...), first row of each, with parsed windows."""
    ids = raw["item_id"].map(_text)
    category = raw["category"].map(lambda v: (_text(v) or "").lower())
    clean = pd.DataFrame(
        {
            "item_id": ids,
            "category": category,
            "available_from": pd.to_datetime(
                raw["available_from"].map(_text), errors="coerce", utc=True, format="mixed"
            ).dt.tz_localize(None),
            "available_until": pd.to_datetime(
                raw["available_until"].map(_text), errors="coerce", utc=True, format="mixed"
            ).dt.tz_localize(None),
        }
    )
    keep = ids.str.fullmatch(r"i\d{5}").fillna(False) & category.isin(categories)
    return clean[keep].drop_duplicates("item_id").reset_index(drop=True)


def _organic_rates(taste: np.ndarray, items: pd.DataFrame, categories) -> np.ndarray:
    """Per taste row and item, the chance of buying it on a given day without any send."""
    category = items["category"].map({c: i for i, c in enumerate(categories)}).to_numpy()
    per_category = np.bincount(category, minlength=len(categories)).astype(float)
    share = taste[:, category] / per_category[category]  # taste spread evenly in a category
    share /= np.maximum(share.sum(axis=1, keepdims=True), 1e-12)
    return np.clip(ORGANIC_PURCHASES_PER_DAY * share, 0.0, 1.0)


def make_world(
    users: int,
    items: int,
    history_days: int,
    seed: int,
    start: pd.Timestamp,
    shared_mailboxes: int,
    active_hours: bool = False,
    send_effect: float = 1.0,
) -> World:
    """Generate the sources ending at ``start`` and plant accounts sharing a mailbox."""
    from .generate import generate

    data = generate(
        users, items, history_days, seed=seed, end=str(start.date()), active_hours=active_hours
    )
    tables = {
        name: frame.astype(object).where(frame.notna(), None) for name, frame in data.tables.items()
    }
    raw_users = tables["users"]
    ids = raw_users["user_id"].map(_text)
    taste_row = {f"u{i + 1:06d}": i for i in range(len(data.user_taste))}
    # Second accounts: the same address in upper case, opted in, joined the same day.
    reachable = raw_users[
        ids.isin(taste_row.keys())
        & raw_users["email"].map(_text).notna()
        & raw_users["email_opt_in"].map(lambda v: _text(v) == "true")
        & raw_users["unsubscribed_at"].map(_text).isna()
    ].drop_duplicates("user_id")
    twins = reachable.sample(n=min(shared_mailboxes, len(reachable)), random_state=seed).copy()
    twins["email"] = twins["email"].map(lambda e: _text(e).upper())
    twins["user_id"] = twins["user_id"].map(lambda u: f"{_text(u)}_alt")
    for original, twin in zip(
        twins["user_id"].str.removesuffix("_alt"), twins["user_id"], strict=True
    ):
        taste_row[twin] = taste_row[original]
    tables["users"] = pd.concat([raw_users, twins], ignore_index=True)
    _plant_dirty_opt_outs(tables, reachable.drop(index=twins.index), start, seed)
    # The same person shops through both accounts: the twin gets the original's history, so
    # the recommender scores it and the mailbox rules are exercised.
    raw_tx = tables["transactions"]
    twin_of = dict(zip(twins["user_id"].str.removesuffix("_alt"), twins["user_id"], strict=True))
    copied = raw_tx[raw_tx["user_id"].map(_text).isin(twin_of.keys())].copy()
    copied["user_id"] = copied["user_id"].map(lambda u: twin_of[_text(u)])
    tables["transactions"] = pd.concat([raw_tx, copied], ignore_index=True)
    return World(
        tables=tables,
        taste=data.user_taste,
        categories=data.categories,
        taste_row=taste_row,
        initial_sends=_clean_sends(tables["notification_sends"]),
        items=(clean_items := _clean_items(tables["items"], data.categories)),
        organic=_organic_rates(data.user_taste, clean_items, data.categories),
        active_hour=data.user_active_hour,
        zone=data.user_zone,
        send_effect=float(send_effect),
    )


def _plant_dirty_opt_outs(tables, reachable: pd.DataFrame, start: pd.Timestamp, seed: int):
    """Opt-outs written the way they arrive in the field, each of which once failed open:
    an unsubscribed_at after the run date, an unsubscribe event whose time does not parse,
    one on a send whose channel is spelled 'E-Mail', and one two hours after the first run."""
    chosen = reachable.sample(n=min(12, len(reachable)), random_state=seed + 1)["user_id"]
    chosen = [_text(u) for u in chosen]
    users = tables["users"]
    ids = users["user_id"].map(_text)
    later = (start + pd.Timedelta(days=40)).strftime("%Y-%m-%d %H:%M:%S+00:00")
    users.loc[ids.isin(chosen[0:3]), "unsubscribed_at"] = later
    sends, events = [], []
    first_run = start + pd.Timedelta(hours=8)
    for n, user in enumerate(chosen[3:]):
        send_id = f"dirty{n:03d}"
        channel = "E-Mail" if n % 3 == 1 else "email"
        sent = start - pd.Timedelta(days=3)
        sends.append(
            {
                "send_id": send_id,
                "user_id": user,
                "campaign_id": "weekly_digest",
                "item_id": None,
                "channel": channel,
                "sent_at": sent.strftime("%Y-%m-%d %H:%M:%S+00:00"),
            }
        )
        occurred = (
            "yesterday-ish"
            if n % 3 == 0
            else first_run.strftime("%Y-%m-%d %H:%M:%S+00:00")
            if n % 3 == 2
            else (sent + pd.Timedelta(hours=5)).strftime("%Y-%m-%d %H:%M:%S+00:00")
        )
        events.append({"send_id": send_id, "event_type": "unsubscribe", "occurred_at": occurred})
    for name, rows in (("notification_sends", sends), ("notification_events", events)):
        table = tables[name]
        tables[name] = pd.concat(
            [table, pd.DataFrame(rows, columns=table.columns)], ignore_index=True
        )


def _channel(value) -> str:
    squashed = "".join(c for c in (_text(value) or "").lower() if c.isalnum())
    return "email" if squashed in ("email", "mail") else squashed


def _clean_sends(raw: pd.DataFrame) -> pd.DataFrame:
    """The generated history as the checks read it: parseable rows, UTC, lower-case channel."""
    out = pd.DataFrame(
        {
            "send_id": raw["send_id"].map(_text),
            "user_id": raw["user_id"].map(_text),
            "channel": raw["channel"].map(_channel),
            "item_id": raw["item_id"].map(_text),
            "sent_at": pd.to_datetime(raw["sent_at"], utc=True, errors="coerce").dt.tz_localize(
                None
            ),
        }
    )
    # one row per send: the history repeats some rows (dirty duplicates of a send_id)
    out = out.dropna(subset=["send_id", "user_id", "sent_at"])
    return out.drop_duplicates("send_id").reset_index(drop=True)


def load(con, world: World) -> None:
    """(Re)write the raw tables, every column text."""
    con.execute(f"create schema if not exists {RAW_SCHEMA}")
    for name in SOURCES:
        frame = world.tables[name].astype("string")
        con.register("frame", frame)
        con.execute(f"create or replace table {RAW_SCHEMA}.raw_{name} as select * from frame")
        con.unregister("frame")


# --------------------------------------------------------------------------- the pipeline


def run_dbt(
    db: Path, work: Path, run_time: pd.Timestamp, extra_vars: dict, select: str | None = None
) -> float:
    """``dbt build --selector daily`` (or ``--select select``) for one run date; raises with
    the log tail on failure."""
    values = _demo_vars()
    values.update(extra_vars)
    values.update(
        {
            "proactive_recs_source_schema": RAW_SCHEMA,
            "proactive_recs_run_date": run_time.isoformat(),
            # the package's default campaigns: the simulated world has no campaign table
            "proactive_recs_campaigns_table": None,
        }
    )
    command = [
        str(Path(sys.executable).parent / "dbt"),
        "build",
        *(["--select", *select.split()] if select else ["--selector", "daily"]),
        "--vars",
        json.dumps(values),
        "--target-path",
        str(work / "target"),
        "--log-path",
        str(work / "logs"),
    ]
    env = {**os.environ, "DUCKDB_PATH": str(db), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join(done.stdout.splitlines()[-40:])
        raise RuntimeError(f"dbt build failed for run_date {run_time}:\n{tail}")
    return time.perf_counter() - start


# --------------------------------------------------------------------------- the send tool


def _relevance(world: World, items: pd.DataFrame, user_id: str, item_ids: list[str]) -> float:
    row = world.taste_row.get(user_id)
    if row is None or not item_ids:
        return 0.0
    cats = [items.get(i) for i in item_ids[:DIGEST_ITEMS_READ]]
    index = [world.categories.index(c) for c in cats if c in world.categories]
    return float(max((world.taste[row, c] for c in index), default=0.0))


def conversion_probability(
    relevance: np.ndarray | float, timing: np.ndarray | float = 1.0, effect: float = 1.0
) -> np.ndarray:
    """P(open) x P(click | open) x P(conversion | click) of the response model: opening
    scaled by the arrival hour's ``timing``, converting by the planted ``effect``."""
    r = np.asarray(relevance, dtype=float)
    return (
        (OPEN[0] + OPEN[1] * r)
        * np.asarray(timing, dtype=float)
        * (CLICK[0] + CLICK[1] * r)
        * np.clip(effect * (CONVERT[0] + CONVERT[1] * r), 0.0, 1.0)
    )


def organic_purchases(world: World, day: pd.Timestamp, rng: np.random.Generator) -> int:
    """Draw the day's purchases nobody sent for and queue them (they reach the sources as
    soon as they happen: they are the shop's own records). Returns how many."""
    available = world.available(day)
    hits = np.argwhere(rng.random(world.organic.shape) < world.organic * available[None, :])
    fmt = "%Y-%m-%d %H:%M:%S+00:00"
    for row, column in hits:
        at = day + pd.Timedelta(seconds=int(rng.integers(0, 86_400)))
        if world.active_hour is not None and rng.random() < 0.6:  # at the user's own hour
            local_day = day.tz_localize("UTC").tz_convert(world.zone[row]).normalize()
            local = local_day + pd.Timedelta(hours=int(world.active_hour[row]))
            at = (local + pd.Timedelta(seconds=int(rng.integers(0, 3_600)))).tz_convert(None)
        world.pending.append(
            (
                at,
                "transactions",
                {
                    "user_id": f"u{row + 1:06d}",
                    "item_id": world.items["item_id"].iat[column],
                    "occurred_at": at.strftime(fmt),
                    "event_type": "purchase",
                    "quantity": "1",
                    "amount": None,
                },
            )
        )
    return len(hits)


def send(
    world: World,
    audience: pd.DataFrame,
    sent_keys: set,
    rng: np.random.Generator,
    counter: list[int],
    delay_days: float | None,
) -> pd.DataFrame:
    """Send the new sendable rows; queue their write-back; return the tool's records."""
    items = world.tables["items"]
    category = dict(zip(items["item_id"].map(_text), items["category"].map(_text), strict=True))
    new = audience[~audience["is_holdout"].astype(bool) & ~audience["send_key"].isin(sent_keys)]
    records = []
    for row in new.sort_values(["scheduled_send_at", "send_key"]).itertuples(index=False):
        sent_keys.add(row.send_key)
        counter[0] += 1
        tool_id = f"sim{counter[0]:07d}"
        at = pd.Timestamp(row.scheduled_send_at)
        if _text(row.item_id):
            item_ids = [row.item_id]
        else:
            item_ids = [d["item_id"] for d in json.loads(row.digest_items_json or "[]")]
        relevance = _relevance(world, category, row.user_id, item_ids)
        timing = world.timing(row.user_id, at)
        opened = rng.random() < (OPEN[0] + OPEN[1] * relevance) * timing
        clicked = opened and rng.random() < CLICK[0] + CLICK[1] * relevance
        converted = clicked and rng.random() < world.send_effect * (
            CONVERT[0] + CONVERT[1] * relevance
        )
        unsubscribed = row.channel == "email" and rng.random() < (
            UNSUBSCRIBE[0] + UNSUBSCRIBE[1] * (1 - relevance)
        )
        records.append(
            {
                "tool_send_id": tool_id,
                "send_key": row.send_key,
                "user_id": row.user_id,
                "email": row.email,
                "channel": row.channel,
                "campaign_id": row.campaign_id,
                "item_id": _text(row.item_id),
                "item_ids": item_ids,
                "sent_at": at,
                "run_date": pd.Timestamp(row.run_date),
                "relevance": relevance,
                "timing": timing,
                "p_conversion": float(conversion_probability(relevance, timing, world.send_effect)),
                "converted": bool(converted),
                "unsubscribed": bool(unsubscribed),
            }
        )
        if delay_days is None:
            continue  # never written back
        lag = pd.Timedelta(days=delay_days)
        fmt = "%Y-%m-%d %H:%M:%S+00:00"
        world.pending.append(
            (
                at + lag,
                "notification_sends",
                {
                    "send_id": tool_id,
                    "user_id": row.user_id,
                    "campaign_id": row.campaign_id,
                    "item_id": _text(row.item_id),
                    "channel": row.channel,
                    "sent_at": at.strftime(fmt),
                },
            )
        )
        events = [("delivered", at + pd.Timedelta(minutes=1))]
        if opened:
            events.append(("open", at + pd.Timedelta(hours=1)))
        if clicked:
            events.append(("click", at + pd.Timedelta(hours=1, minutes=5)))
        if converted:
            events.append(("conversion", at + pd.Timedelta(hours=2)))
            world.pending.append(
                (
                    at + pd.Timedelta(hours=2) + lag,
                    "transactions",
                    {
                        "user_id": row.user_id,
                        "item_id": item_ids[0],
                        "occurred_at": (at + pd.Timedelta(hours=2)).strftime(fmt),
                        "event_type": "purchase",
                        "quantity": "1",
                        "amount": None,
                    },
                )
            )
        if unsubscribed:
            events.append(("unsubscribe", at + pd.Timedelta(hours=3)))
        for kind, when in events:
            world.pending.append(
                (
                    when + lag,
                    "notification_events",
                    {"send_id": tool_id, "event_type": kind, "occurred_at": when.strftime(fmt)},
                )
            )
    return pd.DataFrame(records)


def write_back(world: World, until: pd.Timestamp) -> dict[str, int]:
    """Append the queued rows that are due by ``until`` to the raw tables."""
    due = [p for p in world.pending if p[0] <= until]
    world.pending = [p for p in world.pending if p[0] > until]
    counts: dict[str, int] = {}
    for source in ("notification_sends", "notification_events", "transactions"):
        rows = [r for _, s, r in due if s == source]
        if rows:
            table = world.tables[source]
            world.tables[source] = pd.concat(
                [table, pd.DataFrame(rows, columns=table.columns)], ignore_index=True
            )
        counts[source] = len(rows)
    return counts


# --------------------------------------------------------------------------- the checks


def opted_out(tables: dict[str, pd.DataFrame]) -> tuple[set, set]:
    """User ids and mailboxes the raw sources say must not be sent (conservative reading)."""
    users = tables["users"]
    ids = users["user_id"].map(_text)
    mailbox = users["email"].map(lambda v: (_text(v) or "").lower() or None)
    no = (
        ~users["email_opt_in"].map(lambda v: (_text(v) or "").lower() == "true")
        | users["unsubscribed_at"].map(_text).notna()
    )
    out_ids = set(ids[no].dropna())
    events = tables["notification_events"]
    negative = events[
        events["event_type"].map(lambda v: (_text(v) or "").lower()).isin(OPT_OUT_EVENTS)
    ]
    sends = tables["notification_sends"]
    owners = dict(zip(sends["send_id"].map(_text), sends["user_id"].map(_text), strict=True))
    out_ids |= {owners[s] for s in negative["send_id"].map(_text) if s in owners}
    out_mailboxes = set(mailbox[ids.isin(out_ids)].dropna())
    return out_ids, out_mailboxes


def check(
    sent: pd.DataFrame, history: pd.DataFrame, users: pd.DataFrame, rules: FrequencyRules
) -> dict[str, int]:
    """Violations per rule over the tool's sends (``sent``: with ``suppressed_when_planned``)."""
    violations = dict.fromkeys(RULES, 0)
    if sent.empty:
        return violations
    mailbox_of = dict(
        zip(
            users["user_id"].map(_text),
            users["email"].map(lambda v: (_text(v) or "").lower() or None),
            strict=True,
        )
    )
    zone_of = dict(zip(users["user_id"].map(_text), users["timezone"], strict=True))
    mine = sent.assign(sim=True)
    parts = [mine, history.assign(sim=False)]
    everything = pd.concat([p for p in parts if len(p)], ignore_index=True)[
        ["user_id", "channel", "item_id", "sent_at", "sim"]
    ]
    everything["mailbox"] = everything["user_id"].map(mailbox_of)
    week = pd.Timedelta(days=7)
    ceiling = {"email": rules.email_cadence_ceiling, "push": rules.push_cadence_ceiling}
    if not rules.adaptive_cadence:
        ceiling = {"email": rules.email_cap_per_week, "push": rules.push_cap_per_week}
    for rule, key in (("cap_per_user", "user_id"), ("cap_per_mailbox", "mailbox")):
        frame = everything.dropna(subset=[key])
        if rule == "cap_per_mailbox":
            frame = frame[frame["channel"] == "email"]
        for (_, channel), group in frame.groupby([key, "channel"]):
            times = np.sort(group["sent_at"].to_numpy())
            sim_times = group.loc[group["sim"], "sent_at"].to_numpy()
            for t in sim_times:  # the window ending at each simulated send
                n = np.count_nonzero((times > t - week) & (times <= t))
                if n > ceiling.get(channel, 0):
                    violations[rule] += 1
    gap = pd.Timedelta(hours=rules.min_hours_between_sends)
    for _, group in everything.groupby("user_id"):
        group = group.sort_values("sent_at")
        t = group["sent_at"].to_numpy()
        s = group["sim"].to_numpy()
        close = (np.diff(t) < gap.to_timedelta64()) & (s[1:] | s[:-1])
        violations["min_spacing"] += int(np.count_nonzero(close))
    repeat = pd.Timedelta(days=rules.item_repeat_window_days)
    pushes = everything.dropna(subset=["item_id"])
    for _, group in pushes.groupby(["user_id", "item_id"]):
        if group["sim"].any() and len(group) > 1:
            group = group.sort_values("sent_at")
            t = group["sent_at"].to_numpy()
            s = group["sim"].to_numpy()
            close = (np.diff(t) < repeat.to_timedelta64()) & (s[1:] | s[:-1])
            violations["item_repeat"] += int(np.count_nonzero(close))
    violations["suppressed"] = int(sent["suppressed_when_planned"].sum())
    violations["holdout"] = int(is_holdout(sent["user_id"], rules).sum())
    start, end = rules.quiet_hours_start, rules.quiet_hours_end
    for user_id, at in zip(sent["user_id"], sent["sent_at"], strict=True):
        local = at.tz_localize("UTC").astimezone(
            resolve_timezone(zone_of.get(user_id), rules.default_timezone)
        )
        hour = local.hour + local.minute / 60
        quiet = (start <= hour < end) if start < end else (hour >= start or hour < end)
        violations["quiet_hours"] += int(start != end and quiet)
    return violations


# --------------------------------------------------------------------------- the lift


def measure_lift(db: Path, work: Path, measured_at: pd.Timestamp, extra_vars: dict) -> pd.DataFrame:
    """Build ``campaign_lift`` as of ``measured_at`` and return it: the sources re-read and
    audited (every raw row clean or rejected), nothing planned (the send ledger is read as the
    daily runs left it)."""
    import duckdb

    run_dbt(
        db,
        work,
        measured_at,
        extra_vars,
        select="+int_interactions +int_notification_sends +int_notification_events "
        "+rejected_rows int_run_context campaign_lift",
    )
    with duckdb.connect(str(db), read_only=True) as con:
        return con.sql(
            "select *, timezone('UTC', week_start) as week_utc from main.campaign_lift "
            "order by campaign_id, channel, week_start"
        ).df()


def planted_lift(world: World, sent: pd.DataFrame, horizon_days: int) -> pd.DataFrame:
    """The lift the response model planted, per campaign and channel, in campaign_lift's
    cumulative unit: the user since the campaign's first week.

    campaign_lift counts a sent user as converted when any item the campaign planned for them
    was bought within ``horizon_days`` of the run that planned it. Under the model, per user
    and such item ``i`` (its window: from the first run that planned it to the last one plus
    the horizon), ``o_i`` is the chance of buying it on one's own in the window (days on sale
    counted) and ``s_i`` the chance that a send converted it: every send the user got in the
    window whose conversion is ``i``, of any campaign, since the holdout gets none of them.
    The user converts with chance ``1 - prod(1 - o_i)(1 - s_i)`` sent, ``1 - prod(1 - o_i)``
    held out; the planted lift is the mean difference over the campaign's sent users (the
    holdout is a random draw of the same users, so it estimates the same).
    """
    columns = ["campaign_id", "channel", "planted_lift", "users"]
    if sent.empty:
        return pd.DataFrame(columns=columns)
    # what each send could convert: its item, a digest its first item
    converts = sent.assign(item=sent["item_ids"].map(lambda ids: ids[0] if len(ids) else None))
    converts = converts.dropna(subset=["item"])
    # the items each send planned: one row per item a send carried
    planned = sent.explode("item_ids").dropna(subset=["item_ids"])
    planned = planned.rename(columns={"item_ids": "item"})
    if planned.empty:
        return pd.DataFrame(columns=columns)
    column = {item: k for k, item in enumerate(world.items["item_id"])}
    window = pd.Timedelta(days=horizon_days)
    runs = planned.groupby(["campaign_id", "channel", "user_id", "item"])["run_date"]
    pairs = runs.agg(first="min", last="max").reset_index()
    first_day = pairs["first"].min().normalize()
    days = pd.date_range(first_day, pairs["last"].max().normalize() + window, freq="D")
    on_sale = np.stack([world.available(day) for day in days])  # days x items
    sends_of = {key: group for key, group in converts.groupby(["user_id", "item"])}
    log_held, log_sent = [], []
    for pair in pairs.itertuples(index=False):
        start, end = pair.first, pair.last + window
        organic = 0.0
        row, j = world.taste_row.get(pair.user_id), column.get(pair.item)
        if row is not None and j is not None and not pair.user_id.endswith("_alt"):
            a = (start.normalize() - first_day).days
            b = (end.normalize() - first_day).days
            organic = 1.0 - (1.0 - world.organic[row, j]) ** int(on_sale[a:b, j].sum())
        group = sends_of.get((pair.user_id, pair.item))
        p_send = 0.0
        if group is not None:
            inside = group[(group["sent_at"] >= start) & (group["sent_at"] < end)]
            p_send = 1.0 - float(np.prod(1.0 - inside["p_conversion"].to_numpy()))
        log_held.append(np.log1p(-organic))
        log_sent.append(np.log1p(-organic) + np.log1p(-min(p_send, 1.0 - 1e-12)))
    pairs["log_held"], pairs["log_sent"] = log_held, log_sent
    users = pairs.groupby(["campaign_id", "channel", "user_id"])[["log_held", "log_sent"]].sum()
    users["difference"] = np.exp(users["log_held"]) - np.exp(users["log_sent"])
    return (
        users.groupby(["campaign_id", "channel"])["difference"]
        .agg(planted_lift="mean", users="size")
        .reset_index()
    )


def lift_recovery(lift: pd.DataFrame, planted: pd.DataFrame) -> list[dict[str, Any]]:
    """Per campaign and channel: campaign_lift's cumulative lift and interval over the whole
    period (its last week's cumulative columns: users since launch) against the planted
    lift."""
    out = []
    for row in lift.groupby(["campaign_id", "channel"]).tail(1).itertuples(index=False):
        truth = planted[
            (planted["campaign_id"] == row.campaign_id) & (planted["channel"] == row.channel)
        ]
        entry = {
            "campaign_id": row.campaign_id,
            "channel": row.channel,
            "users_treated": int(row.cumulative_users_treated),
            "users_holdout": int(row.cumulative_users_holdout),
            "measured_lift": _rounded(row.cumulative_lift_abs),
            "lower": _rounded(row.cumulative_lift_abs_lower),
            "upper": _rounded(row.cumulative_lift_abs_upper),
            "planted_lift": _rounded(truth["planted_lift"].iloc[0]) if len(truth) else None,
            "all_weeks_complete": bool(
                lift.loc[
                    (lift["campaign_id"] == row.campaign_id) & (lift["channel"] == row.channel),
                    "is_complete",
                ].all()
            ),
        }
        measured = entry["lower"] is not None and entry["planted_lift"] is not None
        entry["recovered"] = (
            bool(entry["lower"] <= entry["planted_lift"] <= entry["upper"]) if measured else None
        )
        entry["reason"] = None if measured else (row.reason or "no planted lift to compare")
        out.append(entry)
    return out


def _rounded(value) -> float | None:
    return None if value is None or pd.isna(value) else round(float(value), 5)


# --------------------------------------------------------------------------- the loop


def simulate(
    days: int,
    users: int,
    items: int,
    history_days: int,
    seed: int,
    delay: str,
    work: Path,
    start: str,
    run_hour: int,
    shared_mailboxes: int,
    extra_vars: dict | None = None,
    say=print,
    active_hours: bool = False,
    send_effect: float = 1.0,
    measure: bool = True,
) -> dict[str, Any]:
    """The closed loop (module docstring); ``measure`` builds campaign_lift once the horizon
    after the last run has passed and compares it with the planted lift."""
    import duckdb

    delay_days = None if delay == "never" else float(delay)
    work.mkdir(parents=True, exist_ok=True)
    db = work / "simulation.duckdb"
    for stale in (db, work / "simulation.duckdb.wal"):
        stale.unlink(missing_ok=True)
    first = pd.Timestamp(start)
    world = make_world(
        users, items, history_days, seed, first, shared_mailboxes, active_hours, send_effect
    )
    # the rules the pipeline plans with: the var proactive_recs_frequency_rules, if given
    rules = FrequencyRules.from_dict(
        (extra_vars or {}).get("proactive_recs_frequency_rules") or {}, strict=True
    )
    rng = np.random.default_rng(seed)
    rng_organic = np.random.default_rng([seed, 1])  # its own stream: sends do not shift it
    sent_keys: set = set()
    counter = [0]
    sent_frames = []
    carpet_p = []
    say(
        f"{'run_date':<20} {'planned':>8} {'holdout':>8} {'sent':>6} {'written back':>13} "
        f"{'dbt s':>6}"
    )
    for day in range(days):
        run_time = first + pd.Timedelta(days=day, hours=run_hour)
        organic_purchases(world, first + pd.Timedelta(days=day), rng_organic)
        written = write_back(world, run_time)
        with duckdb.connect(str(db)) as con:
            load(con, world)
        out_ids, out_mailboxes = opted_out(world.tables)
        seconds = run_dbt(db, work, run_time, extra_vars or {})
        with duckdb.connect(str(db), read_only=True) as con:
            # what the sync hands the tool: every sendable row, append-only (UTC with zone)
            audience = con.sql(
                "select *, false as is_holdout, "
                "timezone('UTC', scheduled_send_at) as scheduled_utc, "
                "timezone('UTC', run_date) as run_utc "
                "from main.notification_sync"
            ).df()
            audience["scheduled_send_at"] = audience.pop("scheduled_utc")
            audience["run_date"] = audience.pop("run_utc")
            holdout = con.sql(
                "select count(*) from main.notification_holdout h join main.int_run_context r "
                "on h.run_date = timezone('UTC', r.run_date)"
            ).fetchone()[0]
            popular = con.sql(
                "select item_id, category from main.int_item_context where is_available "
                "order by n_interactions desc, item_id limit 1"
            ).df()
        records = send(world, audience, sent_keys, rng, counter, delay_days)
        if len(records):
            records["suppressed_when_planned"] = records["user_id"].isin(out_ids) | (
                (records["channel"] == "email")
                & records["email"].map(lambda v: (_text(v) or "").lower()).isin(out_mailboxes)
            )
            sent_frames.append(records)
        # Carpet bomb, same response model: every reachable user gets today's top item at
        # the moment of the run.
        if len(popular):
            category = world.categories.index(popular["category"].iloc[0])
            reachable = [u for u in world.taste_row if u not in out_ids]
            rows = [world.taste_row[u] for u in reachable]
            timing = [world.timing(u, run_time) for u in reachable]
            carpet_p.append(
                conversion_probability(world.taste[rows, category], timing, world.send_effect)
            )
        say(
            f"{str(run_time):<20} {len(records) + holdout:>8} {holdout:>8} "
            f"{len(records):>6} {sum(written.values()):>13} {seconds:>6.1f}"
        )
    sent = (
        pd.concat(sent_frames, ignore_index=True)
        if sent_frames
        else pd.DataFrame(
            columns=[
                "user_id",
                "channel",
                "item_id",
                "sent_at",
                "email",
                "suppressed_when_planned",
                "converted",
                "relevance",
                "timing",
                "p_conversion",
                "run_date",
                "campaign_id",
                "item_ids",
            ]
        )
    )
    # The tool's own records, kept for a second look (python -m proactive_recs_tools.simulate
    # --recheck WORK re-runs the checks on them).
    sent.drop(columns=["item_ids"], errors="ignore").to_parquet(work / "tool_sends.parquet")
    world.initial_sends.to_parquet(work / "initial_sends.parquet")
    world.tables["users"].astype("string").to_parquet(work / "users.parquet")
    violations = check(sent, world.initial_sends, world.tables["users"], rules)
    n = len(sent)
    result = {
        "days": days,
        "write_back_delay": delay,
        "users": users,
        "items": items,
        "seed": seed,
        "sends": n,
        "sends_per_channel": sent.groupby("channel").size().to_dict() if n else {},
        "violations": violations,
        "conversions": int(sent["converted"].sum()) if n else 0,
        "conversions_per_send": round(float(sent["converted"].mean()), 5) if n else 0.0,
        "expected_conversions_per_send": round(float(sent["p_conversion"].mean()), 5) if n else 0.0,
        "carpet_bomb_conversions_per_send": round(float(np.concatenate(carpet_p).mean()), 5)
        if carpet_p
        else 0.0,
        "active_hours": bool(active_hours),
        "send_effect": float(send_effect),
        "send_time": rules.send_time,
        "mean_timing": round(float(sent["timing"].mean()), 5) if n else None,
    }
    with duckdb.connect(str(db), read_only=True) as con:
        # like with like: the holdout is planned as often as the sent users (the ledger
        # counts what it would have been sent), per user and week
        per_week = con.sql(
            "select is_holdout, avg(n) as rows_per_user_week from (select is_holdout, user_id, "
            "date_trunc('week', run_date), count(*) as n from main.notification_log "
            "group by all) group by is_holdout"
        ).fetchall()
    result["planned_per_user_week"] = {
        "holdout" if held else "sent": round(float(n), 3) for held, n in per_week
    }
    if measure:
        # The horizon after the last run passes with no further sends (the shop's own
        # purchases go on), everything due reaches the sources, then campaign_lift is built.
        horizon = int(
            (extra_vars or {}).get("proactive_recs_horizon_days")
            or _demo_vars().get("proactive_recs_horizon_days", 30)
        )
        last_day = first + pd.Timedelta(days=days)
        for day in range(horizon + 1):
            organic_purchases(world, last_day + pd.Timedelta(days=day), rng_organic)
        measured_at = first + pd.Timedelta(days=days - 1 + horizon, hours=run_hour)
        write_back(world, measured_at)
        with duckdb.connect(str(db)) as con:
            load(con, world)
        lift = measure_lift(db, work, measured_at, extra_vars or {})
        lift.to_parquet(work / "campaign_lift.parquet")
        result["lift"] = lift_recovery(lift, planted_lift(world, sent, horizon))
        result["lift_measured_at"] = str(measured_at)
    return result


def _demo_vars() -> dict:
    import yaml

    return yaml.safe_load((REPO / "vars" / "demo.yml").read_text()) or {}


def format_summary(result: dict[str, Any]) -> str:
    lines = [
        f"write-back delay {result['write_back_delay']}: {result['days']} days, "
        f"{result['sends']} sends {result['sends_per_channel']}",
        f"{'rule':<18} {'violations':>10}",
    ]
    lines += [f"{rule:<18} {count:>10}" for rule, count in result["violations"].items()]
    lines.append(
        f"conversions per send {result['conversions_per_send']} (model mean "
        f"{result['expected_conversions_per_send']}); carpet bomb "
        f"{result['carpet_bomb_conversions_per_send']}"
    )
    if result.get("planned_per_user_week"):
        lines.append(f"planned sends per user and week: {result['planned_per_user_week']}")
    if result.get("mean_timing") is not None and result["active_hours"]:
        lines.append(
            f"send time {result['send_time']}: mean timing factor {result['mean_timing']} "
            f"(1 = every send at the user's planted hour, {TIMING_FLOOR} = far from it)"
        )
    if result.get("lift"):
        lines.append(
            f"lift as of {result['lift_measured_at']} (send effect x{result['send_effect']}): "
            f"{'campaign':<22} {'channel':<6} {'treated':>8} {'holdout':>8} {'measured':>9} "
            f"{'95% interval':>20} {'planted':>9}  recovered"
        )
        for e in result["lift"]:
            interval = f"[{e['lower']:+.4f}, {e['upper']:+.4f}]" if e["lower"] is not None else "-"
            measured = f"{e['measured_lift']:+.4f}" if e["measured_lift"] is not None else "-"
            planted = f"{e['planted_lift']:+.4f}" if e["planted_lift"] is not None else "-"
            lines.append(
                f"{'':<60}{e['campaign_id']:<22} {e['channel']:<6} {e['users_treated']:>8} "
                f"{e['users_holdout']:>8} {measured:>9} {interval:>20} {planted:>9}  "
                f"{e['recovered'] if e['recovered'] is not None else e['reason']}"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=28)
    parser.add_argument("--users", type=int, default=600)
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--history-days", type=int, default=120)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--write-back-delay",
        default="1",
        help="days after a send before it and its responses reach the sources: "
        "0, 1, 2.5, ... or never",
    )
    parser.add_argument("--start", default="2026-11-01", help="first run date (a day)")
    parser.add_argument("--run-hour", type=int, default=6, help="UTC hour of the daily run")
    parser.add_argument(
        "--shared-mailboxes",
        type=int,
        default=10,
        help="second accounts planted on existing users' addresses",
    )
    parser.add_argument(
        "--active-hours",
        action="store_true",
        help="plant an hour per user: interactions gather at it and a send's chance to be "
        "opened falls with the distance from it",
    )
    parser.add_argument(
        "--send-effect",
        type=float,
        default=1.0,
        help="scales a send's chance to convert (0: sends change nothing, the null world)",
    )
    parser.add_argument(
        "--send-time", choices=("personal", "off"), help="the frequency rule send_time"
    )
    parser.add_argument("--holdout-share", type=float, help="the frequency rule holdout_share")
    parser.add_argument(
        "--no-lift", action="store_true", help="skip the final campaign_lift measurement"
    )
    parser.add_argument("--work", type=Path, default=REPO / "target" / "simulation")
    parser.add_argument("--vars", default="{}", help="extra dbt vars as JSON")
    parser.add_argument(
        "--recheck",
        type=Path,
        help="only re-run the checks on the tool's records a finished simulation kept in this "
        "work folder",
    )
    args = parser.parse_args(argv)
    if args.recheck:
        rules = FrequencyRules.from_dict(
            {
                k: v
                for k, v in json.loads(args.vars).items()
                if k in FrequencyRules.__dataclass_fields__
            }
        )
        violations = check(
            pd.read_parquet(args.recheck / "tool_sends.parquet"),
            pd.read_parquet(args.recheck / "initial_sends.parquet"),
            pd.read_parquet(args.recheck / "users.parquet"),
            rules,
        )
        print(json.dumps({"violations": violations}, sort_keys=True))
        return 1 if sum(violations.values()) else 0
    if args.write_back_delay != "never":
        float(args.write_back_delay)  # a clear error for anything else
    extra_vars = json.loads(args.vars)
    overrides = {
        k: v
        for k, v in (("send_time", args.send_time), ("holdout_share", args.holdout_share))
        if v is not None
    }
    if overrides:
        rules = dict(extra_vars.get("proactive_recs_frequency_rules") or {})
        extra_vars["proactive_recs_frequency_rules"] = {**rules, **overrides}
    result = simulate(
        days=args.days,
        users=args.users,
        items=args.items,
        history_days=args.history_days,
        seed=args.seed,
        delay=args.write_back_delay,
        work=args.work,
        start=args.start,
        run_hour=args.run_hour,
        shared_mailboxes=args.shared_mailboxes,
        extra_vars=extra_vars,
        active_hours=args.active_hours,
        send_effect=args.send_effect,
        # sends that never reach the sources cannot be measured
        measure=not args.no_lift and args.write_back_delay != "never",
    )
    print(format_summary(result))
    print(json.dumps(result, sort_keys=True))
    return 1 if sum(result["violations"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
