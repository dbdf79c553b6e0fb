"""The evaluation protocol (docs/evaluation.md) on a hand-made split, and the served path."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from proactive_recs.data.interactions import normalise_interactions
from proactive_recs.evaluation import protocol as evaluation
from proactive_recs.evaluation.protocol import evaluate
from proactive_recs.recommender import two_stage

CUTOFF = pd.Timestamp("2024-01-10")


def _rows(*events):
    return pd.DataFrame(
        [(u, i, pd.Timestamp(t)) for u, i, t in events],
        columns=["user_id", "item_id", "occurred_at"],
    )


# Training (before the cutoff): item buyers i1: u1 u2, i2: u1 u3, i3: u2, i4: u3.
# Test window [01-10, 01-20):
#   u1 re-buys i1 (not relevant: not new to u1) and buys i3 (relevant)
#   u2 buys i2 (relevant)
#   u4 buys i1: u4 is unknown before the cutoff -> not scored
#   u3 buys i5: i5 is unknown before the cutoff -> dropped, u3 has nothing relevant
# After the window: u3 buys i3 on 01-25 -> outside the horizon.
SPLIT = _rows(
    ("u1", "i1", "2024-01-01"),
    ("u1", "i2", "2024-01-02"),
    ("u2", "i1", "2024-01-03"),
    ("u2", "i3", "2024-01-04"),
    ("u3", "i2", "2024-01-05"),
    ("u3", "i4", "2024-01-06"),
    ("u1", "i1", "2024-01-11"),
    ("u1", "i3", "2024-01-12"),
    ("u2", "i2", "2024-01-13"),
    ("u4", "i1", "2024-01-14"),
    ("u3", "i5", "2024-01-15"),
    ("u3", "i3", "2024-01-25"),
)


def _value(frame, model, direction, metric, k):
    row = frame[
        (frame.model == model)
        & (frame.direction == direction)
        & (frame.metric == metric)
        & (frame.k == k)
    ]
    assert len(row) == 1, (model, direction, metric, k)
    return row["value"].iloc[0]


@pytest.fixture(scope="module")
def hand_made():
    return evaluate(
        SPLIT, cutoff=CUTOFF, horizon_days=10, models=("popularity", "heavy_users", "served")
    )


def test_result_frames_have_the_contract_columns(hand_made):
    assert list(hand_made.metrics.columns) == [
        "model",
        "direction",
        "segment",
        "metric",
        "k",
        "value",
    ]
    assert set(hand_made.metrics["segment"]) == {"all"}
    assert list(hand_made.params.columns) == ["model", "parameter", "value"]


def test_popularity_excludes_what_the_user_already_has(hand_made):
    # Popularity order (distinct buyers, ties to the lower id): i1 (2), i2 (2), i3 (1), i4 (1).
    # u1 already has i1, i2 -> [i3, i4]: i3 relevant at rank 1.
    # u2 already has i1, i3 -> [i2, i4]: i2 relevant at rank 1.
    # Queries: u1, u2 only (u3's test item is unknown, u4 is unknown).
    m = hand_made.metrics
    assert _value(m, "popularity", "user_to_item", "ndcg", 10) == pytest.approx(1.0)
    assert _value(m, "popularity", "user_to_item", "recall", 20) == pytest.approx(1.0)
    # one hit among 10 slots for each query
    assert _value(m, "popularity", "user_to_item", "precision", 10) == pytest.approx(0.1)
    assert _value(m, "popularity", "user_to_item", "map", 10) == pytest.approx(1.0)
    # Coverage is over every known user's list: u1 [i3, i4], u2 [i2, i4], and u3 (no
    # query, but served) [i1, i3] -> all 4 known items.
    assert _value(m, "popularity", "user_to_item", "coverage", 10) == pytest.approx(1.0)


def test_heavy_users_rank_users_without_the_item(hand_made):
    # Every known user has 2 items; ties go to the lower id: u1, u2, u3.
    # i3 (relevant: u1): u2 already has i3 -> [u1, u3]: hit at rank 1.
    # i2 (relevant: u2): u1, u3 already have i2 -> [u2]: hit at rank 1.
    m = hand_made.metrics
    assert _value(m, "heavy_users", "item_to_user", "recall", 50) == pytest.approx(1.0)
    assert _value(m, "heavy_users", "item_to_user", "ndcg", 100) == pytest.approx(1.0)


def test_served_falls_back_to_popularity_on_tiny_data_and_is_scored_the_same(hand_made):
    m = hand_made.metrics
    for metric, k in (("ndcg", 10), ("recall", 20), ("coverage", 10)):
        assert _value(m, "served", "user_to_item", metric, k) == pytest.approx(
            _value(m, "popularity", "user_to_item", metric, k)
        )
    assert _value(m, "served", "item_to_user", "recall", 100) == pytest.approx(1.0)
    stage = hand_made.params.query("model == 'served' and parameter == 'stage'")["value"]
    assert stage.tolist() == ["popularity"]


def test_served_sees_only_training_rows_and_the_cutoff(monkeypatch):
    calls = {}
    real_fit = two_stage.Recommender.fit

    def spy(self, interactions, users=None, items=None, as_of=None):
        calls["max_time"] = interactions["occurred_at"].max()
        calls["as_of"] = as_of
        calls["params"] = self.params
        return real_fit(self, interactions, users, items, as_of)

    monkeypatch.setattr(two_stage.Recommender, "fit", spy)
    evaluate(SPLIT, cutoff=CUTOFF, horizon_days=10, models=("served",), params={"k_items": 5})
    assert calls["max_time"] < CUTOFF and calls["as_of"] == CUTOFF
    # list lengths are raised to what the metrics need
    assert calls["params"]["k_items"] == 20 and calls["params"]["k_users"] == 100


def test_the_fits_run_with_the_training_rows_alone(monkeypatch):
    # At 20M interactions every frame is a GB and the fits are the evaluation's peak: while
    # they run, neither the frame the caller handed over (keeping no name on it, as the dbt
    # model does) nor the split's whole frame may still be alive.
    handed_over, seen_by_fit = [], {}
    real_fit = two_stage.Recommender.fit

    def spy(self, interactions, users=None, items=None, as_of=None):
        gc.collect()
        seen_by_fit["handed_over_alive"] = handed_over[0]() is not None
        seen_by_fit["rows"] = len(interactions)
        return real_fit(self, interactions, users, items, as_of)

    def hand_over():
        frame = normalise_interactions(SPLIT)  # normalised already: evaluate keeps it as it is
        handed_over.append(weakref.ref(frame))
        return frame

    monkeypatch.setattr(two_stage.Recommender, "fit", spy)
    out = evaluate(
        hand_over(), cutoff=CUTOFF, horizon_days=10, models=("served",), params={"k_items": 5}
    )
    assert seen_by_fit == {
        "handed_over_alive": False,
        "rows": int((SPLIT["occurred_at"] < CUTOFF).sum()),
    }
    assert not out.metrics.empty


def test_ranked_lists_never_contain_seen_pairs_or_unknown_ids():
    # The served frames mapped onto the evaluation's index: unknown ids disappear,
    # seen pairs are absent (serving excluded them).
    result = two_stage.score(SPLIT[SPLIT.occurred_at < CUTOFF], run_date=CUTOFF)
    users = pd.Index(["u1", "u2", "u3"])
    items = pd.Index(["i1", "i2", "i3", "i4"])
    ui, _, iu, _ = evaluation.served_lists(result, users, items)
    assert ui.shape[0] == 3 and iu.shape[0] == 4
    seen = {("u1", "i1"), ("u1", "i2"), ("u2", "i1"), ("u2", "i3"), ("u3", "i2"), ("u3", "i4")}
    for u, row in enumerate(ui):
        for i in row[row >= 0]:
            assert (users[u], items[i]) not in seen


def test_no_relevant_pair_gives_an_empty_frame():
    out = evaluate(SPLIT[SPLIT.occurred_at < CUTOFF], cutoff=CUTOFF, horizon_days=10)
    assert out.metrics.empty


def _synthetic(seed=1, n_users=200, n_items=80, n_events=6000):
    rng = np.random.default_rng(seed)
    group_u = rng.integers(0, 4, n_users)
    users = rng.integers(0, n_users, n_events)
    items = np.where(
        rng.random(n_events) < 0.85,
        group_u[users] + 4 * rng.integers(0, n_items // 4, n_events),
        rng.integers(0, n_items, n_events),
    )
    when = CUTOFF - pd.Timedelta(days=120) + pd.to_timedelta(rng.random(n_events) * 135, "D")
    return pd.DataFrame(
        {
            "user_id": [f"u{u}" for u in users],
            "item_id": [f"i{i}" for i in items],
            "occurred_at": when,
        }
    )


def test_full_protocol_on_synthetic_data():
    params = {
        "factors": 8,
        "iterations": 8,
        "tune_grid": [{"factors": 4}, {"factors": 8}],
        "horizon_days": 15,
        "training_windows": 2,
        "candidates_per_user": 30,
        "candidates_per_item": 40,
        "active_candidates_per_item": 20,
        "cold_active_candidates_per_item": 20,
        "popular_candidates_per_user": 10,
        "min_positives": 10,
    }
    out = evaluate(_synthetic(), cutoff=CUTOFF, horizon_days=15, params=params)
    m = out.metrics
    assert set(m.loc[m["segment"] == "all", "model"]) == set(evaluation.MODELS)
    # without an items frame there are no attributes: no cold_items segment (see
    # test_coldstart for the segment itself)
    assert set(m["segment"]) == {"all"}
    expected_u2i = {("ndcg", 10), ("recall", 10), ("recall", 20), ("precision", 10), ("map", 10)}
    for model in ("als", "popularity", "random", "served"):
        got = set(
            m.loc[(m.model == model) & (m.direction == "user_to_item"), ["metric", "k"]].itertuples(
                index=False, name=None
            )
        )
        assert expected_u2i | {("coverage", 10)} <= got
    # the group structure is learnable: MF and the served model beat random clearly
    for model in ("als", "served"):
        assert _value(m, model, "user_to_item", "ndcg", 10) > 2 * _value(
            m, "random", "user_to_item", "ndcg", 10
        )
        assert _value(m, model, "item_to_user", "recall", 50) > _value(
            m, "random", "item_to_user", "recall", 50
        )
    stage = out.params.query("model == 'served' and parameter == 'stage'")["value"].iloc[0]
    if stage == "two_stage":
        assert m.query("model == 'served' and metric == 'ece'")["value"].between(0, 1).all()
    chosen = out.params.query("model == 'als' and parameter == 'factors'")["value"].tolist()
    assert chosen in (["4"], ["8"])


# ------------------------------------------------------------------- Online Retail

ONLINE_RETAIL = (
    Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets" / "online_retail"
) / "online_retail.csv.gz"


def _online_retail_interactions() -> pd.DataFrame:
    """The usual cleaning: customer present, quantity > 0, not a cancellation ('C'
    invoice), price > 0, stock code starting with five digits; one purchase per line."""
    raw = pd.read_csv(ONLINE_RETAIL, dtype={"InvoiceNo": str, "StockCode": str, "CustomerID": str})
    keep = (
        raw["CustomerID"].notna()
        & (raw["Quantity"] > 0)
        & ~raw["InvoiceNo"].str.startswith("C")
        & (raw["UnitPrice"] > 0)
        & raw["StockCode"].str.match(r"^\d{5}")
    )
    raw = raw[keep]
    return pd.DataFrame(
        {
            "user_id": raw["CustomerID"].str.replace(".0", "", regex=False),
            "item_id": raw["StockCode"].str.strip().str.upper(),
            "occurred_at": pd.to_datetime(raw["InvoiceDate"]),
            "event_type": "purchase",
            "event_weight": 5.0,
            "quantity": raw["Quantity"].astype(float),
        }
    )


@pytest.mark.online_retail
@pytest.mark.skipif(not ONLINE_RETAIL.exists(), reason="Online Retail data set not present")
def test_online_retail_quality():
    """Cutoff 2011-11-09, horizon 30 days, default parameters (figures in
    docs/recommender.md). Targets: served user_to_item ndcg@10 >= 0.11 (met, ~0.146) and
    item_to_user recall@100 >= 0.25 (not met, ~0.214). Each direction serves the second
    stage at its own tree count, chosen on the last horizon before the cutoff (there, the
    item side at all 100 trees scores 0.184 against 0.224 at 20, below plain MF's 0.194);
    served is never below MF's figure, and above heavy users."""
    interactions = _online_retail_interactions()
    assert interactions["user_id"].nunique() == 4334
    out = evaluate(interactions, cutoff="2011-11-09", horizon_days=30)
    m = out.metrics

    # Baselines reproduce the reference figures of the protocol.
    assert _value(m, "popularity", "user_to_item", "ndcg", 10) == pytest.approx(0.034, abs=0.003)
    assert _value(m, "heavy_users", "item_to_user", "recall", 100) == pytest.approx(0.18, abs=0.01)
    assert 0.085 <= _value(m, "als", "user_to_item", "ndcg", 10) <= 0.11
    assert 0.18 <= _value(m, "als", "item_to_user", "recall", 100) <= 0.21

    served_ndcg = _value(m, "served", "user_to_item", "ndcg", 10)
    served_recall = _value(m, "served", "item_to_user", "recall", 100)
    assert served_ndcg >= 0.11
    assert served_ndcg > _value(m, "als", "user_to_item", "ndcg", 10)
    assert served_ndcg > _value(m, "recent_popularity", "user_to_item", "ndcg", 10)
    assert served_recall >= 0.19
    assert served_recall > _value(m, "heavy_users", "item_to_user", "recall", 100)
    assert served_recall > _value(m, "recently_active_users", "item_to_user", "recall", 100)
    assert served_recall >= _value(m, "als", "item_to_user", "recall", 100) - 0.005
    params = out.params[out.params["model"] == "served"].set_index("parameter")["value"]
    assert params["served_user_to_item"] == "two_stage"
    assert params["served_item_to_user"] == "two_stage"
    # the item side's count is not all the trees: there, more trees lost to plain MF
    tried = {
        key: float(value)
        for key, value in params.items()
        if key.startswith("selection_item_to_user_two_stage_")
    }
    assert len(tried) >= 6 and tried["selection_item_to_user_two_stage_100_trees"] < max(
        tried.values()
    )
    assert float(params["selection_item_to_user_two_stage"]) == max(tried.values())
    assert m.query("model == 'served' and metric == 'ece'")["value"].max() < 0.02
