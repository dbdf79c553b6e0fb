"""The single entry point the dbt Python models call: :func:`score`.

``score(interactions, users, items, run_date, params)`` returns the served product:

* ``user_item_scores`` — top ``k_items`` items per servable user;
* ``item_user_scores`` — top ``k_users`` users per servable item;
* the MF user / item factors, and the parameters actually used.

What serves (``ScoreResult.stage``):

``two_stage`` (default)
    MF candidates + :class:`~proactive_recs.estimators.ranker.PropensityRanker` trained on past
    windows; the score is the probability that the user newly interacts with the item
    within ``horizon_days``, times the boosts.
``mf``
    Plain MF dot products (``second_stage`` off, or not enough labelled history to
    train the ranker), boosted with the sign-aware rule of :mod:`proactive_recs.estimators.topk`.
``popularity``
    Too little data to factorise (fewer than ``min_interactions`` rows, or no more
    users / items than ``factors``): items by number of distinct buyers (last horizon
    first), users by number of distinct items, weighted by their taste for the item's
    category when it has one. A warning is logged and every row has ``is_fallback``
    True.

Within ``two_stage`` / ``mf``, a servable user without any interaction before
``run_date`` gets the popularity list (``is_fallback`` True). A servable item without
any interaction (a brand-new item) gets a day-0 audience from its attributes
(:mod:`proactive_recs.estimators.coldstart`: factors predicted from title words, category, price
band and other attributes; a day-0 ranker trained on the items that were new at past
windows turns them into probabilities; ``basis`` 'attributes'). Without enough past
new items to train that ranker it gets the category-weighted heavy-users list
(``is_fallback`` True, ``basis`` 'heuristic'). An item with neither interactions nor a
usable attribute gets no audience and is listed in ``unscored_items`` with its reason.
Items going on sale within ``prelaunch_days`` after ``run_date`` get the same day-0
audiences in ``prelaunch_item_user_scores`` (never in the sendable item_user_scores).

The two-stage probabilities are calibrated: the ranker is trained on the older past
windows and a logistic map of its log-odds is fitted on the last window before
``run_date`` (see :class:`~proactive_recs.estimators.ranker.PropensityRanker`).

Business rules, applied in every stage: a user is servable when ``is_eligible`` and
``passes_filter``; an item when ``passes_filter`` and ``available_from <= run_date <
available_until`` (null bounds are open). Pairs the user already interacted with are
excluded unless ``allow_repeats``. ``user boost x item boost`` multiplies the score
before the top-K cut, so K rows come back whenever K candidates pass.
"""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.base import BaseEstimator

from proactive_recs.data.availability import available_at, upcoming_within
from proactive_recs.data.instants import utc_instant, utc_naive
from proactive_recs.data.interactions import (
    build_interaction_matrix,
    interactions_before,
    normalise_interactions,
)
from proactive_recs.estimators.coldstart import (
    ColdItemRanker,
    cold_candidates,
    cold_pair_features,
    describe_cold_items,
    fit_attribute_model,
)
from proactive_recs.estimators.ranker import (
    PropensityRanker,
    build_snapshot,
    candidate_pairs,
    explain_pairs,
    pair_feature_matrix,
    training_frame,
)
from proactive_recs.estimators.threads import openmp_threads, single_threaded_blas
from proactive_recs.estimators.topk import (
    apply_boost,
    empty_topk,
    merge_topk,
    owner_blocks,
    topk_both,
    topk_pairs,
)
from proactive_recs.evaluation import metrics
from proactive_recs.memory import return_freed_memory
from proactive_recs.recommender import stages as stages_io
from proactive_recs.recommender import tuning
from proactive_recs.recommender.categories import CategoryChoice, choose_category_blend
from proactive_recs.recommender.config import RecommenderConfig
from proactive_recs.recommender.selection import (
    MARGIN_IN_STANDARD_ERRORS,
    DirectionChoice,
    StageSelection,
    UserQueryScores,
    best_tree_count,
    fit_probability_map,
    list_hits,
    listed_pairs,
    paired_gain,
    remap_lists,
)
from proactive_recs.recommender.stages import TrainedStages, usable_stages

__all__ = [
    "DEFAULT_PARAMS",
    "Recommender",
    "ScoreResult",
    "resolve_params",
    "score",
]

log = logging.getLogger(__name__)

# Every setting and its default: proactive_recs.recommender.config.RecommenderConfig (the one
# home of the defaults); this plain dict is how the library reads them.
DEFAULT_PARAMS: dict = RecommenderConfig().as_dict()


@dataclass
class ScoreResult:
    """Frames returned by :func:`score`.

    user_item_scores : user_id, item_id, rank (1 = best), score, is_fallback
    item_user_scores : item_id, user_id, rank, score, is_fallback
    user_factors : user_id, factor_00, factor_01, ... (users with an MF factor), then
        is_servable and boost: whether the run may recommend to the user and its boost (what
        a scorer outside the library, e.g. the partitioned top-K on Snowflake, needs)
    item_factors : item_id, factor_00, ..., is_servable, boost (the same for items)
    params : parameter, value (str) — every parameter used, after tuning
    stage : 'two_stage', 'mf' or 'popularity'
    prelaunch_item_user_scores : same columns as item_user_scores, for items that go on
        sale within ``prelaunch_days`` after run_date (not sendable yet: who to tell)
    unscored_items : item_id, reason — servable or upcoming items that got no audience
        because nothing is known about them (no interaction, no usable attribute)

    user_item_scores also has ``because_item_id``: the item of the user's history that
    contributes most to the recommendation (co-purchase), null when none does.
    item_user_scores / prelaunch rows have ``basis``: 'history' (the item's own
    interactions), 'attributes' (day-0 model) or 'heuristic' (popularity fallbacks).
    """

    user_item_scores: pd.DataFrame
    item_user_scores: pd.DataFrame
    user_factors: pd.DataFrame
    item_factors: pd.DataFrame
    params: pd.DataFrame
    stage: str
    diagnostics: dict = field(default_factory=dict)
    prelaunch_item_user_scores: pd.DataFrame = field(default_factory=pd.DataFrame)
    unscored_items: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame({"item_id": [], "reason": []}, dtype=object)
    )


def resolve_params(params: dict | None) -> dict:
    """Defaults overlaid with ``params``, checked (:meth:`RecommenderConfig.from_dict`: an
    unknown key raises naming it and the known keys; text is coerced to the field's type)."""
    return RecommenderConfig.from_dict(params).as_dict()


# ------------------------------------------------------------------- input hygiene


def _bool_column(frame: pd.DataFrame, name: str) -> np.ndarray:
    if name not in frame:
        return np.ones(len(frame), dtype=bool)
    return frame[name].fillna(False).astype(bool).to_numpy()


def _boost_column(frame: pd.DataFrame) -> np.ndarray:
    if "boost" not in frame:
        return np.ones(len(frame), dtype=np.float32)
    boost = pd.to_numeric(frame["boost"], errors="coerce").fillna(1.0).to_numpy(np.float32)
    return np.clip(boost, 0.0, None)


@dataclass(frozen=True)
class _Universe:
    """Ids that may be served and their boosts, keyed by id."""

    user_ids: pd.Index  # every user known to the run
    user_servable: np.ndarray
    user_boost: np.ndarray
    item_ids: pd.Index
    item_servable: np.ndarray
    item_boost: np.ndarray
    items: pd.DataFrame | None  # normalised items frame (for features)
    item_upcoming: np.ndarray  # passes the filter, on sale within prelaunch_days


def _canonical(frame: pd.DataFrame, key: str) -> pd.DataFrame:
    """One row per ``key`` (as text), sorted by it, whatever the frame's row order.

    Everything downstream indexes users and items by position (top-K ties go to the lower
    position, day-0 examples are sampled in item order), so the universe must not follow
    the order in which the warehouse happened to return the rows: a SQL engine gives no
    order without an ``order by``, and two builds of the same data return different ones.
    Among rows of one id the kept one is chosen by content (the smallest row as text), not
    by position."""
    frame = frame.assign(**{key: frame[key].astype(str)})
    if frame[key].is_unique:
        return frame.sort_values(key, kind="mergesort").reset_index(drop=True)
    text = frame.astype(str).agg("\x1f".join, axis=1)
    order = np.lexsort((text.to_numpy(), frame[key].to_numpy()))
    return frame.iloc[order].drop_duplicates(key).reset_index(drop=True)


def _universe(interactions, users, items, run_date, prelaunch_days=0.0) -> _Universe:
    if users is not None and len(users):
        users = _canonical(users, "user_id")
        user_ids = pd.Index(users["user_id"])
        servable = _bool_column(users, "is_eligible") & _bool_column(users, "passes_filter")
        user_boost = _boost_column(users)
    else:
        user_ids = pd.Index(np.sort(interactions["user_id"].unique()))
        servable = np.ones(len(user_ids), dtype=bool)
        user_boost = np.ones(len(user_ids), dtype=np.float32)
    items_norm = None
    if items is not None and len(items):
        items_norm = _canonical(items, "item_id")
        item_ids = pd.Index(items_norm["item_id"])
        passes = _bool_column(items_norm, "passes_filter")
        for column in ("available_from", "available_until"):
            if column in items_norm:
                items_norm[column] = utc_naive(items_norm[column])
        ok = passes & available_at(items_norm, run_date)
        upcoming = passes & upcoming_within(items_norm, run_date, prelaunch_days)
        item_boost = _boost_column(items_norm)
    else:
        item_ids = pd.Index(np.sort(interactions["item_id"].unique()))
        ok = np.ones(len(item_ids), dtype=bool)
        upcoming = np.zeros(len(item_ids), dtype=bool)
        item_boost = np.ones(len(item_ids), dtype=np.float32)
    return _Universe(user_ids, servable, user_boost, item_ids, ok, item_boost, items_norm, upcoming)


# ------------------------------------------------------------------------ scoring


def _frame(owner_ids, member_ids, lists, scores, fallback, owner_col, member_col):
    n_owner, k = lists.shape
    owner = np.repeat(np.arange(n_owner), k)
    member = lists.ravel()
    ok = member >= 0
    return pd.DataFrame(
        {
            owner_col: np.asarray(owner_ids, dtype=object)[owner[ok]],
            member_col: np.asarray(member_ids, dtype=object)[member[ok]],
            "rank": np.tile(np.arange(1, k + 1), n_owner)[ok].astype(np.int64),
            "score": scores.ravel()[ok].astype(np.float64),
            "is_fallback": np.repeat(np.asarray(fallback, dtype=bool), k)[ok],
        }
    )


def _factor_frame(ids, factors, id_col, servable, boost):
    cols = {id_col: np.asarray(ids, dtype=object)}
    for f in range(factors.shape[1]):
        cols[f"factor_{f:02d}"] = factors[:, f].astype(np.float64)
    cols["is_servable"] = np.asarray(servable, dtype=bool)
    cols["boost"] = np.asarray(boost, dtype=np.float64)
    return pd.DataFrame(cols)


def _seen_over(interactions, user_ids, item_ids) -> sp.csr_matrix:
    return build_interaction_matrix(interactions, None, user_ids=user_ids, item_ids=item_ids).seen


_MAX_AFFINITY_CELLS = 50_000_000  # users x categories above which category affinity is skipped


def _popularity_lists(
    interactions, universe: _Universe, settings, run_date, users_sel, items_sel, exclude
):
    """Heuristic lists for users and items the model cannot score.

    Users get the most popular items: distinct buyers over the last ``horizon_days``,
    all-time distinct buyers breaking ties (so tiny or stale data still ranks). Items get
    the most active users (distinct items bought), and when the item has a category,
    users weighted by the share of their history in that category first: a day-0
    audience for a brand-new item is the active buyers of its category. Boosts,
    masks and exclusions apply as everywhere. ``exclude``, when given, is the fit's
    ``_seen_over`` of the universe, the very matrix needed here (built once: ~10 s at L).
    """
    seen = (
        exclude
        if exclude is not None
        else _seen_over(interactions, universe.user_ids, universe.item_ids)
    )
    recent_rows = interactions[
        interactions["occurred_at"] >= run_date - pd.Timedelta(days=float(settings["horizon_days"]))
    ]
    recent = _seen_over(recent_rows, universe.user_ids, universe.item_ids)
    item_pop = np.asarray(recent.sum(axis=0)).ravel() + 1e-3 * np.asarray(seen.sum(axis=0)).ravel()
    user_act = np.asarray(seen.sum(axis=1)).ravel().astype(np.float32)
    n_u, n_i = len(universe.user_ids), len(universe.item_ids)
    by_pop = topk_both(
        np.ones((n_u, 1)),
        item_pop[:, None],
        k_items=settings["k_items"],
        k_users=0,
        exclude=exclude,
        user_mask=universe.user_servable & users_sel,
        item_mask=universe.item_servable,
        user_boost=universe.user_boost,
        item_boost=universe.item_boost,
        block_size=settings["block_size"],
    )
    user_vecs, item_vecs = user_act[:, None], np.ones((n_i, 1), np.float32)
    category = None
    if universe.items is not None and "category" in universe.items:
        category = pd.factorize(
            universe.items.set_index("item_id")["category"].reindex(universe.item_ids)
        )[0]
    if category is not None and (category >= 0).any():
        n_cat = int(category.max()) + 1
        if n_u * n_cat <= _MAX_AFFINITY_CELLS:
            has = category >= 0
            onehot = sp.csr_matrix(
                (np.ones(int(has.sum()), np.float32), (np.flatnonzero(has), category[has])),
                shape=(n_i, n_cat),
            )
            per_cat = np.asarray((seen @ onehot).todense(), dtype=np.float32)
            share = per_cat / np.maximum(per_cat.sum(axis=1, keepdims=True), 1.0)
            # score(u, i) = activity(u) * (share of u's history in cat(i) + 0.05); items
            # without a category: activity(u) alone.
            user_vecs = np.hstack([user_act[:, None] * share, 0.05 * user_act[:, None]])
            item_vecs = np.zeros((n_i, n_cat + 1), np.float32)
            item_vecs[np.flatnonzero(has), category[has]] = 1.0
            item_vecs[:, -1] = np.where(has, 1.0, 20.0)
    by_act = topk_both(
        user_vecs,
        item_vecs,
        k_items=0,
        k_users=settings["k_users"],
        exclude=exclude,
        user_mask=universe.user_servable,
        item_mask=universe.item_servable & items_sel,
        user_boost=universe.user_boost,
        item_boost=universe.item_boost,
        block_size=settings["block_size"],
    )
    return by_pop, by_act


def _params_frame(settings: dict) -> pd.DataFrame:
    return pd.DataFrame(
        {"parameter": list(settings.keys()), "value": [str(v) for v in settings.values()]}
    )


def score(
    interactions: pd.DataFrame | None,
    users: pd.DataFrame | None = None,
    items: pd.DataFrame | None = None,
    run_date=None,
    params: dict | None = None,
) -> ScoreResult:
    """Score users x items as of ``run_date`` and return the served top-K frames: a
    :class:`Recommender` fitted as of ``run_date``, then asked for its lists.

    Parameters
    ----------
    interactions : user_id, item_id, occurred_at (UTC naive), event_type, event_weight,
        quantity. Rows at or after ``run_date`` are ignored.
    users : user_id, is_eligible, passes_filter, boost (all optional but user_id). None:
        every user of the interactions, eligible, boost 1.
    items : item_id, category, price, available_from, available_until, passes_filter,
        boost. None: every item of the interactions, always available, boost 1.
    run_date : timestamp; default: midnight after the last interaction.
    params : overrides of :data:`DEFAULT_PARAMS`.

    Never raises on thin or empty data: it falls back to popularity (see module doc).
    """
    return Recommender(params).fit(interactions, users, items, as_of=run_date).recommend()


def _popularity_result(frame, universe, settings, exclude_all, run_date) -> ScoreResult:
    everyone_u = np.ones(len(universe.user_ids), dtype=bool)
    everyone_i = np.ones(len(universe.item_ids), dtype=bool)
    by_pop, by_act = _popularity_lists(
        frame, universe, settings, run_date, everyone_u, everyone_i, exclude_all
    )
    ui = _frame(
        universe.user_ids,
        universe.item_ids,
        by_pop.user_items,
        by_pop.user_item_scores,
        everyone_u,
        "user_id",
        "item_id",
    )
    iu = _frame(
        universe.item_ids,
        universe.user_ids,
        by_act.item_users,
        by_act.item_user_scores,
        everyone_i,
        "item_id",
        "user_id",
    ).assign(basis="heuristic")
    return ScoreResult(
        user_item_scores=ui,
        item_user_scores=iu,
        user_factors=pd.DataFrame({"user_id": pd.Series(dtype=object)}),
        item_factors=pd.DataFrame({"item_id": pd.Series(dtype=object)}),
        params=_params_frame(settings),
        stage="popularity",
    )


@contextmanager
def _model_threads(settings: dict):
    """BLAS stays single-threaded (its thread count changes implicit's factors and is
    process-wide); OpenMP threads are per calling thread (proactive_recs.estimators.threads)."""
    threads = int(settings["num_threads"]) or None
    with warnings.catch_warnings(), single_threaded_blas(), openmp_threads(threads):
        # implicit warns about BLAS threads even though fit limits them itself.
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


class Recommender(BaseEstimator):
    """The served recommender as an estimator: ``fit`` once as of a date, then ``recommend``.

    ``fit`` resolves the parameters, tunes MF on the last horizon before ``as_of``, builds
    the as-of snapshot (MF factors, similarity, activity) and trains the second stage and
    the day-0 ranker on past windows; ``recommend`` scores the candidates and returns the
    served frames (:class:`ScoreResult`). :func:`score` is the two in one call.

    Parameters
    ----------
    params : dict or None
        Overrides of :data:`DEFAULT_PARAMS` (unknown keys raise, text is coerced).

    Attributes (after ``fit``)
    --------------------------
    params_ : dict, the resolved parameters; params_used_ : the same after tuning (the MF
        keys replaced by ``mf_params_``), what ``model_parameters`` shows
    as_of_ : pd.Timestamp, naive UTC
    stage_ : 'two_stage', 'mf' or 'popularity' (too little data: no model is fitted)
    snapshot_ : ranker.Snapshot or None
    ranker_ : PropensityRanker or None; cold_ranker_ : ColdItemRanker or None
    diagnostics_ : dict (tuning table, training rows, candidates, ...)
    """

    def __init__(self, params: dict | None = None):
        self.params = params

    def fit(
        self, interactions, users=None, items=None, as_of=None, *, stages=None, choices=None
    ) -> Recommender:
        """Learn everything as of ``as_of`` (default: the midnight after the last interaction).

        ``stages`` (optional, :class:`TrainedStages` from an earlier fit, e.g. last week's):
        reuse its tuned MF hyper-parameters and rankers instead of tuning and training again,
        when it was trained with the same settings and not after ``as_of``; MF itself is
        always refitted on the interactions given. ``stages_used_`` says which happened.

        ``choices`` (optional, :class:`TrainedStages`): train everything, but apply its stage
        selection and user -> category weight instead of choosing them again (each choice
        is a second fit one horizon back), under the same conditions as ``stages``; the
        campaign backtest's later weeks take the first week's (weekly_scorer).
        """
        return self._fit(interactions, users, items, as_of, stages=stages, choices=choices)

    def _fit(
        self, interactions, users, items, as_of, *, stages=None, choices=None, snapshot=None
    ) -> Recommender:
        """:meth:`fit`; ``snapshot``: the snapshot as of ``as_of`` when the caller already
        built it (stage selection's fit one horizon back), used instead of building it again."""
        settings = resolve_params(self.params)
        frame = normalise_interactions(interactions)
        if as_of is None:
            last = frame["occurred_at"].max() if len(frame) else pd.Timestamp("1970-01-01")
            as_of = last.normalize() + pd.Timedelta(days=1)
        as_of = utc_instant(as_of, name="as_of")
        frame = interactions_before(frame, as_of)
        self.as_of_ = as_of
        self.interactions_ = frame
        self.universe_ = _universe(frame, users, items, as_of, settings["prelaunch_days"])
        # Interactions of users/items outside the universe cannot be served; they still
        # inform the model (co-purchase patterns) when the universe is given explicitly.
        self.exclude_all_ = (
            None
            if settings["allow_repeats"]
            else _seen_over(frame, self.universe_.user_ids, self.universe_.item_ids)
        )
        self.params_ = settings
        self.diagnostics_ = {}
        self.snapshot_ = self.ranker_ = self.cold_ranker_ = None
        self.category_choice_ = CategoryChoice(reason="MF profiles: no MF fitted")
        self.reused_stages_, self.stages_used_ = usable_stages(stages, settings, as_of)
        if stages is None:
            self.stages_used_ = "trained in this fit"
        self.given_choices_, why = usable_stages(choices, settings, as_of)
        if choices is not None and self.given_choices_ is None:
            log.warning("choices of the earlier fit not applied (%s): choosing again", why)

        n_users_known = frame["user_id"].nunique()
        n_items_known = frame["item_id"].nunique()
        if (
            len(frame) < settings["min_interactions"]
            or n_users_known <= settings["factors"]
            or n_items_known <= settings["factors"]
        ):
            log.warning(
                "falling back to popularity: %d interactions, %d users, %d items "
                "(need >= %d interactions and more users and items than factors=%d)",
                len(frame),
                n_users_known,
                n_items_known,
                settings["min_interactions"],
                settings["factors"],
            )
            self.stage_ = "popularity"
            return self
        with _model_threads(settings):
            self._fit_models(users, items, snapshot)
        return self

    def recommend(self) -> ScoreResult:
        """The served frames as of ``as_of_``: top-K both ways, day-0 and pre-launch
        audiences, factors and the parameters used."""
        if not hasattr(self, "stage_"):
            raise RuntimeError("Recommender.recommend() before fit()")
        if self.stage_ == "popularity":
            return _popularity_result(
                self.interactions_, self.universe_, self.params_, self.exclude_all_, self.as_of_
            )
        with _model_threads(self.params_):
            return self._serve()

    def recommend_items(self) -> pd.DataFrame:
        """user -> items: each servable user's top ``k_items`` (``user_item_scores``).
        :meth:`recommend` returns both directions from one pass; this is its one half."""
        return self.recommend().user_item_scores

    def recommend_users(self, item_ids=None) -> pd.DataFrame:
        """item -> users: each servable item's top ``k_users`` (``item_user_scores``).

        ``item_ids`` (optional): only these items' lists, the same rows (in the same order)
        as :meth:`recommend` gives them, but the ranker scores only the candidate pairs of
        these items and no user -> item list is made. The candidates are still drawn over
        every item (a user's candidates come from the whole catalogue), so the lists do not
        depend on which other items are asked for. The campaign backtest asks for a week's
        trigger items: at 100k users x 20k items a few hundred items instead of all.
        """
        if item_ids is None:
            return self.recommend().item_user_scores
        if not hasattr(self, "stage_"):
            raise RuntimeError("Recommender.recommend_users() before fit()")
        wanted = pd.Index([str(item) for item in item_ids]).unique()
        if self.stage_ == "popularity":
            frame = self.recommend().item_user_scores
        else:
            with _model_threads(self.params_):
                frame = pd.concat(
                    [self._warm_item_users(wanted), *self._cold_frames().item_users],
                    ignore_index=True,
                )
        keep = frame["item_id"].astype(str).isin(wanted).to_numpy()
        return frame[keep].reset_index(drop=True)

    # ------------------------------------------------------------------ persistence

    def to_bytes(self) -> bytes:
        """The fitted recommender as bytes (proactive_recs.recommender.stages.dump): what a
        file or a warehouse table stores to serve later without refitting. Load only bytes
        you wrote: unpickling runs code."""
        if not hasattr(self, "stage_"):
            raise RuntimeError("Recommender.to_bytes() before fit()")
        return stages_io.dump(self)

    @classmethod
    def from_bytes(cls, data: bytes) -> Recommender:
        """A recommender written by :meth:`to_bytes` with this library version (another
        version stops, naming both: its estimators may not read the same)."""
        return stages_io.load(data, cls)

    def trained_stages(self) -> TrainedStages:
        """The parts of this fit a later fit may reuse (:class:`TrainedStages`): the tuned MF
        hyper-parameters and the rankers; what the weekly run stores for the daily ones."""
        if not hasattr(self, "stage_"):
            raise RuntimeError("Recommender.trained_stages() before fit()")
        decisions = {
            key: value
            for key, value in getattr(self, "params_used_", {}).items()
            if key in ("calibration_applied", "ranker_trees") or key.startswith("validation_")
        }
        return TrainedStages(
            as_of=self.as_of_,
            settings=dict(self.params_),
            mf_params=dict(getattr(self, "mf_params_", None) or tuning.mf_params(self.params_)),
            ranker=self.ranker_,
            cold_ranker=self.cold_ranker_,
            decisions=decisions,
            selection=getattr(self, "selection_", None),
            category_choice=getattr(self, "category_choice_", None),
            **self._warm_start_payload(),
        )

    def _warm_start_payload(self) -> dict:
        """The as-of MF's item factors for :class:`TrainedStages` (stages.warm_start_payload),
        when this fit has an MF."""
        snapshot = getattr(self, "snapshot_", None)
        if snapshot is None or getattr(snapshot, "mf", None) is None:
            return {}
        return stages_io.warm_start_payload(snapshot.data.item_ids, snapshot.mf.item_factors_)

    def save(self, path) -> None:
        """Write :meth:`to_bytes` to a file."""
        Path(path).write_bytes(self.to_bytes())

    @classmethod
    def load(cls, path) -> Recommender:
        """Read a file written by :meth:`save`."""
        return cls.from_bytes(Path(path).read_bytes())

    # ------------------------------------------------------------------ fitting

    def _fit_models(self, users, items, snapshot=None) -> None:
        """Tune MF, train the second stage and the day-0 ranker, choose per direction what
        serves (selection.py), then build the as-of snapshot (unless given)."""
        settings, reused = self.params_, self.reused_stages_
        mf_params = dict(reused.mf_params) if reused else self._tuned_mf_params()
        # stored stages carry the thread count of the weekly run; this run's own applies
        mf_params["num_threads"] = settings["num_threads"]
        used = {**settings, **mf_params}
        candidates = dict(
            per_user=settings["candidates_per_user"],
            per_item=settings["candidates_per_item"],
            active_per_item=settings["active_candidates_per_item"],
            popular_per_user=settings["popular_candidates_per_user"],
            block_size=settings["block_size"],
        )
        ranker = cold_ranker = last_snapshot = None
        # Phases that train (the rankers' windows, stage selection's fit one horizon back,
        # the category choice) each free GBs at 1M users; handing them back to the system
        # before the next phase keeps its fresh pages from stacking on top (memory.py).
        trains_here = bool(settings["second_stage"]) and reused is None
        if settings["second_stage"] and reused is not None:
            ranker, cold_ranker = reused.ranker, reused.cold_ranker
            used.update(reused.decisions)
        elif settings["second_stage"]:
            ranker, cold_ranker, last_snapshot = self._fit_rankers(mf_params, candidates, used)
            return_freed_memory()
        selection, given = StageSelection(), self.given_choices_
        if settings["second_stage"] and reused is not None:
            selection = getattr(reused, "selection", None) or selection
        elif ranker is not None and given is not None and given.selection is not None:
            selection = replace(
                given.selection, replay=f"chosen by the fit as of {given.as_of:%Y-%m-%d %H:%M}"
            )
        elif ranker is not None and settings["stage_selection"]:
            selection = self._select_stages(
                mf_params, users, items, replay_from=(last_snapshot, ranker, candidates)
            )
        if ranker is not None and reused is None:
            ranker.drop_validation_model()
        del last_snapshot
        if trains_here:
            return_freed_memory()
        self.selection_ = selection
        used.update(selection.as_params())
        self.category_choice_ = self._category_choice(mf_params)
        used.update(self.category_choice_.as_params())
        if trains_here:
            return_freed_memory()
        used["stages"] = self.stages_used_
        # The as-of snapshot is built last: the rankers' windows and stage selection's fit
        # one horizon back each hold snapshots of their own, and at 1M users the weekly
        # backtest's peak was all of them at once with this one (docs/benchmark.md,
        # session 31). Every fit has its own seeded MF, so the order changes no value.
        # A fit on stored stages starts MF from their item factors (stages.warm_start).
        warm, used["mf_warm_start"] = stages_io.warm_start(
            reused, mf_params, settings["mf_warm_start_iterations"]
        )
        if snapshot is None or snapshot.as_of != self.as_of_:
            snapshot = build_snapshot(
                self.interactions_,
                self.as_of_,
                horizon_days=float(settings["horizon_days"]),
                mf_params=mf_params,
                half_life_days=settings["half_life_days"],
                items=self.universe_.items,
                mf_warm_start=warm,
            )
        elif warm is not None:
            used["mf_warm_start"] = "off: the snapshot was given, its MF already fitted"
        self.mf_params_ = mf_params
        self.params_used_ = used
        self.snapshot_ = snapshot
        self.candidate_params_ = candidates
        self.ranker_, self.cold_ranker_ = ranker, cold_ranker
        self.stage_ = "two_stage" if ranker is not None else "mf"
        # The run's universe on the snapshot's index, for recommend().
        self.masks_ = self._masks(snapshot)

    def _category_choice(self, mf_params: dict) -> CategoryChoice:
        """How user -> category scores weigh MF against the user's history: the stored
        choice when stages are reused, else chosen on the last horizon before the run
        (categories.choose_category_blend)."""
        reused, settings = self.reused_stages_, self.params_
        if reused is not None:
            stored = getattr(reused, "category_choice", None)
            return stored or CategoryChoice(reason="MF profiles: stored stages chose none")
        given = self.given_choices_
        if given is not None and given.category_choice is not None:
            return given.category_choice
        if not settings["stage_selection"]:
            return CategoryChoice(reason="MF profiles: stage_selection is off")
        items = self.universe_.items
        if items is None or "category" not in items or items["category"].isna().all():
            return CategoryChoice(reason="MF profiles: items have no category")
        return choose_category_blend(
            self.interactions_,
            items[["item_id", "category"]],
            as_of=self.as_of_,
            horizon_days=float(settings["horizon_days"]),
            mf_params=mf_params,
        )

    def _select_stages(self, mf_params: dict, users, items, replay_from=None) -> StageSelection:
        """Per direction, the second stage or plain MF: a fit as of the start of the last
        horizon before the run, scored on that horizon (see selection.py). ``replay_from``
        (window 1's snapshot, the ranker, the candidate settings) lets that fit be assembled
        from what this one trained (:meth:`_replay`) instead of fitted again."""
        settings = self.params_
        window = tuning.validation_window(
            self.interactions_,
            self.as_of_,
            horizon_days=float(settings["horizon_days"]),
            half_life_days=settings["half_life_days"],
        )
        if not window.usable:
            reason = "second stage: no new pair in the last horizon to compare on"
            return StageSelection(DirectionChoice(reason=reason), DirectionChoice(reason=reason))
        past_params = {
            **settings,
            **mf_params,
            "tune": False,
            "stage_selection": False,
            "k_items": max(int(settings["k_items"]), metrics.OBJECTIVE_K_ITEMS),
            "k_users": max(int(settings["k_users"]), metrics.OBJECTIVE_K_USERS),
        }
        past, at_split = None, None
        if replay_from is not None:
            snapshot, ranker, candidates = replay_from
            if snapshot is not None and snapshot.as_of == window.split:
                at_split = snapshot
            validation = ranker.validation_ranker()
            if at_split is not None and validation is not None:
                past = self._replay(at_split, validation, candidates, users, items, past_params)
                replay = (
                    f"as of {window.split:%Y-%m-%d %H:%M}: the last training window's snapshot"
                    " and the ranker trained without that window"
                )
        if past is None:
            # No ranker trained without the last window (one training window, as in the
            # backtest's weekly fits): a fit there trains one. The last window's snapshot is
            # that fit's own (the same rows, as-of and MF settings), so it is not built a
            # second time: at 1M users that was minutes and a GB on top of this fit's state.
            past = Recommender(past_params)._fit(
                interactions_before(self.interactions_, window.split),
                users,
                items,
                window.split,
                snapshot=at_split,
            )
            replay = f"fitted again as of {window.split:%Y-%m-%d %H:%M}" + (
                ", on the last training window's snapshot" if at_split is not None else ""
            )
        if past.ranker_ is None:
            reason = f"second stage: the fit as of {window.split} trained none to compare"
            return StageSelection(
                DirectionChoice(reason=reason), DirectionChoice(reason=reason), replay
            )
        data = past.snapshot_.data
        base = window.base

        def over_window(ui, iu):
            return (
                remap_lists(ui, data.user_ids, data.item_ids, base.user_ids, base.item_ids),
                remap_lists(iu, data.item_ids, data.user_ids, base.item_ids, base.user_ids),
            )

        # the second stage at every tree count its ranker offers, then plain MF; the
        # user -> item lists scored a block of the window's users at a time, not kept
        counts = past.ranker_.tree_counts_ if settings["ranker_trees_per_direction"] else None
        user_ndcg = UserQueryScores(window, data.user_ids, data.item_ids)
        lists_at = past._ranker_lists_at(
            counts, user_lists_to=user_ndcg.add, keep_users=user_ndcg.queried
        )
        two_stage_at = {
            count: {
                "user_to_item": user_ndcg.at(count),
                "item_to_user": window.per_query(
                    None,
                    remap_lists(iu, data.item_ids, data.user_ids, base.item_ids, base.user_ids),
                )["item_to_user"],
            }
            for count, (_, _, iu, _) in lists_at.items()
        }
        del lists_at
        mf_ui, _, mf_iu, _ = past._mf_lists()
        mf_per_query = window.per_query(*over_window(mf_ui, mf_iu))
        U, V = past.snapshot_.mf.user_factors_, past.snapshot_.mf.item_factors_
        choices = []
        for direction, key in (
            ("user_to_item", f"ndcg@{metrics.OBJECTIVE_K_ITEMS}"),
            ("item_to_user", f"recall@{metrics.OBJECTIVE_K_USERS}"),
        ):
            by_count = {count: q[direction] for count, q in two_stage_at.items()}
            n_trees, _ = best_tree_count(by_count, default=past.ranker_.n_trees_)
            ts_q = by_count[past.ranker_.n_trees_ if n_trees is None else n_trees]
            mf_q = mf_per_query[direction]
            gain, noise = paired_gain(mf_q, ts_q)
            validation = {
                "two_stage": float(ts_q.mean()),
                "mf": float(mf_q.mean()),
                "mf_gain_standard_error": noise,
            }
            if len(by_count) > 1:
                validation.update(
                    {f"two_stage_{count}_trees": float(q.mean()) for count, q in by_count.items()}
                )
            trees_said = (
                f"{past.ranker_.n_trees_} trees (its log-loss count)"
                if n_trees is None
                else f"{n_trees} trees"
            )
            if not gain > MARGIN_IN_STANDARD_ERRORS * noise:
                reason = (
                    f"second stage at {trees_said}: {key} on the last horizon"
                    f" {validation['two_stage']:.4f}, plain MF {validation['mf']:.4f} (MF must"
                    f" win by more than {MARGIN_IN_STANDARD_ERRORS} standard errors,"
                    f" {noise:.4f} each)"
                )
                choices.append(
                    DirectionChoice("two_stage", None, validation, reason, n_trees=n_trees)
                )
                continue
            if direction == "user_to_item":
                lists, ids, truth = mf_ui, (data.user_ids, data.item_ids), window.truth
                base_ids = (base.user_ids, base.item_ids)
            else:
                lists, ids, truth = mf_iu, (data.item_ids, data.user_ids), window.truth_t
                base_ids = (base.item_ids, base.user_ids)
            hits = list_hits(lists, *ids, *base_ids, truth)
            filled, u, i = listed_pairs(lists, by_user=direction == "user_to_item")
            raw = np.einsum("ij,ij->i", U[u], V[i])
            mapping = fit_probability_map(raw, hits[filled])
            if mapping is None:
                reason = (
                    "second stage: plain MF did better on the last horizon, but its scores"
                    " could not be mapped to probabilities there"
                )
                choices.append(DirectionChoice("two_stage", None, validation, reason))
                continue
            reason = (
                f"plain MF: {key} on the last horizon {validation['mf']:.4f} against second"
                f" stage {validation['two_stage']:.4f}, more than {MARGIN_IN_STANDARD_ERRORS}"
                f" standard errors ({noise:.4f} each) better"
            )
            choices.append(DirectionChoice("mf", mapping, validation, reason))
        return StageSelection(*choices, replay=replay)

    def _replay(self, snapshot, ranker, candidates, users, items, params) -> Recommender:
        """The fit as of ``snapshot.as_of`` (one horizon back) that stage selection scores,
        made of parts this fit already trained: the snapshot of its last training window
        (MF fitted on the interactions before it, with the same MF parameters) and the
        ranker as trained without that window (``PropensityRanker.validation_ranker``: the
        windows before it, as a fit there would use, one fewer). Fitting it anew cost as much
        as the fit itself (at M 630 of 1,650 s). It serves the warm lists only."""
        past = Recommender(params)
        past.params_ = resolve_params(params)
        past.as_of_ = snapshot.as_of
        past.universe_ = _universe(
            interactions_before(self.interactions_, snapshot.as_of),
            users,
            items,
            snapshot.as_of,
            past.params_["prelaunch_days"],
        )
        past.diagnostics_ = {}
        past.snapshot_, past.ranker_, past.cold_ranker_ = snapshot, ranker, None
        past.candidate_params_ = candidates
        past.stage_ = "two_stage"
        past.masks_ = past._masks(snapshot)
        return past

    def _tuned_mf_params(self) -> dict:
        """MF hyper-parameters: the grid entry that did best on the last horizon before the
        run (tune_mf), or the configured ones when tuning is off."""
        settings = self.params_
        mf_params = tuning.mf_params(settings)
        if settings["tune"] and settings["tune_grid"]:
            mf_params, tried = tuning.tune_mf(
                self.interactions_,
                self.as_of_,
                horizon_days=float(settings["horizon_days"]),
                base_params=mf_params,
                grid=settings["tune_grid"],
                half_life_days=settings["half_life_days"],
                block_size=settings["block_size"],
            )
            self.diagnostics_["tuning"] = tried
        return mf_params

    def _masks(self, snapshot):
        """Who may be served and with what boost, on the snapshot's index (users and items
        with history), and the seen pairs to exclude unless repeats are allowed."""
        universe = self.universe_
        u_pos = universe.user_ids.get_indexer(snapshot.data.user_ids)
        i_pos = universe.item_ids.get_indexer(snapshot.data.item_ids)
        u_in, i_in = u_pos >= 0, i_pos >= 0
        user_mask = np.where(u_in, universe.user_servable[np.maximum(u_pos, 0)], False)
        item_mask = np.where(i_in, universe.item_servable[np.maximum(i_pos, 0)], False)
        user_boost = np.where(u_in, universe.user_boost[np.maximum(u_pos, 0)], 1.0)
        item_boost = np.where(i_in, universe.item_boost[np.maximum(i_pos, 0)], 1.0)
        exclude = None if self.params_["allow_repeats"] else snapshot.data.seen
        return (
            user_mask,
            item_mask,
            user_boost.astype(np.float32),
            item_boost.astype(np.float32),
            exclude,
        )

    def _fit_rankers(self, mf_params: dict, candidates: dict, used: dict):
        """The second stage and the day-0 ranker, trained on past windows; either is None
        when its windows hold too few positive examples (said in the log). ``used`` gets
        what the validation window decided about calibration. Also returns the snapshot of
        the last window (for stage selection's replay)."""
        settings, diagnostics = self.params_, self.diagnostics_
        training = training_frame(
            self.interactions_,
            self.as_of_,
            horizon_days=float(settings["horizon_days"]),
            windows=int(settings["training_windows"]),
            mf_params=mf_params,
            candidate_params=candidates,
            half_life_days=settings["half_life_days"],
            items=self.universe_.items,
            negative_rate=settings["negative_rate"],
            cold_items=bool(settings["cold_items"]),
            cold_active_per_item=settings["cold_active_candidates_per_item"],
            random_state=settings["random_state"],
            max_rows=settings["max_training_rows"],
        )
        diagnostics["training_rows"] = int(len(training.y))
        diagnostics["training_positives"] = int(training.y.sum())
        diagnostics["cold_training_positives"] = int(training.y_cold.sum())
        ranker = cold_ranker = None
        if training.y.sum() >= settings["min_positives"]:
            # The last window before the run date calibrates the probabilities.
            ranker = PropensityRanker(
                calibration=settings["calibration"] or "none",
                max_iter=settings["ranker_max_iter"],
                learning_rate=settings["ranker_learning_rate"],
                negative_weight=1.0 / training.negative_rate,
                tree_selection=bool(settings["ranker_tree_selection"]),
                random_state=settings["random_state"],
            ).fit(training.X, training.y, window=training.window)
            used["training_rows"] = int(len(training.y))
            used["training_negative_rate"] = round(training.negative_rate, 6)
            used["calibration_applied"] = ranker.calibrator_ is not None
            used["ranker_trees"] = ranker.n_trees_
            for name, value in ranker.tree_selection_check_.items():
                used[f"validation_{name}"] = round(value, 6)
            for name, value in ranker.calibration_check_.items():
                used[f"validation_{name}"] = round(value, 6)
        else:
            log.warning(
                "second stage skipped: %d positive examples in %d past windows (need %d);"
                " serving plain MF scores",
                int(training.y.sum()),
                settings["training_windows"],
                settings["min_positives"],
            )
        if training.y_cold.sum() >= settings["min_positives"]:
            cold_ranker = ColdItemRanker(negative_weight=1.0 / settings["negative_rate"]).fit(
                training.X_cold, training.y_cold
            )
        elif settings["cold_items"]:
            log.warning(
                "day-0 ranker skipped: %d buyers of new items in %d past windows (need %d);"
                " new items get category-weighted active users",
                int(training.y_cold.sum()),
                settings["training_windows"],
                settings["min_positives"],
            )
        return ranker, cold_ranker, training.last_snapshot

    def _serve(self) -> ScoreResult:
        """Score the candidates and assemble the served frames: the warm lists of users and
        items with history, then popularity, heuristic and day-0 lists for the others."""
        snapshot = self.snapshot_
        user_mask, item_mask, user_boost, item_boost, _ = self.masks_
        ui, iu = self._warm_frames()
        cold = self._cold_frames()
        self.diagnostics_["cold_items_scored"] = int(len(cold.scored_items))
        return ScoreResult(
            user_item_scores=pd.concat([ui, *cold.user_items], ignore_index=True),
            item_user_scores=pd.concat([iu, *cold.item_users], ignore_index=True),
            user_factors=_factor_frame(
                snapshot.data.user_ids, snapshot.mf.user_factors_, "user_id", user_mask, user_boost
            ),
            item_factors=_factor_frame(
                snapshot.data.item_ids, snapshot.mf.item_factors_, "item_id", item_mask, item_boost
            ),
            params=_params_frame(self.params_used_),
            stage=self.stage_,
            diagnostics=self.diagnostics_,
            prelaunch_item_user_scores=cold.prelaunch.reset_index(drop=True),
            unscored_items=cold.unscored,
        )

    def _warm_lists(self):
        """Top-K both ways over users and items with history: per direction, the ranker's
        probability on the candidate pairs, or MF where the stage selection chose it (its
        scores mapped to probabilities), or MF dot products when there is no ranker."""
        if self.ranker_ is None:
            return self._mf_lists()
        selection = self.selection_
        ui_source, iu_source = selection.user_to_item.source, selection.item_to_user.source
        lists = {}
        if "two_stage" in (ui_source, iu_source):
            lists["two_stage"] = self._ranker_lists(
                selection.user_to_item.n_trees, selection.item_to_user.n_trees
            )
        if "mf" in (ui_source, iu_source):
            lists["mf"] = self._mf_probability_lists(selection)
        ui_lists, ui_scores = lists[ui_source][:2]
        iu_lists, iu_scores = lists[iu_source][2:]
        return ui_lists, ui_scores, iu_lists, iu_scores

    def _ranker_lists(self, user_to_item_trees=None, item_to_user_trees=None):
        """The second stage's lists: the ranker's probability on the candidate pairs,
        boosted, top-K both ways; each direction with its own count of trees (None: the
        ranker's default count)."""
        ui_trees = self._offered_trees(user_to_item_trees, "user_to_item")
        iu_trees = self._offered_trees(item_to_user_trees, "item_to_user")
        at = self._ranker_lists_at([ui_trees, iu_trees])
        return (*at[ui_trees][:2], *at[iu_trees][2:])

    def _offered_trees(self, n_trees, direction: str) -> int:
        """``n_trees`` when the ranker serves that count, else (None, or a count whose
        probability map the served fit could not fit) its default count, said in the log."""
        default = self.ranker_.n_trees_
        if n_trees is None or int(n_trees) == default:
            return default
        if int(n_trees) not in self.ranker_.tree_counts_:
            log.warning(
                "%s: stage selection chose %d trees, which this ranker does not serve"
                " calibrated (it serves %s); using its default count, %d",
                direction,
                int(n_trees),
                list(self.ranker_.tree_counts_),
                default,
            )
            return default
        return int(n_trees)

    def _ranker_lists_at(
        self, counts=None, keep_items=None, user_lists_to=None, keep_users=None
    ) -> dict:
        """{tree count: the second stage's four lists at that count} for ``counts`` (None:
        the ranker's default count alone): the candidate pairs scored once per count,
        boosted, top-K both ways.

        The pairs are scored and cut a block of users at a time: a block's user -> item
        lists are final (it holds all of its users' pairs) and its item -> user lists are
        merged into the running ones, so only one block's probabilities and top-K scratch
        exist at once (at L every pair's at once took 12 GB). ``keep_items`` (a mask over
        the snapshot's items): only the pairs of those items are scored, after the
        candidates were drawn over all of them.

        ``user_lists_to`` (a callable ``(count, users, lists)``): each block's user -> item
        lists are handed to it as they are cut (``users``: the snapshot indices of the
        block's users in ``keep_users``, a mask, default every user; ``lists``: their rows,
        the same as in the full lists; each user at most once, and a user without candidate
        pairs, whose list is empty, maybe not at all) and not kept: the user -> item entries
        of the result are then None. Stage selection scores its validation users' lists
        this way: on the benchmark's L data (778k of them) they were 1.3 GB at seven tree
        counts."""
        if keep_users is not None and user_lists_to is None:
            raise ValueError("keep_users says whose lists user_lists_to receives: give both")
        counts = sorted(set(counts or [self.ranker_.n_trees_]))
        snapshot = self.snapshot_
        data = snapshot.data
        _, _, user_boost, item_boost, _ = self.masks_
        u, i = self._candidates(keep_items)
        k_items, k_users = self.params_["k_items"], self.params_["k_users"]
        keep_users = (
            np.ones(data.n_users, dtype=bool)
            if keep_users is None
            else np.asarray(keep_users, dtype=bool)
        )
        lists = {}
        for count in counts:
            kept = (None, None) if user_lists_to else empty_topk(data.n_users, k_items)
            lists[count] = (*kept, *empty_topk(data.n_items, k_users))
        for start, stop in owner_blocks(u, _PAIRS_PER_BLOCK):
            block_u, block_i = u[start:stop], i[start:stop]
            prob = _predict_pairs(self.ranker_, snapshot, block_u, block_i, counts)
            boost = user_boost[block_u] * item_boost[block_i]
            boosted = not (boost == 1).all()
            first, last = int(block_u[0]), int(block_u[-1])
            listed = keep_users[first : last + 1]
            pairs = listed[block_u - first] if user_lists_to else None
            for row, count in zip(prob, counts, strict=True):
                scores = apply_boost(row, boost) if boosted else row
                ui_lists, ui_scores, iu_lists, iu_scores = lists[count]
                if not user_lists_to:
                    ui_lists[first : last + 1], ui_scores[first : last + 1] = topk_pairs(
                        block_u - first, block_i, scores, last - first + 1, k_items
                    )
                elif listed.any():
                    # each kept user's list from its own pairs alone: the same list as
                    # when every user's is cut
                    block_lists, _ = topk_pairs(
                        block_u[pairs] - first,
                        block_i[pairs],
                        scores[pairs],
                        last - first + 1,
                        k_items,
                    )
                    user_lists_to(count, first + np.flatnonzero(listed), block_lists[listed])
                merge_topk(
                    iu_lists,
                    iu_scores,
                    *topk_pairs(block_i, block_u, scores, data.n_items, k_users),
                )
        return lists

    def _candidates(self, keep_items=None):
        """The candidate pairs (u, i), sorted by user, drawn under the fit's masks, boosts
        and exclusions; with ``keep_items``, only those items' pairs."""
        snapshot = self.snapshot_
        user_mask, item_mask, user_boost, item_boost, exclude = self.masks_
        u, i = candidate_pairs(
            snapshot,
            exclude=exclude,
            user_mask=user_mask,
            item_mask=item_mask,
            user_boost=user_boost,
            item_boost=item_boost,
            **self.candidate_params_,
        )
        if keep_items is not None:
            kept = np.asarray(keep_items, dtype=bool)[i]
            return u[kept], i[kept]
        self.diagnostics_["candidates"] = int(u.size)
        return u, i

    def _mf_lists(self):
        """Plain MF's lists: boosted dot products over every pair, top-K both ways."""
        mf, settings = self.snapshot_.mf, self.params_
        top = self._masked_topk(
            mf.user_factors_, mf.item_factors_, settings["k_items"], settings["k_users"]
        )
        return top.user_items, top.user_item_scores, top.item_users, top.item_user_scores

    def _masked_topk(self, U, V, k_items: int, k_users: int):
        """topk_both of ``U @ V.T`` under the fit's masks, boosts and exclusions."""
        user_mask, item_mask, user_boost, item_boost, exclude = self.masks_
        return topk_both(
            U,
            V,
            k_items=k_items,
            k_users=k_users,
            exclude=exclude,
            user_mask=user_mask,
            item_mask=item_mask,
            user_boost=user_boost,
            item_boost=item_boost,
            block_size=self.params_["block_size"],
        )

    def _mf_probability_lists(self, selection: StageSelection):
        """MF's lists with each direction's MF scores mapped to probabilities (its selection
        map), boosted like the ranker's (probability x boosts) and ordered by that.

        The pool is the top ``2 K`` of each owner by the MF score shifted to be positive and
        multiplied by the boosts (so a boosted member with a negative MF score is not lost
        below the unboosted ones, as it would be under the sign-aware MF boost); the boosted
        probabilities are then computed exactly for the pool and its best K are kept."""
        settings = self.params_
        _, _, user_boost, item_boost, _ = self.masks_
        U, V = self.snapshot_.mf.user_factors_, self.snapshot_.mf.item_factors_
        # |u . v| <= max|u| max|v|: adding that bound makes every score positive
        shift = (
            float(
                np.linalg.norm(U, axis=1).max(initial=0) * np.linalg.norm(V, axis=1).max(initial=0)
            )
            + 1e-3
        )
        k_items, k_users = int(settings["k_items"]), int(settings["k_users"])
        top = self._masked_topk(
            np.hstack([U, np.ones((U.shape[0], 1), U.dtype)]),
            np.hstack([V, np.full((V.shape[0], 1), shift, V.dtype)]),
            2 * k_items,
            2 * k_users,
        )
        out = []
        for lists, choice, by_user, k in (
            (top.user_items, selection.user_to_item, True, k_items),
            (top.item_users, selection.item_to_user, False, k_users),
        ):
            scores = np.full(lists.shape, np.nan, dtype=np.float32)
            if choice.source == "mf" and lists.size:
                ok, u, i = listed_pairs(lists, by_user)
                prob = choice.probability(np.einsum("ij,ij->i", U[u], V[i]))
                scores[ok] = apply_boost(prob, user_boost[u] * item_boost[i])
                # best first; empty slots (NaN) last
                order = np.argsort(np.where(ok, -scores, np.inf), axis=1, kind="stable")
                lists = np.take_along_axis(lists, order, axis=1)
                scores = np.take_along_axis(scores, order, axis=1)
            out += [lists[:, :k], scores[:, :k]]
        return tuple(out)

    def _warm_item_users(self, wanted: pd.Index) -> pd.DataFrame:
        """The warm item -> user frame of :meth:`_warm_frames`, computed for the items of
        ``wanted`` only (the others get no rows)."""
        snapshot = self.snapshot_
        keep = snapshot.data.item_ids.isin(wanted)
        selection = self.selection_
        if self.ranker_ is None:
            iu_lists, iu_scores = self._mf_lists()[2:]
        elif selection.item_to_user.source == "mf":
            iu_lists, iu_scores = self._mf_probability_lists(selection)[2:]
        else:
            trees = self._offered_trees(selection.item_to_user.n_trees, "item_to_user")
            iu_lists, iu_scores = self._ranker_lists_at([trees], keep_items=keep)[trees][2:]
        return self._item_user_frame(np.where(keep[:, None], iu_lists, -1), iu_scores)

    def _item_user_frame(self, iu_lists, iu_scores) -> pd.DataFrame:
        """Warm item -> user lists (on the snapshot's index) as the served frame."""
        data = self.snapshot_.data
        return _frame(
            data.item_ids,
            data.user_ids,
            iu_lists,
            iu_scores,
            np.zeros(data.n_items, bool),
            "item_id",
            "user_id",
        ).assign(basis="history")

    def _warm_frames(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The warm lists as user -> item and item -> user frames (only servable owners have
        rows: masked ones have empty lists)."""
        snapshot = self.snapshot_
        ui_lists, ui_scores, iu_lists, iu_scores = self._warm_lists()
        ui = _frame(
            snapshot.data.user_ids,
            snapshot.data.item_ids,
            ui_lists,
            ui_scores,
            np.zeros(snapshot.data.n_users, bool),
            "user_id",
            "item_id",
        )
        ui["because_item_id"] = _because(snapshot, ui_lists)
        return ui, self._item_user_frame(iu_lists, iu_scores)

    def _cold_frames(self) -> _ColdFrames:
        """Lists for users and items without history before the run: popularity for cold
        users, day-0 audiences (or category-weighted active users) for new items, pre-launch
        audiences for items about to go on sale, and the items nothing is known about."""
        snapshot, universe, settings = self.snapshot_, self.universe_, self.params_
        user_mask, _, user_boost, _, _ = self.masks_
        cold_users = universe.user_servable & ~universe.user_ids.isin(snapshot.data.user_ids)
        no_history = ~universe.item_ids.isin(snapshot.data.item_ids)
        cold_items = universe.item_servable & no_history
        upcoming = universe.item_upcoming & no_history
        new_items = _new_item_audiences(
            snapshot,
            universe,
            settings,
            self.cold_ranker_,
            cold_items | upcoming,
            user_mask,
            user_boost,
        )
        # Items the day-0 ranker did not score (no ranker, or the cold path off) fall back to
        # category-weighted active users, unless nothing at all is known about them.
        heuristic = (
            cold_items
            & ~universe.item_ids.isin(new_items.scored)
            & ~universe.item_ids.isin(new_items.unusable)
        )
        user_items, item_users = [], []
        if cold_users.any() or heuristic.any():
            by_pop, by_act = _popularity_lists(
                self.interactions_,
                universe,
                settings,
                self.as_of_,
                cold_users,
                heuristic,
                self.exclude_all_,
            )
            if cold_users.any():
                user_items.append(
                    _frame(
                        universe.user_ids,
                        universe.item_ids,
                        by_pop.user_items,
                        by_pop.user_item_scores,
                        np.ones(len(universe.user_ids), bool),
                        "user_id",
                        "item_id",
                    )
                )
            if heuristic.any():
                item_users.append(
                    _frame(
                        universe.item_ids,
                        universe.user_ids,
                        by_act.item_users,
                        by_act.item_user_scores,
                        np.ones(len(universe.item_ids), bool),
                        "item_id",
                        "user_id",
                    ).assign(basis="heuristic")
                )
        on_sale = new_items.frame["item_id"].isin(universe.item_ids[cold_items]).to_numpy()
        if on_sale.any():
            item_users.append(new_items.frame[on_sale])
        prelaunch = new_items.frame[
            new_items.frame["item_id"].isin(universe.item_ids[upcoming]).to_numpy()
        ]
        unscored = pd.DataFrame(
            {
                "item_id": np.asarray(new_items.unusable, dtype=object),
                "reason": "no_interactions_and_no_usable_attributes",
            }
        )
        return _ColdFrames(user_items, item_users, prelaunch, unscored, new_items.scored)


@dataclass(frozen=True)
class _ColdFrames:
    user_items: list  # user -> item frames of cold users (popularity)
    item_users: list  # item -> user frames of new items (heuristic, day-0)
    prelaunch: pd.DataFrame  # day-0 audiences of items about to go on sale
    unscored: pd.DataFrame  # new items nothing is known about, with the reason
    scored_items: pd.Index  # new items that got a day-0 audience


_PAIRS_PER_CHUNK = 1 << 21  # ~2M candidate pairs (~350 MB of features) scored at a time
# Candidate pairs scored and cut into top-K lists at a time (whole users per block): their
# probabilities per tree count and the cut's scratch, ~40 bytes a pair, ~350 MB.
_PAIRS_PER_BLOCK = 1 << 23


def _predict_pairs(ranker, snapshot, u: np.ndarray, i: np.ndarray, counts) -> np.ndarray:
    """The ranker's probability for every candidate pair at each tree count of ``counts``
    (one row per count), computed in chunks so that only one chunk's features exist at
    a time (pairs are sorted by user, and so is every chunk, as pair_feature_matrix
    requires)."""
    prob = np.empty((len(counts), u.size), dtype=np.float32)
    for start in range(0, u.size, _PAIRS_PER_CHUNK):
        stop = min(start + _PAIRS_PER_CHUNK, u.size)
        features = pair_feature_matrix(
            snapshot, u[start:stop], i[start:stop], ranker.feature_names_in_
        )
        prob[:, start:stop] = ranker.positive_proba_at(features, counts).T
    return prob


def _because(snapshot, ui_lists: np.ndarray) -> np.ndarray:
    """``because_item_id`` per row of the user-item frame (same order as :func:`_frame`)."""
    n_u, k = ui_lists.shape
    owner = np.repeat(np.arange(n_u), k)
    member = ui_lists.ravel()
    ok = member >= 0
    best = explain_pairs(snapshot.data.seen, snapshot.similarity, owner[ok], member[ok])
    ids = np.asarray(snapshot.data.item_ids, dtype=object)
    return np.where(best >= 0, ids[np.maximum(best, 0)], None)


@dataclass(frozen=True)
class _NewItemAudiences:
    frame: pd.DataFrame  # item_user rows (basis 'attributes') of the scored new items
    scored: pd.Index  # new items that got a day-0 audience
    unusable: pd.Index  # new items without a usable attribute


def _new_item_audiences(snapshot, universe, settings, cold_ranker, wanted, user_mask, user_boost):
    """Day-0 audiences of items without history (on sale or upcoming): the day-0 ranker's
    probability over candidates from predicted factors, category share and activity."""
    empty = _NewItemAudiences(
        pd.DataFrame(columns=["item_id", "user_id", "rank", "score", "is_fallback", "basis"]),
        pd.Index([]),
        pd.Index([]),
    )
    if not wanted.any() or not settings["cold_items"] or universe.items is None:
        return empty
    ids = universe.item_ids[wanted]
    model = fit_attribute_model(snapshot, universe.items)
    cold, unusable = describe_cold_items(snapshot, model, universe.items, ids)
    if cold_ranker is None or not len(cold.item_ids):
        return _NewItemAudiences(empty.frame, pd.Index([]), unusable)
    boost = universe.item_boost[universe.item_ids.get_indexer(cold.item_ids)]
    u, j = cold_candidates(
        snapshot,
        cold,
        per_item=settings["candidates_per_item"],
        active_per_item=settings["cold_active_candidates_per_item"],
        user_mask=user_mask,
        user_boost=user_boost,
        item_boost=boost,
        block_size=settings["block_size"],
    )
    prob = cold_ranker.predict_proba(cold_pair_features(snapshot, cold, u, j))[:, 1]
    boosted = apply_boost(prob.astype(np.float32), user_boost[u] * boost[j])
    lists, scores = topk_pairs(j, u, boosted, len(cold.item_ids), settings["k_users"])
    frame = _frame(
        cold.item_ids,
        snapshot.data.user_ids,
        lists,
        scores,
        np.zeros(len(cold.item_ids), bool),
        "item_id",
        "user_id",
    ).assign(basis="attributes")
    return _NewItemAudiences(frame, cold.item_ids, unusable)
