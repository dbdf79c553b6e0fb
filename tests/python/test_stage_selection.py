"""Stage selection: per direction, the second stage serves only where it beat plain MF on
the last horizon before the run (proactive_recs.recommender.selection)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from test_two_stage import FAST, RUN_DATE, synthetic_interactions

import proactive_recs_tools.generate as gen
from proactive_recs.evaluation.protocol import evaluate
from proactive_recs.recommender.selection import (
    MARGIN_IN_STANDARD_ERRORS,
    DirectionChoice,
    StageSelection,
    best_tree_count,
    fit_probability_map,
    list_hits,
    paired_gain,
    remap_lists,
)
from proactive_recs.recommender.two_stage import Recommender


def test_lists_are_remapped_and_hits_read_by_hand():
    lists = np.array([[1, 0, -1], [2, 1, 0]])  # owners a, b over members x, y, z
    owners, members = pd.Index(["a", "b"]), pd.Index(["x", "y", "z"])
    to_owners, to_members = pd.Index(["b", "c", "a"]), pd.Index(["z", "y"])
    assert remap_lists(lists, owners, members, to_owners, to_members).tolist() == [
        [0, 1, -1],  # b: z y x(unknown there)
        [-1, -1, -1],  # c: not an owner of the lists
        [0 + 1, -1, -1],  # a: y x(unknown) empty
    ]
    # truth over (to_owners x to_members): b-y and a-y are new pairs
    truth = sp.csr_matrix(np.array([[0, 1], [0, 0], [0, 1]]))
    hits = list_hits(lists, owners, members, to_owners, to_members, truth)
    assert hits.tolist() == [[True, False, False], [False, True, False]]


def test_the_probability_map_increases_or_is_refused():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=4000)
    hits = rng.random(4000) < 1 / (1 + np.exp(-(2 * scores - 1)))
    slope, intercept = fit_probability_map(scores, hits)
    assert slope == pytest.approx(2, abs=0.3) and intercept == pytest.approx(-1, abs=0.2)
    assert fit_probability_map(scores, np.ones(4000, bool)) is None  # nothing to learn
    assert fit_probability_map(scores, scores < 0) is None  # would reverse the ranking


def test_the_paired_gain_and_its_standard_error_by_hand():
    gain, noise = paired_gain(np.array([0.5, 0.2, np.nan, 0.4]), np.array([0.1, 0.2, 0.3, 0.1]))
    # differences 0.4, 0.0, 0.3: mean 0.2333, sample sd 0.2082, / sqrt(3)
    assert gain == pytest.approx(0.7 / 3)
    assert noise == pytest.approx(np.std([0.4, 0.0, 0.3], ddof=1) / np.sqrt(3))
    assert paired_gain(np.array([1.0]), np.array([0.0])) == (0.0, float("inf"))


def test_the_best_tree_count_by_hand():
    per_query = {
        10: np.array([0.2, 0.4]),  # mean 0.3
        40: np.array([0.5, 0.3]),  # mean 0.4
        20: np.array([0.6, 0.2]),  # mean 0.4: a tie with 40, fewer trees win
        100: np.array([0.1, 0.1]),
    }
    assert best_tree_count(per_query, default=40) == (20, pytest.approx(0.4))
    # the ranker's own count comes back as None: a later fit uses its own log-loss count
    assert best_tree_count(per_query, default=20) == (None, pytest.approx(0.4))
    assert best_tree_count({7: np.array([0.1])}, default=7) == (None, pytest.approx(0.1))


@pytest.fixture(scope="module")
def fitted():
    return Recommender(FAST).fit(synthetic_interactions(), as_of=RUN_DATE)


def test_the_decision_and_its_figures_are_recorded_and_stored(fitted):
    used = fitted.params_used_
    for direction, key in (("user_to_item", "ndcg@10"), ("item_to_user", "recall@100")):
        source = used[f"served_{direction}"]
        assert source in ("two_stage", "mf")
        two_stage = used[f"selection_{direction}_two_stage"]
        mf = used[f"selection_{direction}_mf"]
        noise = used[f"selection_{direction}_mf_gain_standard_error"]
        assert 0 < noise < 0.1
        assert (source == "mf") == (mf - two_stage > MARGIN_IN_STANDARD_ERRORS * noise)
        assert key in used[f"served_{direction}_reason"]
        # the second stage's figure is that of the best tree count tried on the window
        tried = {
            int(name.rsplit("_", 2)[-2]): value
            for name, value in used.items()
            if name.startswith(f"selection_{direction}_two_stage_")
        }
        # (the replay's ranker offers the grid and its own log-loss count)
        grid = {10, 20, 35, 50, 75, 100}  # TREE_GRID of ranker_max_iter = 100
        assert grid <= set(tried) and len(set(tried) - grid) <= 1
        chosen = getattr(fitted.selection_, direction).n_trees
        assert used[f"served_{direction}_trees"] == ("default" if chosen is None else chosen)
        assert two_stage == max(tried.values())
        if chosen is not None:  # a grid count, which the served ranker offers too
            assert tried[chosen] == two_stage and chosen in fitted.ranker_.tree_counts_
    # A daily fit reusing the weekly stages serves what the weekly fit chose.
    daily = Recommender(FAST).fit(
        synthetic_interactions(), as_of=RUN_DATE, stages=fitted.trained_stages()
    )
    assert daily.selection_ == fitted.selection_
    assert daily.stages_used_.endswith("reused")


def test_the_fit_one_horizon_back_is_assembled_from_what_the_fit_trained(fitted):
    """The selection's fit as of the last horizon's start is the last training window's
    snapshot and the ranker trained without that window: plain MF's figures there are those
    of a fit made anew at that date (the same MF on the same interactions), and the stored
    stages carry no second booster."""
    assert fitted.selection_.replay.startswith("as of ")
    assert fitted.params_used_["selection_replay"] == fitted.selection_.replay
    anew = fitted._select_stages(fitted.mf_params_, None, None)
    assert anew.replay.startswith("fitted again as of ")
    for direction in ("user_to_item", "item_to_user"):
        replayed = getattr(fitted.selection_, direction).validation
        fitted_again = getattr(anew, direction).validation
        assert replayed["mf"] == fitted_again["mf"]
        assert replayed["two_stage"] > 0 and fitted_again["two_stage"] > 0
    assert fitted.trained_stages().ranker.validation_model_ is None


def test_with_one_training_window_the_fit_back_reuses_the_last_window_snapshot(monkeypatch):
    """With one training window (the backtest's weekly fits) no ranker was trained without the
    last window, so the selection fits one horizon back; the last window's snapshot is that
    fit's own and is not built again. Its figures are those of the fit made wholly anew. The
    outer fit builds its own snapshot after the selection, so it is never alive beside the
    selection's (the weekly backtest's peak at 1M users)."""
    import proactive_recs.recommender.two_stage as two_stage

    events = []
    real_build, real_select = two_stage.build_snapshot, Recommender._select_stages
    monkeypatch.setattr(
        two_stage,
        "build_snapshot",
        lambda *a, **k: events.append(("snapshot", a[1])) or real_build(*a, **k),
    )
    monkeypatch.setattr(
        Recommender,
        "_select_stages",
        lambda self, *a, **k: events.append(("selection", None)) or real_select(self, *a, **k),
    )
    one = Recommender({**FAST, "training_windows": 1}).fit(synthetic_interactions(), as_of=RUN_DATE)
    assert one.selection_.replay.endswith("on the last training window's snapshot")
    # the fit's own snapshot only, as of the run date, built once the selection is done
    assert events == [("selection", None), ("snapshot", one.as_of_)]
    assert one.snapshot_.as_of == one.as_of_
    anew = one._select_stages(one.mf_params_, None, None)  # nothing to reuse
    built = [event for event in events if event[0] == "snapshot"]
    assert anew.replay.startswith("fitted again as of ") and len(built) == 2
    assert not anew.replay.endswith("snapshot")
    for direction in ("user_to_item", "item_to_user"):
        reused = getattr(one.selection_, direction)
        again = getattr(anew, direction)
        assert reused.validation == again.validation and reused.validation["two_stage"] > 0
        assert (reused.source, reused.n_trees) == (again.source, again.n_trees)


def test_a_direction_served_by_mf_serves_mf_lists_as_probabilities(fitted):
    plain = Recommender({**FAST, "second_stage": False}).fit(
        synthetic_interactions(), as_of=RUN_DATE
    )
    ui_mf, ui_mf_scores, iu_mf, _ = plain._warm_lists()
    chosen = StageSelection(
        DirectionChoice("mf", (2.0, -1.0), {}, "test"), DirectionChoice("two_stage")
    )
    fitted.selection_ = chosen
    try:
        ui, ui_scores, iu, iu_scores = fitted._warm_lists()
        _, _, iu_ranker, iu_ranker_scores = fitted._ranker_lists()
    finally:
        fitted.selection_ = StageSelection()
    # user -> item: MF's lists (same factors: MF is refitted the same way), in the same order
    # (the map is increasing and every boost is 1), with the mapped probabilities.
    assert np.array_equal(ui, ui_mf)
    listed = ui_mf >= 0
    expected = 1 / (1 + np.exp(-(2.0 * ui_mf_scores[listed] - 1.0)))
    assert np.allclose(ui_scores[listed], expected, atol=1e-6)
    assert ((ui_scores[listed] > 0) & (ui_scores[listed] < 1)).all()
    # item -> user: still the second stage's
    assert np.array_equal(iu, iu_ranker) and np.allclose(
        iu_scores, iu_ranker_scores, equal_nan=True
    )


def _weak_time_interactions():
    data = gen.generate(1500, 300, 120, n_transactions=45_000, seed=5, dirt=False, weak_time=True)
    table = data.tables["transactions"]
    frame = pd.DataFrame(
        {
            "user_id": table["user_id"].astype(str),
            "item_id": table["item_id"].astype(str),
            "occurred_at": pd.to_datetime(table["occurred_at"].astype(str), utc=True),
            "event_type": table["event_type"].astype(str),
        }
    )
    frame["occurred_at"] = frame["occurred_at"].dt.tz_localize(None)
    return frame, pd.Timestamp(data.manifest["run_date"])


def test_served_does_not_lose_to_plain_mf_where_time_says_nothing():
    interactions, run_date = _weak_time_interactions()
    result = evaluate(
        interactions,
        cutoff=run_date - pd.Timedelta(days=30),
        horizon_days=30,
        models=("als", "served"),
        params={"tune": False},
    )
    m = result.metrics.set_index(["model", "direction", "segment", "metric", "k"])["value"]
    for direction, metric, k in (("user_to_item", "ndcg", 10), ("item_to_user", "recall", 100)):
        served = m[("served", direction, "all", metric, k)]
        plain = m[("als", direction, "all", metric, k)]
        assert served >= plain - 0.01, (direction, served, plain)
    params = result.params[result.params["model"] == "served"].set_index("parameter")["value"]
    assert params["served_user_to_item"] in ("two_stage", "mf")
    assert params["served_item_to_user"] in ("two_stage", "mf")
