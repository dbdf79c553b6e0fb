"""When to send: each user's hours of activity, learned from when they act.

A user's activity is counted per *slot*: hour of the day (0-23) in the user's own time zone,
separately on weekdays and at weekends (48 slots; slot = hour + 24 on Saturday and Sunday).
Few users act often enough for their own counts to be trusted, so each user's profile is the
posterior mean of a Dirichlet-multinomial: their counts plus ``prior_strength``
pseudo-events spread like their segment's profile (when a segment column is given), which is
itself its members' counts plus ``prior_strength`` pseudo-events spread like the
population's. A user with no event gets the prior as it is.

A slot is worth its *window*: the profile's mass within ``window_hours`` of it on the same
kind of day (sending at 10:00 reaches someone active at 9:00 or 11:00 too). The user's slot
per kind of day is the best window; its mass is the confidence. ``basis`` says what drives
it: 'personal' (at least ``min_events`` events of the user's own), 'segment' or
'population'.

``prior_strength`` is chosen on the validation window before the run (never later data):
:func:`choose_prior_strength` fits on the events before it and keeps the strength whose
chosen slots capture most of the window's events within ±1 hour.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from proactive_recs.data.instants import utc_naive
from proactive_recs.notifications.frequency import (
    FrequencyRules,
    in_quiet_hours,
    is_known_timezone,
    resolve_timezone,
)

__all__ = [
    "PRIOR_STRENGTHS",
    "SLOTS",
    "SendTimeModel",
    "capture_share",
    "choose_prior_strength",
    "local_slots",
    "preferred_send_time",
]

HOURS = 24
SLOTS = 2 * HOURS  # weekday hours, then weekend hours
PRIOR_STRENGTHS = (1.0, 3.0, 10.0, 30.0, 100.0)
BASES = ("personal", "segment", "population")
_TIE_BREAK = 1e-6


def local_slots(
    occurred_at: pd.Series, zones: pd.Series, default_timezone: str = "UTC"
) -> tuple[np.ndarray, int]:
    """Slot (0-47) of each instant (naive UTC) in its row's time zone, and how many rows had
    no usable zone (they are read in ``default_timezone``)."""
    instants = pd.to_datetime(utc_naive(occurred_at)).dt.tz_localize("UTC")
    slots = np.empty(len(instants), dtype=np.int64)
    defaulted = 0
    zone_values = zones.to_numpy(dtype=object) if len(zones) else np.array([], dtype=object)
    for name in pd.unique(zone_values):
        rows = np.flatnonzero(pd.isna(zone_values) if pd.isna(name) else (zone_values == name))
        # the frequency rules' reading of a zone (IANA names, offsets, abbreviations)
        name = None if pd.isna(name) else name
        zone = resolve_timezone(name, default_timezone)
        if not is_known_timezone(name):
            defaulted += rows.size
        local = instants.iloc[rows].dt.tz_convert(zone)
        weekend = (local.dt.dayofweek >= 5).to_numpy()
        slots[rows] = local.dt.hour.to_numpy() + HOURS * weekend
    return slots, defaulted


def _windowed(profiles: np.ndarray, window_hours: int) -> np.ndarray:
    """Per slot, the mass within ``window_hours`` on the same kind of day (circular)."""
    out = np.zeros_like(profiles)
    for half in (slice(0, HOURS), slice(HOURS, SLOTS)):
        part = profiles[:, half]
        for shift in range(-window_hours, window_hours + 1):
            out[:, half] += np.roll(part, shift, axis=1)
    return out


@dataclass(frozen=True)
class SendTimes:
    """Per user: slot per kind of day, its confidence, the basis and the whole profile."""

    user_ids: pd.Index
    weekday_hour: np.ndarray
    weekend_hour: np.ndarray
    confidence: np.ndarray  # windowed mass of the weekday slot
    basis: np.ndarray
    profiles: np.ndarray  # users x 48, rows sum to 1

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "user_id": self.user_ids,
                "weekday_hour": self.weekday_hour,
                "weekend_hour": self.weekend_hour,
                "confidence": self.confidence,
                "send_time_basis": self.basis,
                "hour_profile": list(self.profiles),
            }
        )


class SendTimeModel:
    """Per-user send slots, smoothed toward the segment's and the population's (module
    docstring). scikit-learn conventions: hyper-parameters in ``__init__``, ``fit`` returns
    self, learned state ends in ``_``."""

    def __init__(
        self,
        prior_strength: float = 10.0,
        window_hours: int = 1,
        min_events: int = 5,
        default_timezone: str = "UTC",
    ):
        self.prior_strength = prior_strength
        self.window_hours = window_hours
        self.min_events = min_events
        self.default_timezone = default_timezone

    def get_params(self) -> dict:
        return {
            "prior_strength": self.prior_strength,
            "window_hours": self.window_hours,
            "min_events": self.min_events,
            "default_timezone": self.default_timezone,
        }

    def fit(self, events: pd.DataFrame, users: pd.DataFrame | None = None) -> SendTimeModel:
        """``events``: user_id, occurred_at (naive UTC). ``users`` (optional): user_id,
        timezone and, optionally, segment."""
        if not float(self.prior_strength) > 0:
            raise ValueError(f"prior_strength must be > 0, got {self.prior_strength!r}")
        if int(self.window_hours) < 0 or int(self.window_hours) >= HOURS // 2:
            raise ValueError(f"window_hours must be in 0..11, got {self.window_hours!r}")
        users = _users_frame(events, users)
        self.user_ids_ = pd.Index(users["user_id"])
        zone_of = users.set_index("user_id")["timezone"]
        rows = self.user_ids_.get_indexer(events["user_id"].astype(str))
        slots, self.events_without_zone_ = local_slots(
            events["occurred_at"],
            zone_of.reindex(events["user_id"].astype(str)).reset_index(drop=True),
            self.default_timezone,
        )
        counts = np.zeros((len(self.user_ids_), SLOTS))
        np.add.at(counts, (rows, slots), 1.0)
        self.counts_ = counts
        total = counts.sum(axis=0)
        uniform = np.full(SLOTS, 1.0 / SLOTS)
        self.population_ = (total + uniform) / (total.sum() + 1.0)
        self.segment_of_ = users["segment"].to_numpy(dtype=object)
        self.segments_ = {}
        if users["segment"].notna().any():
            for segment in pd.unique(self.segment_of_[pd.notna(self.segment_of_)]):
                members = counts[self.segment_of_ == segment].sum(axis=0)
                self.segments_[segment] = (members + self.prior_strength * self.population_) / (
                    members.sum() + self.prior_strength
                )
        return self

    def send_times(self) -> SendTimes:
        """Each fitted user's slots, confidence, basis and profile."""
        if not hasattr(self, "counts_"):
            raise RuntimeError("SendTimeModel.send_times() before fit()")
        n = self.counts_.sum(axis=1)
        priors = np.tile(self.population_, (len(self.user_ids_), 1))
        basis = np.full(len(self.user_ids_), "population", dtype=object)
        for segment, profile in self.segments_.items():
            members = self.segment_of_ == segment
            priors[members] = profile
            basis[members] = "segment"
        basis[n >= self.min_events] = "personal"
        profiles = (self.counts_ + self.prior_strength * priors) / (
            n[:, None] + self.prior_strength
        )
        windowed = _windowed(profiles, int(self.window_hours))
        # within each kind of day: the best window; among equal windows (a habit at 9:00
        # fills those of 8, 9 and 10) the slot with the most mass of its own, then the earlier
        best = windowed + _TIE_BREAK * profiles
        weekday = best[:, :HOURS].argmax(axis=1)
        weekend = best[:, HOURS:].argmax(axis=1)
        weekday_mass = profiles[:, :HOURS].sum(axis=1)
        confidence = windowed[np.arange(len(weekday)), weekday] / np.maximum(weekday_mass, 1e-12)
        return SendTimes(self.user_ids_, weekday, weekend, confidence, basis, profiles)

    def population_hours(self) -> tuple[int, int]:
        """The population's best (weekday, weekend) hours: the baseline a per-user choice
        must beat."""
        population = self.population_[None, :]
        best = (_windowed(population, int(self.window_hours)) + _TIE_BREAK * population)[0]
        return int(best[:HOURS].argmax()), int(best[HOURS:].argmax())


def _users_frame(events: pd.DataFrame, users: pd.DataFrame | None) -> pd.DataFrame:
    ids = pd.Index(pd.unique(events["user_id"].astype(str)))
    if users is not None and len(users):
        known = users.assign(user_id=users["user_id"].astype(str)).drop_duplicates("user_id")
        ids = ids.union(pd.Index(known["user_id"]))
        frame = known.set_index("user_id").reindex(ids)
    else:
        frame = pd.DataFrame(index=ids)
    for column in ("timezone", "segment"):
        if column not in frame:
            frame[column] = None
    frame = frame.sort_index()
    return frame.rename_axis("user_id").reset_index()[["user_id", "timezone", "segment"]]


def capture_share(
    events: pd.DataFrame,
    users: pd.DataFrame | None,
    weekday_hour,
    weekend_hour,
    *,
    tolerance_hours: int,
    default_timezone: str = "UTC",
) -> float:
    """Mean over users (with at least one event) of the share of their ``events`` whose
    local hour is within ``tolerance_hours`` (circularly) of their chosen hour for that kind
    of day. ``weekday_hour`` / ``weekend_hour``: a Series by user_id, or one hour for all."""
    if events.empty:
        return float("nan")
    frame = _users_frame(events, users)
    zone_of = frame.set_index("user_id")["timezone"]
    user = events["user_id"].astype(str).reset_index(drop=True)
    slots, _ = local_slots(
        events["occurred_at"], zone_of.reindex(user).reset_index(drop=True), default_timezone
    )

    def per_user(hours):
        if isinstance(hours, pd.Series):
            return hours.reindex(user).to_numpy(dtype=float)
        return np.full(len(user), float(hours))

    chosen = np.where(slots >= HOURS, per_user(weekend_hour), per_user(weekday_hour))
    distance = np.abs(slots % HOURS - chosen)
    distance = np.minimum(distance, HOURS - distance)
    hit = (distance <= tolerance_hours).astype(float)
    hit[np.isnan(chosen)] = 0.0
    return float(pd.Series(hit).groupby(user.to_numpy()).mean().mean())


def choose_prior_strength(
    events: pd.DataFrame,
    users: pd.DataFrame | None,
    *,
    as_of,
    horizon_days: float,
    model_params: dict | None = None,
    strengths=PRIOR_STRENGTHS,
) -> tuple[float, dict]:
    """The prior strength whose slots, fitted on the events before the last horizon before
    ``as_of``, capture most of that horizon's events within ±1 hour (ties: the weaker prior,
    listed first), and the figure per strength. Nothing to compare on: the default strength
    and an empty dict."""
    as_of = pd.Timestamp(as_of)
    start = as_of - pd.Timedelta(days=float(horizon_days))
    when = pd.to_datetime(utc_naive(events["occurred_at"]))
    before = events[(when < start).to_numpy()]
    window = events[((when >= start) & (when < as_of)).to_numpy()]
    params = dict(model_params or {})
    default = float(params.pop("prior_strength", SendTimeModel().prior_strength))
    if before.empty or window.empty:
        return default, {}
    scores = {}
    for strength in strengths:
        model = SendTimeModel(prior_strength=strength, **params).fit(before, users)
        times = model.send_times()
        scores[float(strength)] = capture_share(
            window,
            users,
            pd.Series(times.weekday_hour, index=times.user_ids),
            pd.Series(times.weekend_hour, index=times.user_ids),
            tolerance_hours=1,
            default_timezone=model.default_timezone,
        )
    best = max(scores, key=lambda s: (scores[s], -list(scores).index(s)))
    return best, scores


def preferred_send_time(
    anchor: pd.Timestamp,
    latest: pd.Timestamp,
    zone,
    profile,
    rules: FrequencyRules,
    window_hours: int = 1,
) -> pd.Timestamp:
    """The moment in [anchor, max(anchor, latest)] whose local slot the user's ``profile``
    (48 shares) likes best, counting the ``window_hours`` around it: the anchor itself or a
    whole hour after it, never inside quiet hours (the anchor, already out of them, is the
    fallback); ties go to the earliest. Times are naive UTC."""
    profile = np.asarray(profile, dtype=np.float64)
    if profile.shape != (SLOTS,) or not np.isfinite(profile).all():
        return anchor
    windowed = _windowed(profile[None, :], int(window_hours))[0] + _TIE_BREAK * profile
    candidates = [anchor]
    at = anchor.floor("h") + pd.Timedelta(hours=1)
    while at <= latest:
        candidates.append(at)
        at += pd.Timedelta(hours=1)
    best, best_score = anchor, -np.inf
    for moment in candidates:
        local = moment.tz_localize("UTC").tz_convert(zone)
        if in_quiet_hours(local, rules.quiet_hours_start, rules.quiet_hours_end):
            continue
        score = windowed[local.hour + HOURS * (local.dayofweek >= 5)]
        if score > best_score + 1e-15:
            best, best_score = moment, score
    return best
