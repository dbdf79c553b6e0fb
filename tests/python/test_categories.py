"""user -> category: profiles, scores and ranks computed by hand; the blend with the user's
history and the weight chosen on the validation window."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from proactive_recs.recommender.categories import (
    CATEGORY_BLEND_WEIGHTS,
    blend_category_scores,
    category_shares,
    choose_category_blend,
    evaluate_user_to_category,
    user_category_scores,
)


def test_scores_are_user_factor_dot_mean_item_factor_of_the_category():
    user_factors = pd.DataFrame({"user_id": ["a", "b"], "factors": [[1.0, 0.0], [0.0, 2.0]]})
    item_factors = pd.DataFrame(
        {
            "item_id": ["i1", "i2", "i3", "i4"],
            "factors": [[1.0, 1.0], [3.0, 1.0], [0.0, 4.0], [9.0, 9.0]],
        }
    )
    items = pd.DataFrame(
        {"item_id": ["i1", "i2", "i3", "i4"], "category": ["toys", "toys", "books", None]}
    )
    got = user_category_scores(user_factors, item_factors, items).set_index(["user_id", "category"])
    # toys profile = mean([1,1],[3,1]) = [2,1]; books = [0,4]; i4 has no category: left out
    # a = [1,0]: toys 2, books 0  -> toys rank 1
    # b = [0,2]: toys 2, books 8  -> books rank 1
    assert got.loc[("a", "toys"), "score"] == 2.0 and got.loc[("a", "books"), "score"] == 0.0
    assert got.loc[("b", "toys"), "score"] == 2.0 and got.loc[("b", "books"), "score"] == 8.0
    assert got.loc[("a", "toys"), "rank"] == 1 and got.loc[("a", "books"), "rank"] == 2
    assert got.loc[("b", "books"), "rank"] == 1 and got.loc[("b", "toys"), "rank"] == 2
    assert len(got) == 4  # every (user, category), nothing for the null category


def test_ties_rank_by_category_name_and_every_rank_is_used_once():
    user_factors = pd.DataFrame({"user_id": ["a"], "factors": [[0.0]]})
    item_factors = pd.DataFrame({"item_id": ["x", "y", "z"], "factors": [[1.0], [2.0], [3.0]]})
    items = pd.DataFrame({"item_id": ["x", "y", "z"], "category": ["c", "a", "b"]})
    got = user_category_scores(user_factors, item_factors, items)
    assert np.all(got["score"] == 0.0)
    assert got.sort_values("rank")["category"].tolist() == ["a", "b", "c"]


def test_no_categories_gives_an_empty_table():
    user_factors = pd.DataFrame({"user_id": ["a"], "factors": [[1.0]]})
    item_factors = pd.DataFrame({"item_id": ["x"], "factors": [[1.0]]})
    items = pd.DataFrame({"item_id": ["x"], "category": [None]})
    assert user_category_scores(user_factors, item_factors, items).empty


# ---------------------------------------------------------------- the blend with history


def test_shares_are_counted_by_hand_and_unknown_categories_are_left_out():
    items = pd.DataFrame(
        {"item_id": ["t1", "t2", "b1", "n1"], "category": ["toys", "toys", "books", None]}
    )
    history = pd.DataFrame(
        {
            "user_id": ["a", "a", "a", "a", "b", "ghost"],
            "item_id": ["t1", "t2", "b1", "n1", "n1", "t1"],
        }
    )
    shares = category_shares(history, ["a", "b", "c"], ["books", "toys"], items)
    # a: 3 interactions with a category (n1 has none): books 1/3, toys 2/3; b and c: none
    np.testing.assert_allclose(shares, [[1 / 3, 2 / 3], [0, 0], [0, 0]])


def test_weight_zero_is_the_history_with_mf_breaking_ties_and_inf_is_mf_alone():
    affinity = np.array([[3.0, 1.0, 2.0], [0.0, 5.0, 1.0]])
    shares = np.array([[0.0, 0.5, 0.5], [0.0, 0.0, 0.0]])
    history_first = blend_category_scores(affinity, shares, 0.0)
    # user 0: categories 1 and 2 tie on history, MF prefers 2; category 0 has no history
    assert list(np.argsort(-history_first[0], kind="stable")) == [2, 1, 0]
    # user 1 has no history: MF alone orders it
    assert list(np.argsort(-history_first[1], kind="stable")) == [1, 2, 0]
    np.testing.assert_array_equal(blend_category_scores(affinity, shares, math.inf), affinity)
    # a large weight lets MF override the history
    assert np.argmax(blend_category_scores(affinity, shares, 3.0)[0]) == 0


def _category_world(loyal: bool, seed: int = 0, n_users: int = 240):
    """Users of taste group g (= user % 4) buy items of category g and uncategorised items
    of pool g over 200 days. With ``loyal`` their history says it all. Otherwise half of
    them bought, before the last 60 days, one item of a random category and then only pool
    items: their own share points at that category, while MF sees through the pool items
    that their group buys category g (from the other half), which is what they buy in the
    last 60 days."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2024-01-01")
    items = pd.DataFrame(
        {
            "item_id": [f"c{k:02d}" for k in range(40)] + [f"p{k:02d}" for k in range(60)],
            "category": [f"cat{k // 10}" for k in range(40)] + [None] * 60,
        }
    )
    rows = []
    for user in range(n_users):
        group = user % 4
        noisy = not loyal and user % 2 == 1
        noise_category = int(rng.integers(0, 4))
        for n, day in enumerate(sorted(rng.integers(0, 200, 24))):
            early = noisy and day < 140
            if early and n == 0:
                item = f"c{10 * noise_category + int(rng.integers(0, 10)):02d}"
            elif early or rng.random() < 0.5:
                item = f"p{15 * group + int(rng.integers(0, 15)):02d}"
            else:
                item = f"c{10 * group + int(rng.integers(0, 10)):02d}"
            rows.append((f"u{user:03d}", item, start + pd.Timedelta(days=int(day))))
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "occurred_at"])
    frame["event_type"], frame["event_weight"], frame["quantity"] = "purchase", 1.0, 1.0
    return frame, items, start + pd.Timedelta(days=200)


@pytest.mark.parametrize("loyal", [True, False])
def test_the_weight_is_chosen_on_the_window_before_the_run_and_follows_the_data(loyal):
    interactions, items, end = _category_world(loyal)
    as_of = end - pd.Timedelta(days=30)
    mf = {"factors": 4, "iterations": 10}
    choice = choose_category_blend(interactions, items, as_of=as_of, horizon_days=30, mf_params=mf)
    assert set(choice.validation) == set(CATEGORY_BLEND_WEIGHTS)
    assert choice.validation[choice.weight] == max(choice.validation.values())
    if loyal:
        assert choice.weight == 0.0  # history is perfect; ties go to the simpler model
    else:
        assert choice.validation[choice.weight] > choice.validation[0.0] + 0.1
    # rows on or after as_of are never read: dropping them changes nothing
    same = choose_category_blend(
        interactions[interactions["occurred_at"] < as_of],
        items,
        as_of=as_of,
        horizon_days=30,
        mf_params=mf,
    )
    assert same == choice
    params = choice.as_params()
    assert (
        params["category_weight"] == choice.weight
        and "history alone" in params["category_weight_reason"]
    )


def test_the_choice_is_the_same_for_typed_ids_and_for_the_normalised_frame():
    """The window reads a normalised frame as it is (at 20M rows a re-typed copy was a GB
    of the backtest's peak) and normalises any other: integer ids, extra columns and
    shuffled rows give the same choice and figures."""
    interactions, items, end = _category_world(False)
    as_of = end - pd.Timedelta(days=30)
    mf = {"factors": 4, "iterations": 10}
    text = choose_category_blend(interactions, items, as_of=as_of, horizon_days=30, mf_params=mf)
    typed = interactions.assign(
        user_id=interactions["user_id"].str[1:].astype(int),  # 'u007' -> 7
        source_row=range(len(interactions)),
    ).sample(frac=1.0, random_state=5)
    typed_choice = choose_category_blend(typed, items, as_of=as_of, horizon_days=30, mf_params=mf)
    assert typed_choice.weight == text.weight
    # the same users under other names: the MF fit (seeded, users in id order) may differ,
    # the history shares and the window's queries may not
    assert set(typed_choice.validation) == set(text.validation)
    assert typed_choice.validation[0.0] == text.validation[0.0]


def test_nothing_to_compare_on_serves_mf_and_says_why():
    interactions, items, end = _category_world(True)
    no_categories = items.assign(category=None)
    choice = choose_category_blend(
        interactions, no_categories, as_of=end, horizon_days=30, mf_params={"factors": 4}
    )
    assert math.isinf(choice.weight) and "no category interaction" in choice.reason


def test_the_evaluation_serves_the_weight_chosen_before_its_cutoff():
    interactions, items, end = _category_world(False)
    cutoff = end - pd.Timedelta(days=30)
    mf = {"factors": 4, "iterations": 10}
    table = evaluate_user_to_category(
        interactions, items, cutoff=cutoff, horizon_days=30, mf_params=mf
    ).set_index(["model", "metric", "k"])["value"]
    assert {"served", "category_history", "mf_profiles", "random"} <= set(
        table.index.get_level_values("model")
    )
    chosen = choose_category_blend(
        interactions[interactions["occurred_at"] < cutoff],
        items,
        as_of=cutoff,
        horizon_days=30,
        mf_params=mf,
    ).weight
    pinned = evaluate_user_to_category(
        interactions, items, cutoff=cutoff, horizon_days=30, mf_params=mf, served_weight=chosen
    ).set_index(["model", "metric", "k"])["value"]
    assert table.equals(pinned)
    as_history = evaluate_user_to_category(
        interactions, items, cutoff=cutoff, horizon_days=30, mf_params=mf, served_weight=0.0
    ).set_index(["model", "metric", "k"])["value"]
    assert as_history["served"].equals(as_history["category_history"])


def test_scores_blend_the_run_history_with_the_chosen_weight():
    user_factors = pd.DataFrame({"user_id": ["a"], "factors": [[1.0, 0.0]]})
    item_factors = pd.DataFrame({"item_id": ["t", "b"], "factors": [[2.0, 0.0], [0.0, 1.0]]})
    items = pd.DataFrame({"item_id": ["t", "b"], "category": ["toys", "books"]})
    history = pd.DataFrame({"user_id": ["a", "a", "a"], "item_id": ["b", "b", "t"]})
    by_history = user_category_scores(user_factors, item_factors, items, history, weight=0.0)
    by_mf = user_category_scores(user_factors, item_factors, items, history, weight=math.inf)
    top = {
        name: frame.loc[frame["rank"] == 1, "category"].item()
        for name, frame in (("history", by_history), ("mf", by_mf))
    }
    assert top == {"history": "books", "mf": "toys"}  # a buys books, MF says toys
    # weight 1: books 2/3 + 1 * (-1) against toys 1/3 + 1 * (+1) (z over two categories)
    blended = user_category_scores(user_factors, item_factors, items, history, weight=1.0)
    got = blended.set_index("category")["score"]
    assert got["toys"] == pytest.approx(1 / 3 + 1) and got["books"] == pytest.approx(2 / 3 - 1)


def test_the_recommender_chooses_the_weight_records_it_and_hands_it_to_the_daily_fit():
    from test_two_stage import FAST

    from proactive_recs.recommender.two_stage import Recommender

    interactions, items, end = _category_world(False)
    weekly = Recommender({**FAST, "second_stage": False}).fit(interactions, items=items, as_of=end)
    expected = choose_category_blend(
        interactions,
        items,
        as_of=end,
        horizon_days=FAST["horizon_days"],
        mf_params=weekly.mf_params_,
    )
    assert weekly.category_choice_ == expected
    assert weekly.params_used_["category_weight"] == expected.weight
    daily = Recommender({**FAST, "second_stage": False}).fit(
        interactions, items=items, as_of=end + pd.Timedelta(days=1), stages=weekly.trained_stages()
    )
    assert daily.category_choice_ == expected
    off = Recommender({**FAST, "second_stage": False, "stage_selection": False}).fit(
        interactions, items=items, as_of=end
    )
    assert math.isinf(off.category_choice_.weight)
    assert "stage_selection is off" in off.params_used_["category_weight_reason"]
