"""Stage selection: per direction, serve the second stage only where it beats plain MF.

The second stage learns "who newly interacts within the horizon" from past windows. Where
time carries that signal it wins by a wide margin; where it does not (timestamps that say
little, a shop whose past windows do not look like the next one) it can lose badly to its
own first stage. So a fit that trains the second stage also replays itself one horizon
back and lets the data decide, for each direction separately:

1. the last ``horizon_days`` before the run are the validation window (the same one MF
   tuning uses, :func:`~proactive_recs.recommender.tuning.validation_window`);
2. a recommender with the same settings and the tuned MF hyper-parameters as of the
   window's start, on the interactions before it (second stage included, trained on
   windows before that). The fit being selected for already holds one: the snapshot of
   its last training window is MF fitted on exactly those interactions, and its ranker's
   tree-count probe is the booster trained on the windows before it (one window fewer
   than a fit there would use). So that fit is assembled from them
   (``Recommender._replay``; ``selection_replay`` in ``model_parameters`` says which) and
   only fitted anew when they are missing (no probe: tree selection off or a window
   without positives);
3. both of its warm lists, the second stage's and plain MF's (same masks, same exclusions),
   are scored on the window's new pairs with the objective of each direction
   (user -> item ndcg@10, item -> user recall@100); the second stage's lists are scored
   at every tree count its ranker offers (``PropensityRanker.tree_counts_``: the count
   chosen by log-loss and the fractions of ``TREE_GRID``), and each direction keeps the
   count with the best objective (the fewest trees on a tie): the log-loss count is one
   proxy for both directions, while ranking an item's users across the whole user base and
   ranking a user's items are different questions (on Online Retail a user's items were
   ranked best with every tree, an item's users with a fifth of them);
4. plain MF serves a direction only when it scores higher there by more than noise: its
   mean gain over the window's queries must exceed ``MARGIN_IN_STANDARD_ERRORS`` standard
   errors of that paired difference (the second stage is what was designed to serve, and
   a coin-flip difference on one window is no reason to drop it); its scores are then
   turned into probabilities by a logistic map fitted on that window (hit or not, against
   the MF score, over the listed pairs), so the planner's ``min_relevance`` and expected
   values keep their meaning whichever stage serves.

The decision and the validation figures are part of the fit (``model_parameters``) and of
the stages a weekly run stores, so daily runs serve what the weekly run chose.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from proactive_recs.evaluation import metrics

__all__ = [
    "MARGIN_IN_STANDARD_ERRORS",
    "DirectionChoice",
    "best_tree_count",
    "StageSelection",
    "UserQueryScores",
    "fit_probability_map",
    "list_hits",
    "listed_pairs",
    "paired_gain",
    "remap_lists",
]

DIRECTIONS = ("user_to_item", "item_to_user")
# How much better plain MF must do on the validation window, in standard errors of the
# paired per-query difference, before it replaces the second stage (about one-sided 97.5 %).
MARGIN_IN_STANDARD_ERRORS = 2.0


@dataclass(frozen=True)
class DirectionChoice:
    """What serves one direction.

    source : 'two_stage' or 'mf'
    mf_map : (slope, intercept) of the logistic map from the MF score to a probability,
        when ``source`` is 'mf'
    validation : objective per source on the validation window (empty when not compared);
        'two_stage' is the figure at the tree count chosen, 'two_stage_<n>_trees' the
        figure at each count tried
    reason : why, in words
    n_trees : the second stage's tree count for this direction, one of the served ranker's
        ``tree_counts_``; None = the ranker's default count (``n_trees_``, chosen by
        log-loss in its own fit)
    """

    source: str = "two_stage"
    mf_map: tuple[float, float] | None = None
    validation: dict = field(default_factory=dict)
    reason: str = "second stage (not compared)"
    n_trees: int | None = None

    def probability(self, mf_scores: np.ndarray) -> np.ndarray:
        """The MF scores as probabilities through ``mf_map``."""
        slope, intercept = self.mf_map
        z = slope * np.asarray(mf_scores, dtype=np.float64) + intercept
        return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)


@dataclass(frozen=True)
class StageSelection:
    """The choice for both directions (default: the second stage everywhere); ``replay``
    says how the fit one horizon back was made (empty when nothing was compared)."""

    user_to_item: DirectionChoice = field(default_factory=DirectionChoice)
    item_to_user: DirectionChoice = field(default_factory=DirectionChoice)
    replay: str = ""

    def sources(self) -> set[str]:
        return {self.user_to_item.source, self.item_to_user.source}

    def as_params(self) -> dict:
        """Flat entries for ``model_parameters``."""
        out = {}
        for direction in DIRECTIONS:
            choice = getattr(self, direction)
            out[f"served_{direction}"] = choice.source
            out[f"served_{direction}_reason"] = choice.reason
            out[f"served_{direction}_trees"] = (
                "default" if choice.n_trees is None else int(choice.n_trees)
            )
            for source, value in choice.validation.items():
                out[f"selection_{direction}_{source}"] = round(float(value), 6)
        if self.replay:
            out["selection_replay"] = self.replay
        return out


def remap_lists(
    lists: np.ndarray,
    owner_ids: pd.Index,
    member_ids: pd.Index,
    to_owner_ids: pd.Index,
    to_member_ids: pd.Index,
) -> np.ndarray:
    """Index lists (owners x k, -1 = empty) re-expressed over other id indexes: rows of
    owners absent from ``owner_ids`` are empty, members absent from ``to_member_ids`` are
    misses (-1)."""
    out = np.full((len(to_owner_ids), lists.shape[1]), -1, dtype=np.int64)
    rows = owner_ids.get_indexer(to_owner_ids)
    present = rows >= 0
    out[present] = _members_over(lists[rows[present]], to_member_ids.get_indexer(member_ids))
    return out


def _members_over(lists: np.ndarray, member_map: np.ndarray) -> np.ndarray:
    """``lists``' members through ``member_map`` (old index -> new, -1 = absent); empty
    slots stay -1."""
    return np.where(lists >= 0, member_map[np.maximum(lists, 0)], -1)


class UserQueryScores:
    """The user -> item objective per validation query, from lists handed over a block of
    users at a time (``Recommender._ranker_lists_at``'s ``user_lists_to``), at each tree
    count: the lists themselves are never all held (at 1M users, 1.3 GB for seven counts).

    ``user_ids`` / ``item_ids``: the index of the lists (the replayed fit's snapshot);
    ``queried``: the mask of its users that are queries of ``window`` (whose lists to
    hand over); :meth:`at`: ndcg per user query in the window's order, what
    ``window.per_query`` gives for the whole lists (a query whose list never came, a user
    the fit does not know or one without a candidate, scores as an empty list)."""

    def __init__(self, window, user_ids: pd.Index, item_ids: pd.Index):
        self.window = window
        base = window.base
        n_queries = int(window.users_q.sum())
        query_of_base = np.full(len(base.user_ids), -1, dtype=np.int64)
        query_of_base[window.users_q] = np.arange(n_queries)
        rows = base.user_ids.get_indexer(user_ids)
        self.query_of_user = np.where(rows >= 0, query_of_base[np.maximum(rows, 0)], -1)
        self.queried = self.query_of_user >= 0
        self.item_in_base = base.item_ids.get_indexer(item_ids)
        self._empty = window.user_query_ndcg(
            np.full((n_queries, 1), -1, dtype=np.int64), np.arange(n_queries)
        )
        self._at: dict = {}

    def add(self, count, users: np.ndarray, lists: np.ndarray) -> None:
        """Score the lists of ``users`` (snapshot indices, queries only) at ``count``."""
        per_query = self._at.setdefault(count, self._empty.copy())
        queries = self.query_of_user[users]
        per_query[queries] = self.window.user_query_ndcg(
            _members_over(lists, self.item_in_base), queries
        )

    def at(self, count) -> np.ndarray:
        """ndcg per user query of the lists at ``count``."""
        return self._at.get(count, self._empty)


def listed_pairs(lists: np.ndarray, by_user: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The filled slots of index lists (owners x k, -1 = empty) as (filled mask, user
    indices, item indices), in row-major slot order; owners are users when ``by_user``."""
    owners = np.broadcast_to(np.arange(lists.shape[0])[:, None], lists.shape)
    filled = lists >= 0
    owner, member = owners[filled], lists[filled]
    return (filled, owner, member) if by_user else (filled, member, owner)


def list_hits(
    lists: np.ndarray,
    owner_ids: pd.Index,
    member_ids: pd.Index,
    truth_owner_ids: pd.Index,
    truth_member_ids: pd.Index,
    truth,
) -> np.ndarray:
    """Whether each listed pair (lists over ``owner_ids`` x ``member_ids``) is a pair of
    ``truth`` (a sparse matrix over the other indexes); False for empty slots and for
    owners or members ``truth`` does not know."""
    remapped = remap_lists(lists, owner_ids, member_ids, truth_owner_ids, truth_member_ids)
    hits_there = metrics.hits_matrix(remapped, truth) & (remapped >= 0)
    rows = truth_owner_ids.get_indexer(owner_ids)
    out = np.zeros(lists.shape, dtype=bool)
    out[rows >= 0] = hits_there[rows[rows >= 0]]
    return out


def best_tree_count(per_query_by_count: dict, default: int) -> tuple[int | None, float]:
    """The tree count whose per-query objective has the highest mean (the fewest trees on
    a tie), as a :attr:`DirectionChoice.n_trees` (None when it is ``default``, the
    ranker's own count, so that a later fit uses its own), and that mean."""
    means = {count: float(np.mean(q)) for count, q in sorted(per_query_by_count.items())}
    best = max(means, key=lambda count: (means[count], -count))
    return (None if best == default else best), means[best]


def paired_gain(candidate: np.ndarray, incumbent: np.ndarray) -> tuple[float, float]:
    """Mean per-query gain of ``candidate`` over ``incumbent`` and its standard error
    (queries are the same for both; NaN queries, without a relevant target, left out)."""
    diff = np.asarray(candidate, dtype=np.float64) - np.asarray(incumbent, dtype=np.float64)
    diff = diff[~np.isnan(diff)]
    if diff.size < 2:
        return 0.0, float("inf")
    return float(diff.mean()), float(diff.std(ddof=1) / np.sqrt(diff.size))


def fit_probability_map(scores: np.ndarray, hits: np.ndarray) -> tuple[float, float] | None:
    """(slope, intercept) of P(hit | score), a one-feature logistic regression; None when the
    window has no hit or no miss, or when the fitted slope is not positive (a map that
    would reverse the ranking it is meant to express as probabilities)."""
    from sklearn.linear_model import LogisticRegression

    scores = np.asarray(scores, dtype=np.float64)
    hits = np.asarray(hits, dtype=bool)
    if scores.size == 0 or hits.all() or not hits.any():
        return None
    model = LogisticRegression(C=1e6).fit(scores[:, None], hits)
    slope, intercept = float(model.coef_[0, 0]), float(model.intercept_[0])
    if not slope > 0:
        return None
    return slope, intercept
