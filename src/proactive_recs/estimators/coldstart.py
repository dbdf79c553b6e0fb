"""Day-0 item vectors: MF item factors predicted from item attributes.

A brand-new item has no interactions, so matrix factorization has no vector for it.
:class:`ItemAttributeModel` learns, on the warm items, a linear map from what the
catalog says about an item to its MF factors:

* ``title`` — TF-IDF of its words (sublinear term frequency, words in at least
  ``min_df`` warm titles);
* ``category`` and every other text attribute with few distinct values (``brand``,
  ``colour``, ...) — one-hot;
* ``price`` — its band among the warm items' prices (``price_bands`` quantile bands of
  log price, one-hot), so that "cheap" and "premium" items get their own direction.

The map is a ridge regression (one output per factor) weighted by how well each warm
item's factors are known (log of its number of interactions). An item is *usable* when
at least one of its features is known to the model (a title word seen on a warm item, a
known category, ...); an item without any usable attribute gets no vector — the caller
lists it with a reason instead of guessing.

Items with a few interactions can be *folded in*: see
:meth:`proactive_recs.estimators.mf.ImplicitMF.fold_in_items`, which takes this model's
prediction as the prior.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from proactive_recs.data.availability import available_at

__all__ = [
    "NON_ATTRIBUTE_COLUMNS",
    "ColdItemRanker",
    "ColdItems",
    "ItemAttributeModel",
    "category_affinity_vectors",
    "cold_candidates",
    "cold_pair_features",
    "cold_training_examples",
    "describe_cold_items",
    "fit_attribute_model",
]

# Columns of an items frame that are not descriptive attributes: keys, links, the
# availability window (it says when, not what) and per-run or per-history figures.
NON_ATTRIBUTE_COLUMNS = frozenset(
    {
        "item_id",
        "title",
        "price",
        "url",
        "image_url",
        "available_from",
        "available_until",
        "availability_status",
        "is_available",
        "availability_as_of",
        "n_interactions",
        "n_users",
        "days_since_available",
        "passes_filter",
        "boost",
    }
)
_MAX_LEVELS = 500  # text attributes with more distinct values are identifiers, not attributes


class ItemAttributeModel:
    """Predict MF item factors from item attributes (scikit-learn style).

    Parameters
    ----------
    alpha : ridge penalty.
    min_df : a title word must appear in at least this many warm titles.
    max_title_words : vocabulary size cap of the TF-IDF.
    price_bands : number of quantile bands of log price.

    Attributes
    ----------
    vectorizer_ : fitted ``TfidfVectorizer`` (None when no warm item has a title)
    levels_ : {column: array of known values} for the one-hot attributes
    price_edges_ : inner edges of the log-price bands (empty without prices)
    ridge_ : fitted ``sklearn.linear_model.Ridge``
    n_features_ : width of the feature matrix
    """

    def __init__(
        self,
        alpha: float = 1.0,
        min_df: int = 2,
        max_title_words: int = 20_000,
        price_bands: int = 5,
    ):
        self.alpha = alpha
        self.min_df = min_df
        self.max_title_words = max_title_words
        self.price_bands = price_bands

    # ------------------------------------------------------------------ features

    @staticmethod
    def attribute_columns(items: pd.DataFrame) -> list[str]:
        """Text columns used one-hot: category plus extra attributes with few values."""
        columns = []
        for name in items.columns:
            if name in NON_ATTRIBUTE_COLUMNS:
                continue
            values = items[name]
            if not (pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values)):
                continue
            if name == "category" or values.nunique(dropna=True) <= _MAX_LEVELS:
                columns.append(name)
        return columns

    def _features(self, items: pd.DataFrame) -> sp.csr_matrix:
        n = len(items)
        blocks = []
        if self.vectorizer_ is not None and "title" in items:
            titles = items["title"].fillna("").astype(str)
            blocks.append(self.vectorizer_.transform(titles))
        for name, known in self.levels_.items():
            values = items[name] if name in items else pd.Series([None] * n)
            code = pd.Index(known).get_indexer(values.astype(object).where(values.notna(), None))
            has = code >= 0
            blocks.append(
                sp.csr_matrix(
                    (np.ones(int(has.sum())), (np.flatnonzero(has), code[has])),
                    shape=(n, len(known)),
                )
            )
        if len(self.price_edges_):
            log_price = self._log_price(items)
            band = np.searchsorted(self.price_edges_, log_price)
            has = np.isfinite(log_price)
            blocks.append(
                sp.csr_matrix(
                    (np.ones(int(has.sum())), (np.flatnonzero(has), band[has])),
                    shape=(n, len(self.price_edges_) + 1),
                )
            )
        if not blocks:
            return sp.csr_matrix((n, 0))
        return sp.csr_matrix(sp.hstack(blocks))

    @staticmethod
    def _log_price(items: pd.DataFrame) -> np.ndarray:
        if "price" not in items:
            return np.full(len(items), np.nan)
        price = pd.to_numeric(items["price"], errors="coerce").to_numpy(dtype=float)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(price > 0, np.log(price), np.nan)

    # ------------------------------------------------------------------ fit / predict

    def fit(self, items: pd.DataFrame, factors: np.ndarray, n_interactions=None):
        """``items`` rows aligned with ``factors`` (the warm items' MF vectors);
        ``n_interactions`` (optional) weights each item by ``log1p`` of it."""
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import Ridge

        items = items.reset_index(drop=True)
        factors = np.asarray(factors, dtype=np.float64)
        if len(items) != factors.shape[0]:
            raise ValueError("items and factors must have the same number of rows")
        self.vectorizer_ = None
        if "title" in items and items["title"].notna().any():
            vectorizer = TfidfVectorizer(
                min_df=min(self.min_df, max(1, len(items))),
                max_features=self.max_title_words,
                sublinear_tf=True,
                token_pattern=r"(?u)\b[^\W\d_][^\W\d_]+\b",  # words, not sizes or codes
            )
            try:
                vectorizer.fit(items["title"].fillna("").astype(str))
                self.vectorizer_ = vectorizer
            except ValueError:  # no word survives min_df: titles carry nothing here
                self.vectorizer_ = None
        self.levels_ = {
            name: np.sort(items[name].dropna().astype(str).unique())
            for name in self.attribute_columns(items)
            if items[name].notna().any()
        }
        log_price = self._log_price(items)
        finite = log_price[np.isfinite(log_price)]
        self.price_edges_ = np.array([])
        if finite.size >= self.price_bands and self.price_bands > 1:
            quantiles = np.linspace(0, 1, self.price_bands + 1)[1:-1]
            self.price_edges_ = np.unique(np.quantile(finite, quantiles))
        X = self._features(items)
        self.n_features_ = X.shape[1]
        weight = None if n_interactions is None else np.log1p(np.asarray(n_interactions, float))
        self.ridge_ = Ridge(alpha=self.alpha, fit_intercept=True)
        if self.n_features_ == 0:  # nothing to learn from: every prediction is the mean
            X = sp.csr_matrix(np.zeros((len(items), 1)))
        self.ridge_.fit(X, factors, sample_weight=weight)
        return self

    def usable(self, items: pd.DataFrame) -> np.ndarray:
        """True where the item has at least one attribute the model knows."""
        self._check_fitted()
        # No rows (a snapshot without new items, found by make simulate on day 19): the
        # vectorisers refuse an empty input.
        if self.n_features_ == 0 or len(items) == 0:
            return np.zeros(len(items), dtype=bool)
        return np.diff(self._features(items.reset_index(drop=True)).indptr) > 0

    def predict(self, items: pd.DataFrame) -> np.ndarray:
        """Predicted factors (float32), one row per item; rows of unusable items are the
        mean warm vector (check :meth:`usable` before trusting them)."""
        self._check_fitted()
        items = items.reset_index(drop=True)
        X = self._features(items) if self.n_features_ else sp.csr_matrix((len(items), 1))
        return np.asarray(self.ridge_.predict(X), dtype=np.float32).reshape(len(items), -1)

    def _check_fitted(self):
        if not hasattr(self, "ridge_"):
            raise RuntimeError("ItemAttributeModel is not fitted yet")


# ---------------------------------------------------------------- cold items in a snapshot
#
# The second stage (ranker.py) scores pairs of a snapshot's warm items. Items without a
# single interaction before the snapshot get their own, smaller model (ColdItemRanker)
# over pairs described by what is known on day 0: the predicted-factor affinity, the
# user's taste for the item's category and how active the user is. It is trained on the
# items that were brand-new at past snapshots, so its probabilities are those of a new
# item, not of an established one.

_STATIC_ITEM_FEATURES = ("i_price", "i_available_for", "i_available_left")


@dataclass(frozen=True)
class ColdItems:
    """Items without history as seen from a snapshot: predicted vectors and features."""

    item_ids: pd.Index
    factors: np.ndarray  # (n, factors) float32, predicted from attributes
    category: np.ndarray  # code in snapshot.categories, -1 when unknown
    features: pd.DataFrame  # static item features, one row per item


def _items_in_order(items: pd.DataFrame, item_ids) -> pd.DataFrame:
    """One row per id of ``item_ids`` (all-null rows for ids the frame lacks)."""
    index = pd.Index(item_ids, name="item_id")
    return items.drop_duplicates("item_id").set_index("item_id").reindex(index).reset_index()


def fit_attribute_model(snap, items: pd.DataFrame | None, **params) -> ItemAttributeModel | None:
    """An :class:`ItemAttributeModel` trained on the snapshot's warm items, or None when
    the items frame says nothing about them."""
    if items is None or not len(items):
        return None
    frame = _items_in_order(items, snap.data.item_ids)
    described = [
        c for c in frame.columns if c in ("title", "price") or c not in NON_ATTRIBUTE_COLUMNS
    ]
    known = frame[described].notna().any(axis=1).to_numpy()
    if known.sum() < 2:
        return None
    weights = snap.item_features["i_users"].to_numpy()
    return ItemAttributeModel(**params).fit(
        frame[known], snap.mf.item_factors_[known], n_interactions=weights[known]
    )


def describe_cold_items(snap, model: ItemAttributeModel | None, items: pd.DataFrame, item_ids):
    """(ColdItems of the usable items, ids of the items without usable attributes)."""
    item_ids = pd.Index(item_ids)
    frame = _items_in_order(items, item_ids)
    usable = model.usable(frame) if model is not None else np.zeros(len(frame), dtype=bool)
    frame = frame[usable].reset_index(drop=True)
    factors = (
        model.predict(frame)
        if model is not None and len(frame)
        else np.zeros((0, snap.mf.item_factors_.shape[1]), np.float32)
    )
    category = np.full(len(frame), -1, dtype=np.int64)
    if "category" in frame and len(snap.categories):
        category = snap.categories.get_indexer(frame["category"]).astype(np.int64)
    features = pd.DataFrame(index=pd.RangeIndex(len(frame)))
    as_of = snap.as_of
    features["i_price"] = (
        pd.to_numeric(frame["price"], errors="coerce").to_numpy(float)
        if "price" in frame
        else np.nan
    )
    for name, column, sign in (
        ("i_available_for", "available_from", 1.0),
        ("i_available_left", "available_until", -1.0),
    ):
        if column in frame:
            when = pd.to_datetime(frame[column])
            features[name] = sign * ((as_of - when).dt.total_seconds() / 86400.0).to_numpy()
        else:
            features[name] = np.nan
    cold = ColdItems(
        item_ids=pd.Index(frame["item_id"]),
        factors=factors,
        category=category,
        features=features.astype(np.float32),
    )
    return cold, item_ids[~usable]


def _activity(snap) -> np.ndarray:
    uf = snap.user_features
    return (np.log1p(uf["u_items"].to_numpy()) + np.log1p(uf["u_items_3h"].to_numpy())).astype(
        np.float32
    )


def category_affinity_vectors(category_share, activity, item_category: np.ndarray):
    """(user vectors, item vectors) whose dot product ranks users by their share of
    history in the item's category, ties broken towards more active users; items
    without a known category rank users by activity alone.

    category_share : (n_users, n_categories) or None; activity : (n_users,) >= 0;
    item_category : code per item into the category columns, -1 when unknown.
    """
    activity = np.asarray(activity, dtype=np.float32)
    tie = 1e-3 * activity / max(float(activity.max(initial=0.0)), 1.0)
    n_items = len(item_category)
    if category_share is None or category_share.shape[1] == 0:
        return activity[:, None] + 1.0, np.ones((n_items, 1), np.float32)
    n_cat = category_share.shape[1]
    users = np.hstack([category_share, tie[:, None], activity[:, None]]).astype(np.float32)
    items = np.zeros((n_items, n_cat + 2), np.float32)
    has = item_category >= 0
    items[np.flatnonzero(has), item_category[has]] = 1.0
    items[:, n_cat] = np.where(has, 1.0, 0.0)
    items[:, n_cat + 1] = np.where(has, 0.0, 1.0)
    return users, items


def cold_candidates(
    snap,
    cold: ColdItems,
    *,
    per_item: int,
    active_per_item: int,
    user_mask=None,
    user_boost=None,
    item_boost=None,
    block_size=None,
) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (user, cold item) pairs sorted by (item, user): each cold item's best
    users by predicted-factor affinity, by category share, and the most active users."""
    from proactive_recs.estimators.topk import distinct_pairs, topk_both

    n_cold = len(cold.item_ids)
    if n_cold == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    common = dict(
        user_mask=user_mask, user_boost=user_boost, item_boost=item_boost, block_size=block_size
    )
    lists = [topk_both(snap.mf.user_factors_, cold.factors, k_items=0, k_users=per_item, **common)]
    users_v, items_v = category_affinity_vectors(
        snap.category_share if len(snap.categories) else None, _activity(snap), cold.category
    )
    lists.append(topk_both(users_v, items_v, k_items=0, k_users=per_item, **common))
    if active_per_item:
        lists.append(
            topk_both(
                _activity(snap)[:, None] + 1.0,
                np.ones((n_cold, 1), np.float32),
                k_items=0,
                k_users=active_per_item,
                **common,
            )
        )
    items, users = distinct_pairs(n_cold, owner_lists=[top.item_users for top in lists])
    return users, items


def cold_pair_features(snap, cold: ColdItems, u: np.ndarray, j: np.ndarray) -> pd.DataFrame:
    """Features of pairs (user u, cold item j): day-0 knowledge only."""
    U, V = snap.mf.user_factors_, snap.mf.item_factors_
    mf = np.einsum("ij,ij->i", U[u], cold.factors[j])
    row_mean = U @ V.mean(axis=0)
    row_std = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", U, np.cov(V.T), U), 0)) + 1e-6
    frame = pd.DataFrame({"mf": mf, "mf_z_user": (mf - row_mean[u]) / row_std[u]})
    cat = cold.category[j]
    if snap.category_share is not None and len(snap.categories):
        share = np.where(cat >= 0, snap.category_share[u, np.maximum(cat, 0)], np.nan)
    else:
        share = np.full(u.size, np.nan)
    frame["category_share"] = share
    users = snap.user_features.iloc[u].reset_index(drop=True)
    items = cold.features.iloc[j].reset_index(drop=True)
    return pd.concat([frame.astype(np.float32), users, items], axis=1)


def cold_training_examples(
    snap,
    items: pd.DataFrame,
    future: pd.DataFrame,
    *,
    per_item: int,
    active_per_item: int,
    negative_rate: float,
    rng: np.random.Generator,
    attribute_params: dict | None = None,
    block_size=None,
):
    """Labelled (user, new item) pairs at one past snapshot, or None.

    The new items of the snapshot are the items of ``items`` without an interaction
    before it that either sell in the following horizon (``future``: the interactions
    of ``[as_of, as_of + horizon)``) or were already on sale at ``as_of`` — the latter
    teach the ranker that some new items sell to nobody. A pair is positive when the
    user interacted with the item in the horizon.
    """
    model = fit_attribute_model(snap, items, **(attribute_params or {}))
    if model is None:
        return None
    catalog = items.drop_duplicates("item_id").set_index("item_id")
    unseen = catalog.index[~catalog.index.isin(snap.data.item_ids)]
    sold = pd.Index(future["item_id"].unique())
    # the availability rule's one home (a null available_from is open: on sale)
    on_sale = catalog.index[available_at(catalog, snap.as_of)]
    # Sorted: the rows below (and the negatives ``rng`` samples among them) follow this
    # order, which must not be the order of the items frame's rows.
    new_ids = unseen[unseen.isin(sold) | unseen.isin(on_sale)].sort_values()
    if not len(new_ids):
        return None
    cold, _ = describe_cold_items(snap, model, items, new_ids)
    if not len(cold.item_ids):
        return None
    u, j = cold_candidates(
        snap, cold, per_item=per_item, active_per_item=active_per_item, block_size=block_size
    )
    fu = snap.data.user_ids.get_indexer(future["user_id"])
    fj = cold.item_ids.get_indexer(future["item_id"])
    ok = (fu >= 0) & (fj >= 0)
    positive = np.unique(fj[ok].astype(np.int64) * snap.data.n_users + fu[ok])
    y = np.isin(j * snap.data.n_users + u, positive)
    if not y.any():
        return None
    keep = y | (rng.random(y.size) < negative_rate)
    return cold_pair_features(snap, cold, u[keep], j[keep]), y[keep]


class ColdItemRanker:
    """P(user interacts with a brand-new item within the horizon | day-0 pair features).

    A logistic regression on a handful of features — predicted-factor affinity (raw and
    standardised over the user's row), the user's share of history in the item's
    category, and the user's activity (log counts) — because past windows hold only a
    few hundred buyers of new items: a gradient-boosted model with every feature was
    measured worse than the predicted-factor score alone on the demo data, this one
    better than both.

    Parameters
    ----------
    C : inverse L2 penalty of the logistic regression (features are standardised).
    negative_weight : weight of each negative row (inverse of the negative sampling rate),
        so the probabilities are those of the unsampled candidates.

    Attributes
    ----------
    model_ : fitted scikit-learn pipeline (StandardScaler, LogisticRegression)
    """

    FEATURES = ("mf", "mf_z_user", "category_share", "u_items", "u_items_3h", "u_new_h")

    def __init__(self, C: float = 1.0, negative_weight: float = 10.0):
        self.C = C
        self.negative_weight = negative_weight

    @classmethod
    def _design(cls, X: pd.DataFrame) -> np.ndarray:
        out = np.column_stack(
            [
                X["mf"].to_numpy(float),
                X["mf_z_user"].to_numpy(float),
                X["category_share"].fillna(0.0).to_numpy(float),
                np.log1p(X["u_items"].to_numpy(float)),
                np.log1p(X["u_items_3h"].to_numpy(float)),
                np.log1p(X["u_new_h"].to_numpy(float)),
            ]
        )
        return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)

    def fit(self, X: pd.DataFrame, y) -> ColdItemRanker:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        y = np.asarray(y, dtype=bool)
        weight = np.where(y, 1.0, float(self.negative_weight))
        self.model_ = make_pipeline(StandardScaler(), LogisticRegression(C=self.C, max_iter=1000))
        self.model_.fit(self._design(X), y, logisticregression__sample_weight=weight)
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        if not hasattr(self, "model_"):
            raise RuntimeError("ColdItemRanker is not fitted yet")
        return self.model_.predict_proba(self._design(X))
