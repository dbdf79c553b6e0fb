"""Synthetic shop data with planted structure and planted dirt.

The generator writes the five raw sources of ``docs/raw_data.md`` (every value as text) and a
``generation_manifest.json`` that states, for every source, how many raw rows staging must
keep and how many it must reject for each reason. Two things are planted on purpose:

* **Structure**, so that model quality is measurable: users have concentrated latent tastes
  over ~12 categories, power-law activity, power-law item popularity within a category,
  availability windows (expired, upcoming and brand-new items), titles whose words reveal
  the category, and notification responses that rise with the user's taste for the item.
* **Dirt**, so that staging is testable exactly: every dirty row is an *extra* row (a copy
  of a clean row with one defect, or an exact copy), so the clean rows stay clean and the
  expected staging outcome is known row for row. Cosmetic variations (mixed-case event
  types and emails, non-UTC offsets) are applied in place because staging normalises them.

Everything is vectorised numpy / pyarrow: no Python loop runs per transaction, so the
benchmark can ask for millions of rows. The same arguments always give the same bytes.

Usage::

    python -m proactive_recs_tools.generate --users 2000 --items 500 --days 180 --seed 42 \\
        --active-hours --out seeds/demo

    data = generate(1_000_000, 100_000, 180, n_transactions=20_000_000, dirt=False)
    data.tables["transactions"]  # text columns in docs/raw_data.md order
    write(data, "out", fmt="parquet")

Manifest (``generation_manifest.json``, sorted keys): ``command`` (canonical, without
``--out``), ``parameters``, ``run_date`` (= ``end``), and per source ``raw_rows``,
``clean_rows``, ``rejected`` (every reason code of that source, zeros included),
``rejected_total`` and ``normalised_in_clean_rows`` (rows staging must normalise, not
reject); plus ``dirt_rates``, ``variation_rates`` and a ``structure`` summary.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from proactive_recs.contract import CHANNELS, REQUIRED_COLUMNS

__all__ = [
    "COLUMNS",
    "REJECTION_REASONS",
    "SyntheticData",
    "generate",
    "main",
    "write",
]

DEFAULT_END = "2026-11-01"
TRANSACTIONS_PER_USER = 25

DAY = 86_400
HOUR = 3_600
# Sentinels for open-ended availability windows; far enough to never collide with real
# times, small enough that adding a few days cannot overflow int64.
FAR_PAST = -(2**62)
FAR_FUTURE = 2**62

SOURCES = (
    "users",
    "items",
    "transactions",
    "notification_sends",
    "notification_events",
)

# Column order of the raw files (docs/raw_data.md).
# The contract's columns, then the extra attributes the demo data carries (they flow
# through staging to filters, boosters and the day-0 attribute model).
EXTRA_COLUMNS: dict[str, tuple[str, ...]] = {"users": ("loyalty_group",), "items": ("brand",)}
COLUMNS: dict[str, tuple[str, ...]] = {
    source: required + EXTRA_COLUMNS.get(source, ())
    for source, required in REQUIRED_COLUMNS.items()
}

# Rejection reasons per source, in staging's priority order (docs/raw_data.md).
REJECTION_REASONS: dict[str, tuple[str, ...]] = {
    "users": ("null_id", "unparseable_value", "future_timestamp", "duplicate"),
    "items": ("null_id", "unparseable_value", "non_product_item", "duplicate"),
    "transactions": (
        "null_id",
        "unparseable_value",
        "future_timestamp",
        "cancellation",
        "unknown_event_type",
        "non_positive_quantity",
        "non_product_item",
        "unknown_user",
        "unknown_item",
        "duplicate",
    ),
    "notification_sends": (
        "null_id",
        "unparseable_value",
        "unknown_channel",
        "unknown_user",
        "duplicate",
    ),
    "notification_events": (
        "null_id",
        "unparseable_value",
        "future_timestamp",
        "unknown_event_type",
        "unknown_send",
        "duplicate",
    ),
}

# Extra dirty rows per clean row of the source, one entry per kind of defect. Each kind maps
# to exactly one rejection reason (the part before "/" when a reason has several kinds).
DIRT_RATES: dict[str, dict[str, float]] = {
    "users": {"duplicate": 0.01, "null_id": 0.005, "unparseable_value": 0.005},
    "items": {"duplicate": 0.01, "unparseable_value": 0.01},
    "transactions": {
        "duplicate": 0.005,
        "null_id/user_id": 0.003,
        "null_id/item_id": 0.002,
        "unparseable_value": 0.003,
        "future_timestamp": 0.003,
        "non_positive_quantity": 0.003,
        "unknown_user": 0.003,
        "unknown_item": 0.003,
    },
    "notification_sends": {"duplicate": 0.005, "unknown_user": 0.003},
    "notification_events": {"duplicate": 0.005, "unknown_send": 0.003},
}
# In-place cosmetic variations that staging must normalise (not reject).
EMAIL_VARIANT_RATE = 0.02
EVENT_TYPE_VARIANT_RATE = 0.01
# Share of timestamps written in another UTC offset (same instant).
OFFSET_RATE = 0.03
OFFSET_TEXT = ("+00:00", "+02:00", "-05:00")
OFFSET_SECONDS = np.array([0, 2 * HOUR, -5 * HOUR], dtype=np.int64)

BAD_TIMESTAMPS = ("not a date", "2026-13-45 10:00:00")
BAD_PRICES = ("tbd", "12.50 EUR")

# ---------------------------------------------------------------------------------------
# Vocabulary. No value may contain a comma, a quote or a word that CSV loaders read as null
# ("NA", "None", "null"), because the CSV is written without quoting.
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Category:
    name: str
    median_price: float
    modifiers: tuple[str, ...]
    nouns: tuple[str, ...]
    brands: tuple[str, ...]


CATEGORIES: tuple[_Category, ...] = (
    _Category(
        "electronics",
        60.0,
        ("wireless", "bluetooth", "usb-c", "smart", "portable", "digital", "hd"),
        ("headphones", "speaker", "charger", "keyboard", "mouse", "monitor", "webcam", "tablet"),
        ("Voltra", "Ampero", "Circuitry", "Pixelly"),
    ),
    _Category(
        "books",
        14.0,
        ("paperback", "hardcover", "illustrated", "annotated", "collected", "pocket"),
        ("novel", "cookbook", "biography", "atlas", "anthology", "thriller", "memoir"),
        ("Inkwell Press", "Folio House", "Pagewise", "Quillmark"),
    ),
    _Category(
        "fashion",
        35.0,
        ("cotton", "linen", "denim", "wool", "slim-fit", "oversized", "leather"),
        ("shirt", "jacket", "dress", "jeans", "sweater", "scarf", "sneakers", "hoodie"),
        ("Threadly", "Cortina", "Northseam", "Velora"),
    ),
    _Category(
        "home",
        30.0,
        ("ceramic", "bamboo", "cast-iron", "nonstick", "glass", "stainless"),
        ("mug", "skillet", "teapot", "blender", "lamp", "cushion", "vase", "kettle"),
        ("Hearthly", "Casaverde", "Kitchenly", "Domus"),
    ),
    _Category(
        "beauty",
        18.0,
        ("hydrating", "botanical", "matte", "vitamin-c", "fragrance-free", "volumizing"),
        ("serum", "moisturizer", "lipstick", "shampoo", "mascara", "cleanser", "perfume"),
        ("Lumiere", "Glowa", "Purelle", "Belladerm"),
    ),
    _Category(
        "sports",
        40.0,
        ("running", "yoga", "trail", "carbon", "adjustable", "waterproof"),
        ("shoes", "mat", "dumbbells", "racket", "bottle", "backpack", "helmet", "leggings"),
        ("Stridex", "Peakform", "Aerofit", "Trailon"),
    ),
    _Category(
        "toys",
        22.0,
        ("wooden", "plush", "magnetic", "remote-control", "educational", "stacking"),
        ("puzzle", "robot", "blocks", "doll", "kite", "dinosaur", "boardgame"),
        ("Playmoor", "Tinkerly", "Joybox", "Kiddo"),
    ),
    _Category(
        "garden",
        28.0,
        ("solar", "galvanized", "heirloom", "raised", "ergonomic", "expandable"),
        ("hose", "planter", "trowel", "seeds", "pruner", "lantern", "birdhouse", "sprinkler"),
        ("Greenthumb", "Verdana", "Yardly", "Bloomfield"),
    ),
    _Category(
        "grocery",
        7.0,
        ("roasted", "fair-trade", "smoked", "sparkling", "gluten-free", "spiced"),
        ("coffee", "tea", "chocolate", "olive-oil", "honey", "pasta", "granola", "salsa"),
        ("Harvesta", "Goodgrain", "Millbrook", "Saporia"),
    ),
    _Category(
        "music",
        16.0,
        ("vinyl", "remastered", "acoustic", "live", "limited-edition", "unplugged"),
        ("album", "record", "songbook", "ukulele", "harmonica", "drumsticks", "strings"),
        ("Soundry", "Echoline", "Tempo Records", "Cadenza"),
    ),
    _Category(
        "pets",
        20.0,
        ("grain-free", "chewable", "orthopedic", "catnip", "reflective", "self-cleaning"),
        ("kibble", "leash", "collar", "litter", "scratcher", "treats", "aquarium"),
        ("Pawsome", "Furrow", "Tailwind", "Petlio"),
    ),
    _Category(
        "automotive",
        45.0,
        ("heavy-duty", "microfiber", "led", "all-weather", "synthetic", "chrome"),
        ("wipers", "floor-mats", "jump-starter", "dashcam", "tire-inflator", "seat-cover"),
        ("Motorix", "Roadwise", "Gearhead", "Autonova"),
    ),
)
GENERIC_ADJECTIVES = (
    "Classic",
    "Premium",
    "Essential",
    "Everyday",
    "Compact",
    "Modern",
    "Vintage",
    "Lightweight",
    "Eco",
    "Signature",
    "Ultra",
    "Original",
)
GENERIC_BRANDS = ("Basics Co", "Northwind", "Urbano", "Acme Goods")
FIRST_NAMES = (
    "anna", "ben", "chloe", "david", "emma", "felix", "grace", "hugo", "ines", "jonas",
    "karin", "leo", "maria", "noah", "olga", "paul", "quinn", "rosa", "sam", "tara",
    "umar", "vera", "will", "xenia", "yusuf", "zoe", "lena", "marco", "nina", "omar",
)  # fmt: skip
# (country, weight, IANA zones); "NA" (Namibia) is left out on purpose: loaders read it as null.
COUNTRIES: tuple[tuple[str, float, tuple[str, ...]], ...] = (
    ("US", 0.26, ("America/New_York", "America/Chicago", "America/Los_Angeles")),
    ("GB", 0.12, ("Europe/London",)),
    ("DE", 0.14, ("Europe/Berlin",)),
    ("FR", 0.10, ("Europe/Paris",)),
    ("ES", 0.07, ("Europe/Madrid",)),
    ("NL", 0.05, ("Europe/Amsterdam",)),
    ("BR", 0.08, ("America/Sao_Paulo",)),
    ("JP", 0.09, ("Asia/Tokyo",)),
    ("AU", 0.09, ("Australia/Sydney",)),
)

EVENT_TYPES = ("view", "add_to_cart", "wishlist", "purchase")
VIEW, ADD_TO_CART, WISHLIST, PURCHASE = range(4)
# Shares of taste-driven events; each purchase is then preceded by a view most of the time.
EVENT_TYPE_SHARES = (0.68, 0.13, 0.06, 0.13)
VIEW_BEFORE_PURCHASE = 0.85

CAMPAIGNS = ("weekly_digest", "new_arrivals", "hidden_gems", "last_chance")
DIGEST, NEW_ARRIVALS, HIDDEN_GEMS, LAST_CHANCE = range(4)
EMAIL, PUSH = range(len(CHANNELS))  # indexes into the contract's CHANNELS
NOTIFICATION_EVENTS = (
    "delivered", "open", "click", "conversion", "unsubscribe", "bounce", "complaint",
)  # fmt: skip
DELIVERED, OPEN, CLICK, CONVERSION, UNSUBSCRIBE, BOUNCE, COMPLAINT = range(7)

OPEN_STATUS, EXPIRED, UPCOMING, BRAND_NEW = range(4)
ITEM_STATUS_NAMES = ("open", "expired", "upcoming", "brand_new")
ITEM_STATUS_SHARES = (0.80, 0.10, 0.05, 0.05)

# Latent structure knobs.
TASTE_CONCENTRATION = 1.2  # Dirichlet total mass: small = users care for few categories
TASTE_BACKGROUND = 0.04  # share of every user's taste that follows global popularity
ACTIVITY_SHAPE = 1.6  # Pareto shape of user activity: small = heavier tail
POPULARITY_EXPONENT = 0.9  # Zipf exponent of item popularity within a category
PRICE_SIGMA = 0.5
SEND_WEEKS = 8
DIGEST_SHARE = 0.5  # share of eligible users in each weekly digest
ITEM_SENDS_PER_USER_WEEK = 0.4
DIGEST_RELEVANCE = 0.3


# ---------------------------------------------------------------------------------------
# Small numeric helpers
# ---------------------------------------------------------------------------------------


def _uniform_int(rng: np.random.Generator, lo, hi, size: int | None = None) -> np.ndarray:
    """Integers uniform in [lo, hi); an empty range collapses to lo."""
    lo = np.asarray(lo, dtype=np.int64)
    hi = np.maximum(np.asarray(hi, dtype=np.int64), lo + 1)
    if size is None:
        size = np.broadcast(lo, hi).shape
    return lo + np.floor(rng.random(size) * (hi - lo)).astype(np.int64)


def _exponential_seconds(rng: np.random.Generator, mean: float, size: int) -> np.ndarray:
    return 1 + np.floor(rng.exponential(mean, size)).astype(np.int64)


def _sample_rows(rng: np.random.Generator, cum: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """For each entry of ``rows``, a column drawn from that row's cumulative weights.

    Chunked so that the (rows x columns) comparison never holds more than a few million
    booleans, whatever the number of draws.
    """
    out = np.empty(len(rows), dtype=np.int64)
    chunk = 1 << 20
    for begin in range(0, len(rows), chunk):
        r = rows[begin : begin + chunk]
        # Scaling by the row total (not assuming it is 1) means the drawn column always has a
        # positive weight: the first column whose cumulative weight exceeds the draw.
        draw = rng.random(len(r)) * cum[r, -1]
        out[begin : begin + chunk] = (cum[r] <= draw[:, None]).sum(axis=1)
    return np.minimum(out, cum.shape[1] - 1)


def _dirt_count(rate: float, n_clean: int, dirt: bool) -> int:
    # At least one of each kind, so that small data sets still exercise every reason.
    if not dirt or n_clean == 0:
        return 0
    return max(1, round(rate * n_clean))


# ---------------------------------------------------------------------------------------
# Text formatting (pyarrow compute: C++ speed, and exactly the same bytes every time)
# ---------------------------------------------------------------------------------------

_STRING = pa.string()


def _text(values) -> pa.Array:
    return pa.array(list(values), type=_STRING)


def _format_ints(values: np.ndarray) -> pa.Array:
    return pc.cast(pa.array(np.asarray(values, dtype=np.int64)), _STRING)


def _format_ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    digits = pc.utf8_lpad(_format_ints(numbers), width, "0")
    return pc.binary_join_element_wise(prefix, digits, "")


def _format_cents(cents: np.ndarray) -> pa.Array:
    """Integer cents as plain decimal text with two decimals ("12.50", "-3.05")."""
    cents = np.asarray(cents, dtype=np.int64)
    magnitude = np.abs(cents)
    whole = _format_ints(magnitude // 100)
    fraction = pc.utf8_lpad(_format_ints(magnitude % 100), 2, "0")
    text = pc.binary_join_element_wise(whole, fraction, ".")
    negative = cents < 0
    if negative.any():
        text = pc.if_else(pa.array(negative), pc.binary_join_element_wise("-", text, ""), text)
    return text


@functools.cache
def _clock_faces() -> pa.Array:
    """Every second of a day as HH:MM:SS, to be looked up rather than formatted per row."""
    return _text(f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in range(DAY))


def _format_timestamps(
    seconds: np.ndarray, offsets: np.ndarray, null: np.ndarray | None = None
) -> pa.Array:
    """``YYYY-MM-DD HH:MM:SS+hh:mm``: the same instant written in the row's UTC offset.

    Formatting each row with strftime costs about a microsecond; a timestamp column only
    spans a few hundred distinct days, so the dates are formatted once per day and the
    clock once per second of a day, and every row is assembled from lookups.
    """
    local = np.asarray(seconds, dtype=np.int64) + OFFSET_SECONDS[offsets]
    if null is not None and null.any():
        # Keep sentinels out of the calendar maths (any real value will do).
        filler = local[~null][0] if (~null).any() else 0
        local = np.where(null, filler, local)
    day, second = np.divmod(local, DAY)
    first = int(day.min()) if len(day) else 0
    days = np.arange(first, int(day.max()) + 1 if len(day) else first) * DAY
    calendar = pc.strftime(pa.array(days.astype("datetime64[s]")), format="%Y-%m-%d")
    text = pc.binary_join_element_wise(
        calendar.take(pa.array(day - first)),
        " ",
        _clock_faces().take(pa.array(second)),
        _text(OFFSET_TEXT).take(pa.array(np.asarray(offsets, dtype=np.int64))),
        "",
    )
    if null is not None and null.any():
        text = pc.if_else(pa.array(null), pa.scalar(None, _STRING), text)
    return text


def _draw_offsets(rng: np.random.Generator, n: int) -> np.ndarray:
    """Offset code per row: mostly UTC, OFFSET_RATE split between +02:00 and -05:00."""
    u = rng.random(n)
    return np.where(u < OFFSET_RATE / 2, 1, np.where(u < OFFSET_RATE, 2, 0)).astype(np.int64)


def _take(values: pa.Array, index: np.ndarray) -> pa.Array:
    """values[index] with index -1 giving null."""
    index = np.asarray(index, dtype=np.int64)
    return values.take(pa.array(index, mask=index < 0))


def _id_width(minimum: int, largest: int) -> int:
    return max(minimum, len(str(largest)))


# ---------------------------------------------------------------------------------------
# The latent world (numbers only)
# ---------------------------------------------------------------------------------------


@dataclass
class _Users:
    taste: np.ndarray  # (n, K) shares over categories
    activity: np.ndarray
    joined: np.ndarray  # seconds since epoch
    has_email: np.ndarray
    name: np.ndarray
    opt_in: np.ndarray
    unsubscribed: np.ndarray  # FAR_FUTURE when never
    country: np.ndarray
    timezone: np.ndarray  # -1 when null
    loyalty: np.ndarray | None = None


@dataclass
class _Items:
    category: np.ndarray
    popularity: np.ndarray
    rank_share: np.ndarray  # 0 = most popular of its category, -> 1 = least popular
    price_cents: np.ndarray
    brand: np.ndarray
    adjective: np.ndarray
    modifier: np.ndarray
    noun: np.ndarray
    status: np.ndarray
    available_from: np.ndarray  # FAR_PAST when null (always available)
    available_until: np.ndarray  # FAR_FUTURE when null (open)


@dataclass
class _Sends:
    user: np.ndarray
    item: np.ndarray  # -1 for digests
    campaign: np.ndarray
    channel: np.ndarray
    sent: np.ndarray
    relevance: np.ndarray


@dataclass
class _Events:
    send: np.ndarray  # index into the sorted sends
    kind: np.ndarray
    occurred: np.ndarray


@dataclass
class _Interactions:
    user: np.ndarray
    item: np.ndarray
    occurred: np.ndarray
    kind: np.ndarray
    quantity: np.ndarray


def _make_users(
    rng: np.random.Generator, n: int, start: int, end: int, category_share: np.ndarray
) -> _Users:
    # Concentrated Dirichlet: most users put most of their taste on one to three categories;
    # a thin background share keeps every category reachable (exploration, gifts).
    taste = rng.dirichlet(TASTE_CONCENTRATION * category_share, size=n)
    taste = (1 - TASTE_BACKGROUND) * taste + TASTE_BACKGROUND * category_share
    activity = rng.pareto(ACTIVITY_SHAPE, n) + 1.0

    # Most users joined before the window, some during it, a few in the last 7 days.
    cohort = rng.random(n)
    lo = np.select(
        [cohort < 0.03, cohort < 0.25], [end - 7 * DAY, start], default=start - 730 * DAY
    )
    hi = np.select([cohort < 0.03, cohort < 0.25], [end - HOUR, end - 7 * DAY], default=start)
    joined = _uniform_int(rng, lo, np.minimum(hi, end - HOUR))

    has_email = rng.random(n) >= 0.05
    name = rng.integers(0, len(FIRST_NAMES), n)
    opt_in = rng.random(n) < 0.85
    # A few more unsubscribe through the send history (see _make_notifications).
    unsubscribes = rng.random(n) < 0.03
    unsubscribed = np.where(
        unsubscribes,
        _uniform_int(rng, np.maximum(joined, end - 365 * DAY) + 1, end),
        FAR_FUTURE,
    )

    weights = np.array([c[1] for c in COUNTRIES])
    country = rng.choice(len(COUNTRIES), size=n, p=weights / weights.sum())
    zones_per_country = np.array([len(c[2]) for c in COUNTRIES])
    first_zone = np.concatenate([[0], np.cumsum(zones_per_country)[:-1]])
    zone = first_zone[country] + np.floor(rng.random(n) * zones_per_country[country]).astype(
        np.int64
    )
    timezone = np.where(rng.random(n) < 0.06, -1, zone)
    return _Users(taste, activity, joined, has_email, name, opt_in, unsubscribed, country, timezone)


def _make_items(
    rng: np.random.Generator, n: int, start: int, end: int, category_share: np.ndarray
) -> _Items:
    k = len(CATEGORIES)
    # Every category gets an item when there are enough items; the rest follow the shares.
    head = np.arange(min(n, k))
    tail = rng.choice(k, size=n - len(head), p=category_share)
    category = rng.permutation(np.concatenate([head, tail]))

    # Zipf popularity by a random rank within the category.
    order = np.lexsort((rng.random(n), category))
    sorted_category = category[order]
    first = np.searchsorted(sorted_category, sorted_category, side="left")
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - first
    size = np.bincount(category, minlength=k)[category]
    popularity = (rank + 1.0) ** -POPULARITY_EXPONENT
    rank_share = rank / size

    median = np.array([c.median_price for c in CATEGORIES])[category]
    price = median * np.exp(PRICE_SIGMA * rng.standard_normal(n))
    price_cents = np.maximum(99, np.round(price * 100)).astype(np.int64)

    brands_per_category = len(CATEGORIES[0].brands)
    generic = rng.random(n) < 0.12
    brand = np.where(
        generic,
        k * brands_per_category + rng.integers(0, len(GENERIC_BRANDS), n),
        category * brands_per_category + rng.integers(0, brands_per_category, n),
    )
    adjective = rng.integers(0, len(GENERIC_ADJECTIVES), n)
    n_modifiers = np.array([len(c.modifiers) for c in CATEGORIES])[category]
    n_nouns = np.array([len(c.nouns) for c in CATEGORIES])[category]
    modifier = np.floor(rng.random(n) * n_modifiers).astype(np.int64)
    noun = np.floor(rng.random(n) * n_nouns).astype(np.int64)

    # Exact status counts, so the planted shares do not wobble with the seed.
    counts = np.floor(np.array(ITEM_STATUS_SHARES) * n).astype(np.int64)
    counts[OPEN_STATUS] += n - counts.sum()
    status = rng.permutation(np.repeat(np.arange(4), counts))

    before_window = rng.random(n) < 0.6
    old_from = _uniform_int(rng, start - 365 * DAY, start, n)
    open_from = np.where(before_window, old_from, _uniform_int(rng, start, end - 7 * DAY, n))
    open_from = np.minimum(open_from, end - 7 * DAY - 1)  # never look brand-new
    # Some long-standing items have no start date at all (null = always available).
    open_from = np.where(before_window & (rng.random(n) < 0.15), FAR_PAST, open_from)
    expired_from = np.where(before_window, old_from, _uniform_int(rng, start, end - 28 * DAY, n))
    expired_from = np.minimum(expired_from, end - 7 * DAY - 1)
    expired_until = _uniform_int(
        rng,
        np.minimum(np.maximum(expired_from + 7 * DAY, start + DAY), end - 2 * HOUR),
        end - HOUR,
    )
    upcoming_from = _uniform_int(rng, end + DAY, end + 31 * DAY, n)
    upcoming_until = np.where(
        rng.random(n) < 0.3, upcoming_from + _uniform_int(rng, 30 * DAY, 90 * DAY, n), FAR_FUTURE
    )
    new_from = _uniform_int(rng, end - 7 * DAY, end - HOUR, n)
    # A few available items close soon after the run date: material for "last chance".
    open_until = np.where(
        rng.random(n) < 0.06, _uniform_int(rng, end + DAY, end + 45 * DAY, n), FAR_FUTURE
    )

    available_from = np.choose(status, [open_from, expired_from, upcoming_from, new_from])
    available_until = np.choose(
        status, [open_until, expired_until, upcoming_until, np.full(n, FAR_FUTURE)]
    )
    return _Items(
        category,
        popularity,
        rank_share,
        price_cents,
        brand,
        adjective,
        modifier,
        noun,
        status,
        available_from,
        available_until,
    )


def _pick_items(
    rng: np.random.Generator,
    pool: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    n: int,
) -> tuple[np.ndarray, np.ndarray]:
    """n (item, time) pairs: a uniform item of the pool at a uniform time of its interval."""
    valid = hi - lo >= HOUR
    pool, lo, hi = pool[valid], lo[valid], hi[valid]
    if len(pool) == 0 or n == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    pick = rng.integers(0, len(pool), n)
    return pool[pick], _uniform_int(rng, lo[pick], hi[pick])


def _make_notifications(
    rng: np.random.Generator, users: _Users, items: _Items, end: int
) -> tuple[_Sends, _Events, _Interactions]:
    """Send history of the last SEND_WEEKS weeks, its events, and the interactions they cause.

    Responses rise with the user's taste for the item's category, so a model that knows the
    tastes would have sent better notifications. Unsubscribe events also set
    ``users.unsubscribed`` (in place).
    """
    n_users = len(users.joined)
    k = len(CATEGORIES)
    first_send = end - SEND_WEEKS * 7 * DAY
    email_ok = users.has_email & users.opt_in

    # Weekly digests: e-mail only, to a random half of the reachable users each week.
    week_start = first_send + 7 * DAY * np.arange(SEND_WEEKS) + 9 * HOUR
    digest_sent = week_start[None, :] + _uniform_int(rng, 0, 2 * HOUR, (n_users, SEND_WEEKS))
    digest_mask = (
        email_ok[:, None]
        & (users.joined[:, None] < digest_sent)
        & (users.unsubscribed[:, None] > digest_sent)
        & (rng.random((n_users, SEND_WEEKS)) < DIGEST_SHARE)
    )
    digest_user, digest_week = np.nonzero(digest_mask)
    digest_sent = digest_sent[digest_user, digest_week]

    # Item campaigns: draw the item (and a send time inside its campaign interval) first.
    latest = end - HOUR
    sendable = (items.status == OPEN_STATUS) | (items.status == EXPIRED)
    ids = np.arange(len(items.status))
    a_from, a_until = items.available_from, items.available_until
    pools = {
        NEW_ARRIVALS: (
            sendable & (a_from > FAR_PAST),
            np.maximum(first_send, a_from),
            np.minimum(np.minimum(a_from + 21 * DAY, a_until), latest),
        ),
        HIDDEN_GEMS: (
            sendable & (items.rank_share >= 0.6),
            np.maximum(first_send, a_from),
            np.minimum(a_until, latest),
        ),
        LAST_CHANCE: (
            sendable & (a_until < FAR_FUTURE),
            np.maximum(np.maximum(first_send, a_from), a_until - 7 * DAY),
            np.minimum(a_until, latest),
        ),
    }
    n_item_sends = round(ITEM_SENDS_PER_USER_WEEK * SEND_WEEKS * n_users)
    campaign_counts = rng.multinomial(n_item_sends, [0.4, 0.3, 0.3])
    parts_item, parts_sent, parts_campaign = [], [], []
    item_campaigns = (NEW_ARRIVALS, HIDDEN_GEMS, LAST_CHANCE)
    for campaign, count in zip(item_campaigns, campaign_counts, strict=True):
        member, lo, hi = pools[campaign]
        item, sent = _pick_items(rng, ids[member], lo[member], hi[member], int(count))
        parts_item.append(item)
        parts_sent.append(sent)
        parts_campaign.append(np.full(len(item), campaign))
    item = np.concatenate(parts_item)
    item_sent = np.concatenate(parts_sent)
    item_campaign = np.concatenate(parts_campaign)

    # Half the item sends went to users whose favourite category matches (the old system's
    # targeting), half to anyone: relevance varies, and responses follow it.
    favourite = users.taste.argmax(axis=1)
    by_favourite = np.argsort(favourite, kind="stable")
    group_start = np.searchsorted(favourite[by_favourite], np.arange(k))
    group_size = np.bincount(favourite, minlength=k)
    category = items.category[item]
    targeted = (rng.random(len(item)) < 0.5) & (group_size[category] > 0)
    within = np.floor(rng.random(len(item)) * group_size[category]).astype(np.int64)
    anyone = rng.integers(0, n_users, len(item))
    item_user = np.where(
        targeted,
        by_favourite[np.minimum(group_start[category] + within, n_users - 1)],
        anyone,
    )
    item_channel = np.where(email_ok[item_user] & (rng.random(len(item)) < 0.5), EMAIL, PUSH)
    reachable = (users.joined[item_user] < item_sent) & (users.unsubscribed[item_user] > item_sent)

    user = np.concatenate([digest_user, item_user[reachable]])
    send_item = np.concatenate([np.full(len(digest_user), -1), item[reachable]])
    campaign = np.concatenate([np.full(len(digest_user), DIGEST), item_campaign[reachable]])
    channel = np.concatenate([np.full(len(digest_user), EMAIL), item_channel[reachable]])
    sent = np.concatenate([digest_sent, item_sent[reachable]])
    relevance = np.where(
        send_item >= 0,
        users.taste[user, items.category[np.maximum(send_item, 0)]],
        DIGEST_RELEVANCE,
    )
    order = np.lexsort((campaign, user, sent))
    sends = _Sends(
        user[order],
        send_item[order],
        campaign[order],
        channel[order],
        sent[order],
        relevance[order],
    )

    # Event funnel per send; probabilities rise with relevance.
    n = len(sends.sent)
    r = sends.relevance
    is_email = sends.channel == EMAIL
    bounced = is_email & (rng.random(n) < 0.01)
    delivered = ~bounced & (is_email | (rng.random(n) < 0.96))
    opened = delivered & (rng.random(n) < 0.08 + 0.5 * r)
    clicked = opened & (rng.random(n) < 0.12 + 0.5 * r)
    converted = clicked & (rng.random(n) < 0.08 + 0.4 * r)
    unsubscribed = is_email & delivered & (rng.random(n) < 0.002 + 0.01 * (1 - r))
    complained = is_email & delivered & (rng.random(n) < 0.0008)

    t_bounce = sends.sent + _uniform_int(rng, 30, 600, n)
    t_delivered = sends.sent + _uniform_int(rng, 1, 120, n)
    t_open = t_delivered + _exponential_seconds(rng, 3 * HOUR, n)
    t_click = t_open + _exponential_seconds(rng, 5 * 60, n)
    t_conversion = t_click + _exponential_seconds(rng, 2 * HOUR, n)
    t_unsubscribe = t_delivered + _exponential_seconds(rng, 6 * HOUR, n)
    t_complaint = t_delivered + _exponential_seconds(rng, 12 * HOUR, n)

    # Clicks and conversions on an item must happen while it is available: they become
    # interactions. Times only grow along the funnel, so dropping a late step drops the rest.
    until = np.where(sends.item >= 0, items.available_until[np.maximum(sends.item, 0)], FAR_FUTURE)
    horizon = np.minimum(until, end)
    times = {
        DELIVERED: t_delivered,
        OPEN: t_open,
        CLICK: t_click,
        CONVERSION: t_conversion,
        UNSUBSCRIBE: t_unsubscribe,
        BOUNCE: t_bounce,
        COMPLAINT: t_complaint,
    }
    kept = {
        DELIVERED: delivered & (t_delivered < end),
        OPEN: opened & (t_open < end),
        CLICK: clicked & (t_click < horizon),
        CONVERSION: converted & (t_conversion < horizon),
        UNSUBSCRIBE: unsubscribed & (t_unsubscribe < end),
        BOUNCE: bounced & (t_bounce < end),
        COMPLAINT: complained & (t_complaint < end),
    }

    # The sending tool honours opt-outs: nothing more after an unsubscribe, no more e-mail
    # after a bounce or a complaint. Later sends are dropped with their events, and the
    # first unsubscribe becomes the user's unsubscribed_at.
    def first_per_user(kind: int) -> np.ndarray:
        first = np.full(n_users, FAR_FUTURE, dtype=np.int64)
        np.minimum.at(first, sends.user[kept[kind]], times[kind][kept[kind]])
        return first

    stop_all = first_per_user(UNSUBSCRIBE)
    stop_email = np.minimum(first_per_user(BOUNCE), first_per_user(COMPLAINT))
    alive = np.flatnonzero(
        (sends.sent < stop_all[sends.user]) & ~(is_email & (sends.sent >= stop_email[sends.user]))
    )
    users.unsubscribed = np.minimum(users.unsubscribed, stop_all)
    sends = _Sends(*(getattr(sends, name)[alive] for name in _Sends.__dataclass_fields__))
    times = {kind: when[alive] for kind, when in times.items()}
    kept = {kind: keep[alive] for kind, keep in kept.items()}

    parts = [(np.flatnonzero(kept[kind]), kind) for kind in range(len(NOTIFICATION_EVENTS))]
    send_index = np.concatenate([index for index, _ in parts])
    kind = np.concatenate([np.full(len(index), kind) for index, kind in parts])
    occurred = np.concatenate([times[kind][index] for index, kind in parts])
    order = np.lexsort((kind, send_index, occurred))
    events = _Events(send_index[order], kind[order], occurred[order])

    # A click on an item is a view of it; a conversion is a purchase of one unit.
    on_item = sends.item >= 0
    viewed = np.flatnonzero(kept[CLICK] & on_item)
    bought = np.flatnonzero(kept[CONVERSION] & on_item)
    caused = _Interactions(
        user=np.concatenate([sends.user[viewed], sends.user[bought]]),
        item=np.concatenate([sends.item[viewed], sends.item[bought]]),
        occurred=np.concatenate([times[CLICK][viewed], times[CONVERSION][bought]]),
        kind=np.concatenate([np.full(len(viewed), VIEW), np.full(len(bought), PURCHASE)]),
        quantity=np.ones(len(viewed) + len(bought), dtype=np.int64),
    )
    return sends, events, caused


def _make_interactions(
    rng: np.random.Generator,
    users: _Users,
    items: _Items,
    n_target: int,
    start: int,
    end: int,
    caused: _Interactions,
) -> _Interactions:
    """Taste-driven interactions plus the notification-caused ones: exactly n_target rows
    (unless the catalogue cannot host that many), unique on every column, sorted by time."""
    k = len(CATEGORIES)
    n_caused = len(caused.user)
    n_taste = max(n_target - n_caused, 0)

    # Items that can carry interactions: available at some point of the window; brand-new
    # and upcoming items never do (day-0 audiences must work without history).
    eligible = np.flatnonzero(
        ((items.status == OPEN_STATUS) | (items.status == EXPIRED))
        & (items.available_until > start)
        & (items.available_from < end)
    )
    parts: list[_Interactions] = []
    if n_taste > 0 and len(eligible) > 0:
        parts.append(_taste_interactions(rng, users, items, eligible, n_taste, start, end, k))
    parts.append(caused)
    rows = _Interactions(*(np.concatenate([getattr(p, f) for p in parts]) for f in _FIELDS))
    is_taste = np.zeros(len(rows.user), dtype=bool)
    is_taste[: len(rows.user) - n_caused] = True

    # Two identical lines would be one line sent twice for staging: keep one. Sorting by
    # (time, packed key) puts identical rows next to each other and gives the output order.
    n_items = len(items.status)
    key = ((rows.user * n_items + rows.item) * len(EVENT_TYPES) + rows.kind) * 8 + rows.quantity
    order = np.lexsort((key, rows.occurred))
    same = np.zeros(len(order), dtype=bool)
    same[1:] = (rows.occurred[order][1:] == rows.occurred[order][:-1]) & (
        key[order][1:] == key[order][:-1]
    )
    order = order[~same]

    # Taste-driven rows were over-drawn a little: drop random ones to hit the target exactly
    # (and notification-caused ones too when the target is smaller than those alone).
    excess = len(order) - n_target
    if excess > 0:
        taste_positions = np.flatnonzero(is_taste[order])
        caused_positions = np.flatnonzero(~is_taste[order])
        from_taste = min(excess, len(taste_positions))
        drop = np.concatenate(
            [
                rng.choice(taste_positions, size=from_taste, replace=False),
                rng.choice(caused_positions, size=excess - from_taste, replace=False),
            ]
        )
        order = np.delete(order, drop)
    return _Interactions(*(getattr(rows, f)[order] for f in _FIELDS))


_FIELDS = ("user", "item", "occurred", "kind", "quantity")


def _shuffled_times(rng: np.random.Generator, rows: _Interactions) -> _Interactions:
    """The rows with their time stamps permuted among them, sorted by time again."""
    occurred = rng.permutation(rows.occurred)
    order = np.argsort(occurred, kind="stable")
    fields = {f: getattr(rows, f)[order] for f in _FIELDS if f != "occurred"}
    return _Interactions(**fields, occurred=occurred[order])


# Planted habits (generate(active_hours=...)): the hour each user acts at is drawn from this
# day profile (local time: a morning and an evening peak), and the user's share of
# interactions at it from a Beta around ACTIVE_HOUR_SHARE.
ACTIVE_HOUR_PROFILE = np.array(
    [1, 1, 1, 1, 1, 2, 4, 8, 10, 8, 6, 6, 7, 6, 5, 5, 6, 8, 12, 16, 18, 14, 8, 3], dtype=float
)
ACTIVE_HOUR_SHARE = 0.6


def _planted_hours(
    rng: np.random.Generator,
    users: _Users,
    items: _Items,
    rows: _Interactions,
    start: int,
    end: int,
) -> tuple[_Interactions, np.ndarray]:
    """Each user's own hour of the day (local time, see ACTIVE_HOUR_PROFILE) and the rows
    with a share of each user's interactions moved to that hour of the same local day (a
    move that would leave [start, end), go before the user joined or out of the item's
    availability window is not made). Returns the rows sorted by time again and the hour
    per user."""
    n_users = len(users.joined)
    hour = rng.choice(24, size=n_users, p=ACTIVE_HOUR_PROFILE / ACTIVE_HOUR_PROFILE.sum())
    share = rng.beta(6.0 * ACTIVE_HOUR_SHARE, 6.0 * (1 - ACTIVE_HOUR_SHARE), n_users)
    zones = [z for c in COUNTRIES for z in c[2]]
    occurred = rows.occurred.copy()
    moved = rng.random(len(occurred)) < share[rows.user]
    minute = rng.integers(0, HOUR, len(occurred))
    zone_index = users.timezone[rows.user]
    for code in np.unique(zone_index[moved]):
        pick = np.flatnonzero(moved & (zone_index == code))
        zone = "UTC" if code < 0 else zones[code]
        utc = pd.to_datetime(occurred[pick], unit="s", utc=True)
        local = utc.tz_convert(zone)
        offset = (local.tz_localize(None) - utc.tz_localize(None)).total_seconds().to_numpy()
        local_s = occurred[pick] + offset.astype(np.int64)
        day_start = local_s - local_s % DAY
        target = day_start + hour[rows.user[pick]] * HOUR + minute[pick] - offset.astype(np.int64)
        item = rows.item[pick]
        inside = (
            (target >= np.maximum(start, users.joined[rows.user[pick]]))
            & (target < end)
            & (target >= items.available_from[item])
            & (target < items.available_until[item])
        )
        occurred[pick[inside]] = target[inside]
    order = np.argsort(occurred, kind="stable")
    fields = {f: getattr(rows, f)[order] for f in _FIELDS if f != "occurred"}
    return _Interactions(**fields, occurred=occurred[order]), hour


def _taste_interactions(
    rng: np.random.Generator,
    users: _Users,
    items: _Items,
    eligible: np.ndarray,
    n_taste: int,
    start: int,
    end: int,
    k: int,
) -> _Interactions:
    n_users = len(users.joined)
    a_from, a_until = items.available_from, items.available_until

    # Sampler "category -> item by popularity" as one sorted array: category c occupies
    # (c, c + 1] and each item the slice of it that its popularity earns.
    order = eligible[np.lexsort((eligible, items.category[eligible]))]
    category = items.category[order]
    weight = items.popularity[order]
    total = np.bincount(category, weights=weight, minlength=k)
    cumulative = np.cumsum(weight)
    before = np.concatenate([[0.0], np.cumsum(total)])[category]
    boundary = category + (cumulative - before) / total[category]
    last_of_category = np.append(category[1:] != category[:-1], True)
    boundary[last_of_category] = category[last_of_category] + 1.0

    # Users only draw categories that have items.
    taste = users.taste * (total > 0)[None, :]
    cum_taste = np.cumsum(taste, axis=1)

    # Over-draw by 2% (duplicates and failed draws are dropped; the excess is trimmed later).
    q = EVENT_TYPE_SHARES[PURCHASE] * VIEW_BEFORE_PURCHASE
    n_base = int(np.ceil(n_taste / (1 + q) * 1.02)) + 10
    # Expected events per user: activity x days the user was around in the window.
    lo_user = np.maximum(start, users.joined + 60)
    span = np.maximum(end - lo_user, 0).astype(np.float64)
    rate = users.activity * span
    counts = rng.multinomial(n_base, rate / rate.sum())
    user = np.repeat(np.arange(n_users), counts)
    n = len(user)
    occurred = _uniform_int(rng, lo_user[user], end)

    # Draw (category, item) and keep the item if it is available at that moment; redraw the
    # rest. Items open for a short time therefore get proportionally fewer interactions.
    item = np.full(n, -1, dtype=np.int64)
    pending = np.arange(n)
    for _ in range(50):
        cat = _sample_rows(rng, cum_taste, user[pending])
        position = np.searchsorted(boundary, cat + rng.random(len(pending)), side="right")
        candidate = order[np.minimum(position, len(order) - 1)]
        t = occurred[pending]
        ok = (a_from[candidate] <= t) & (t < a_until[candidate])
        item[pending[ok]] = candidate[ok]
        pending = pending[~ok]
        if len(pending) == 0:
            break
    found = item >= 0
    user, item, occurred = user[found], item[found], occurred[found]
    n = len(user)

    kind = rng.choice(len(EVENT_TYPES), size=n, p=EVENT_TYPE_SHARES)
    basket = (kind == PURCHASE) | (kind == ADD_TO_CART)
    quantity = np.where(basket, np.minimum(rng.geometric(0.78, n), 5), 1)

    # Most purchases follow a view of the same item, typically hours before; a view that
    # would fall before the user or the item was around lands uniformly in between instead.
    preceded = np.flatnonzero((kind == PURCHASE) & (rng.random(n) < VIEW_BEFORE_PURCHASE))
    bought_at = occurred[preceded]
    room = bought_at - np.maximum(lo_user[user[preceded]], a_from[item[preceded]])
    gap = _exponential_seconds(rng, DAY, len(preceded))
    squeezed = np.floor(rng.random(len(preceded)) * (room + 1)).astype(np.int64)
    view_time = bought_at - np.where(gap <= room, gap, squeezed)
    return _Interactions(
        user=np.concatenate([user, user[preceded]]),
        item=np.concatenate([item, item[preceded]]),
        occurred=np.concatenate([occurred, view_time]),
        kind=np.concatenate([kind, np.full(len(preceded), VIEW)]),
        quantity=np.concatenate([quantity, np.ones(len(preceded), dtype=np.int64)]),
    )


def _loyalty(users: _Users, interactions: _Interactions, end: int) -> np.ndarray:
    """0 = new, 1 = regular, 2 = loyal: recent joiners are new, the most active are loyal."""
    activity = np.bincount(interactions.user, minlength=len(users.joined))
    new = users.joined >= end - 60 * DAY
    established = activity[~new]
    threshold = np.quantile(established, 0.85) if len(established) else 0
    loyal = ~new & (activity > 0) & (activity >= threshold)
    return np.where(new, 0, np.where(loyal, 2, 1))


# ---------------------------------------------------------------------------------------
# Text tables and planted dirt
# ---------------------------------------------------------------------------------------


def _table(source: str, columns: dict[str, pa.Array]) -> pa.Table:
    return pa.table({name: columns[name] for name in COLUMNS[source]})


def _replace(table: pa.Table, name: str, values) -> pa.Table:
    if not isinstance(values, (pa.Array, pa.ChunkedArray)):
        values = pa.array(values, type=_STRING)
    return table.set_column(table.schema.get_field_index(name), name, values)


def _interleave(rng: np.random.Generator, clean: pa.Table, extra: list[pa.Table]) -> pa.Table:
    """Clean rows in order, with the extra rows inserted at random positions."""
    extra = [t for t in extra if t.num_rows]
    if not extra:
        return clean
    extras = pa.concat_tables(extra)
    n, m = clean.num_rows, extras.num_rows
    # Clean row i sorts at 2i + 1; an extra row lands before clean row p at 2p.
    key = np.concatenate([2 * np.arange(n) + 1, 2 * rng.integers(0, n + 1, m)])
    order = np.argsort(key, kind="stable")
    return pa.concat_tables([clean, extras]).take(pa.array(order))


def _split_sources(
    rng: np.random.Generator, n_clean: int, counts: dict[str, int]
) -> dict[str, np.ndarray]:
    """Distinct clean rows to copy for each kind of dirt (distinct so that no two dirty rows
    are accidentally identical; with replacement only when the source is tiny)."""
    total = sum(counts.values())
    if total == 0:
        return {kind: np.empty(0, np.int64) for kind in counts}
    picks = rng.choice(n_clean, size=total, replace=total > n_clean)
    out, begin = {}, 0
    for kind, count in counts.items():
        out[kind] = picks[begin : begin + count]
        begin += count
    return out


def _bad_values(rng: np.random.Generator, choices: tuple[str, ...], n: int) -> pa.Array:
    return _text(choices).take(pa.array(rng.integers(0, len(choices), n)))


def _blank_ids(rng: np.random.Generator, n: int) -> pa.Array:
    # Null ids are mostly empty fields, some whitespace only ("blank after trimming").
    return pa.array(np.where(rng.random(n) < 0.7, None, "  "), type=_STRING)


@dataclass
class _Report:
    """What staging must do with one source."""

    raw_rows: int
    clean_rows: int
    rejected: dict[str, int]
    normalised: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "raw_rows": self.raw_rows,
            "clean_rows": self.clean_rows,
            "rejected": dict(self.rejected),
            "rejected_total": sum(self.rejected.values()),
            "normalised_in_clean_rows": dict(self.normalised),
        }


def _report(source: str, clean: int, raw: int, rejected: dict[str, int], **normalised) -> _Report:
    by_reason = {reason: 0 for reason in REJECTION_REASONS[source]}
    for kind, count in rejected.items():
        by_reason[kind.split("/")[0]] += count
    assert raw == clean + sum(by_reason.values()), source
    return _Report(raw, clean, by_reason, normalised)


def _count_offsets(offsets: np.ndarray, null: np.ndarray | None = None) -> int:
    shifted = offsets != 0
    if null is not None:
        shifted &= ~null
    return int(shifted.sum())


@dataclass
class SyntheticData:
    """Generated raw tables (every value text, <NA> = null), the manifest, and the truth.

    ``user_taste[u, c]`` is user ``u``'s latent share of interest in ``categories[c]``
    (users ``u000001``... in order), for measuring how well models recover tastes.
    """

    tables: dict[str, pd.DataFrame]
    manifest: dict[str, Any]
    user_taste: np.ndarray
    categories: tuple[str, ...]
    # generate(active_hours=True): each user's planted hour (local) and the zone it is local
    # to ('UTC' for users without one), for simulations whose responses depend on the hour
    user_active_hour: np.ndarray | None = None
    user_zone: tuple[str, ...] | None = None


def _resolve_end(end) -> tuple[str, int]:
    day = np.datetime64(str(end)[:10], "D")
    return str(day), int(day.astype("datetime64[s]").astype(np.int64))


def generate(
    n_users: int,
    n_items: int,
    n_days: int,
    n_transactions: int | None = None,
    seed: int = 0,
    end: str = DEFAULT_END,
    dirt: bool = True,
    weak_time: bool = False,
    active_hours: bool = False,
) -> SyntheticData:
    """Generate the five raw sources and their staging manifest.

    Parameters
    ----------
    n_users, n_items : int
        Clean users and items (dirty extras come on top).
    n_days : int
        Length of the interaction window ending at ``end``.
    n_transactions : int, optional
        Clean transaction rows; default ``TRANSACTIONS_PER_USER * n_users``.
    seed : int
        Everything derives from ``numpy.random.default_rng`` streams of this seed.
    end : str
        ``YYYY-MM-DD``, exclusive: every clean timestamp is before this UTC midnight, which
        is the run date staging should use.
    dirt : bool
        Plant dirty rows at ``DIRT_RATES`` and cosmetic variations (mixed case, stray
        spaces). The clean rows, once staging has normalised them, are the same either way.
    weak_time : bool
        Shuffle the interactions' time stamps among them (same period, same spread, same
        users and items): who interacts with what keeps its structure, when carries none.
        A world where a model that learns from time (the second stage) must not beat one
        that does not by luck, and must not lose to it unnoticed.
    active_hours : bool
        Plant habits: each user gets an hour of the day (local time) and moves a share of
        their interactions to it (``ACTIVE_HOUR_PROFILE``, ``ACTIVE_HOUR_SHARE``). A world
        where learned send times must beat the population's hour.
    """
    for name, value in (("n_users", n_users), ("n_items", n_items), ("n_days", n_days)):
        if int(value) < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    n_transactions = (
        TRANSACTIONS_PER_USER * n_users if n_transactions is None else int(n_transactions)
    )
    if n_transactions < 0:
        raise ValueError("n_transactions must be non-negative")
    end_text, end_s = _resolve_end(end)
    start_s = end_s - int(n_days) * DAY

    # One independent stream per stage: changing one stage (or switching dirt off) leaves
    # the others' draws untouched.
    # (spawn children depend only on their position: the eighth leaves the others as they were)
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(9)]
    rng_world, rng_users, rng_items, rng_notify, rng_interact, rng_text, rng_dirt = streams[:7]

    category_share = rng_world.dirichlet(np.full(len(CATEGORIES), 8.0))
    users = _make_users(rng_users, n_users, start_s, end_s, category_share)
    items = _make_items(rng_items, n_items, start_s, end_s, category_share)
    sends, events, caused = _make_notifications(rng_notify, users, items, end_s)
    interactions = _make_interactions(
        rng_interact, users, items, n_transactions, start_s, end_s, caused
    )
    if weak_time:
        interactions = _shuffled_times(streams[7], interactions)
    active_hour = None
    if active_hours:
        interactions, active_hour = _planted_hours(
            streams[8], users, items, interactions, start_s, end_s
        )
    users.loyalty = _loyalty(users, interactions, end_s)

    tables, reports = _build_tables(
        rng_text, rng_dirt, users, items, interactions, sends, events, end_s, dirt
    )
    manifest = {
        "generator": "proactive_recs_tools.generate",
        "parameters": {
            "users": int(n_users),
            "items": int(n_items),
            "days": int(n_days),
            "transactions": n_transactions,
            "seed": int(seed),
            "end": end_text,
            "dirt": bool(dirt),
            "weak_time": bool(weak_time),
            "active_hours": bool(active_hours),
        },
        "run_date": end_text,
        "sources": {source: reports[source].as_dict() for source in SOURCES},
        "dirt_rates": DIRT_RATES if dirt else {},
        "variation_rates": {
            "email_case_or_spaces": EMAIL_VARIANT_RATE if dirt else 0.0,
            "event_type_case_or_spaces": EVENT_TYPE_VARIANT_RATE if dirt else 0.0,
            "other_utc_offset": OFFSET_RATE,
        },
        "structure": _structure(users, items, interactions, sends, start_s, end_s),
    }
    frames = {
        source: table.to_pandas(types_mapper={_STRING: pd.StringDtype("pyarrow")}.get)
        for source, table in tables.items()
    }
    zones = [z for c in COUNTRIES for z in c[2]]
    return SyntheticData(
        frames,
        manifest,
        users.taste,
        tuple(c.name for c in CATEGORIES),
        user_active_hour=active_hour,
        user_zone=tuple("UTC" if code < 0 else zones[code] for code in users.timezone),
    )


def _structure(users, items, interactions, sends, start, end) -> dict[str, Any]:
    status = np.bincount(items.status, minlength=4)
    return {
        "categories": [c.name for c in CATEGORIES],
        "window_start": str(np.datetime64(start, "s").astype("datetime64[D]")),
        "items_by_status": {ITEM_STATUS_NAMES[s]: int(status[s]) for s in range(4)},
        "users_joined_last_7_days": int((users.joined >= end - 7 * DAY).sum()),
        "users_without_transactions": int(
            (np.bincount(interactions.user, minlength=len(users.joined)) == 0).sum()
        ),
        "sends_by_campaign": {
            CAMPAIGNS[c]: int((sends.campaign == c).sum()) for c in range(len(CAMPAIGNS))
        },
    }


@dataclass(frozen=True)
class _Layout:
    """What the raw tables of one generation share: clean sizes, planted dirt counts per
    source and reason, and the id sequences (extra rows and unknown ids continue them)."""

    n_users: int
    n_items: int
    n_tx: int
    n_sends: int
    n_events: int
    user_dirt: dict[str, int]
    item_dirt: dict[str, int]
    tx_dirt: dict[str, int]
    send_dirt: dict[str, int]
    event_dirt: dict[str, int]
    bad_users: int
    bad_items: int
    user_width: int
    item_width: int
    send_width: int
    user_ids: pa.Array
    item_ids: pa.Array
    send_ids: pa.Array
    dirt: bool
    end: int


def _build_tables(
    rng: np.random.Generator,
    rng_dirt: np.random.Generator,
    users: _Users,
    items: _Items,
    tx: _Interactions,
    sends: _Sends,
    events: _Events,
    end: int,
    dirt: bool,
) -> tuple[dict[str, pa.Table], dict[str, _Report]]:
    """Every raw source table with its dirt, and what was planted in each (the manifest)."""
    n_users, n_items = len(users.joined), len(items.status)
    n_tx, n_sends, n_events = len(tx.user), len(sends.sent), len(events.send)

    # Dirt sizes first: ids of extra rows and unknown ids continue the clean id sequences.
    def counts(source: str, n_clean: int) -> dict[str, int]:
        return {k: _dirt_count(r, n_clean, dirt) for k, r in DIRT_RATES[source].items()}

    user_dirt = counts("users", n_users)
    item_dirt = counts("items", n_items)
    tx_dirt = counts("transactions", n_tx)
    send_dirt = counts("notification_sends", n_sends)
    event_dirt = counts("notification_events", n_events)

    bad_users = user_dirt["unparseable_value"]
    bad_items = item_dirt["unparseable_value"]
    # Zero-padding follows the clean sizes, so ids do not change when dirt is switched off;
    # an extra id past the padding is simply one digit longer.
    user_width = _id_width(6, n_users)
    item_width = _id_width(5, n_items)
    send_width = _id_width(7, n_sends)

    user_ids = _format_ids("u", np.arange(1, n_users + 1), user_width)
    item_ids = _format_ids("i", np.arange(1, n_items + 1), item_width)
    send_ids = _format_ids("s", np.arange(1, n_sends + 1), send_width)
    layout = _Layout(
        n_users=n_users,
        n_items=n_items,
        n_tx=n_tx,
        n_sends=n_sends,
        n_events=n_events,
        user_dirt=user_dirt,
        item_dirt=item_dirt,
        tx_dirt=tx_dirt,
        send_dirt=send_dirt,
        event_dirt=event_dirt,
        bad_users=bad_users,
        bad_items=bad_items,
        user_width=user_width,
        item_width=item_width,
        send_width=send_width,
        user_ids=user_ids,
        item_ids=item_ids,
        send_ids=send_ids,
        dirt=dirt,
        end=end,
    )
    built = {
        "users": _users_table(rng, rng_dirt, users, layout),
        "items": _items_table(rng, rng_dirt, items, layout),
        "transactions": _transactions_table(rng, rng_dirt, tx, items, layout),
        "notification_sends": _sends_table(rng, rng_dirt, sends, layout),
        "notification_events": _events_table(rng, rng_dirt, events, layout),
    }
    tables = {name: table for name, (table, _) in built.items()}
    reports = {name: report for name, (_, report) in built.items()}
    return tables, reports


def _users_table(
    rng: np.random.Generator,
    rng_dirt: np.random.Generator,
    users: _Users,
    layout: _Layout,
) -> tuple[pa.Table, _Report]:
    """The raw users table (clean rows, then the planted dirt) and its report."""
    user_offsets = [_draw_offsets(rng, layout.n_users) for _ in range(2)]
    never_unsubscribed = users.unsubscribed >= FAR_FUTURE
    emails = pc.binary_join_element_wise(
        _text(FIRST_NAMES).take(pa.array(users.name)),
        ".",
        _format_ints(np.arange(1, layout.n_users + 1)),
        "@example.com",
        "",
    )
    emails = pc.if_else(pa.array(users.has_email), emails, pa.scalar(None, _STRING))
    n_email_variants = 0
    if layout.dirt:
        # Mixed case and stray spaces on some addresses: staging lowercases and trims them.
        with_email = np.flatnonzero(users.has_email)
        n_email_variants = min(
            len(with_email), _dirt_count(EMAIL_VARIANT_RATE, layout.n_users, layout.dirt)
        )
        chosen = np.sort(rng_dirt.choice(with_email, size=n_email_variants, replace=False))
        style = rng_dirt.integers(0, 3, n_email_variants)
        text = emails.to_pylist()
        for index, how in zip(chosen.tolist(), style.tolist(), strict=True):
            address = text[index]
            text[index] = (f" {address.upper()}", f"{address.title()}  ", f"  {address} ")[how]
        emails = pa.array(text, type=_STRING)
    users_clean = _table(
        "users",
        {
            "user_id": layout.user_ids,
            "email": emails,
            "joined_at": _format_timestamps(users.joined, user_offsets[0]),
            "country": _text(c[0] for c in COUNTRIES).take(pa.array(users.country)),
            "timezone": _take(_text(z for c in COUNTRIES for z in c[2]), users.timezone),
            "email_opt_in": _text(("false", "true")).take(pa.array(users.opt_in.astype(int))),
            "unsubscribed_at": _format_timestamps(
                users.unsubscribed, user_offsets[1], null=never_unsubscribed
            ),
            "loyalty_group": _text(("new", "regular", "loyal")).take(pa.array(users.loyalty)),
        },
    )
    source_rows = _split_sources(rng_dirt, layout.n_users, layout.user_dirt)
    extra = [users_clean.take(pa.array(source_rows["duplicate"]))]
    nulls = users_clean.take(pa.array(source_rows["null_id"]))
    extra.append(_replace(nulls, "user_id", _blank_ids(rng_dirt, nulls.num_rows)))
    # Extra users whose joined_at does not parse; they have no transactions or sends.
    bad = users_clean.take(pa.array(source_rows["unparseable_value"]))
    numbers = np.arange(layout.n_users + 1, layout.n_users + layout.bad_users + 1)
    bad = _replace(bad, "user_id", _format_ids("u", numbers, layout.user_width))
    bad = _replace(
        bad,
        "email",
        pc.binary_join_element_wise(
            _text(FIRST_NAMES).take(
                pa.array(rng_dirt.integers(0, len(FIRST_NAMES), layout.bad_users))
            ),
            ".",
            _format_ints(numbers),
            "@example.com",
            "",
        ),
    )
    bad = _replace(bad, "joined_at", _bad_values(rng_dirt, BAD_TIMESTAMPS, layout.bad_users))
    bad = _replace(bad, "unsubscribed_at", pa.nulls(layout.bad_users, _STRING))
    bad = _replace(bad, "loyalty_group", pa.array(["new"] * layout.bad_users, type=_STRING))
    extra.append(bad)
    table = _interleave(rng_dirt, users_clean, extra)
    report = _report(
        "users",
        layout.n_users,
        table.num_rows,
        layout.user_dirt,
        email_case_or_spaces=n_email_variants,
        other_utc_offset=_count_offsets(user_offsets[0])
        + _count_offsets(user_offsets[1], never_unsubscribed),
    )
    return table, report


def _items_table(
    rng: np.random.Generator,
    rng_dirt: np.random.Generator,
    items: _Items,
    layout: _Layout,
) -> tuple[pa.Table, _Report]:
    """The raw items table (clean rows, then the planted dirt) and its report."""
    item_offsets = [_draw_offsets(rng, layout.n_items) for _ in range(2)]
    from_null = items.available_from <= FAR_PAST
    until_null = items.available_until >= FAR_FUTURE
    k = len(CATEGORIES)
    modifier_table = _text(m for c in CATEGORIES for m in c.modifiers)
    noun_table = _text(w for c in CATEGORIES for w in c.nouns)
    first_modifier = np.cumsum([0] + [len(c.modifiers) for c in CATEGORIES])[:k]
    first_noun = np.cumsum([0] + [len(c.nouns) for c in CATEGORIES])[:k]
    titles = pc.binary_join_element_wise(
        _text(GENERIC_ADJECTIVES).take(pa.array(items.adjective)),
        modifier_table.take(pa.array(first_modifier[items.category] + items.modifier)),
        noun_table.take(pa.array(first_noun[items.category] + items.noun)),
        " ",
    )
    brand_table = _text([b for c in CATEGORIES for b in c.brands] + list(GENERIC_BRANDS))
    items_clean = _table(
        "items",
        {
            "item_id": layout.item_ids,
            "title": titles,
            "category": _text(c.name for c in CATEGORIES).take(pa.array(items.category)),
            "price": _format_cents(items.price_cents),
            "available_from": _format_timestamps(
                items.available_from, item_offsets[0], null=from_null
            ),
            "available_until": _format_timestamps(
                items.available_until, item_offsets[1], null=until_null
            ),
            "url": pc.binary_join_element_wise("https://shop.example/items/", layout.item_ids, ""),
            "image_url": pc.binary_join_element_wise(
                "https://shop.example/img/", layout.item_ids, ".jpg", ""
            ),
            "brand": brand_table.take(pa.array(items.brand)),
        },
    )
    source_rows = _split_sources(rng_dirt, layout.n_items, layout.item_dirt)
    extra = [items_clean.take(pa.array(source_rows["duplicate"]))]
    # Extra items whose price does not parse; nothing refers to them.
    bad = items_clean.take(pa.array(source_rows["unparseable_value"]))
    bad_ids = _format_ids(
        "i", np.arange(layout.n_items + 1, layout.n_items + layout.bad_items + 1), layout.item_width
    )
    bad = _replace(bad, "item_id", bad_ids)
    bad = _replace(
        bad, "url", pc.binary_join_element_wise("https://shop.example/items/", bad_ids, "")
    )
    bad = _replace(
        bad,
        "image_url",
        pc.binary_join_element_wise("https://shop.example/img/", bad_ids, ".jpg", ""),
    )
    bad = _replace(bad, "price", _bad_values(rng_dirt, BAD_PRICES, layout.bad_items))
    extra.append(bad)
    table = _interleave(rng_dirt, items_clean, extra)
    report = _report(
        "items",
        layout.n_items,
        table.num_rows,
        layout.item_dirt,
        other_utc_offset=_count_offsets(item_offsets[0], from_null)
        + _count_offsets(item_offsets[1], until_null),
    )
    return table, report


def _transactions_table(
    rng: np.random.Generator,
    rng_dirt: np.random.Generator,
    tx: _Interactions,
    items: _Items,
    layout: _Layout,
) -> tuple[pa.Table, _Report]:
    """The raw transactions table (clean rows, then the planted dirt) and its report."""
    tx_offsets = _draw_offsets(rng, layout.n_tx)
    event_code = tx.kind.copy()
    n_type_variants = 0
    # Spelling table: the canonical names, then five variants per type that staging must
    # trim and lowercase back to the canonical name.
    spellings = list(EVENT_TYPES)
    for name in EVENT_TYPES:
        spellings += [
            name.capitalize(),
            name.upper(),
            f" {name}",
            f"{name}  ",
            f"  {name.title()} ",
        ]
    if layout.dirt:
        n_type_variants = _dirt_count(EVENT_TYPE_VARIANT_RATE, layout.n_tx, layout.dirt)
        varied = rng_dirt.choice(layout.n_tx, size=n_type_variants, replace=False)
        event_code[varied] = (
            len(EVENT_TYPES) + 5 * tx.kind[varied] + rng_dirt.integers(0, 5, n_type_variants)
        )
    amount_cents = tx.quantity * items.price_cents[tx.item]
    tx_clean = _table(
        "transactions",
        {
            "user_id": layout.user_ids.take(pa.array(tx.user)),
            "item_id": layout.item_ids.take(pa.array(tx.item)),
            "occurred_at": _format_timestamps(tx.occurred, tx_offsets),
            "event_type": _text(spellings).take(pa.array(event_code)),
            "quantity": _format_ints(tx.quantity),
            "amount": _format_cents(amount_cents),
        },
    )
    source_rows = _split_sources(rng_dirt, layout.n_tx, layout.tx_dirt)

    def copies(kind: str) -> pa.Table:
        return tx_clean.take(pa.array(source_rows[kind]))

    extra = [copies("duplicate")]
    rows = copies("null_id/user_id")
    extra.append(_replace(rows, "user_id", _blank_ids(rng_dirt, rows.num_rows)))
    rows = copies("null_id/item_id")
    extra.append(_replace(rows, "item_id", _blank_ids(rng_dirt, rows.num_rows)))
    rows = copies("unparseable_value")
    extra.append(_replace(rows, "occurred_at", _bad_values(rng_dirt, BAD_TIMESTAMPS, len(rows))))
    rows = copies("future_timestamp")
    future = _uniform_int(rng_dirt, layout.end + DAY, layout.end + 31 * DAY, rows.num_rows)
    extra.append(
        _replace(rows, "occurred_at", _format_timestamps(future, np.zeros(len(future), int)))
    )
    index = source_rows["non_positive_quantity"]
    quantity = -rng_dirt.integers(0, 3, len(index))  # 0, -1 or -2
    rows = _replace(copies("non_positive_quantity"), "quantity", _format_ints(quantity))
    extra.append(
        _replace(rows, "amount", _format_cents(quantity * items.price_cents[tx.item[index]]))
    )
    # Unknown ids continue the id sequence past every id written anywhere else.
    next_user = layout.n_users + layout.bad_users + 1
    rows = copies("unknown_user")
    numbers = np.arange(next_user, next_user + rows.num_rows)
    next_user += rows.num_rows
    extra.append(_replace(rows, "user_id", _format_ids("u", numbers, layout.user_width)))
    rows = copies("unknown_item")
    numbers = np.arange(
        layout.n_items + layout.bad_items + 1, layout.n_items + layout.bad_items + 1 + rows.num_rows
    )
    extra.append(_replace(rows, "item_id", _format_ids("i", numbers, layout.item_width)))
    table = _interleave(rng_dirt, tx_clean, extra)
    report = _report(
        "transactions",
        layout.n_tx,
        table.num_rows,
        layout.tx_dirt,
        event_type_case_or_spaces=n_type_variants,
        other_utc_offset=_count_offsets(tx_offsets),
    )
    return table, report


def _sends_table(
    rng: np.random.Generator,
    rng_dirt: np.random.Generator,
    sends: _Sends,
    layout: _Layout,
) -> tuple[pa.Table, _Report]:
    """The raw notification sends table (clean rows, then the planted dirt) and its report."""
    # unknown users' ids continue after the bad users' and the transactions' unknown users'
    next_user = layout.n_users + layout.bad_users + layout.tx_dirt["unknown_user"] + 1
    send_offsets = _draw_offsets(rng, layout.n_sends)
    sends_clean = _table(
        "notification_sends",
        {
            "send_id": layout.send_ids,
            "user_id": layout.user_ids.take(pa.array(sends.user)),
            "campaign_id": _text(CAMPAIGNS).take(pa.array(sends.campaign)),
            "item_id": _take(layout.item_ids, sends.item),
            "channel": _text(CHANNELS).take(pa.array(sends.channel)),
            "sent_at": _format_timestamps(sends.sent, send_offsets),
        },
    )
    source_rows = _split_sources(rng_dirt, layout.n_sends, layout.send_dirt)
    extra = [sends_clean.take(pa.array(source_rows["duplicate"]))]
    # Sends to unknown users get fresh send ids and no events (events on them would be
    # unknown_send, a cascade the manifest would have to explain).
    rows = sends_clean.take(pa.array(source_rows["unknown_user"]))
    numbers = np.arange(next_user, next_user + rows.num_rows)
    rows = _replace(rows, "user_id", _format_ids("u", numbers, layout.user_width))
    fresh = np.arange(layout.n_sends + 1, layout.n_sends + 1 + rows.num_rows)
    extra.append(_replace(rows, "send_id", _format_ids("s", fresh, layout.send_width)))
    table = _interleave(rng_dirt, sends_clean, extra)
    report = _report(
        "notification_sends",
        layout.n_sends,
        table.num_rows,
        layout.send_dirt,
        other_utc_offset=_count_offsets(send_offsets),
    )
    return table, report


def _events_table(
    rng: np.random.Generator,
    rng_dirt: np.random.Generator,
    events: _Events,
    layout: _Layout,
) -> tuple[pa.Table, _Report]:
    """The raw notification events table (clean rows, then the planted dirt) and its report."""
    event_offsets = _draw_offsets(rng, layout.n_events)
    events_clean = _table(
        "notification_events",
        {
            "send_id": layout.send_ids.take(pa.array(events.send)),
            "event_type": _text(NOTIFICATION_EVENTS).take(pa.array(events.kind)),
            "occurred_at": _format_timestamps(events.occurred, event_offsets),
        },
    )
    source_rows = _split_sources(rng_dirt, layout.n_events, layout.event_dirt)
    extra = [events_clean.take(pa.array(source_rows["duplicate"]))]
    rows = events_clean.take(pa.array(source_rows["unknown_send"]))
    first = layout.n_sends + layout.send_dirt["unknown_user"] + 1
    fresh = np.arange(first, first + rows.num_rows)
    extra.append(_replace(rows, "send_id", _format_ids("s", fresh, layout.send_width)))
    table = _interleave(rng_dirt, events_clean, extra)
    report = _report(
        "notification_events",
        layout.n_events,
        table.num_rows,
        layout.event_dirt,
        other_utc_offset=_count_offsets(event_offsets),
    )
    return table, report


# ---------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------


def command_line(parameters: dict[str, Any], fmt: str) -> str:
    """The canonical command that regenerates these files (every option explicit; the
    output directory is left out so that the manifest does not depend on it)."""
    parts = [
        "python -m proactive_recs_tools.generate",
        f"--users {parameters['users']}",
        f"--items {parameters['items']}",
        f"--days {parameters['days']}",
        f"--seed {parameters['seed']}",
        f"--transactions {parameters['transactions']}",
        f"--end {parameters['end']}",
        f"--format {fmt}",
    ]
    if not parameters["dirt"]:
        parts.append("--no-dirt")
    for name in ("weak_time", "active_hours"):  # flags, written only when set
        if parameters.get(name):
            parts.append("--" + name.replace("_", "-"))
    return " ".join(parts)


def manifest_json(manifest: dict[str, Any]) -> str:
    return json.dumps(manifest, sort_keys=True, indent=2, ensure_ascii=True) + "\n"


def write(data: SyntheticData, out: str | Path, fmt: str = "csv") -> list[Path]:
    """Write ``raw_<source>.<fmt>`` for the five sources and ``generation_manifest.json``.

    CSV: a plain header, no quoting (no value needs it), empty field = null, ``\\n`` line
    ends. Parquet: every column a string column. Returns the written paths.
    """
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"format must be csv or parquet, got {fmt!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for source in SOURCES:
        frame = data.tables[source]
        table = pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(None)
        table = table.cast(pa.schema([(name, _STRING) for name in COLUMNS[source]]))
        path = out / f"raw_{source}.{fmt}"
        if fmt == "csv":
            with pa.OSFile(str(path), "wb") as sink:
                sink.write((",".join(COLUMNS[source]) + "\n").encode())
                options = pcsv.WriteOptions(include_header=False, quoting_style="none")
                pcsv.write_csv(table, sink, options)
        else:
            pq.write_table(table, path, compression="zstd")
        written.append(path)
    manifest = dict(data.manifest)
    manifest["parameters"] = {**manifest["parameters"], "format": fmt}
    manifest["command"] = command_line(manifest["parameters"], fmt)
    manifest["files"] = {source: f"raw_{source}.{fmt}" for source in SOURCES}
    path = out / "generation_manifest.json"
    path.write_text(manifest_json(manifest), encoding="utf-8")
    written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m proactive_recs_tools.generate",
        description="Generate synthetic raw data with planted structure and planted dirt.",
    )
    parser.add_argument("--users", type=int, required=True)
    parser.add_argument("--items", type=int, required=True)
    parser.add_argument("--days", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument(
        "--transactions",
        type=int,
        default=None,
        help=f"clean transaction rows (default {TRANSACTIONS_PER_USER} per user)",
    )
    parser.add_argument("--end", default=DEFAULT_END, help="exclusive end date = run date")
    parser.add_argument("--format", choices=("csv", "parquet"), default="csv")
    parser.add_argument("--no-dirt", action="store_true", help="no dirty rows or variations")
    parser.add_argument(
        "--weak-time", action="store_true", help="shuffle the interactions' time stamps"
    )
    parser.add_argument(
        "--active-hours", action="store_true", help="plant each user's hour of activity"
    )
    args = parser.parse_args(argv)
    data = generate(
        args.users,
        args.items,
        args.days,
        n_transactions=args.transactions,
        seed=args.seed,
        end=args.end,
        dirt=not args.no_dirt,
        weak_time=args.weak_time,
        active_hours=args.active_hours,
    )
    for path in write(data, args.out, args.format):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
