"""Offline evaluation with the protocol of docs/evaluation.md.

``evaluate(interactions, users, items, cutoff=..., horizon_days=30, params=...)``:

* **Split.** Train on ``occurred_at < cutoff``; test on ``[cutoff, cutoff + horizon)``.
  Only users and items with at least one training interaction are scored ("known");
  test rows of other users or items are dropped.
* **Relevance.** A (user, item) test pair is relevant when the user had *not*
  interacted with the item before the cutoff: the recommendations exclude what the user
  already has, so re-purchases would be unreachable hits that only add noise.
* **user_to_item.** Queries are the known users with at least one relevant item; each
  model ranks the known items the user did not interact with before the cutoff.
  Metrics: ndcg@10, recall@10, recall@20, precision@10, map@10, and coverage@10 = share
  of the known items that appear in the top 10 of at least one known user.
* **item_to_user.** Queries are the known items with at least one relevant user; each
  model ranks the known users who did not interact with the item before the cutoff.
  Metrics: recall@50, recall@100, ndcg@50, ndcg@100.
* **Recency baselines** (:mod:`proactive_recs.estimators.recency`): ``recent_popularity``
  (user_to_item: items by distinct users in the last W days) and ``recently_active_users``
  (item_to_user: users by distinct items in the last W days), W chosen per direction on the
  validation window before the cutoff (the last ``horizon_days`` of training), as MF's
  settings are; the chosen W and its validation figure are in the params.
* **Models.** ``als`` (plain MF, hyper-parameters tuned on the last ``horizon_days``
  before the cutoff — a validation window inside the training period), ``popularity``
  (items by number of distinct buyers; user_to_item), ``heavy_users`` (users by number
  of distinct items; item_to_user), ``random`` (scores are dot products of random
  Gaussian vectors, i.e. an independent random order per query), and ``served``: the
  frames :func:`proactive_recs.recommender.two_stage.score` returns when called as of the cutoff on
  the training rows, with the caller's ``users``/``items``/``params`` — the same code
  path as the dbt models, so its numbers are those of the served product (including
  its business rules). For ``served`` the expected calibration error of its
  probabilities over the served pairs is reported as well (metric 'ece', k = list
  length), when the served stage produces probabilities.
* ``served_stages_week_old``: what a daily run serves between two weekly runs. The served
  model is trained as of one week before the cutoff (its tuned MF settings and rankers,
  :class:`~proactive_recs.recommender.stages.TrainedStages`), then refitted as of the cutoff
  reusing those stages: MF is refitted on all training rows, nothing else is trained. Its
  gap to ``served`` is what reusing week-old stages costs.

* **cold_items segment** (when ``items`` are given). A seeded random
  ``cold_item_fraction`` of the items with a relevant test user is held out of training
  *entirely* (their training rows are
  removed for every model, so segment 'all' is over the other items). They are then
  brand-new items to the models: ``served`` gives them its day-0 audiences (from
  attributes), ``category_affinity`` ranks users by their share of training
  interactions in the item's category (ties: more active users first), and
  ``heavy_users`` / ``random`` are as above. Metrics: item_to_user recall / ndcg at 50
  and 100; relevant = known users who interacted with the item in the test window and
  not before the cutoff.

Metrics are averaged over queries with at least one relevant target (see
:mod:`proactive_recs.evaluation.metrics`). The result also holds the hyper-parameters used, one row
per (model, parameter).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from proactive_recs.data.interactions import (
    build_interaction_matrix,
    interactions_before,
    new_pairs_matrix,
    normalise_interactions,
)
from proactive_recs.estimators.coldstart import category_affinity_vectors
from proactive_recs.estimators.mf import ImplicitMF
from proactive_recs.estimators.recency import recency_lists
from proactive_recs.estimators.topk import topk_both
from proactive_recs.evaluation import metrics
from proactive_recs.recommender import tuning, two_stage

__all__ = ["MODELS", "EvaluationResult", "evaluate", "served_lists"]

log = logging.getLogger(__name__)

MODELS = (
    "als",
    "popularity",
    "heavy_users",
    "recent_popularity",
    "recently_active_users",
    "random",
    "served",
    "served_stages_week_old",
)
# How old the reused stages of ``served_stages_week_old`` are: the weekly schedule's gap.
REUSED_STAGES_AGE_DAYS = 7
USER_TO_ITEM = {"ndcg": [10], "recall": [10, 20], "precision": [10], "map": [10]}
ITEM_TO_USER = {"recall": [50, 100], "ndcg": [50, 100]}
COVERAGE_K = 10
K_ITEMS = 20
K_USERS = 100


@dataclass
class EvaluationResult:
    """metrics: model, direction, segment, metric, k, value.
    params: model, parameter, value (str)."""

    metrics: pd.DataFrame
    params: pd.DataFrame
    calibration: pd.DataFrame | None = None  # model, direction, bin, mean_predicted, ...


def _rows(model, direction, values: dict, segment="all"):
    return [
        {
            "model": model,
            "direction": direction,
            "segment": segment,
            "metric": metric,
            "k": int(k),
            "value": float(value),
        }
        for (metric, k), value in values.items()
    ]


def _score_lists(model, direction, lists, truth, n_catalog):
    """Metric rows of one model in one direction from its (owners x L) index lists.

    Ranking metrics average over the queries (owners with a relevant target); catalog
    coverage is over every known user's list, since it describes what is served."""
    queries = np.diff(truth.indptr) > 0
    wanted = USER_TO_ITEM if direction == "user_to_item" else ITEM_TO_USER
    ks = sorted({k for ks in wanted.values() for k in ks})
    values = metrics.ranking_metrics(lists[queries], truth[queries], ks=ks, metrics=tuple(wanted))
    values = {(m, k): values[(m, k)] for m, ks_m in wanted.items() for k in ks_m}
    if direction == "user_to_item":
        values[("coverage", COVERAGE_K)] = metrics.catalog_coverage(lists, n_catalog, COVERAGE_K)
    return _rows(model, direction, values)


def served_lists(result: two_stage.ScoreResult, user_ids: pd.Index, item_ids: pd.Index):
    """The served frames as index lists over the evaluation's known users and items.

    Rows for users/items unknown at the cutoff are dropped (they are not queries); an
    unknown item inside a known user's list stays as a miss (-1) in its slot.
    Returns (user_items, user_item_scores, item_users, item_user_scores).
    """

    def lists(frame, owner_col, member_col, owners, members, width):
        idx = np.full((len(owners), width), -1, dtype=np.int64)
        val = np.full((len(owners), width), np.nan)
        if len(frame):
            o = owners.get_indexer(frame[owner_col])
            m = members.get_indexer(frame[member_col])
            r = frame["rank"].to_numpy() - 1
            ok = (o >= 0) & (r < width)
            idx[o[ok], r[ok]] = m[ok]
            val[o[ok], r[ok]] = frame["score"].to_numpy()[ok]
        return idx, val

    width_ui = int(result.user_item_scores["rank"].max()) if len(result.user_item_scores) else 1
    width_iu = int(result.item_user_scores["rank"].max()) if len(result.item_user_scores) else 1
    ui, ui_s = lists(result.user_item_scores, "user_id", "item_id", user_ids, item_ids, width_ui)
    iu, iu_s = lists(result.item_user_scores, "item_id", "user_id", item_ids, user_ids, width_iu)
    return ui, ui_s, iu, iu_s


def _ece_rows(lists, scores, truth, k, direction, curves: list | None = None):
    """ECE of served probabilities over the served (query, target) pairs in the top k; the
    bins behind it are appended to ``curves`` (for the calibration plot)."""
    lists, scores = lists[:, :k], scores[:, :k]
    filled = lists >= 0
    if not filled.any():
        return []
    hits = metrics.hits_matrix(lists, truth)
    prob = np.clip(scores[filled], 0.0, 1.0)
    outcome = hits[filled].astype(float)
    if curves is not None:
        for row in metrics.calibration_curve(prob, outcome):
            curves.append({"model": f"served {direction}", "direction": direction, **row})
    return _rows(
        "served", direction, {("ece", k): metrics.expected_calibration_error(prob, outcome)}
    )


def evaluate(
    interactions: pd.DataFrame,
    users: pd.DataFrame | None = None,
    items: pd.DataFrame | None = None,
    *,
    cutoff,
    horizon_days: float = 30,
    params: dict | None = None,
    models=MODELS,
    cold_item_fraction: float = 0.1,
    random_state=0,
) -> EvaluationResult:
    """Run the evaluation protocol (docs/evaluation.md; module docstring). ``params`` are
    serving params (the ``served`` model uses them as they are, except that list lengths
    are raised to at least 20 items / 100 users so that every metric can be computed;
    ``als`` uses their MF part and tuning grid)."""
    cutoff = pd.Timestamp(cutoff)
    end = cutoff + pd.Timedelta(days=horizon_days)
    # Only the rows the fits read stay alive while they run: at 20M interactions each
    # frame is a GB, and the fits are the peak. The caller's frame goes as soon as nothing
    # else names it (the dbt model passes it without keeping a name on it); the whole
    # split frame goes once the truth is read from it.
    frame = interactions_before(normalise_interactions(interactions), end)
    del interactions
    train = interactions_before(frame, cutoff)
    p = two_stage.resolve_params(params)
    # Without an items frame there is nothing to build a day-0 audience from: no segment.
    fraction = cold_item_fraction if items is not None and len(items) else 0.0
    cold_ids = _pick_cold_items(frame, train, cutoff, end, fraction, random_state)
    # The held-out items' own rows, for their segment; the full frames are not kept (at
    # 20M interactions each copy is a GB).
    is_cold = frame["item_id"].isin(cold_ids).to_numpy()
    cold_frame = frame[is_cold]
    cold_test = cold_frame[cold_frame["occurred_at"] >= cutoff]
    cold_before = cold_frame[cold_frame["occurred_at"] < cutoff]
    del cold_frame
    if is_cold.any():
        frame = frame[~is_cold]
        train = interactions_before(frame, cutoff)
    base = build_interaction_matrix(train, cutoff, half_life_days=p["half_life_days"])
    truth_ui = new_pairs_matrix(frame, base, cutoff, end)
    truth_iu = sp.csr_matrix(truth_ui.T)
    del frame, is_cold  # every model below reads the training rows only
    n_i = base.n_items
    rows, param_rows, curves = [], [], []
    if truth_ui.nnz == 0:
        log.warning("evaluation: no relevant pair in the test window; nothing to score")
        return EvaluationResult(
            _metrics_frame(rows), _params_frame(param_rows), pd.DataFrame(curves)
        )

    def record_params(model, values: dict):
        param_rows.extend(
            {"model": model, "parameter": key, "value": str(value)} for key, value in values.items()
        )

    truth = (truth_ui, truth_iu)
    # the served settings, with lists long enough for every metric
    served_params = {
        **(params or {}),
        "k_items": max(int(p["k_items"]), K_ITEMS),
        "k_users": max(int(p["k_users"]), K_USERS),
    }
    served = None
    if "served" in models:
        served = two_stage.Recommender(served_params).fit(train, users, items, as_of=cutoff)
    if "als" in models:
        # plain MF tunes on the same window with the same grid as the served model's first
        # stage: the same search, so its result is taken from the served fit when it ran
        tuned = getattr(served, "mf_params_", None) if p["tune"] and p["tune_grid"] else None
        als_rows, als_params = _als_rows(train, cutoff, horizon_days, p, base, truth, tuned)
        rows += als_rows
        record_params("als", als_params)
    rows += _simple_baseline_rows(models, base, truth, random_state)
    if "recent_popularity" in models or "recently_active_users" in models:
        recency_rows, windows = _recency_rows(models, train, cutoff, horizon_days, base, truth)
        rows += recency_rows
        for model, window in windows.items():
            record_params(model, window)
    if "random" in models:
        record_params("random", {"random_state": random_state})
    if served is not None:
        result = served.recommend()
        ui, ui_s, iu, iu_s = served_lists(result, base.user_ids, base.item_ids)
        rows += _score_lists("served", "user_to_item", ui, truth_ui, n_i)
        rows += _score_lists("served", "item_to_user", iu, truth_iu, n_i)
        if result.stage == "two_stage":
            rows += _ece_rows(ui, ui_s, truth_ui, COVERAGE_K, "user_to_item", curves)
            rows += _ece_rows(iu, iu_s, truth_iu, K_USERS, "item_to_user", curves)
        if len(cold_ids):
            rows += _cold_rows(result, cold_before, cold_test, cold_ids, items, base, random_state)
        record_params(
            "served",
            {
                "stage": result.stage,
                "cold_items_held_out": len(cold_ids),
                **dict(zip(result.params["parameter"], result.params["value"], strict=True)),
            },
        )
    if "served_stages_week_old" in models:
        reused_rows, reused_params = _week_old_stages_rows(
            train, users, items, cutoff, served_params, base, truth
        )
        rows += reused_rows
        record_params("served_stages_week_old", reused_params)
    return EvaluationResult(_metrics_frame(rows), _params_frame(param_rows), pd.DataFrame(curves))


def _week_old_stages_rows(train, users, items, cutoff, served_params, base, truth):
    """``served_stages_week_old``: stages trained one weekly gap before the cutoff, reused
    by a fit as of the cutoff (MF refitted, nothing trained); its metric rows and params."""
    truth_ui, truth_iu = truth
    week_old = cutoff - pd.Timedelta(days=REUSED_STAGES_AGE_DAYS)
    stages = (
        two_stage.Recommender(served_params)
        .fit(train, users, items, as_of=week_old)
        .trained_stages()
    )
    reused = two_stage.Recommender(served_params).fit(
        train, users, items, as_of=cutoff, stages=stages
    )
    ui, _, iu, _ = served_lists(reused.recommend(), base.user_ids, base.item_ids)
    name = "served_stages_week_old"
    rows = _score_lists(name, "user_to_item", ui, truth_ui, base.n_items)
    rows += _score_lists(name, "item_to_user", iu, truth_iu, base.n_items)
    return rows, {
        "stage": reused.stage_,
        "stages": reused.stages_used_,
        "stages_as_of": week_old,
        "mf_warm_start": reused.params_used_["mf_warm_start"],
    }


def _als_rows(train, cutoff, horizon_days, p, base, truth, tuned=None) -> tuple[list, dict]:
    """Plain MF (implicit ALS, tuned on the window before the cutoff like the served model's
    first stage; ``tuned``: that search's result, when the served fit already made it),
    scored both ways: its metric rows and the parameters it used."""
    truth_ui, truth_iu = truth
    mf_params = tuning.mf_params(p)
    if tuned is not None:
        mf_params = {key: tuned[key] for key in mf_params}
    elif p["tune"] and p["tune_grid"]:
        mf_params, _ = tuning.tune_mf(
            train,
            cutoff,
            horizon_days=horizon_days,
            base_params=mf_params,
            grid=p["tune_grid"],
            half_life_days=p["half_life_days"],
            block_size=p["block_size"],
        )
    mf = ImplicitMF(**mf_params).fit(base.matrix)
    top = topk_both(
        mf.user_factors_,
        mf.item_factors_,
        k_items=K_ITEMS,
        k_users=K_USERS,
        exclude=base.seen,
        block_size=p["block_size"],
    )
    rows = _score_lists("als", "user_to_item", top.user_items, truth_ui, base.n_items)
    rows += _score_lists("als", "item_to_user", top.item_users, truth_iu, base.n_items)
    return rows, {**mf_params, "half_life_days": p["half_life_days"]}


def _simple_baseline_rows(models, base, truth, random_state) -> list:
    """Metric rows of the baselines that learn nothing: popularity (user -> item), heavy
    users (item -> user) and random (both)."""
    truth_ui, truth_iu = truth
    n_u, n_i = base.n_users, base.n_items
    rows = []
    if "popularity" in models:
        item_pop = np.asarray(base.seen.sum(axis=0)).ravel()
        top = topk_both(
            np.ones((n_u, 1)), item_pop[:, None], k_items=K_ITEMS, k_users=0, exclude=base.seen
        )
        rows += _score_lists("popularity", "user_to_item", top.user_items, truth_ui, n_i)
    if "heavy_users" in models:
        user_act = np.asarray(base.seen.sum(axis=1)).ravel()
        top = topk_both(
            user_act[:, None], np.ones((n_i, 1)), k_items=0, k_users=K_USERS, exclude=base.seen
        )
        rows += _score_lists("heavy_users", "item_to_user", top.item_users, truth_iu, n_i)
    if "random" in models:
        rng = np.random.default_rng(random_state)
        top = topk_both(
            rng.standard_normal((n_u, 32)),
            rng.standard_normal((n_i, 32)),
            k_items=K_ITEMS,
            k_users=K_USERS,
            exclude=base.seen,
        )
        rows += _score_lists("random", "user_to_item", top.user_items, truth_ui, n_i)
        rows += _score_lists("random", "item_to_user", top.item_users, truth_iu, n_i)
    return rows


def _recency_rows(models, train, cutoff, horizon_days, base, truth) -> tuple[list, dict]:
    """``recent_popularity`` (user -> item) and ``recently_active_users`` (item -> user),
    each with its window chosen on the validation window before the cutoff
    (tuning.choose_recency_windows): metric rows, and per model its window and validation
    figure."""
    truth_ui, truth_iu = truth
    chosen, tried = tuning.choose_recency_windows(train, cutoff, horizon_days=horizon_days)
    user_items, item_users = recency_lists(
        train,
        cutoff,
        user_ids=base.user_ids,
        item_ids=base.item_ids,
        exclude=base.seen,
        item_window_days=chosen["item_window_days"],
        user_window_days=chosen["user_window_days"],
        k_items=K_ITEMS,
        k_users=K_USERS,
    )

    def validated(window, column):
        if tried.empty:
            return {"window_days": "all", "chosen_on": "nothing to validate on"}
        at = tried["window_days"].map(lambda d: d == window)
        return {
            "window_days": "all" if window is None else window,
            f"validation_{column}": round(float(tried.loc[at, column].iloc[0]), 6),
        }

    rows, windows = [], {}
    if "recent_popularity" in models:
        rows += _score_lists(
            "recent_popularity", "user_to_item", user_items, truth_ui, base.n_items
        )
        windows["recent_popularity"] = validated(
            chosen["item_window_days"], f"ndcg@{metrics.OBJECTIVE_K_ITEMS}"
        )
    if "recently_active_users" in models:
        rows += _score_lists(
            "recently_active_users", "item_to_user", item_users, truth_iu, base.n_items
        )
        windows["recently_active_users"] = validated(
            chosen["user_window_days"], f"recall@{metrics.OBJECTIVE_K_USERS}"
        )
    return rows, windows


def _pick_cold_items(frame, train, cutoff, end, fraction, random_state) -> pd.Index:
    """A seeded sample of the items with a new buyer in the test window."""
    if not fraction or fraction <= 0:
        return pd.Index([])
    test = frame[(frame["occurred_at"] >= cutoff) & (frame["occurred_at"] < end)]
    pairs = test[["user_id", "item_id"]].drop_duplicates()
    seen = train[["user_id", "item_id"]].drop_duplicates().assign(seen=True)
    pairs = pairs.merge(seen, on=["user_id", "item_id"], how="left")
    new = pairs["seen"].isna().to_numpy()
    candidates = pairs[new & pairs["user_id"].isin(train["user_id"].unique()).to_numpy()]
    ids = np.sort(candidates["item_id"].unique())
    # known items only, like segment all (pandas: numpy isin compares object arrays pairwise)
    ids = ids[pd.Index(ids).isin(train["item_id"].unique())]
    n = int(round(fraction * ids.size))
    if n == 0:
        return pd.Index([])
    rng = np.random.default_rng(random_state)
    return pd.Index(np.sort(rng.choice(ids, size=n, replace=False)))


def _cold_rows(result, before, test, cold_ids, items, base, seed):
    """Metric rows of segment cold_items: served day-0 audiences against baselines.
    ``before`` / ``test``: the held-out items' interactions before the cutoff / in the
    test window."""
    cold = pd.Index(cold_ids)
    n_c, n_u = len(cold), base.n_users

    def pair_matrix(rows):
        c = cold.get_indexer(rows["item_id"])
        u = base.user_ids.get_indexer(rows["user_id"])
        ok = (c >= 0) & (u >= 0)
        m = sp.csr_matrix((np.ones(int(ok.sum())), (c[ok], u[ok])), shape=(n_c, n_u))
        m.data[:] = 1.0
        return m

    truth = pair_matrix(test) - pair_matrix(before).multiply(pair_matrix(test))
    truth.eliminate_zeros()
    truth = sp.csr_matrix(truth)
    truth.data[:] = 1.0
    rows = []

    def add(model, lists):
        queries = np.diff(truth.indptr) > 0
        wanted = ITEM_TO_USER
        ks = sorted({k for ks in wanted.values() for k in ks})
        values = metrics.ranking_metrics(
            lists[queries], truth[queries], ks=ks, metrics=tuple(wanted)
        )
        values = {(m, k): values[(m, k)] for m, ks_m in wanted.items() for k in ks_m}
        rows.extend(_rows(model, "item_to_user", values, segment="cold_items"))

    # served: its rows for the held-out items (a new item without audience = all misses)
    served = result.item_user_scores
    served = served[served["item_id"].isin(cold)]
    lists = np.full((n_c, K_USERS), -1, dtype=np.int64)
    if len(served):
        c = cold.get_indexer(served["item_id"])
        u = base.user_ids.get_indexer(served["user_id"])
        r = served["rank"].to_numpy() - 1
        ok = (u >= 0) & (r < K_USERS)
        lists[c[ok], r[ok]] = u[ok]
    add("served", lists)

    # category_affinity: share of the user's training items in the item's category
    category = np.full(n_c, -1, dtype=np.int64)
    share = None
    if items is not None and "category" in items:
        cats = items.drop_duplicates("item_id").set_index("item_id")["category"]
        codes, names = pd.factorize(cats.reindex(base.item_ids))
        if len(names):
            has = codes >= 0
            onehot = sp.csr_matrix(
                (np.ones(int(has.sum()), np.float32), (np.flatnonzero(has), codes[has])),
                shape=(base.n_items, len(names)),
            )
            per_cat = np.asarray((base.seen @ onehot).todense(), dtype=np.float32)
            share = per_cat / np.maximum(per_cat.sum(axis=1, keepdims=True), 1.0)
            category = pd.Index(names).get_indexer(cats.reindex(cold)).astype(np.int64)
    activity = np.log1p(np.asarray(base.seen.sum(axis=1)).ravel())
    users_v, items_v = category_affinity_vectors(share, activity, category)
    top = topk_both(users_v, items_v, k_items=0, k_users=K_USERS)
    add("category_affinity", top.item_users)
    top = topk_both(activity[:, None] + 1.0, np.ones((n_c, 1)), k_items=0, k_users=K_USERS)
    add("heavy_users", top.item_users)
    rng = np.random.default_rng(seed)
    top = topk_both(
        rng.standard_normal((n_u, 32)), rng.standard_normal((n_c, 32)), k_items=0, k_users=K_USERS
    )
    add("random", top.item_users)
    return rows


def _metrics_frame(rows) -> pd.DataFrame:
    cols = ["model", "direction", "segment", "metric", "k", "value"]
    return pd.DataFrame(rows, columns=cols).astype({"k": np.int64, "value": float})


def _params_frame(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["model", "parameter", "value"])
