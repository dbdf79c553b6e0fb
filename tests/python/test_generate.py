"""Tests of the synthetic data generator (src/proactive_recs/generate.py).

The manifest promises staging an exact outcome, so the central test re-implements the
rejection rules of docs/raw_data.md in pandas, applies them to the raw output, and compares
the counts with the manifest. The other tests check reproducibility and planted structure.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proactive_recs_tools import generate as gen

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "seeds" / "demo"
DEMO_ARGS = ["--users", "2000", "--items", "500", "--days", "180", "--seed", "42", "--active-hours"]
RUN_DATE = pd.Timestamp("2026-11-01", tz="UTC")
FILES = [f"raw_{source}.csv" for source in gen.SOURCES] + ["generation_manifest.json"]
EVENT_TYPES = {"view", "add_to_cart", "wishlist", "purchase"}
NOTIFICATION_EVENTS = {
    "delivered", "open", "click", "conversion", "unsubscribe", "bounce", "complaint",
}  # fmt: skip


# ---------------------------------------------------------------------------------------
# An independent, deliberately plain re-implementation of staging's rejection rules.
# ---------------------------------------------------------------------------------------


def read_raw(directory: Path) -> dict[str, pd.DataFrame]:
    return {
        source: pd.read_csv(
            directory / f"raw_{source}.csv", dtype=str, keep_default_na=False, na_values=[""]
        )
        for source in gen.SOURCES
    }


def text(column: pd.Series) -> pd.Series:
    """Trimmed text, blank = null (staging's clean_text)."""
    column = column.astype("string").str.strip()
    return column.mask(column == "")


def timestamp(column: pd.Series) -> pd.Series:
    return pd.to_datetime(text(column), utc=True, errors="coerce", format="ISO8601")


def number(column: pd.Series) -> pd.Series:
    return pd.to_numeric(text(column), errors="coerce")


def unparseable(column: pd.Series, parsed: pd.Series) -> pd.Series:
    return text(column).notna() & parsed.isna()


def first_reason(frame: pd.DataFrame, rules: list[tuple[str, pd.Series]]) -> pd.Series:
    reason = pd.Series(pd.NA, index=frame.index, dtype="string")
    for name, applies in rules:
        reason = reason.mask(reason.isna() & applies.fillna(False).astype(bool), name)
    return reason


def stage(raw: dict[str, pd.DataFrame], run_date: pd.Timestamp = RUN_DATE):
    """(clean frames, rejection reason per raw row) for the five sources."""
    clean, reasons = {}, {}

    users = raw["users"].copy()
    users["user_id"] = text(users["user_id"])
    joined, unsubscribed = timestamp(users["joined_at"]), timestamp(users["unsubscribed_at"])
    opt_in = text(users["email_opt_in"]).str.lower()
    reason = first_reason(
        users,
        [
            ("null_id", users["user_id"].isna()),
            (
                "unparseable_value",
                joined.isna()
                | unparseable(users["unsubscribed_at"], unsubscribed)
                | ~opt_in.isin(["true", "false"]),
            ),
            ("future_timestamp", (joined > run_date) | (unsubscribed > run_date)),
        ],
    )
    # Duplicates are exact copies here, so "first by joined_at, then raw content" is any.
    ok = reason.isna()
    reason = reason.mask(ok & users["user_id"].duplicated(), "duplicate")
    users["joined_at"] = joined
    users["email"] = text(users["email"]).str.lower()
    clean["users"], reasons["users"] = users[reason.isna()], reason

    items = raw["items"].copy()
    items["item_id"] = text(items["item_id"])
    price = number(items["price"])
    a_from, a_until = timestamp(items["available_from"]), timestamp(items["available_until"])
    reason = first_reason(
        items,
        [
            ("null_id", items["item_id"].isna()),
            (
                "unparseable_value",
                unparseable(items["price"], price)
                | unparseable(items["available_from"], a_from)
                | unparseable(items["available_until"], a_until),
            ),
        ],
    )
    reason = reason.mask(reason.isna() & items["item_id"].duplicated(), "duplicate")
    items["price"], items["available_from"], items["available_until"] = price, a_from, a_until
    clean["items"], reasons["items"] = items[reason.isna()], reason

    tx = raw["transactions"].copy()
    for column in ("user_id", "item_id"):
        tx[column] = text(tx[column])
    occurred = timestamp(tx["occurred_at"])
    quantity, amount = number(tx["quantity"]), number(tx["amount"])
    event = text(tx["event_type"]).str.lower().fillna("purchase")
    reason = first_reason(
        tx,
        [
            ("null_id", tx["user_id"].isna() | tx["item_id"].isna()),
            (
                "unparseable_value",
                occurred.isna()
                | unparseable(tx["quantity"], quantity)
                | unparseable(tx["amount"], amount),
            ),
            ("future_timestamp", occurred > run_date),
            ("cancellation", event == "cancellation"),
            ("unknown_event_type", ~event.isin(EVENT_TYPES)),
            ("non_positive_quantity", quantity.fillna(1) <= 0),
            ("unknown_user", ~tx["user_id"].isin(clean["users"]["user_id"])),
            ("unknown_item", ~tx["item_id"].isin(clean["items"]["item_id"])),
        ],
    )
    tx = tx.assign(occurred_at=occurred, event_type=event, quantity=quantity, amount=amount)
    contract = ["user_id", "item_id", "occurred_at", "event_type", "quantity", "amount"]
    candidate = tx[reason.isna()]
    duplicate = candidate.duplicated(subset=contract)
    reason.loc[duplicate[duplicate].index] = "duplicate"
    clean["transactions"], reasons["transactions"] = tx[reason.isna()], reason

    sends = raw["notification_sends"].copy()
    for column in ("send_id", "user_id", "item_id"):
        sends[column] = text(sends[column])
    sent = timestamp(sends["sent_at"])
    reason = first_reason(
        sends,
        [
            # item_id is null for digests: not a key column of sends.
            ("null_id", sends["send_id"].isna() | sends["user_id"].isna()),
            ("unparseable_value", sent.isna()),
            ("future_timestamp", sent > run_date),
            ("unknown_channel", ~text(sends["channel"]).isin(["email", "push"])),
            ("unknown_user", ~sends["user_id"].isin(clean["users"]["user_id"])),
        ],
    )
    reason = reason.mask(reason.isna() & sends["send_id"].duplicated(), "duplicate")
    sends["sent_at"] = sent
    clean["notification_sends"], reasons["notification_sends"] = sends[reason.isna()], reason

    events = raw["notification_events"].copy()
    events["send_id"] = text(events["send_id"])
    occurred = timestamp(events["occurred_at"])
    kind = text(events["event_type"]).str.lower()
    reason = first_reason(
        events,
        [
            ("null_id", events["send_id"].isna()),
            ("unparseable_value", occurred.isna()),
            ("future_timestamp", occurred > run_date),
            ("unknown_event_type", ~kind.isin(NOTIFICATION_EVENTS)),
            ("unknown_send", ~events["send_id"].isin(clean["notification_sends"]["send_id"])),
        ],
    )
    events = events.assign(occurred_at=occurred, event_type=kind)
    candidate = events[reason.isna()]
    duplicate = candidate.duplicated(subset=["send_id", "event_type", "occurred_at"])
    reason.loc[duplicate[duplicate].index] = "duplicate"
    clean["notification_events"], reasons["notification_events"] = events[reason.isna()], reason
    return clean, reasons


def assert_manifest_matches(raw, manifest) -> dict[str, pd.DataFrame]:
    clean, reasons = stage(raw, pd.Timestamp(manifest["run_date"], tz="UTC"))
    for source in gen.SOURCES:
        expected = manifest["sources"][source]
        assert set(expected["rejected"]) == set(gen.REJECTION_REASONS[source])
        found = Counter(reasons[source].dropna())
        assert found == Counter({k: v for k, v in expected["rejected"].items() if v}), source
        assert len(raw[source]) == expected["raw_rows"], source
        assert len(clean[source]) == expected["clean_rows"], source
        assert list(raw[source].columns) == list(gen.COLUMNS[source])
    return clean


def run_cli(out: Path, *args: str) -> dict:
    assert gen.main([*args, "--out", str(out)]) == 0
    return json.loads((out / "generation_manifest.json").read_text())


# ---------------------------------------------------------------------------------------
# Fixtures: the committed demo seeds, and the same world in memory (for the latent truth)
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_raw() -> dict[str, pd.DataFrame]:
    return read_raw(DEMO)


@pytest.fixture(scope="module")
def demo_manifest() -> dict:
    return json.loads((DEMO / "generation_manifest.json").read_text())


@pytest.fixture(scope="module")
def demo_clean(demo_raw, demo_manifest) -> dict[str, pd.DataFrame]:
    return assert_manifest_matches(demo_raw, demo_manifest)


@pytest.fixture(scope="module")
def demo_data() -> gen.SyntheticData:
    return gen.generate(2000, 500, 180, seed=42, active_hours=True)


# ---------------------------------------------------------------------------------------
# Reproducibility
# ---------------------------------------------------------------------------------------


def test_committed_demo_seeds_regenerate_byte_for_byte(tmp_path):
    run_cli(tmp_path, *DEMO_ARGS)
    for name in FILES:
        assert (tmp_path / name).read_bytes() == (DEMO / name).read_bytes(), name


def test_same_arguments_same_bytes_and_other_seed_differs(tmp_path):
    args = ["--users", "300", "--items", "80", "--days", "40"]
    run_cli(tmp_path / "a", *args, "--seed", "7")
    run_cli(tmp_path / "b", *args, "--seed", "7")
    run_cli(tmp_path / "c", *args, "--seed", "8")
    for name in FILES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    for name in FILES[:-1]:
        assert (tmp_path / "a" / name).read_bytes() != (tmp_path / "c" / name).read_bytes()


def test_parquet_holds_the_same_text_as_csv(tmp_path):
    args = ["--users", "200", "--items", "60", "--days", "30", "--seed", "3"]
    run_cli(tmp_path / "csv", *args)
    manifest = run_cli(tmp_path / "pq", *args, "--format", "parquet")
    assert manifest["command"].endswith("--format parquet")
    first = run_cli(tmp_path / "pq2", *args, "--format", "parquet")
    assert first == manifest
    from_csv = read_raw(tmp_path / "csv")
    for source in gen.SOURCES:
        frame = pd.read_parquet(tmp_path / "pq" / f"raw_{source}.parquet")
        assert (tmp_path / "pq" / f"raw_{source}.parquet").read_bytes() == (
            tmp_path / "pq2" / f"raw_{source}.parquet"
        ).read_bytes()
        expected = from_csv[source]
        assert list(frame.columns) == list(expected.columns)
        # CSV cannot tell a whitespace-only id from its trimmed form: compare trimmed text.
        for column in frame.columns:
            left = text(frame[column]).fillna("<null>").tolist()
            right = text(expected[column]).fillna("<null>").tolist()
            assert left == right, (source, column)


def test_manifest_is_sorted_json_with_the_canonical_command(demo_manifest):
    raw_text = (DEMO / "generation_manifest.json").read_text()
    assert raw_text == json.dumps(demo_manifest, sort_keys=True, indent=2) + "\n"
    assert demo_manifest["command"] == (
        "python -m proactive_recs_tools.generate --users 2000 --items 500 --days 180 --seed 42 "
        "--transactions 50000 --end 2026-11-01 --format csv --active-hours"
    )
    assert demo_manifest["run_date"] == "2026-11-01"


# ---------------------------------------------------------------------------------------
# Planted dirt: the manifest is exact
# ---------------------------------------------------------------------------------------


def test_demo_manifest_matches_an_independent_staging(demo_clean, demo_manifest):
    assert demo_manifest["sources"]["transactions"]["clean_rows"] == 50_000
    assert len(demo_clean["transactions"]) == 50_000


@pytest.mark.parametrize(
    "args",
    [
        ["--users", "5", "--items", "3", "--days", "2", "--seed", "1"],
        ["--users", "40", "--items", "13", "--days", "10", "--seed", "2", "--transactions", "7"],
        ["--users", "150", "--items", "40", "--days", "400", "--seed", "5", "--end", "2024-03-01"],
        ["--users", "120", "--items", "30", "--days", "30", "--seed", "9", "--no-dirt"],
    ],
)
def test_manifest_matches_an_independent_staging_at_odd_sizes(tmp_path, args):
    manifest = run_cli(tmp_path, *args)
    clean = assert_manifest_matches(read_raw(tmp_path), manifest)
    if "--no-dirt" in args:
        for source in gen.SOURCES:
            assert manifest["sources"][source]["raw_rows"] == len(clean[source])


@settings(max_examples=12, deadline=None)
@given(
    n_users=st.integers(1, 60),
    n_items=st.integers(1, 30),
    n_days=st.integers(1, 120),
    n_transactions=st.integers(0, 400),
    seed=st.integers(0, 2**32 - 1),
    dirt=st.booleans(),
)
def test_manifest_is_exact_for_any_small_world(
    n_users, n_items, n_days, n_transactions, seed, dirt
):
    data = gen.generate(n_users, n_items, n_days, n_transactions, seed=seed, dirt=dirt)
    raw = {source: frame.astype(object) for source, frame in data.tables.items()}
    clean = assert_manifest_matches(raw, data.manifest)
    assert len(clean["transactions"]) <= n_transactions


def test_dirt_recounted_directly_from_raw_rows(demo_raw, demo_manifest):
    """Count each kind of planted dirt straight from the raw text, without the staging
    re-implementation, and compare with the manifest."""
    sources = demo_manifest["sources"]

    def rejected(source, reason):
        return sources[source]["rejected"][reason]

    def blank(column):
        return column.isna() | (column.str.strip() == "")

    users = demo_raw["users"]
    assert blank(users["user_id"]).sum() == rejected("users", "null_id")
    assert users.duplicated().sum() == rejected("users", "duplicate")
    bad_joined = users["joined_at"].isin(gen.BAD_TIMESTAMPS)
    assert bad_joined.sum() == rejected("users", "unparseable_value")
    emails = users["email"].dropna()
    assert (emails != emails.str.strip().str.lower()).any()

    items = demo_raw["items"]
    assert items.duplicated().sum() == rejected("items", "duplicate")
    assert pd.to_numeric(items["price"], errors="coerce").isna().sum() == rejected(
        "items", "unparseable_value"
    )

    tx = demo_raw["transactions"]
    assert (blank(tx["user_id"]) | blank(tx["item_id"])).sum() == rejected(
        "transactions", "null_id"
    )
    assert tx.duplicated().sum() == rejected("transactions", "duplicate")
    assert tx["occurred_at"].isin(gen.BAD_TIMESTAMPS).sum() == rejected(
        "transactions", "unparseable_value"
    )
    occurred = pd.to_datetime(tx["occurred_at"], utc=True, errors="coerce", format="ISO8601")
    assert (occurred >= RUN_DATE).sum() == rejected("transactions", "future_timestamp")
    assert (pd.to_numeric(tx["quantity"]) <= 0).sum() == rejected(
        "transactions", "non_positive_quantity"
    )
    known_users = set(users["user_id"].dropna()) - set(users.loc[bad_joined, "user_id"])
    ids = tx["user_id"].dropna()
    assert (~ids.str.strip().eq("") & ~ids.isin(known_users)).sum() == rejected(
        "transactions", "unknown_user"
    )
    known_items = set(items.loc[pd.to_numeric(items["price"], errors="coerce").notna(), "item_id"])
    ids = tx["item_id"].dropna()
    assert (~ids.str.strip().eq("") & ~ids.isin(known_items)).sum() == rejected(
        "transactions", "unknown_item"
    )
    variants = tx["event_type"] != tx["event_type"].str.strip().str.lower()
    assert (
        variants.sum()
        >= sources["transactions"]["normalised_in_clean_rows"]["event_type_case_or_spaces"]
    )
    assert tx["event_type"].str.strip().str.lower().isin(EVENT_TYPES).all()

    sends = demo_raw["notification_sends"]
    assert sends.duplicated().sum() == rejected("notification_sends", "duplicate")
    assert (~sends["user_id"].isin(known_users)).sum() == rejected(
        "notification_sends", "unknown_user"
    )
    assert sends.loc[sends["campaign_id"] == "weekly_digest", "item_id"].isna().all()
    assert sends.loc[sends["campaign_id"] != "weekly_digest", "item_id"].notna().all()

    events = demo_raw["notification_events"]
    assert events.duplicated().sum() == rejected("notification_events", "duplicate")
    assert (~events["send_id"].isin(sends["send_id"])).sum() == rejected(
        "notification_events", "unknown_send"
    )

    # Rates stay in the promised band.
    for source, summary in sources.items():
        for reason, count in summary["rejected"].items():
            if count:
                assert 0.001 <= count / summary["clean_rows"] <= 0.011, (source, reason)


def test_clean_rows_do_not_depend_on_dirt(tmp_path):
    """Staging the dirty output gives back exactly the no-dirt output (after normalising)."""
    args = ["--users", "250", "--items", "70", "--days", "60", "--seed", "11"]
    manifest = run_cli(tmp_path / "dirty", *args)
    dirty = assert_manifest_matches(read_raw(tmp_path / "dirty"), manifest)
    run_cli(tmp_path / "plain", *args, "--no-dirt")
    plain, _ = stage(read_raw(tmp_path / "plain"))
    for source in gen.SOURCES:
        # A kept duplicate may sit where its copy was planted: compare as sorted sets.
        left, right = (
            frame.astype(str).sort_values(list(frame.columns)).reset_index(drop=True)
            for frame in (dirty[source], plain[source])
        )
        pd.testing.assert_frame_equal(left, right, obj=source)


# ---------------------------------------------------------------------------------------
# Planted structure
# ---------------------------------------------------------------------------------------


def test_formats_and_ids(demo_raw):
    users, items, tx = demo_raw["users"], demo_raw["items"], demo_raw["transactions"]
    assert users["user_id"].dropna().str.fullmatch(r"\s*|u\d{6}").all()
    assert items["item_id"].str.fullmatch(r"i\d{5}").all()
    assert (items["url"] == "https://shop.example/items/" + items["item_id"]).all()
    assert (items["image_url"] == "https://shop.example/img/" + items["item_id"] + ".jpg").all()
    stamp = r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}[+-]\d{2}:00"
    good = tx["occurred_at"][~tx["occurred_at"].isin(gen.BAD_TIMESTAMPS)]
    assert good.str.fullmatch(stamp).all()
    offsets = good.str[-6:].value_counts(normalize=True)
    assert set(offsets.index) == {"+00:00", "+02:00", "-05:00"}
    assert 0.02 < 1 - offsets["+00:00"] < 0.04
    assert users["email_opt_in"].isin(["true", "false"]).all()
    assert users["loyalty_group"].isin(["new", "regular", "loyal"]).all()
    assert items["price"].str.fullmatch(r"\d+\.\d{2}|tbd|12\.50 EUR").all()


def test_user_attributes(demo_clean):
    users = demo_clean["users"]
    assert 0.03 < users["email"].isna().mean() < 0.08
    assert 0.8 < (users["email_opt_in"] == "true").mean() < 0.9
    assert 0.03 < users["unsubscribed_at"].notna().mean() < 0.08
    assert 0.02 < users["timezone"].isna().mean() < 0.1
    assert 8 <= users["timezone"].nunique() <= 12
    assert users["email"].dropna().str.fullmatch(r"[a-z]+\.\d+@example\.com").all()
    assert ((RUN_DATE - users["joined_at"]) < pd.Timedelta(days=7)).sum() > 0
    assert (users["joined_at"] < RUN_DATE).all()


def test_transactions_inside_windows_and_after_joining(demo_clean):
    tx = demo_clean["transactions"].merge(demo_clean["items"], on="item_id")
    assert (tx["occurred_at"] < RUN_DATE).all()
    assert (tx["occurred_at"] >= RUN_DATE - pd.Timedelta(days=180)).all()
    assert (tx["available_from"].isna() | (tx["occurred_at"] >= tx["available_from"])).all()
    assert (tx["available_until"].isna() | (tx["occurred_at"] < tx["available_until"])).all()
    first = tx.groupby("user_id")["occurred_at"].min()
    joined = demo_clean["users"].set_index("user_id")["joined_at"]
    assert (joined[first.index] < first).all()
    assert (tx["amount"] == (tx["quantity"] * tx["price"]).round(2)).all()
    assert tx["quantity"].between(1, 5).all() and (tx["quantity"] == 1).mean() > 0.85
    shares = tx["event_type"].value_counts(normalize=True)
    assert shares.idxmax() == "view" and set(shares.index) == EVENT_TYPES


def test_availability_windows(demo_clean):
    items = demo_clean["items"]
    week_ago = RUN_DATE - pd.Timedelta(days=7)
    brand_new = items[(items["available_from"] >= week_ago) & (items["available_from"] < RUN_DATE)]
    upcoming = items[items["available_from"] >= RUN_DATE]
    expired = items[items["available_until"] < RUN_DATE]
    open_ended = items["available_until"].isna()
    assert len(brand_new) == len(upcoming) == 25 and len(expired) == 50
    assert open_ended.mean() > 0.75
    touched = set(demo_clean["transactions"]["item_id"])
    assert touched.isdisjoint(brand_new["item_id"])
    assert touched.isdisjoint(upcoming["item_id"])
    sent = set(demo_clean["notification_sends"]["item_id"].dropna())
    assert sent.isdisjoint(brand_new["item_id"]) and sent.isdisjoint(upcoming["item_id"])


def test_purchases_usually_follow_a_view(demo_clean):
    tx = demo_clean["transactions"]
    views = tx[tx["event_type"] == "view"].groupby(["user_id", "item_id"])["occurred_at"].min()
    purchases = tx[tx["event_type"] == "purchase"].set_index(["user_id", "item_id"])
    first_view = views.reindex(purchases.index)
    assert (first_view <= purchases["occurred_at"]).mean() > 0.8


def test_activity_is_heavy_tailed_and_drives_loyalty(demo_clean):
    tx, users = demo_clean["transactions"], demo_clean["users"]
    per_user = tx.groupby("user_id").size().reindex(users["user_id"], fill_value=0)
    top_share = per_user.sort_values(ascending=False).head(len(per_user) // 10).sum() / len(tx)
    assert top_share > 0.3  # the top 10% of users make over 30% of interactions
    assert per_user.median() < per_user.mean()
    groups = per_user.groupby(users.set_index("user_id")["loyalty_group"]).median()
    assert groups["loyal"] > groups["regular"]


def test_popularity_is_heavy_tailed_within_category(demo_clean):
    tx = demo_clean["transactions"].merge(demo_clean["items"], on="item_id")
    counts = tx.groupby(["category", "item_id"]).size()
    top = counts.groupby(level=0).max() / counts.groupby(level=0).median()
    assert (top > 3).mean() > 0.8


def test_users_follow_their_latent_tastes(demo_data):
    tables, taste = demo_data.tables, demo_data.user_taste
    category = tables["items"].drop_duplicates("item_id").set_index("item_id")["category"]
    tx = tables["transactions"].dropna(subset=["user_id", "item_id"])
    tx = tx[tx["user_id"].str.fullmatch(r"u\d+") & tx["item_id"].isin(category.index)]
    index = tx["user_id"].str[1:].astype(int) - 1
    tx = tx[index < len(taste)].assign(user=index, category=tx["item_id"].map(category))
    favourite = pd.Series(np.array(demo_data.categories)[taste.argmax(axis=1)])
    tx = tx.assign(hit=tx["category"].to_numpy() == favourite[tx["user"]].to_numpy())
    per_user = tx.groupby("user").agg(n=("hit", "size"), share=("hit", "mean"))
    share = per_user.loc[per_user["n"] >= 10, "share"].mean()
    assert share > 0.45 > 3 / len(demo_data.categories)
    # Most users concentrate on few categories.
    top3 = -np.sort(-taste, axis=1)[:, :3].sum(axis=1)
    assert np.median(top3) > 0.8


def test_titles_reveal_the_category(demo_clean):
    items = demo_clean["items"]
    words = items["title"].str.lower().str.split()
    vocabulary = {}
    for spec in gen.CATEGORIES:
        for word in spec.modifiers + spec.nouns:
            vocabulary[word] = spec.name
    guessed = words.map(lambda ws: Counter(vocabulary.get(w) for w in ws if w in vocabulary))
    assert (guessed.map(lambda c: c.most_common(1)[0][0]) == items["category"]).all()


def test_responses_rise_with_relevance(demo_data):
    tables, taste = demo_data.tables, demo_data.user_taste
    categories = list(demo_data.categories)
    sends = tables["notification_sends"].drop_duplicates("send_id")
    sends = sends[sends["item_id"].notna() & sends["user_id"].str[1:].astype(int).le(len(taste))]
    category = tables["items"].drop_duplicates("item_id").set_index("item_id")["category"]
    user = sends["user_id"].str[1:].astype(int).to_numpy() - 1
    column = sends["item_id"].map(category).map(categories.index).to_numpy()
    relevance = pd.Series(taste[user, column], index=sends["send_id"])
    events = tables["notification_events"]
    clicked = relevance.index.isin(events.loc[events["event_type"] == "click", "send_id"])
    opened = relevance.index.isin(events.loc[events["event_type"] == "open", "send_id"])
    high, low = relevance >= 0.3, relevance < 0.05
    assert high.sum() > 300 and low.sum() > 300
    assert clicked[high].mean() > 3 * clicked[low].mean()
    assert opened[high].mean() > 2 * opened[low].mean()
    assert set(sends["campaign_id"]) == {"new_arrivals", "hidden_gems", "last_chance"}
    assert set(sends["channel"]) == {"email", "push"}


def test_notification_events_follow_their_send(demo_clean):
    sends = demo_clean["notification_sends"].drop_duplicates("send_id").set_index("send_id")
    events = demo_clean["notification_events"]
    sent = sends.loc[events["send_id"], "sent_at"].to_numpy()
    assert (events["occurred_at"].to_numpy() > sent).all()
    assert (sends["sent_at"] >= RUN_DATE - pd.Timedelta(weeks=8)).all()
    funnel = events["event_type"].value_counts()
    assert funnel["delivered"] > funnel["open"] > funnel["click"] > funnel["conversion"] > 0
    assert set(funnel.index) == NOTIFICATION_EVENTS
    # Opt-outs are honoured: nothing after an unsubscribe, no e-mail after a bounce/complaint.
    users = demo_clean["users"].set_index("user_id")
    unsubscribed = users.loc[sends["user_id"], "unsubscribed_at"].to_numpy()
    unsubscribed = pd.to_datetime(pd.Series(unsubscribed), utc=True, format="ISO8601")
    assert not (sends["sent_at"].to_numpy() > unsubscribed.to_numpy()).any()
    stops = events[events["event_type"].isin(["bounce", "complaint"])].merge(
        sends[["user_id"]], left_on="send_id", right_index=True
    )
    first_stop = stops.groupby("user_id")["occurred_at"].min()
    emails = sends[(sends["channel"] == "email") & sends["user_id"].isin(first_stop.index)]
    assert (emails["sent_at"] <= first_stop[emails["user_id"]].to_numpy()).all()
    unsubscribes = events[events["event_type"] == "unsubscribe"].merge(
        sends[["user_id"]], left_on="send_id", right_index=True
    )
    first = unsubscribes.groupby("user_id")["occurred_at"].min()
    recorded = pd.to_datetime(users.loc[first.index, "unsubscribed_at"], utc=True, format="ISO8601")
    assert (recorded <= first).all() and len(first) > 10
    digests = sends[sends["campaign_id"] == "weekly_digest"]
    assert (digests["channel"] == "email").all() and digests["item_id"].isna().all()


def test_exact_transaction_count_without_dirt():
    data = gen.generate(3000, 400, 90, n_transactions=60_000, seed=4, dirt=False)
    assert len(data.tables["transactions"]) == 60_000
    assert data.manifest["sources"]["transactions"]["rejected_total"] == 0
    assert all(dtype == "string" for dtype in data.tables["transactions"].dtypes)


def test_invalid_arguments():
    with pytest.raises(ValueError):
        gen.generate(0, 10, 10)
    with pytest.raises(ValueError):
        gen.write(gen.generate(5, 5, 5), "/nonexistent-never-written", fmt="xlsx")
