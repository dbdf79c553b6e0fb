"""Frequency rules: how many more sends a user may get, when, and who is held out.

Everything here is a pure function of the rules, the send/event history and the run time,
so the production run and the campaign backtest apply exactly the same rules. The full
semantics, with the defaults, are written up in ``docs/frequency_rules.md``; in short:

* **Anchor.** Each user's sends of a run start at the user's *anchor*: the run time, or
  ``min_hours_between_sends`` after the user's last send in the history if that is later,
  moved out of the quiet hours of the user's time zone. Every send of the run is at or
  after the anchor, so rolling windows counted back from the anchor over-count (never
  under-count) the sends that share a window with any send of the run. Counting back from
  the run time instead would count last week's 08:00 sends against this week's 08:00 sends,
  which are exactly 7 days apart and so not in one rolling 7-day window.
* **Rolling 7 days.** Two sends share a window when they are less than 7 days apart; a
  send of this run at ``s`` is allowed when the sends in ``(s - 7 days, s]`` on its channel
  (campaign) stay within the allowance (campaign cap).
* **Adaptive cadence** per (user, channel): ``clip(cap + bonus - penalty, floor, ceiling)``
  (see :func:`cadence_allowance`).
* **Holdout**: a salted SHA-256 of the user id, mapped to [0, 1), below ``holdout_share``.

Timestamps are pandas ``datetime64`` in UTC without a time zone; local times only exist
inside the quiet-hours computation, through :mod:`zoneinfo`.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, available_timezones

import numpy as np
import pandas as pd

from proactive_recs.contract import CHANNELS
from proactive_recs.data.instants import utc_instant, utc_naive

__all__ = [
    "CHANNELS",
    "RESPONSE_EVENTS",
    "FrequencyRules",
    "utc_instant",
    "cadence_allowance",
    "campaign_allowance",
    "channel_allowance",
    "holdout_score",
    "in_quiet_hours",
    "quiet_hours_mask",
    "is_holdout",
    "is_known_timezone",
    "leave_quiet_hours",
    "make_send_key",
    "normalize_sends",
    "recently_sent_items",
    "resolve_timezone",
    "schedule_sends",
    "send_anchors",
    "utc_naive",
]

# Events that show the user cared about a send; delivered does not (it only says the
# address works), and unsubscribe / bounce / complaint are handled by suppression in dbt.
RESPONSE_EVENTS = frozenset({"open", "click", "conversion"})
WEEK = pd.Timedelta(days=7)


@dataclass(frozen=True)
class FrequencyRules:
    """The frequency rules (docs/frequency_rules.md), one flat field per rule.

    Flat fields (rather than dicts per channel) so that the dataclass is hashable and each
    field maps one-to-one to a dbt var; :meth:`from_dict` builds it from those vars.
    """

    email_cap_per_week: int = 3
    push_cap_per_week: int = 2
    min_hours_between_sends: float = 20.0
    item_repeat_window_days: float = 30.0
    quiet_hours_start: int = 21
    quiet_hours_end: int = 8
    default_timezone: str = "UTC"
    holdout_share: float = 0.05
    holdout_salt: str = "proactive_recs"
    adaptive_cadence: bool = True
    cadence_lookback_days: float = 28.0
    cadence_ignored_block: int = 3
    cadence_grace_hours: float = 48.0
    cadence_floor: int = 1
    email_cadence_ceiling: int = 5
    push_cadence_ceiling: int = 3
    # 'personal': each user's first send of a run goes at the hour their learned profile
    # (user_send_times) likes best within send_time_max_delay_hours after the run, outside
    # quiet hours; 'off': at the earliest allowed moment
    send_time: str = "personal"
    send_time_max_delay_hours: float = 24.0

    def __post_init__(self):
        for name in (
            "email_cap_per_week",
            "push_cap_per_week",
            "cadence_floor",
            "email_cadence_ceiling",
            "push_cadence_ceiling",
        ):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"FrequencyRules.{name} must be >= 0")
        if self.cadence_ignored_block < 1:
            raise ValueError("FrequencyRules.cadence_ignored_block must be >= 1")
        for name in (
            "min_hours_between_sends",
            "item_repeat_window_days",
            "cadence_lookback_days",
            "cadence_grace_hours",
        ):
            if not getattr(self, name) >= 0:
                raise ValueError(f"FrequencyRules.{name} must be >= 0")
        for name in ("quiet_hours_start", "quiet_hours_end"):
            if not 0 <= getattr(self, name) <= 23:
                raise ValueError(f"FrequencyRules.{name} must be an hour in 0..23")
        if self.send_time not in ("personal", "off"):
            raise ValueError(
                f"FrequencyRules.send_time must be 'personal' or 'off', got {self.send_time!r}"
            )
        if not 0.0 <= self.send_time_max_delay_hours <= 168.0:
            raise ValueError("FrequencyRules.send_time_max_delay_hours must be in [0, 168]")
        if not 0.0 <= self.holdout_share <= 1.0:
            raise ValueError("FrequencyRules.holdout_share must be in [0, 1]")
        if _zone(self.default_timezone) is None:
            raise ValueError(
                f"FrequencyRules.default_timezone {self.default_timezone!r} is "
                "not an IANA time zone"
            )
        if self.adaptive_cadence:
            for channel in CHANNELS:
                cap = self.cap(channel)
                if cap > 0 and not self.cadence_floor <= cap <= self.ceiling(channel):
                    raise ValueError(
                        f"FrequencyRules: need cadence_floor <= {channel} cap <= "
                        f"{channel}_cadence_ceiling when adaptive_cadence is on"
                    )

    def cap(self, channel: str) -> int:
        """Sends per rolling 7 days on ``channel`` before adaptive cadence."""
        return int(getattr(self, f"{channel}_cap_per_week"))

    def ceiling(self, channel: str) -> int:
        """Upper bound of the adaptive allowance on ``channel``."""
        return int(getattr(self, f"{channel}_cadence_ceiling"))

    @classmethod
    def from_dict(cls, values: Mapping | None, *, strict: bool = True) -> FrequencyRules:
        """Rules from a dict of dbt vars named like the fields; None values keep the default.

        Values are coerced to the field's type (dbt vars may arrive as strings). With
        ``strict`` an unknown key raises, so a misspelt var is not silently ignored; pass
        ``strict=False`` to hand over a dict holding unrelated vars too.
        """
        known = {f.name: f for f in fields(cls)}
        values = dict(values or {})
        unknown = sorted(set(values) - set(known))
        if strict and unknown:
            raise ValueError(f"FrequencyRules: unknown rule(s) {unknown}; known: {sorted(known)}")
        kwargs = {}
        for name, value in values.items():
            if name not in known or value is None:
                continue
            kind = type(getattr(cls, name))  # the default's type
            if kind is bool and isinstance(value, str):
                if value.strip().lower() not in ("true", "false", "1", "0"):
                    raise ValueError(f"FrequencyRules.{name}: not a boolean: {value!r}")
                value = value.strip().lower() in ("true", "1")
            elif kind is int:
                as_float = float(value)
                if as_float != int(as_float):
                    raise ValueError(f"FrequencyRules.{name}: not an integer: {value!r}")
                value = int(as_float)
            else:
                value = kind(value)
            kwargs[name] = value
        return cls(**kwargs)


# --------------------------------------------------------------------------- time helpers


# Abbreviations people write instead of a zone name, mapped to the zone they usually mean
# (with its daylight-saving rules: "PST" written in July still means Los Angeles time).
ZONE_ABBREVIATIONS = {
    "utc": "UTC",
    "gmt": "UTC",
    "z": "UTC",
    "zulu": "UTC",
    "pst": "America/Los_Angeles",
    "pdt": "America/Los_Angeles",
    "pt": "America/Los_Angeles",
    "mst": "America/Denver",
    "mdt": "America/Denver",
    "mt": "America/Denver",
    "cst": "America/Chicago",
    "cdt": "America/Chicago",
    "ct": "America/Chicago",
    "est": "America/New_York",
    "edt": "America/New_York",
    "et": "America/New_York",
    "akst": "America/Anchorage",
    "akdt": "America/Anchorage",
    "hst": "Pacific/Honolulu",
    "bst": "Europe/London",
    "wet": "Europe/Lisbon",
    "west": "Europe/Lisbon",
    "cet": "Europe/Paris",
    "cest": "Europe/Paris",
    "eet": "Europe/Athens",
    "eest": "Europe/Athens",
    "msk": "Europe/Moscow",
    "ist": "Asia/Kolkata",
    "sgt": "Asia/Singapore",
    "hkt": "Asia/Hong_Kong",
    "jst": "Asia/Tokyo",
    "kst": "Asia/Seoul",
    "aest": "Australia/Sydney",
    "aedt": "Australia/Sydney",
    "awst": "Australia/Perth",
    "nzst": "Pacific/Auckland",
    "nzdt": "Pacific/Auckland",
}
# "-08:00", "+0530", "UTC+5:30", "GMT-8", "utc -08": a fixed offset from UTC (as people mean
# it: GMT-8 is eight hours behind, unlike POSIX's inverted Etc/GMT+8).
_OFFSET = re.compile(r"^(?:utc|gmt)?\s*([+-])\s*(\d{1,2})(?::?(\d{2}))?$")


@functools.cache
def _iana_by_lower_name() -> dict[str, str]:
    return {name.lower(): name for name in available_timezones()}


@functools.cache
def _zone(name) -> tzinfo | None:
    """The zone a user's time-zone text means, or None when it means nothing known.

    IANA names in any case (``america/los_angeles``), fixed offsets (``-08:00``, ``UTC+5:30``,
    ``GMT-8``) and common abbreviations (``PST``, ``CET``) resolve.
    """
    if not isinstance(name, str) or not name.strip():
        return None
    text = name.strip()
    key = text.lower()
    canonical = _iana_by_lower_name().get(key) or ZONE_ABBREVIATIONS.get(key)
    if canonical is not None:
        return ZoneInfo(canonical)
    match = _OFFSET.match(key.replace(" ", "")) or _OFFSET.match(key)
    if match:
        sign, hours, minutes = match.groups()
        offset = timedelta(hours=int(hours), minutes=int(minutes or 0))
        if offset <= timedelta(hours=14) and int(minutes or 0) < 60:
            return timezone(-offset if sign == "-" else offset)
    return None


def is_known_timezone(name) -> bool:
    """Whether :func:`resolve_timezone` understands ``name`` (else it uses the default)."""
    return _zone(name) is not None


def resolve_timezone(name, default: str = "UTC") -> tzinfo:
    """The user's zone (see :func:`_zone`), or ``default`` when null, blank or unknown."""
    return _zone(name) or _zone(default) or ZoneInfo("UTC")


def in_quiet_hours(local: datetime, start: int, end: int) -> bool:
    """Is the local wall-clock time inside [start, end) (wrapping midnight when start > end)?

    ``start == end`` means no quiet hours.
    """
    hour = local.hour + local.minute / 60 + local.second / 3600 + local.microsecond / 3.6e9
    return bool(quiet_hours_mask(np.array([hour]), start, end)[0])


def quiet_hours_mask(hours: np.ndarray, start: int, end: int) -> np.ndarray:
    """:func:`in_quiet_hours` for many local times at once, given as fractional hours of the
    day (0 <= h < 24)."""
    hours = np.asarray(hours, dtype=np.float64)
    if start == end:
        return np.zeros(hours.shape, dtype=bool)
    if start < end:
        return (hours >= start) & (hours < end)
    return (hours >= start) | (hours < end)


def resolve_timezones(names, default: str = "UTC") -> np.ndarray:
    """:func:`resolve_timezone` for many names at once (an object array of tzinfo), each
    distinct name resolved once."""
    codes, uniques = pd.factorize(pd.Series(list(names), dtype=object))
    fallback = resolve_timezone(None, default)
    zones = np.array(
        [resolve_timezone(name, default) for name in uniques] + [fallback], dtype=object
    )
    return zones[np.where(codes < 0, len(uniques), codes)]


_HOUR_NS = np.timedelta64(3_600_000_000_000, "ns")


def pandas_zone(zone: tzinfo):
    """The zone as pandas converts it fastest: an IANA zone by its name, any other tzinfo
    (fixed offsets) as it is. By name pandas converts through transition tables (pytz's under
    pandas 2), ~20x faster on many instants than asking a ZoneInfo instant by instant; the
    rules are the same, read from pytz's edition of the tz database rather than the system's
    (they differ only where a zone's rules changed between the two editions)."""
    return getattr(zone, "key", None) or zone


def leave_quiet_hours_all(instants, zones, rules: FrequencyRules) -> np.ndarray:
    """Each instant (naive UTC) if it is outside the quiet hours in its zone, else the end of
    them: naive UTC ``datetime64[ns]`` in and out, one tzinfo per instant.

    The end is the first instant whose local time is ``quiet_hours_end``:00. When that wall
    time does not exist (a spring-forward gap), it is the first instant after the gap; when it
    exists twice (fall back), the first occurrence. Either way the result is the earliest
    instant that is not quiet. All instants of one zone are converted together.
    """
    out = pd.DatetimeIndex(instants).as_unit("ns").to_numpy().copy()
    start, end = rules.quiet_hours_start, rules.quiet_hours_end
    if start == end or not out.size:
        return out
    codes, unique_zones = pd.factorize(pd.Series(list(zones), dtype=object))
    for code, zone in enumerate(unique_zones):
        rows = np.flatnonzero(codes == code)
        zone = pandas_zone(zone)
        for _ in range(3):  # one step suffices in every real zone; the loop guards odd ones
            rows = rows[~np.isnat(out[rows])]
            local = pd.DatetimeIndex(out[rows]).tz_localize("UTC").tz_convert(zone)
            hours = (
                local.hour + local.minute / 60 + local.second / 3600 + local.microsecond / 3.6e9
            ).to_numpy()
            quiet = quiet_hours_mask(hours, start, end)
            if not quiet.any():
                break
            rows, local = rows[quiet], local[quiet]
            wake = local.tz_localize(None).normalize().to_numpy()
            if start > end:  # evening part of an overnight window: the end is tomorrow
                wake = wake + 24 * _HOUR_NS * np.asarray(local.hour >= start)
            wake = pd.DatetimeIndex(wake + end * _HOUR_NS)
            # both readings of an ambiguous wall time; the first occurrence is the earlier
            readings = [
                wake.tz_localize(
                    zone, ambiguous=np.full(len(wake), dst), nonexistent="shift_forward"
                )
                .tz_convert("UTC")
                .tz_localize(None)
                .to_numpy()
                for dst in (True, False)
            ]
            out[rows] = np.minimum(*readings)
    return out


def leave_quiet_hours(at: pd.Timestamp, zone: tzinfo, rules: FrequencyRules) -> pd.Timestamp:
    """:func:`leave_quiet_hours_all` for one instant (naive UTC)."""
    return pd.Timestamp(leave_quiet_hours_all([pd.Timestamp(at)], [zone], rules)[0])


def send_anchors(
    users: pd.DataFrame, sends: pd.DataFrame, run_time, rules: FrequencyRules
) -> pd.Series:
    """Earliest send time of this run per user (index user_id, naive UTC values).

    ``max(run_time, last send in the history + min_hours_between_sends)`` moved out of the
    user's quiet hours. The last send counts every channel and also sends scheduled after
    the run time (planned by an earlier run and not yet sent).
    """
    run_time = np.datetime64(utc_instant(run_time), "ns")
    users = users.assign(user_id=users["user_id"].astype(str)).drop_duplicates("user_id")
    user_ids = pd.Index(users["user_id"], name="user_id")
    names = users["timezone"] if "timezone" in users else [None] * len(users)
    zones = resolve_timezones(names, rules.default_timezone)
    last = normalize_sends(sends).groupby("user_id")["sent_at"].max()
    previous = pd.DatetimeIndex(last.reindex(user_ids)).as_unit("ns").to_numpy()
    spaced = previous + pd.Timedelta(hours=rules.min_hours_between_sends).to_timedelta64()
    earliest = np.where(np.isnat(spaced) | (spaced < run_time), run_time, spaced)
    anchors = leave_quiet_hours_all(earliest, zones, rules)
    return pd.Series(pd.DatetimeIndex(anchors), index=user_ids, name="anchor")


def schedule_sends_all(firsts, counts, zones, rules: FrequencyRules) -> np.ndarray:
    """:func:`schedule_sends` for many users at once: user ``u`` gets ``counts[u]`` times from
    ``firsts[u]`` in zone ``zones[u]``; the times come out flat, user after user (naive UTC
    ``datetime64[ns]``). One pass per rank, all users of that rank together."""
    counts = np.asarray(counts, dtype=np.int64)
    zones = np.asarray(list(zones), dtype=object)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    out = np.full(int(counts.sum()), np.datetime64("NaT"), dtype="datetime64[ns]")
    gap = pd.Timedelta(hours=rules.min_hours_between_sends).to_timedelta64()
    live = np.flatnonzero(counts > 0)
    at = leave_quiet_hours_all(pd.DatetimeIndex(firsts)[live], zones[live], rules)
    for rank in range(int(counts.max(initial=0))):
        out[offsets[live] + rank] = at
        more = counts[live] > rank + 1
        live = live[more]
        at = leave_quiet_hours_all(at[more] + gap, zones[live], rules)
    return out


def schedule_sends(
    anchor: pd.Timestamp, n: int, zone: tzinfo, rules: FrequencyRules
) -> list[pd.Timestamp]:
    """``n`` send times for one user: the anchor, then each previous + min hours, each moved
    out of quiet hours (so consecutive sends are at least ``min_hours_between_sends`` apart)."""
    times = schedule_sends_all([pd.Timestamp(anchor)], [n], [zone], rules)
    return [pd.Timestamp(t) for t in times]


# --------------------------------------------------------------------------- holdout, keys


def holdout_score(user_id, salt: str) -> float:
    """A uniform-looking number in [0, 1) from ``sha256(salt|user_id)``, stable everywhere."""
    digest = hashlib.sha256(f"{salt}|{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def is_holdout(user_ids: Iterable, rules: FrequencyRules) -> np.ndarray:
    """Boolean per user id: in the holdout (score < holdout_share)."""
    return np.array(
        [holdout_score(str(u), rules.holdout_salt) < rules.holdout_share for u in user_ids],
        dtype=bool,
    )


def make_send_key(run_time, campaign_id, user_id, item_id) -> str:
    """sha256 of ``run_time.isoformat()|campaign_id|user_id|item_id`` (item '' when null),
    first 32 hex characters: unique per planned send and identical on a re-run."""
    item = "" if item_id is None or (not isinstance(item_id, str) and pd.isna(item_id)) else item_id
    text = f"{utc_instant(run_time).isoformat()}|{campaign_id}|{user_id}|{item}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


# --------------------------------------------------------------------------- allowances


def normalize_sends(sends: pd.DataFrame) -> pd.DataFrame:
    """Send history with string ids and naive UTC sent_at (empty frame when None).

    ``is_confirmed`` (default true): false for a send an earlier run planned that the send
    tool has not confirmed yet (the send ledger, ``int_send_ledger``). It counts for caps,
    spacing and repeats like any send, but adaptive cadence holds no verdict on it.
    """
    columns = ["send_id", "user_id", "campaign_id", "item_id", "channel", "sent_at", "is_confirmed"]
    if sends is not None and sends.attrs.get(_NORMALIZED) and list(sends.columns) == columns:
        return sends  # already this function's output (or rows of it): nothing to redo
    if sends is None or len(sends) == 0:
        dtypes = {"sent_at": "datetime64[ns]", "is_confirmed": bool}
        return pd.DataFrame({c: pd.Series(dtype=dtypes.get(c, object)) for c in columns})
    out = sends.copy()
    if "is_confirmed" not in out:
        out["is_confirmed"] = True
    # When in doubt the send is unconfirmed: counted for caps, no verdict for cadence.
    out["is_confirmed"] = out["is_confirmed"].eq(True).to_numpy(bool)
    for column in columns:
        if column not in out:
            out[column] = None
    for column in ("send_id", "user_id", "campaign_id", "channel"):
        out[column] = out[column].astype(str)
    missing = out["item_id"].isna()
    out["item_id"] = out["item_id"].astype(str).astype(object).where(~missing, None)
    out["sent_at"] = utc_naive(out["sent_at"]).to_numpy()
    out = out[columns]
    out.attrs[_NORMALIZED] = True
    return out


# Marks a frame normalize_sends returned; pandas keeps it on row selections and copies, and
# the planner passes one normalized history through every rule instead of redoing it each time.
_NORMALIZED = "proactive_recs.normalized_sends"


def cadence_allowance(
    user_ids: Iterable, sends: pd.DataFrame, events: pd.DataFrame, run_time, rules: FrequencyRules
) -> pd.DataFrame:
    """Adaptive allowance per (user, channel): one row per user id and channel.

    Over the user's sends on the channel with ``run_time - cadence_lookback_days <= sent_at
    < run_time``, in time order:

    * a send is *responded* if it has an open, click or conversion event before the run;
    * otherwise it is *pending* if sent less than ``cadence_grace_hours`` before the run (no
      verdict yet: it is left out), else *ignored*;
    * ``bonus`` = 1 if any send is responded, else 0;
    * ``ignored_streak`` = ignored sends after the last responded one (all of them when none
      is responded); ``penalty = ignored_streak // cadence_ignored_block``;
    * ``allowance = clip(cap + bonus - penalty, cadence_floor, channel ceiling)``.

    A channel whose cap is 0 stays at 0 (switched off), and with ``adaptive_cadence`` off the
    allowance is the cap. Columns: user_id, channel, cap, bonus, ignored_streak, allowance.
    """
    run_time = utc_instant(run_time)
    ids = pd.Index(pd.unique(pd.Series(list(user_ids), dtype=object).astype(str)), name="user_id")
    grid = pd.MultiIndex.from_product([ids, list(CHANNELS)], names=["user_id", "channel"])
    out = pd.DataFrame(index=grid).reset_index()
    out["cap"] = out["channel"].map(rules.cap).astype(np.int64)
    out["bonus"] = 0
    out["ignored_streak"] = 0
    history = normalize_sends(sends)
    lookback = run_time - pd.Timedelta(days=rules.cadence_lookback_days)
    recent = history[
        (history["sent_at"] >= lookback)
        & (history["sent_at"] < run_time)
        & history["user_id"].isin(ids)
    ]
    if rules.adaptive_cadence and len(recent):
        responded_ids = set()
        if events is not None and len(events):
            ev = events[
                events["event_type"].astype(str).isin(RESPONSE_EVENTS)
                & (utc_naive(events["occurred_at"]).to_numpy() < run_time)
            ]
            responded_ids = set(ev["send_id"].astype(str))
        recent = recent.assign(responded=recent["send_id"].isin(responded_ids))
        grace = run_time - pd.Timedelta(hours=rules.cadence_grace_hours)
        # No verdict yet: too recent, or not confirmed by the send tool (it may not have gone
        # out, so its silence says nothing).
        recent = recent[
            recent["responded"] | ((recent["sent_at"] <= grace) & recent["is_confirmed"])
        ]
        recent = recent.sort_values(["user_id", "channel", "sent_at", "send_id"])
        # Responded sends at or after each row, counting from the end of the user's list:
        # rows with none are the ignored ones after the last response.
        after = (
            recent["responded"]
            .iloc[::-1]
            .astype(int)
            .groupby([recent["user_id"].iloc[::-1], recent["channel"].iloc[::-1]])
            .cumsum()
            .iloc[::-1]
        )
        stats = (
            recent.assign(trailing=after.eq(0))
            .groupby(["user_id", "channel"])
            .agg(bonus=("responded", "max"), ignored_streak=("trailing", "sum"))
        )
        out = out.drop(columns=["bonus", "ignored_streak"]).merge(
            stats.reset_index(), on=["user_id", "channel"], how="left"
        )
        out["bonus"] = out["bonus"].eq(True).astype(int)
        out["ignored_streak"] = out["ignored_streak"].fillna(0).astype(np.int64)
    if rules.adaptive_cadence:
        penalty = out["ignored_streak"] // rules.cadence_ignored_block
        ceiling = out["channel"].map(rules.ceiling)
        allowance = (out["cap"] + out["bonus"] - penalty).clip(lower=rules.cadence_floor)
        allowance = np.minimum(allowance, ceiling)
        out["allowance"] = np.where(out["cap"] > 0, allowance, 0).astype(np.int64)
    else:
        out["allowance"] = out["cap"]
    return out[["user_id", "channel", "cap", "bonus", "ignored_streak", "allowance"]]


def _sends_since_anchor(history: pd.DataFrame, anchors: pd.Series, days: float) -> pd.DataFrame:
    """History rows with ``sent_at > anchor - days`` (future ones included) per user."""
    frame = history.merge(
        anchors.rename("anchor").rename_axis("user_id").reset_index(), on="user_id", how="inner"
    )
    return frame[frame["sent_at"] > frame["anchor"] - pd.Timedelta(days=days)]


def channel_allowance(
    anchors: pd.Series, sends: pd.DataFrame, events: pd.DataFrame, run_time, rules: FrequencyRules
) -> pd.DataFrame:
    """Remaining sends per (user, channel) for this run.

    ``remaining = max(0, allowance - used)`` where ``used`` counts the user's history sends
    on the channel with ``sent_at > anchor - 7 days`` (see the module doc for why the
    window is counted back from the anchor). Columns: user_id, channel, allowance, used,
    remaining.
    """
    out = cadence_allowance(anchors.index, sends, events, run_time, rules)
    used = (
        _sends_since_anchor(normalize_sends(sends), anchors, 7)
        .groupby(["user_id", "channel"])
        .size()
        .rename("used")
        .reset_index()
    )
    out = out.merge(used, on=["user_id", "channel"], how="left")
    out["used"] = out["used"].fillna(0).astype(np.int64)
    out["remaining"] = (out["allowance"] - out["used"]).clip(lower=0).astype(np.int64)
    return out[["user_id", "channel", "allowance", "used", "remaining"]]


def campaign_allowance(
    pairs: pd.DataFrame, anchors: pd.Series, sends: pd.DataFrame
) -> pd.DataFrame:
    """Remaining sends per (user, campaign) under the campaign's own rolling-7-day cap.

    ``pairs`` has user_id, campaign_id, cap (null = no campaign cap, remaining stays null).
    ``used`` counts history sends of the campaign on any channel with
    ``sent_at > anchor - 7 days``. Columns: user_id, campaign_id, cap, used, remaining.
    """
    pairs = pairs[["user_id", "campaign_id", "cap"]].drop_duplicates(["user_id", "campaign_id"])
    used = (
        _sends_since_anchor(normalize_sends(sends), anchors, 7)
        .groupby(["user_id", "campaign_id"])
        .size()
        .rename("used")
        .reset_index()
    )
    out = pairs.merge(used, on=["user_id", "campaign_id"], how="left")
    out["used"] = out["used"].fillna(0).astype(np.int64)
    cap = pd.to_numeric(out["cap"], errors="coerce")
    out["remaining"] = (cap - out["used"]).clip(lower=0)
    return out[["user_id", "campaign_id", "cap", "used", "remaining"]]


def recently_sent_items(sends: pd.DataFrame, run_time, rules: FrequencyRules) -> pd.DataFrame:
    """(user_id, item_id) pairs sent with ``sent_at > run_time - item_repeat_window_days``.

    Counted back from the run time (not the anchor): every send of the run is later than the
    run time, so this can only exclude more, never let a repeat through. Later history rows
    (already scheduled) count too.
    """
    history = normalize_sends(sends)
    since = utc_instant(run_time) - pd.Timedelta(days=rules.item_repeat_window_days)
    recent = history[(history["sent_at"] > since) & history["item_id"].notna()]
    return recent[["user_id", "item_id"]].drop_duplicates().reset_index(drop=True)
