"""Candidate sends per campaign, each with its value or the reason it cannot be sent.

* **item_push**: for every trigger item (:func:`~proactive_recs.notifications.triggers.
select_trigger_items`), each user scored for it in ``item_user_scores``. Value
``score x boost`` must reach ``min_relevance``; the audience size is *not* cut here but in
the allocation, so that when a top user is capped the slot goes to the next best one.
* **digest**: one candidate per user scored in ``user_item_scores``, holding the user's
qualifying items (available at the run, not sent to the user within the item-repeat window,
``score x boost >= min_relevance``) best first. Its score is the probability that at least
one of the top ``items_per_digest`` items gets an interaction,
``1 - prod(1 - clip(score_i, 0, 1))`` assuming independence: on the same [0, 1] scale as an
item push's score, so one allocation can compare a digest with a push, and unlike a sum it
does not grow without bound with the digest length.

Expected value of a candidate = score x boost x priority.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from proactive_recs.data.interactions import text_ids
from proactive_recs.notifications.campaign import Campaign
from proactive_recs.notifications.frequency import (
    CHANNELS,
)

REJECTED_COLUMNS = [
    "campaign_id",
    "channel",
    "user_id",
    "item_id",
    "score",
    "expected_value",
    "reason",
]
CANDIDATE_COLUMNS = [
    "campaign_id",
    "campaign_type",
    "channel",
    "user_id",
    "item_id",
    "score",
    "boost",
    "expected_value",
    "audience_size",
    "campaign_cap",
    "digest_pool",
]
DIGEST_ITEM_FIELDS = ("title", "url", "price", "image_url")


def _is_true(values: pd.Series) -> pd.Series:
    """Only a boolean true is true: false, null, text or numbers are not."""
    return values.map(lambda v: isinstance(v, (bool, np.bool_)) and bool(v)).astype(bool)


def normalise_users(users: pd.DataFrame) -> pd.DataFrame:
    """One row per user id: email, timezone, is_eligible, eligibility per channel and
    ``is_shared_mailbox``.

    ``is_<channel>_eligible`` (from ``int_user_eligibility``: consent per channel, one
    account per mailbox for e-mail) default to ``is_eligible`` when absent; a send needs both.
    Only a boolean true is eligible: false, null, text or numbers all count as suppressed,
    and a user id listed twice is eligible only if every row says so. When in doubt, don't
    send.

    Which account of a shared mailbox is e-mailed is int_user_eligibility's decision (its
    ``shared_mailbox`` reason); this only checks that the frame respects it. Accounts whose
    mailbox still has several e-mail eligible accounts (a frame without the per-channel
    columns, or a hand-made one) are not e-mailed at all (``is_shared_mailbox`` true):
    otherwise one run could e-mail one person once per account, each within its own cap.
    """
    out = users.copy()
    out["user_id"] = out["user_id"].astype(str)
    for column in ("email", "timezone"):
        if column not in out:
            out[column] = None
    eligible = out["is_eligible"] if "is_eligible" in out else pd.Series(False, index=out.index)
    out["is_eligible"] = _is_true(eligible)
    per_channel = {}
    for channel in CHANNELS:
        column = f"is_{channel}_eligible"
        out[column] = out["is_eligible"] & (_is_true(out[column]) if column in out else True)
        per_channel[column] = (column, "all")
    out = (
        out.groupby("user_id", sort=True)
        .agg(
            email=("email", "first"),
            timezone=("timezone", "first"),
            is_eligible=("is_eligible", "all"),
            **per_channel,
        )
        .reset_index()
    )
    mailbox = mailbox_of(out["email"])
    emailed = mailbox.where(out["is_email_eligible"])
    out["is_shared_mailbox"] = emailed.notna() & emailed.duplicated(keep=False)
    out["is_email_eligible"] &= ~out["is_shared_mailbox"]
    return out


def mailbox_of(emails: pd.Series) -> pd.Series:
    """The mailbox of each address: trimmed and lower-cased, as int_user_eligibility compares
    them; null for a missing or blank address."""
    return emails.map(lambda v: v.strip().lower() or None if isinstance(v, str) else None)


def mailbox_history(history: pd.DataFrame, users: pd.DataFrame) -> pd.DataFrame:
    """The send history with every e-mail also counted for the other accounts of its mailbox.

    A mailbox is one person: accounts sharing an address (trimmed, lower-cased) share e-mail
    caps, spacing and the item-repeat rule. Each e-mail send to one account is copied to the
    others, so every per-user rule also holds per mailbox.
    """
    if history.empty or "email" not in users:
        return history
    accounts = pd.DataFrame({"user_id": users["user_id"], "mailbox": mailbox_of(users["email"])})
    accounts = accounts.dropna()
    shared = accounts[accounts["mailbox"].duplicated(keep=False)]
    if shared.empty:
        return history
    emails = history[history["channel"] == "email"].merge(shared, on="user_id")
    copies = emails.rename(columns={"user_id": "sent_to"}).merge(shared, on="mailbox")
    copies = copies[copies["user_id"] != copies["sent_to"]]
    return pd.concat(
        [history, copies.drop(columns=["sent_to", "mailbox"])[history.columns]], ignore_index=True
    )


def _targeting(targeting: pd.DataFrame | None, campaign_id: str) -> pd.DataFrame:
    """(user_id, passes_filter, boost) of one campaign; null filter = fails, boost >= 0.

    The campaign column may be called ``campaign_id`` or ``target`` (as in the
    ``user_targeting`` model, whose other target, 'scores', then matches no campaign).
    """
    if targeting is not None and "campaign_id" not in targeting and "target" in targeting:
        targeting = targeting.rename(columns={"target": "campaign_id"})
    if targeting is None or len(targeting) == 0:
        return pd.DataFrame(
            {
                "user_id": pd.Series(dtype=object),
                "passes_filter": pd.Series(dtype=bool),
                "boost": pd.Series(dtype=float),
            }
        )
    rows = targeting[targeting["campaign_id"].astype(str) == campaign_id]
    passes = rows["passes_filter"] if "passes_filter" in rows else True
    boost = rows["boost"] if "boost" in rows else 1.0
    out = pd.DataFrame(
        {
            "user_id": rows["user_id"].astype(str),
            "passes_filter": pd.Series(passes, index=rows.index).eq(True),
            "boost": pd.to_numeric(pd.Series(boost, index=rows.index), errors="coerce")
            .fillna(1.0)
            .clip(lower=0.0),
        }
    )
    return out.drop_duplicates("user_id")


SCORE_COLUMNS = ["user_id", "item_id", "rank", "score"]  # what score_rows returns


def score_rows(scores: pd.DataFrame) -> pd.DataFrame:
    """Scores with string ids, float score and rank, one row per (user, item) (the best
    one), sorted by user and item; a frame this returned (or rows of it) is taken as it is."""
    if scores is not None and scores.attrs.get(_SCORE_ROWS) and list(scores) == SCORE_COLUMNS:
        return scores
    if scores is None or len(scores) == 0:
        return pd.DataFrame(
            {
                "user_id": pd.Series(dtype=object),
                "item_id": pd.Series(dtype=object),
                "rank": pd.Series(dtype=float),
                "score": pd.Series(dtype=float),
            }
        )
    user_ids = text_ids(scores["user_id"]).to_numpy(object)
    item_ids = text_ids(scores["item_id"]).to_numpy(object)
    score = pd.to_numeric(scores["score"], errors="coerce").to_numpy(float)
    # sorted by user, item, best score first (nulls last); sorting integer codes of the
    # sorted distinct ids gives the order of the text at a fraction of the cost
    user_codes = pd.factorize(user_ids, sort=True)[0]
    item_codes = pd.factorize(item_ids, sort=True)[0]
    order = np.lexsort((np.where(np.isnan(score), np.inf, -score), item_codes, user_codes))
    user_codes, item_codes = user_codes[order], item_codes[order]
    first = np.r_[True, (user_codes[1:] != user_codes[:-1]) | (item_codes[1:] != item_codes[:-1])]
    keep = order[first]
    del user_codes, item_codes, order, first  # 20M rows at L: free before the copy below
    rank = (
        pd.to_numeric(scores["rank"], errors="coerce").to_numpy(float)[keep]
        if "rank" in scores
        else np.full(keep.size, np.nan)
    )
    # one copy of the kept rows, straight into the result (no intermediate frame)
    out = pd.DataFrame(
        {"user_id": user_ids[keep], "item_id": item_ids[keep], "rank": rank, "score": score[keep]}
    )
    out.attrs[_SCORE_ROWS] = True
    return out


# Marks a frame score_rows returned: the planner normalises the user -> item scores once
# and lets the raw rows go; the digest candidates then take them as they are.
_SCORE_ROWS = "proactive_recs.score_rows"


def _with_user_context(
    frame: pd.DataFrame, campaign: Campaign, users: pd.DataFrame, targeting: pd.DataFrame | None
) -> pd.DataFrame:
    """The rows with their user's ``passes_filter``, ``boost`` and user-level rejection
    reason (``user_reason``, None when the user may be sent to).

    Decided once per user (users and the campaign's targeting), then looked up per row: the
    score tables hold many rows per user."""
    per_user = users.merge(
        _targeting(targeting, campaign.campaign_id), on="user_id", how="outer", indicator="_user"
    )
    # No targeting row = passes with boost 1 (the brief's contract for missing rows).
    passes = ~per_user["passes_filter"].eq(False).to_numpy(bool)
    boost = pd.to_numeric(per_user["boost"]).fillna(1.0).to_numpy(float)
    known = per_user["_user"].isin(["both", "left_only"]).to_numpy(bool)
    # per channel when the users frame says so (plan_run's _users always does)
    per_channel = f"is_{campaign.channel}_eligible"
    eligible = per_user["is_eligible"].eq(True).to_numpy(bool)
    if per_channel in per_user:
        eligible &= per_user[per_channel].eq(True).to_numpy(bool)
    # Only e-mail needs an address in the users table; push tokens live in the push tool.
    email = per_user["email"]
    missing_email = (
        (email.isna() | email.astype(str).str.strip().eq("")).to_numpy(bool)
        if campaign.channel == "email"
        else np.zeros(len(per_user), bool)
    )
    # an account left out because its mailbox has several e-mail eligible accounts
    shared = (
        per_user["is_shared_mailbox"].eq(True).to_numpy(bool)
        if campaign.channel == "email" and "is_shared_mailbox" in per_user
        else np.zeros(len(per_user), bool)
    )
    reason = _first_reason(
        [~known, shared, ~eligible, missing_email, ~passes],
        ["unknown_user", "shared_mailbox", "suppressed", "no_email", "filtered_out"],
    )
    # a row whose user is in neither table (row -1: the last entry) is unknown, boost 1
    codes, distinct = pd.factorize(frame["user_id"])
    rows = pd.Index(per_user["user_id"]).get_indexer(distinct)[codes]
    # a new frame over the same columns (the score rows are not copied); the columns added
    # below are its own
    out = frame.copy(deep=False)
    out.index = pd.RangeIndex(len(out))
    out["passes_filter"] = np.append(passes, True)[rows]
    out["boost"] = np.append(boost, 1.0)[rows]
    out["user_reason"] = np.append(reason, np.array(["unknown_user"], dtype=object))[rows]
    return out


def _first_reason(conditions, reasons) -> np.ndarray:
    """Object array: the reason of the first true condition per row, else None."""
    out = np.full(len(conditions[0]) if conditions else 0, None, dtype=object)
    for condition, reason in zip(reversed(conditions), reversed(reasons), strict=True):
        out[np.asarray(condition, dtype=bool)] = reason
    return out


def _rejected(frame: pd.DataFrame, campaign: Campaign, reason) -> pd.DataFrame:
    out = pd.DataFrame(
        {
            "campaign_id": campaign.campaign_id,
            "channel": campaign.channel,
            "user_id": frame["user_id"].to_numpy(),
            "item_id": frame["item_id"].to_numpy() if "item_id" in frame else None,
            "score": frame["score"].to_numpy(float),
            "expected_value": frame["expected_value"].to_numpy(float),
            "reason": reason,
        },
        index=frame.index,
    )
    return out[REJECTED_COLUMNS]


def empty_frame(columns) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})


def item_push_candidates(
    campaign: Campaign,
    trigger_items: Sequence[str],
    item_user_scores: pd.DataFrame,
    users: pd.DataFrame,
    targeting: pd.DataFrame | None,
    recent_pairs: pd.DataFrame,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Candidate sends of one item push and the scored pairs it rejects.

    Every (trigger item, user) score row is a candidate or a rejection with the first
    reason that applies: unknown_user, shared_mailbox (e-mail), suppressed, no_email (e-mail),
    filtered_out, item_repeat, below_min_relevance (``score x boost < min_relevance``, or no score).
    ``users`` and ``recent_pairs`` as prepared by :func:`plan_run`.
    """
    if item_user_scores is None or len(item_user_scores) == 0:
        return empty_frame(CANDIDATE_COLUMNS), empty_frame(REJECTED_COLUMNS)
    # Keep the trigger items' rows before normalising: the table holds every item's top-K.
    scores = score_rows(
        item_user_scores[text_ids(item_user_scores["item_id"]).isin(set(map(str, trigger_items)))]
    )
    if scores.empty:
        return empty_frame(CANDIDATE_COLUMNS), empty_frame(REJECTED_COLUMNS)
    frame = _with_user_context(scores, campaign, users, targeting)
    repeat = _pairs_in(frame, recent_pairs)
    boosted = frame["score"] * frame["boost"]
    frame["expected_value"] = boosted * campaign.priority
    low = ~(boosted >= campaign.min_relevance).to_numpy()  # NaN scores fail too
    user_reason = frame["user_reason"].to_numpy(object)
    reason = pd.Series(
        _first_reason(
            [pd.notna(user_reason), repeat, low], [None, "item_repeat", "below_min_relevance"]
        ),
        index=frame.index,
        dtype=object,
    )
    reason[pd.notna(user_reason)] = user_reason[pd.notna(user_reason)]
    kept = frame[reason.isna()]
    candidates = pd.DataFrame(
        {
            "campaign_id": campaign.campaign_id,
            "campaign_type": campaign.campaign_type,
            "channel": campaign.channel,
            "user_id": kept["user_id"],
            "item_id": kept["item_id"],
            "score": kept["score"].astype(float),
            "boost": kept["boost"],
            "expected_value": kept["expected_value"].astype(float),
            "audience_size": campaign.audience_size,
            "campaign_cap": campaign.max_sends_per_user_week,
            "digest_pool": None,
        }
    )[CANDIDATE_COLUMNS]
    rejected = _rejected(frame[reason.notna()], campaign, reason[reason.notna()])
    return candidates.reset_index(drop=True), rejected.reset_index(drop=True)


def digest_candidates(
    campaign: Campaign,
    user_item_scores: pd.DataFrame,
    available_item_ids,
    users: pd.DataFrame,
    targeting: pd.DataFrame | None,
    recent_pairs: pd.DataFrame,
    pushable_item_ids=None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One candidate digest per scored user, and the users it rejects.

    A user's qualifying items: available at the run, not sent to them within the item
    repeat window, ``score x boost >= min_relevance``; best first (score, then the scorer's
    rank, then item id). ``digest_pool`` holds them as (item_id, score) so that items
    pushed to the same user in this run can be swapped out later; the score is computed on
    the first ``items_per_digest``. ``pushable_item_ids`` (the run's trigger items; None =
    any item) bounds the pool: only those can be pushed, so an item that comes after
    ``items_per_digest`` others can never reach the digest and is left out (at a million
    users full pools are tens of millions of Python tuples). A user gets one rejection row
    (item_id null): unknown_user, shared_mailbox, suppressed, no_email, filtered_out, then
    no_available_items (no scored item is available), item_repeat (all available ones were
    sent recently), below_min_relevance.
    """
    scores = score_rows(user_item_scores)
    if scores.empty:
        return empty_frame(CANDIDATE_COLUMNS), empty_frame(REJECTED_COLUMNS)
    frame = _with_user_context(scores, campaign, users, targeting)
    # Row-level flags and per-user aggregates as arrays over the rows sorted by user, best
    # first: at a million users the table has 20M rows, and pandas' groupby over text ids
    # plus a sorted copy of the whole frame took most of notification_plan's memory.
    available = frame["item_id"].isin(set(available_item_ids)).to_numpy(bool)
    fresh = available & ~_pairs_in(frame, recent_pairs)
    score, rank = frame["score"].to_numpy(float), frame["rank"].to_numpy(float)
    boost = frame["boost"].to_numpy(float)
    with np.errstate(invalid="ignore"):
        qualifies = fresh & ((score * boost) >= campaign.min_relevance)  # NaN fails
    # by user, then best first: score (descending), the scorer's rank, item id; nulls last.
    # score_rows' rows are sorted by user, then item: the users' codes are their runs, and
    # a stable sort on (user, score, rank) leaves ties in item order.
    user_codes, user_ids = _runs(frame["user_id"].to_numpy(object))
    order = np.lexsort(
        (
            np.where(np.isnan(rank), np.inf, rank),
            np.where(np.isnan(score), np.inf, -score),
            user_codes,
        )
    )
    group = user_codes[order]  # every code occurs: groups 0..n-1 in order
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    first_rows = order[starts]
    per_user = pd.DataFrame(
        {
            # per-user values, the same on each of the user's rows
            "user_reason": frame["user_reason"].to_numpy(object)[first_rows],
            "boost": boost[first_rows],
            "any_available": np.logical_or.reduceat(available[order], starts),
            "any_fresh": np.logical_or.reduceat(fresh[order], starts),
            "any_qualifies": np.logical_or.reduceat(qualifies[order], starts),
        },
        index=pd.Index(np.asarray(user_ids, dtype=object), name="user_id"),
    )
    # the qualifying rows (the pool), still by user and best first
    pool_rows = order[qualifies[order]]
    pool_group = group[qualifies[order]]
    place = _place_in_group(pool_group, np.ones(pool_rows.size, dtype=np.int64))
    top = place < campaign.items_per_digest
    # P(at least one of the digest's items is wanted), from its first items_per_digest
    miss = np.ones(len(per_user))
    np.multiply.at(miss, pool_group[top], 1.0 - np.clip(score[pool_rows[top]], 0.0, 1.0))
    if pushable_item_ids is not None:
        other = ~pd.Index(frame["item_id"].to_numpy(object)[pool_rows]).isin(set(pushable_item_ids))
        keep = _place_in_group(pool_group, other.astype(np.int64)) < campaign.items_per_digest
        pool_rows = pool_rows[keep]
    pool = frame.iloc[pool_rows][["user_id", "item_id", "score"]]
    per_user["score"] = np.where(per_user["any_qualifies"].to_numpy(), 1.0 - miss, np.nan)
    per_user["expected_value"] = per_user["score"] * per_user["boost"] * campaign.priority
    user_reason = per_user["user_reason"].to_numpy(object)
    reason = _first_reason(
        [~per_user["any_available"], ~per_user["any_fresh"], ~per_user["any_qualifies"]],
        ["no_available_items", "item_repeat", "below_min_relevance"],
    )
    reason[pd.notna(user_reason)] = user_reason[pd.notna(user_reason)]
    per_user["reason"] = pd.Series(reason, index=per_user.index, dtype=object)
    per_user = per_user.reset_index()
    kept = per_user[per_user["reason"].isna()]
    candidates = pd.DataFrame(
        {
            "campaign_id": campaign.campaign_id,
            "campaign_type": campaign.campaign_type,
            "channel": campaign.channel,
            "user_id": kept["user_id"],
            "item_id": None,
            "score": kept["score"].astype(float),
            "boost": kept["boost"].astype(float),
            "expected_value": kept["expected_value"].astype(float),
            "audience_size": None,
            "campaign_cap": campaign.max_sends_per_user_week,
            "digest_pool": _pools(
                pool[pool["user_id"].isin(set(kept["user_id"]))], kept["user_id"]
            ),
        }
    )[CANDIDATE_COLUMNS]
    dropped = per_user[per_user["reason"].notna()].assign(item_id=None)
    rejected = _rejected(dropped, campaign, dropped["reason"])
    return candidates.reset_index(drop=True), rejected.reset_index(drop=True)


def _runs(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codes and distinct values of sorted ``values``: what ``pd.factorize(values,
    sort=True)`` gives, from where the value changes (no hashing of every row)."""
    if values.size == 0:
        return np.zeros(0, dtype=np.intp), values[:0]
    starts = np.r_[True, values[1:] != values[:-1]]
    return np.cumsum(starts) - 1, values[starts]


def _pairs_in(frame: pd.DataFrame, pairs: pd.DataFrame) -> np.ndarray:
    """Per row of ``frame``: is its (user_id, item_id) one of ``pairs``? Compared as integer
    codes of the frame's ids (a MultiIndex's ``isin`` builds a Python tuple per row: GBs at
    the 20M score rows of a million users)."""
    if len(frame) == 0 or len(pairs) == 0:
        return np.zeros(len(frame), dtype=bool)
    user_codes, user_ids = pd.factorize(frame["user_id"])
    item_codes, item_ids = pd.factorize(frame["item_id"])
    pair_users = pd.Index(user_ids).get_indexer(pairs["user_id"])
    pair_items = pd.Index(item_ids).get_indexer(pairs["item_id"])
    known = (pair_users >= 0) & (pair_items >= 0)  # a pair with an id the frame lacks: no row
    width = np.int64(max(len(item_ids), 1))
    keys = user_codes.astype(np.int64) * width + item_codes
    return np.isin(keys, pair_users[known].astype(np.int64) * width + pair_items[known])


def _place_in_group(group: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Per row, the sum of ``weight`` over the earlier rows of its group (rows sorted by
    ``group``): with weights of one, the row's 0-based place within its group."""
    if group.size == 0:
        return np.zeros(0, dtype=np.int64)
    total = np.cumsum(weight)
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    before_group = (total - weight)[starts]
    return total - weight - np.repeat(before_group, np.diff(np.r_[starts, group.size]))


def _pools(pool: pd.DataFrame, user_ids) -> list[list[tuple[str, float]]]:
    """Each user's (item_id, score) list from ``pool`` (sorted by user, best item first)."""
    users = pool["user_id"].to_numpy()
    item_ids = pool["item_id"].tolist()
    scores = pool["score"].astype(float).tolist()
    cuts = np.flatnonzero(users[1:] != users[:-1]) + 1 if len(users) else np.array([], int)
    starts, ends = np.r_[0, cuts], np.r_[cuts, len(users)]
    by_user = {
        users[a]: list(zip(item_ids[a:b], scores[a:b], strict=True))
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True)
        if b > a
    }
    return [by_user[u] for u in user_ids]


def build_candidates(
    campaigns: Sequence[Campaign],
    trigger_items: Mapping[str, Sequence[str]],
    users: pd.DataFrame,
    targeting: pd.DataFrame | None,
    available_item_ids,
    item_user_scores: pd.DataFrame,
    user_item_scores: pd.DataFrame,
    recent_pairs: pd.DataFrame,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Candidates and rejections of all campaigns, concatenated in campaign order."""
    candidates, rejected = [empty_frame(CANDIDATE_COLUMNS)], [empty_frame(REJECTED_COLUMNS)]
    for campaign in campaigns:
        if campaign.campaign_type == "item_push":
            kept, dropped = item_push_candidates(
                campaign,
                trigger_items.get(campaign.campaign_id, []),
                item_user_scores,
                users,
                targeting,
                recent_pairs,
            )
        else:
            kept, dropped = digest_candidates(
                campaign,
                user_item_scores,
                available_item_ids,
                users,
                targeting,
                recent_pairs,
                pushable_item_ids={item for ids in trigger_items.values() for item in ids},
            )
        candidates.append(kept)
        rejected.append(dropped)
    return concat_frames(candidates), concat_frames(rejected)


def concat_frames(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate, leaving empty frames out (they would blur the column dtypes)."""
    nonempty = [f for f in frames if len(f)] or frames[:1]
    return pd.concat(nonempty, ignore_index=True)
