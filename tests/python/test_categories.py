"""user_category_scores: category profiles, scores and ranks computed by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd

from proactive_recs.recommender.categories import user_category_scores


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
