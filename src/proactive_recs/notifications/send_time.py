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

``prior_strength`` and ``window_hours`` are chosen on the validation window before the run
(never later data): :func:`fit_send_times` fits each pair on the events before it and scores
the chosen slots by the share of the window's events they capture within ±1 and ±3 hours (the
figures model_evaluation reports). ``prior_strength = inf`` is the prior alone: everybody at
the population's hour (segments too: their prior is the population's), the simpler model. A
personal candidate is served only if it captures at least as much as that one at every
tolerance; among those that may be served, the best mean capture wins. Then it fits on every
event before the run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from proactive_recs.data.instants import utc_naive
from proactive_recs.notifications.frequency import (
    FrequencyRules,
    is_known_timezone,
    pandas_zone,
    quiet_hours_mask,
    resolve_timezone,
)

__all__ = [
    "CAPTURE_TOLERANCES",
    "POPULATION",
    "PRIOR_STRENGTHS",
    "SLOTS",
    "WINDOW_HOURS",
    "SendTimeModel",
    "capture_share",
    "choose_send_time",
    "evaluate_send_time",
    "fit_send_times",
    "local_slots",
    "preferred_send_time",
    "preferred_send_times",
    "send_time_choice",
]

HOURS = 24
SLOTS = 2 * HOURS  # weekday hours, then weekend hours
PRIOR_STRENGTHS = (1.0, 3.0, 10.0, 30.0, 100.0)
# The prior strength of "the prior alone": no user's own counts move their profile.
POPULATION = math.inf
# Candidate windows: a slot is worth the profile's mass within this many hours of it.
WINDOW_HOURS = (1, 3)
# What a send time is judged on, here and in model_evaluation: captured within ±k hours.
CAPTURE_TOLERANCES = (1, 3)
_TIE_BREAK = 1e-6


def local_slots(
    occurred_at: pd.Series, zones: pd.Series, default_timezone: str = "UTC"
) -> tuple[np.ndarray, int]:
    """Slot (0-47) of each instant (naive UTC) in its row's time zone, and how many rows had
    no usable zone (they are read in ``default_timezone``)."""
    slots, defaulted = _local_slots(occurred_at, zones, default_timezone)
    return slots, int(defaulted.sum())


def _local_slots(occurred_at, zones, default_timezone) -> tuple[np.ndarray, np.ndarray]:
    """:func:`local_slots` with the rows read in the default zone as a mask."""
    instants = pd.to_datetime(utc_naive(occurred_at)).dt.tz_localize("UTC")
    slots = np.empty(len(instants), dtype=np.int64)
    defaulted = np.zeros(len(instants), dtype=bool)
    # one code per distinct zone text; missing values (None, NaN, pd.NA) share code -1
    codes, names = pd.factorize(pd.Series(zones, dtype=object).reset_index(drop=True))
    for code in np.unique(codes):
        rows = np.flatnonzero(codes == code)
        # the frequency rules' reading of a zone (IANA names, offsets, abbreviations)
        name = None if code < 0 else names[code]
        zone = resolve_timezone(name, default_timezone)
        defaulted[rows] = not is_known_timezone(name)
        local = instants.iloc[rows].dt.tz_convert(pandas_zone(zone))
        weekend = (local.dt.dayofweek >= 5).to_numpy()
        slots[rows] = local.dt.hour.to_numpy() + HOURS * weekend
    return slots, defaulted


def _slot_counts(rows: np.ndarray, slots: np.ndarray, n_users: int) -> np.ndarray:
    """(n_users x 48) events per user (row index) and slot."""
    counts = np.bincount(rows * SLOTS + slots, minlength=n_users * SLOTS)
    return counts.astype(np.float64).reshape(n_users, SLOTS)


def _captured(slots, user_rows, weekday_hour, weekend_hour, tolerance_hours: int) -> float:
    """Mean over users of the share of their events (slot, user row) within
    ``tolerance_hours`` of the user's hour for that kind of day (hour arrays per user row;
    NaN: no hour, never within)."""
    chosen = np.where(slots >= HOURS, weekend_hour[user_rows], weekday_hour[user_rows])
    distance = np.abs(slots % HOURS - chosen)
    distance = np.minimum(distance, HOURS - distance)
    hit = (distance <= tolerance_hours).astype(np.float64)  # NaN compares False
    n_users = len(weekday_hour)
    events = np.bincount(user_rows, minlength=n_users)
    hits = np.bincount(user_rows, weights=hit, minlength=n_users)
    acting = events > 0
    return float((hits[acting] / events[acting]).mean())


def _event_slots(events: pd.DataFrame, zone_of: pd.Series, default_timezone: str):
    """Each event's slot in its user's zone (``zone_of``: zone by user_id), and the number
    read in the default zone."""
    # each distinct user's zone looked up once, not every event's (as in _event_rows)
    codes, distinct = pd.factorize(events["user_id"].astype(str))
    zones = zone_of.reindex(distinct).to_numpy(object)[codes]
    return local_slots(events["occurred_at"], zones, default_timezone)


def _windowed(profiles: np.ndarray, window_hours: int) -> np.ndarray:
    """Per slot, the mass within ``window_hours`` on the same kind of day (circular)."""
    out = np.zeros_like(profiles)
    for half in (slice(0, HOURS), slice(HOURS, SLOTS)):
        part = profiles[:, half]
        for shift in range(-window_hours, window_hours + 1):
            out[:, half] += np.roll(part, shift, axis=1)
    return out


def _hour_scores(rows: np.ndarray, window_hours: int) -> np.ndarray:
    """What an hour is worth to a row of counts or shares: its window's mass plus a tie-break
    by its own mass (the hour a habit sits on beats its neighbours with equal windows)."""
    return _windowed(rows, window_hours) + _TIE_BREAK * rows


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
        zone_of = users.set_index("user_id")["timezone"]
        rows = pd.Index(users["user_id"]).get_indexer(events["user_id"].astype(str))
        slots, without_zone = _event_slots(events, zone_of, self.default_timezone)
        self.events_without_zone_ = without_zone
        return self._fit_counts(_slot_counts(rows, slots, len(users)), users)

    def _smoothed(self, counts: np.ndarray, prior: np.ndarray) -> np.ndarray:
        """Posterior mean of counts (rows) under ``prior_strength`` pseudo-events spread like
        ``prior``; with an infinite strength, the prior itself."""
        if math.isinf(self.prior_strength):
            return np.broadcast_to(prior, counts.shape).copy()
        total = counts.sum(axis=-1, keepdims=True)
        return (counts + self.prior_strength * prior) / (total + self.prior_strength)

    def _fit_counts(self, counts: np.ndarray, users: pd.DataFrame) -> SendTimeModel:
        """Fit from the users' slot counts (rows in the order of ``users``, a frame of
        :func:`_users_frame`): what :meth:`fit` does after counting."""
        self.user_ids_ = pd.Index(users["user_id"])
        self.counts_ = counts
        total = counts.sum(axis=0)
        uniform = np.full(SLOTS, 1.0 / SLOTS)
        self.population_ = (total + uniform) / (total.sum() + 1.0)
        self.segment_of_ = users["segment"].to_numpy(dtype=object)
        self.segments_ = {}
        if users["segment"].notna().any():
            for segment in pd.unique(self.segment_of_[pd.notna(self.segment_of_)]):
                members = counts[self.segment_of_ == segment].sum(axis=0)
                self.segments_[segment] = self._smoothed(members, self.population_)
        return self

    def send_times(self) -> SendTimes:
        """Each fitted user's slots, confidence, basis and profile."""
        if not hasattr(self, "counts_"):
            raise RuntimeError("SendTimeModel.send_times() before fit()")
        weekday, weekend = self._hours(int(self.window_hours))
        prior_rows, index = self._priors()
        # whose counts moved the profile: nobody's with the prior alone (segments' priors are
        # then the population's too)
        basis = np.where(index > 0, "segment", "population").astype(object)
        if math.isinf(self.prior_strength):
            basis[:] = "population"
        else:
            basis[self.counts_.sum(axis=1) >= self.min_events] = "personal"
        profiles = self._smoothed(self.counts_, prior_rows[index])
        windowed = _windowed(profiles, int(self.window_hours))
        weekday_mass = profiles[:, :HOURS].sum(axis=1)
        confidence = windowed[np.arange(len(weekday)), weekday] / np.maximum(weekday_mass, 1e-12)
        return SendTimes(self.user_ids_, weekday, weekend, confidence, basis, profiles)

    def _priors(self) -> tuple[np.ndarray, np.ndarray]:
        """The distinct priors (the population's profile, then each segment's) and each
        user's row among them (0: the population's)."""
        rows = [self.population_]
        index = np.zeros(len(self.user_ids_), dtype=np.int64)
        for row, (segment, profile) in enumerate(self.segments_.items(), start=1):
            rows.append(profile)
            index[self.segment_of_ == segment] = row
        return np.vstack(rows), index

    def _hours(self, window_hours: int, scored_counts=None):
        """Each user's weekday and weekend hour under ``window_hours``: the hour whose window
        holds the most of the profile; among equal windows (a habit at 9:00 fills those of 8,
        9 and 10) the hour with the most mass of its own, then the earlier. A window is a sum
        of slots, so a profile's window is the smoothed window of its counts and of its prior,
        and the row's scale 1 / (events + strength) does not change its best hour: the score
        is the counts' part (:func:`_hour_scores` of ``counts_``, computed once for every
        strength when given as ``scored_counts``) plus the strength times the prior's (one
        row per distinct prior, not per user)."""
        prior_rows, index = self._priors()
        prior_scores = _hour_scores(prior_rows, window_hours)
        if math.isinf(self.prior_strength):
            best = prior_scores[index]
        else:
            if scored_counts is None:
                scored_counts = _hour_scores(self.counts_, window_hours)
            best = scored_counts + self.prior_strength * prior_scores[index]
        return best[:, :HOURS].argmax(axis=1), best[:, HOURS:].argmax(axis=1)

    def population_hours(self) -> tuple[int, int]:
        """The population's best (weekday, weekend) hours: the baseline a per-user choice
        must beat."""
        best = _hour_scores(self.population_[None, :], int(self.window_hours))[0]
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


def _event_rows(frame: pd.DataFrame, events: pd.DataFrame) -> np.ndarray:
    """Each event's row in ``frame`` (from :func:`_users_frame`, which holds every event's
    user): the distinct ids are looked up once, not every event's."""
    codes, distinct = pd.factorize(events["user_id"].astype(str))
    return pd.Index(frame["user_id"]).get_indexer(distinct)[codes]


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
    user_ids = pd.Index(frame["user_id"])
    rows = _event_rows(frame, events)
    slots, _ = _event_slots(events, zone_of, default_timezone)

    def per_user(hours):
        if isinstance(hours, pd.Series):
            return hours.reindex(user_ids).to_numpy(dtype=float)
        return np.full(len(user_ids), float(hours))

    return _captured(slots, rows, per_user(weekday_hour), per_user(weekend_hour), tolerance_hours)


def fit_send_times(
    events: pd.DataFrame,
    users: pd.DataFrame | None,
    *,
    as_of,
    horizon_days: float,
    model_params: dict | None = None,
    strengths=PRIOR_STRENGTHS,
    windows=WINDOW_HOURS,
) -> tuple[SendTimeModel, pd.DataFrame]:
    """A :class:`SendTimeModel` fitted on the events before ``as_of``, with the prior strength
    and window chosen on the last horizon before ``as_of`` (module docstring), and the
    validation figures of every candidate (:func:`choose_send_time`). Nothing to compare on:
    the given or default settings and an empty frame. Every event's user and local slot are
    read once."""
    as_of = pd.Timestamp(as_of)
    start = as_of - pd.Timedelta(days=float(horizon_days))
    when = pd.to_datetime(utc_naive(events["occurred_at"]))
    params = dict(model_params or {})
    defaults = SendTimeModel()
    strength = float(params.pop("prior_strength", defaults.prior_strength))
    window = int(params.pop("window_hours", defaults.window_hours))
    frame = _users_frame(events, users)
    default_zone = params.get("default_timezone", defaults.default_timezone)
    rows = _event_rows(frame, events)
    slots, defaulted = _local_slots(
        events["occurred_at"], frame["timezone"].to_numpy(object)[rows], default_zone
    )
    is_before = (when < start).to_numpy()
    in_window = ((when >= start) & (when < as_of)).to_numpy()
    figures = []
    if is_before.any() and in_window.any():
        # the counts before the window do not depend on the settings: each pair only smooths
        # and windows them, and is scored on the window
        counts = _slot_counts(rows[is_before], slots[is_before], len(frame))
        window_slots, window_rows = slots[in_window], rows[in_window]
        # the counts' part of the hour scores serves every strength (SendTimeModel._hours)
        scored_counts = {int(w): _hour_scores(counts, int(w)) for w in windows}
        for candidate in (*strengths, POPULATION):
            model = SendTimeModel(prior_strength=candidate, **params)._fit_counts(counts, frame)
            for candidate_window in windows:
                weekday, weekend = model._hours(
                    int(candidate_window), scored_counts[int(candidate_window)]
                )
                captured = [
                    _captured(
                        window_slots,
                        window_rows,
                        weekday.astype(float),
                        weekend.astype(float),
                        tolerance_hours=tolerance,
                    )
                    for tolerance in CAPTURE_TOLERANCES
                ]
                figures.append((int(candidate_window), float(candidate), *captured))
    selection = choose_send_time(
        pd.DataFrame(
            figures,
            columns=[
                "window_hours",
                "prior_strength",
                *(f"capture_{tolerance}" for tolerance in CAPTURE_TOLERANCES),
            ],
        )
        .sort_values(["window_hours", "prior_strength"], kind="mergesort")
        .reset_index(drop=True)
    )
    if len(selection):
        chosen = selection[selection["chosen"]].iloc[0]
        strength, window = float(chosen["prior_strength"]), int(chosen["window_hours"])
    known = (when < as_of).to_numpy()
    model = SendTimeModel(prior_strength=strength, window_hours=window, **params)
    model.events_without_zone_ = int(defaulted[known].sum())
    model._fit_counts(_slot_counts(rows[known], slots[known], len(frame)), frame)
    return model, selection


def choose_send_time(figures: pd.DataFrame) -> pd.DataFrame:
    """Which (window_hours, prior_strength) to serve, from their validation figures (columns
    ``capture_<k>`` per tolerance of :data:`CAPTURE_TOLERANCES`; one row per pair, with the
    prior alone, :data:`POPULATION`, among them for each window).

    A personal pair *may be served* when it captures at least as much as the prior alone of
    its window at every tolerance: the population's hour is the baseline model_evaluation
    puts beside it, and a personal hour that loses to it at any tolerance is not worth its
    complexity. The prior alone may always be served. Among the pairs that may be served,
    the best mean capture is chosen; ties go to the simpler model (the stronger prior, then
    the narrower window). Adds ``alone_capture_<k>`` (the prior alone of the row's window),
    ``mean_capture``, ``may_serve`` and ``chosen``."""
    captures = [f"capture_{tolerance}" for tolerance in CAPTURE_TOLERANCES]
    # typed even when empty (nothing to compare on: no events before or in the window)
    out = figures.astype({"window_hours": np.int64, "prior_strength": float})
    out = out.astype(dict.fromkeys(captures, float))
    out["mean_capture"] = out[captures].mean(axis=1)
    alone = out[np.isinf(out["prior_strength"])].set_index("window_hours")[captures]
    baseline = alone.reindex(out["window_hours"]).to_numpy()
    for column, tolerance in enumerate(CAPTURE_TOLERANCES):
        out[f"alone_capture_{tolerance}"] = baseline[:, column]
    at_least_alone = (out[captures].to_numpy() >= baseline).all(axis=1)
    out["may_serve"] = np.isinf(out["prior_strength"]) | at_least_alone
    out["chosen"] = False
    if len(out):
        ranked = out[out["may_serve"]].sort_values(
            ["mean_capture", "prior_strength", "window_hours"],
            ascending=[False, False, True],
            kind="mergesort",
        )
        out.loc[ranked.index[0], "chosen"] = True
    return out


def preferred_send_times(
    anchors,
    latest: pd.Timestamp,
    zones: list,
    profiles: list,
    rules: FrequencyRules,
    window_hours: int = 1,
) -> np.ndarray:
    """For each user, the moment in [anchor, max(anchor, latest)] whose local slot their
    ``profile`` (48 shares) likes best, counting the ``window_hours`` around it: the anchor
    itself or a whole hour after it, never inside quiet hours (the anchor, already out of
    them, is the fallback); ties go to the earliest. A profile that is not 48 finite shares
    keeps the anchor. Naive UTC in, datetime64[ns] out; a block of users at a time (per
    zone, one conversion of every candidate hour)."""
    anchors = pd.DatetimeIndex(anchors).as_unit("ns").to_numpy()
    out = anchors.copy()
    lengths = np.array([np.size(profile) for profile in profiles])
    # A block of users at a time: each user's candidate moments, their local slots and
    # scores are (users x hours) arrays, GBs at a million users all at once.
    for block in np.array_split(
        np.flatnonzero(lengths == SLOTS), max(1, -(-len(profiles) // _USERS_PER_BLOCK))
    ):
        shares = np.asarray([profiles[r] for r in block], dtype=np.float64).reshape(-1, SLOTS)
        finite = np.isfinite(shares).all(axis=1)
        if finite.any():
            out[block[finite]] = _best_moments(
                anchors[block[finite]],
                shares[finite],
                latest,
                [zones[r] for r in block[finite]],
                rules,
                window_hours,
            )
    return out


# Users per block of preferred_send_times (~25 MB per (users x hours) array at 2 days ahead).
_USERS_PER_BLOCK = 65_536


def _best_moments(first, shares, latest, zones, rules: FrequencyRules, window_hours: int):
    """preferred_send_times for users who all have a usable profile (``shares``, 48 finite
    per row) and anchors ``first``."""
    windowed = _windowed(shares, int(window_hours)) + _TIE_BREAK * shares
    hour = np.timedelta64(1, "h")
    steps = max(0, int((np.datetime64(latest, "ns") - first.min()) // hour) + 1)
    width = steps + 1
    # candidate j: the anchor (j = 0), then the whole hours after it
    floor = first.astype("datetime64[h]").astype("datetime64[ns]")
    candidates = np.empty((first.size, width), dtype="datetime64[ns]")
    candidates[:, 0] = first
    candidates[:, 1:] = floor[:, None] + hour * np.arange(1, width)[None, :]
    score = np.full(candidates.shape, -np.inf)
    codes, unique_zones = pd.factorize(pd.Series(zones, dtype=object))
    for code, zone in enumerate(unique_zones):
        group = np.flatnonzero(codes == code)
        local = (
            pd.DatetimeIndex(candidates[group].ravel())
            .tz_localize("UTC")
            .tz_convert(pandas_zone(zone))
        )
        fractional = (local.hour + local.minute / 60 + local.second / 3600).to_numpy()
        quiet = quiet_hours_mask(fractional, rules.quiet_hours_start, rules.quiet_hours_end)
        slot = (local.hour + HOURS * (local.dayofweek >= 5)).to_numpy()
        picked = windowed[np.repeat(group, width), slot]
        picked[quiet] = -np.inf
        score[group] = picked.reshape(group.size, width)
    score[:, 1:][candidates[:, 1:] > np.datetime64(latest, "ns")] = -np.inf
    score[:, 0] = np.where(np.isfinite(score[:, 0]), score[:, 0], -1.0)  # the fallback
    best = np.round(score, 12).argmax(axis=1)  # the first best: the earliest on ties
    return candidates[np.arange(first.size), best]


def preferred_send_time(
    anchor: pd.Timestamp,
    latest: pd.Timestamp,
    zone,
    profile,
    rules: FrequencyRules,
    window_hours: int = 1,
) -> pd.Timestamp:
    """:func:`preferred_send_times` for one user."""
    return pd.Timestamp(
        preferred_send_times([anchor], latest, [zone], [profile], rules, window_hours)[0]
    )


def send_time_choice(selection: pd.DataFrame) -> dict[str, str]:
    """The decision of :func:`choose_send_time` as parameters (name -> text) for
    model_evaluation_parameters: the chosen window and strength, and why, with the
    validation figures of the choice and of its window's population hour."""
    if selection is None or not len(selection):
        return {"send_time_reason": "no events before and in the validation window: defaults"}
    chosen = selection[selection["chosen"]].iloc[0]

    def figures(prefix):
        return " / ".join(f"{chosen[f'{prefix}capture_{t}']:.4f}" for t in CAPTURE_TOLERANCES)

    tolerances = " / ".join(f"±{t} h" for t in CAPTURE_TOLERANCES)
    population = bool(np.isinf(chosen["prior_strength"]))
    what = (
        "the population's hour (no personal profile captured as much at every tolerance)"
        if population
        else f"personal hours at prior strength {chosen['prior_strength']:g}"
    )
    return {
        "send_time_window_hours": str(int(chosen["window_hours"])),
        "send_time_prior_strength": f"{chosen['prior_strength']:g}",
        "send_time_reason": (
            f"{what}, window ±{int(chosen['window_hours'])} h: validation capture at "
            f"{tolerances} {figures('')}, the population's hour {figures('alone_')}"
        ),
    }


def evaluate_send_time(
    events: pd.DataFrame,
    users: pd.DataFrame | None,
    *,
    cutoff,
    horizon_days: float,
    default_timezone: str = "UTC",
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Direction ``send_time`` of docs/evaluation.md: on the test window [cutoff, cutoff +
    horizon), the mean per user of the share of their events within ±1 h and ±3 h of the
    chosen hour, for 'served' (window and prior strength chosen on the validation window
    before the cutoff, :func:`fit_send_times`), 'population' (everybody's best hour, by the
    same window) and 'uniform' (an hour drawn at random: (2 t + 1) / 24 in expectation).
    Rows as model_evaluation holds them, and the served model's choice
    (:func:`send_time_choice`)."""
    cutoff = pd.Timestamp(cutoff)
    end = cutoff + pd.Timedelta(days=float(horizon_days))
    when = pd.to_datetime(utc_naive(events["occurred_at"]))
    train = events[(when < cutoff).to_numpy()]
    test = events[((when >= cutoff) & (when < end)).to_numpy()]
    columns = ["model", "direction", "segment", "metric", "k", "value"]
    if train.empty or test.empty:
        return pd.DataFrame(columns=columns), {}
    if users is None:
        # every user of the split is known, as every user of int_user_context is to
        # user_send_times: one first seen in the test window gets the prior's hour, as in
        # production, not no hour at all
        users = pd.DataFrame({"user_id": pd.unique(events["user_id"].astype(str))})
    model, selection = fit_send_times(
        train,
        users,
        as_of=cutoff,
        horizon_days=horizon_days,
        model_params={"default_timezone": default_timezone},
    )
    times = model.send_times()
    chosen = {
        "served": (
            pd.Series(times.weekday_hour, index=times.user_ids),
            pd.Series(times.weekend_hour, index=times.user_ids),
        ),
        "population": model.population_hours(),
    }
    rows = []
    for tolerance in CAPTURE_TOLERANCES:
        for name, (weekday, weekend) in chosen.items():
            value = capture_share(
                test,
                users,
                weekday,
                weekend,
                tolerance_hours=tolerance,
                default_timezone=default_timezone,
            )
            rows.append((name, "send_time", "all", "capture", tolerance, value))
        rows.append(("uniform", "send_time", "all", "capture", tolerance, (2 * tolerance + 1) / 24))
    return pd.DataFrame(rows, columns=columns), send_time_choice(selection)
