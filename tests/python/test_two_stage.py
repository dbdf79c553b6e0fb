"""two_stage.score: business rules, boosts, fallbacks and the two-stage path."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from proactive_recs.recommender.stages import TrainedStages
from proactive_recs.recommender.two_stage import DEFAULT_PARAMS, Recommender, score

RUN_DATE = pd.Timestamp("2024-07-01")
SCORE_COLUMNS = ["rank", "score", "is_fallback"]

# Small and fast: no tuning, small candidate pools, two training windows of 14 days.
FAST = {
    "factors": 8,
    "iterations": 8,
    "tune": False,
    "horizon_days": 14,
    "training_windows": 2,
    "candidates_per_user": 30,
    "candidates_per_item": 40,
    "active_candidates_per_item": 20,
    "cold_active_candidates_per_item": 20,
    "popular_candidates_per_user": 10,
    "min_positives": 20,
    "k_items": 5,
    "k_users": 10,
    # scikit-learn's default step and half the package's trees: these tests are about
    # behaviour, and the booster's fit is most of their time
    "ranker_max_iter": 100,
    "ranker_learning_rate": 0.1,
}


def synthetic_interactions(n_users=300, n_items=120, n_groups=4, n_events=9000, seed=0):
    """Users of group g mostly buy items of group g (items g, g + n_groups, ...), with
    heavy-tailed activity, spread over the 180 days before RUN_DATE (and some after)."""
    rng = np.random.default_rng(seed)
    user_group = rng.integers(0, n_groups, n_users)
    activity = rng.gamma(0.7, 1.0, n_users)
    users = rng.choice(n_users, n_events, p=activity / activity.sum())
    in_group = rng.random(n_events) < 0.85
    own = user_group[users] + n_groups * rng.integers(0, n_items // n_groups, n_events)
    items = np.where(in_group, own, rng.integers(0, n_items, n_events))
    start = RUN_DATE - pd.Timedelta(days=180)
    when = start + pd.to_timedelta(rng.random(n_events) * 200, unit="D")
    return pd.DataFrame(
        {
            "user_id": [f"u{u:03d}" for u in users],
            "item_id": [f"i{i:03d}" for i in items],
            "occurred_at": when.floor("min"),
            "event_type": "purchase",
            "event_weight": 5.0,
            "quantity": rng.integers(1, 6, n_events).astype(float),
        }
    )


def _check_frames(result, users=None, items=None, interactions=None, k_items=5, k_users=10):
    ui, iu = result.user_item_scores, result.item_user_scores
    assert list(ui.columns) == ["user_id", "item_id", *SCORE_COLUMNS, "because_item_id"]
    assert list(iu.columns) == ["item_id", "user_id", *SCORE_COLUMNS, "basis"]
    for frame, owner, k in ((ui, "user_id", k_items), (iu, "item_id", k_users)):
        assert not frame.duplicated([owner, frame.columns[1]]).any()
        for _, group in frame.groupby(owner):
            ranks = group["rank"].to_numpy()
            assert sorted(ranks) == list(range(1, len(ranks) + 1)) and len(ranks) <= k
            ordered = group.sort_values("rank")["score"].to_numpy()
            assert (np.diff(ordered) <= 1e-12).all()
    if users is not None:
        bad = set(users.loc[~(users["is_eligible"] & users["passes_filter"]), "user_id"])
        assert not bad & set(ui["user_id"]) and not bad & set(iu["user_id"])
    if items is not None:
        start = items["available_from"].fillna(pd.Timestamp.min)
        until = items["available_until"].fillna(pd.Timestamp.max)
        ok = items["passes_filter"] & (start <= RUN_DATE) & (until > RUN_DATE)
        bad = set(items.loc[~ok, "item_id"])
        assert not bad & set(ui["item_id"]) and not bad & set(iu["item_id"])
    if interactions is not None:
        before = interactions[interactions["occurred_at"] < RUN_DATE]
        seen = set(zip(before["user_id"], before["item_id"], strict=True))
        assert not seen & set(zip(ui["user_id"], ui["item_id"], strict=True))
        assert not seen & set(zip(iu["user_id"], iu["item_id"], strict=True))


@pytest.fixture(scope="module")
def data():
    interactions = synthetic_interactions()
    user_ids = sorted(interactions["user_id"].unique())
    item_ids = sorted(interactions["item_id"].unique())
    users = pd.DataFrame(
        {
            "user_id": [*user_ids, "cold_user"],
            "is_eligible": [i % 10 != 0 for i in range(len(user_ids))] + [True],
            "passes_filter": [i % 7 != 0 for i in range(len(user_ids))] + [True],
            "boost": 1.0,
        }
    )
    n = len(item_ids)
    items = pd.DataFrame(
        {
            "item_id": [*item_ids, "cold_item"],
            "category": None,
            "price": 10.0,
            # item 1 starts after the run date, item 2 ended at it (exclusive bound)
            "available_from": [RUN_DATE + pd.Timedelta(days=1) if i == 1 else pd.NaT
                               for i in range(n + 1)],
            "available_until": [RUN_DATE if i == 2 else pd.NaT for i in range(n + 1)],
            "passes_filter": [i != 3 for i in range(n + 1)],
            "boost": 1.0,
        }
    )  # fmt: skip
    return interactions, users, items


@pytest.fixture(scope="module")
def two_stage(data):
    interactions, users, items = data
    return score(interactions, users, items, RUN_DATE, FAST)


def test_two_stage_serves_and_respects_every_rule(data, two_stage):
    interactions, users, items = data
    assert two_stage.stage == "two_stage"
    _check_frames(two_stage, users, items, interactions)
    model_rows = two_stage.user_item_scores[~two_stage.user_item_scores["is_fallback"]]
    # Scores are probabilities (boost 1 everywhere).
    assert model_rows["score"].between(0, 1).all()
    # Every servable user with history gets k_items rows (plenty of candidates pass).
    assert (model_rows.groupby("user_id").size() == FAST["k_items"]).all()


def test_factor_and_parameter_frames(data, two_stage):
    uf, itf = two_stage.user_factors, two_stage.item_factors
    factors = [f"factor_{f:02d}" for f in range(8)]
    assert list(uf.columns) == ["user_id", *factors, "is_servable", "boost"]
    assert list(itf.columns) == ["item_id", *factors, "is_servable", "boost"]
    # the serving flags are the universe's: the fixture's ineligible or filtered-out users
    # (every 10th and every 7th) and the filtered, not yet or no longer available items
    _, users, _ = data
    servable_users = set(users.loc[users["is_eligible"] & users["passes_filter"], "user_id"])
    assert set(uf.loc[uf["is_servable"], "user_id"]) == servable_users & set(uf["user_id"])
    assert not itf.set_index("item_id").loc[["i001", "i002", "i003"], "is_servable"].any()
    assert (uf["boost"] == 1.0).all() and (itf["boost"] == 1.0).all()
    params = dict(zip(two_stage.params["parameter"], two_stage.params["value"], strict=True))
    assert params["factors"] == "8" and params["k_items"] == "5"
    assert set(DEFAULT_PARAMS) <= set(params)


def test_cold_users_and_items_get_fallback_rows(two_stage):
    ui, iu = two_stage.user_item_scores, two_stage.item_user_scores
    cold_u = ui[ui["user_id"] == "cold_user"]
    assert len(cold_u) == FAST["k_items"] and cold_u["is_fallback"].all()
    cold_i = iu[iu["item_id"] == "cold_item"]
    assert len(cold_i) == FAST["k_users"] and cold_i["is_fallback"].all()
    assert not ui.loc[ui["user_id"] != "cold_user", "is_fallback"].any()


def test_rows_after_the_run_date_are_ignored(data):
    interactions, users, items = data
    params = {**FAST, "second_stage": False}
    a = score(interactions, users, items, RUN_DATE, params)
    b = score(interactions[interactions["occurred_at"] < RUN_DATE], users, items, RUN_DATE, params)
    pd.testing.assert_frame_equal(a.user_item_scores, b.user_item_scores)
    pd.testing.assert_frame_equal(a.item_user_scores, b.item_user_scores)


def test_deterministic(data, two_stage):
    interactions, users, items = data
    again = score(interactions, users, items, RUN_DATE, FAST)
    pd.testing.assert_frame_equal(two_stage.user_item_scores, again.user_item_scores)
    pd.testing.assert_frame_equal(two_stage.item_user_scores, again.item_user_scores)


def test_the_served_lists_do_not_depend_on_the_thread_count(data, two_stage):
    """num_threads (OpenMP threads of implicit and the booster) changes the time a fit takes,
    not what it serves: the default (all cores) and one thread give the same frames."""
    interactions, users, items = data
    one = score(interactions, users, items, RUN_DATE, {**FAST, "num_threads": 1})
    two = score(interactions, users, items, RUN_DATE, {**FAST, "num_threads": 2})
    assert one.stage == two.stage == "two_stage"
    for name in ("user_item_scores", "item_user_scores", "user_factors", "item_factors"):
        pd.testing.assert_frame_equal(getattr(one, name), getattr(two, name), obj=name)
    pd.testing.assert_frame_equal(two.user_item_scores, two_stage.user_item_scores)


def test_scoring_a_block_of_users_at_a_time_serves_what_one_block_serves(data, monkeypatch):
    """The candidate pairs are scored and cut in blocks of whole users, the item -> user
    lists merged across blocks (what keeps L's scoring within memory): blocks of a few
    dozen pairs serve exactly the frames one block over every pair serves, with boosted
    users and items (the cut reads boosted scores), and so does the replay's scoring at
    several tree counts. Handing the user -> item lists of some users over block by block
    (what stage selection scores) gives those users' rows of the full lists, each once, and
    the same item -> user lists."""
    from proactive_recs.recommender import two_stage as two_stage_module

    interactions, users, items = data
    users, items = users.copy(), items.copy()
    users.loc[users["user_id"].isin(["u005", "u017"]), "boost"] = 3.0
    items.loc[items["item_id"].isin(["i010", "i021"]), "boost"] = 2.0
    model = Recommender(FAST).fit(interactions, users, items, as_of=RUN_DATE)
    assert model.stage_ == "two_stage"
    counts = sorted(model.ranker_.tree_counts_)[:3]
    monkeypatch.setattr(two_stage_module, "_PAIRS_PER_BLOCK", 10**9)
    whole, whole_at = model.recommend(), model._ranker_lists_at(counts)
    monkeypatch.setattr(two_stage_module, "_PAIRS_PER_BLOCK", 37)
    blocks, blocks_at = model.recommend(), model._ranker_lists_at(counts)
    assert model.diagnostics_["candidates"] > 37 * 50  # the test bites: many blocks
    pd.testing.assert_frame_equal(blocks.user_item_scores, whole.user_item_scores)
    pd.testing.assert_frame_equal(blocks.item_user_scores, whole.item_user_scores)
    assert len(counts) > 1 and list(blocks_at) == counts
    for count in counts:
        for got, expected in zip(blocks_at[count], whole_at[count], strict=True):
            np.testing.assert_array_equal(got, expected)
    keep = np.random.default_rng(0).random(model.snapshot_.data.n_users) < 0.4
    keep[0] = keep[-1] = True  # the first and last users, at the edges of the blocks
    with pytest.raises(ValueError, match="keep_users"):  # no one to hand the lists to
        model._ranker_lists_at(counts, keep_users=keep)
    handed = {count: [] for count in counts}
    kept_at = model._ranker_lists_at(
        counts,
        user_lists_to=lambda count, users, lists: handed[count].append((users, lists.copy())),
        keep_users=keep,
    )
    for count in counts:
        ui_lists, ui_scores, iu_lists, iu_scores = kept_at[count]
        assert ui_lists is None and ui_scores is None  # handed over, not kept
        assert len(handed[count]) > 1  # one call per block
        users = np.concatenate([users for users, _ in handed[count]])
        lists = np.concatenate([lists for _, lists in handed[count]])
        # kept users only, each once, in order, with its row of the full lists; a kept
        # user not handed over has no candidate pair (an empty list)
        assert np.all(np.diff(users) > 0) and keep[users].all()
        assert (lists[:, 0] >= 0).sum() > 30
        np.testing.assert_array_equal(lists, whole_at[count][0][users])
        not_handed = np.setdiff1d(np.flatnonzero(keep), users)
        assert (whole_at[count][0][not_handed] == -1).all()
        np.testing.assert_array_equal(iu_lists, whole_at[count][2])
        np.testing.assert_array_equal(iu_scores, whole_at[count][3])


def test_the_recommender_fits_once_and_serves_what_score_serves(data, two_stage):
    """score() is Recommender(params).fit(...).recommend(): same frames; the fitted state is
    kept, recommend() may be called again without refitting, and the estimator follows
    scikit-learn's conventions."""
    interactions, users, items = data
    model = Recommender(FAST)
    assert model.get_params() == {"params": FAST}
    with pytest.raises(RuntimeError, match="before fit"):
        model.recommend()
    assert model.fit(interactions, users, items, as_of=RUN_DATE) is model
    assert model.stage_ == "two_stage" and model.as_of_ == RUN_DATE
    assert model.ranker_ is not None and model.snapshot_ is not None
    first, second = model.recommend(), model.recommend()
    for frames in (first, second):
        pd.testing.assert_frame_equal(frames.user_item_scores, two_stage.user_item_scores)
        pd.testing.assert_frame_equal(frames.item_user_scores, two_stage.item_user_scores)
        pd.testing.assert_frame_equal(frames.params, two_stage.params)
    assert model.set_params(params={**FAST, "k_items": 3}).params["k_items"] == 3


@pytest.mark.parametrize("serving", ["two_stage", "mf_chosen_for_items", "mf_only", "popularity"])
def test_the_audiences_of_some_items_are_those_the_whole_run_serves(data, serving):
    """recommend_users(item_ids) (what the campaign backtest asks for a week's trigger
    items) returns exactly recommend()'s rows of those items, in the same order: warm items
    scored by the ranker or by mapped MF, a new item's fallback audience, an item not
    servable today (no rows) and an id nobody knows (no rows); asked twice, or in another
    order, the same frame."""
    from dataclasses import replace

    from proactive_recs.recommender.selection import DirectionChoice

    interactions, users, items = data
    params = {
        "mf_only": {**FAST, "min_positives": 10**9},
        "popularity": {**FAST, "min_interactions": 10**9},
    }.get(serving, FAST)
    model = Recommender(params).fit(interactions, users, items, as_of=RUN_DATE)
    if serving == "mf_chosen_for_items":
        model.selection_ = replace(
            model.selection_, item_to_user=DirectionChoice("mf", mf_map=(3.0, -2.0))
        )
    expected_stage = {"mf_only": "mf", "popularity": "popularity"}.get(serving, "two_stage")
    assert model.stage_ == expected_stage
    whole = model.recommend().item_user_scores
    asked = ["i010", "cold_item", "i001", "i007", "nobody_knows_me", "i010"]
    some = model.recommend_users(asked)
    expected = whole[whole["item_id"].isin(asked)].reset_index(drop=True)
    assert set(expected["item_id"]) >= {"i010", "i007", "cold_item"}  # the test bites
    assert "i001" not in set(expected["item_id"])  # on sale only after the run date
    pd.testing.assert_frame_equal(some, expected)
    pd.testing.assert_frame_equal(model.recommend_users(asked[::-1]), expected)
    # one item alone gets the rows it gets among others
    alone = model.recommend_users(["i007"])
    pd.testing.assert_frame_equal(
        alone, expected[expected["item_id"] == "i007"].reset_index(drop=True)
    )
    assert model.recommend_users([]).empty


def test_a_saved_recommender_serves_the_same_lists_without_refitting(data, two_stage, tmp_path):
    """save/load (and to_bytes/from_bytes, what a warehouse table stores) keep the fitted
    state: the loaded model serves frames equal to the original's, with no fit call."""
    interactions, users, items = data
    model = Recommender(FAST).fit(interactions, users, items, as_of=RUN_DATE)
    model.save(tmp_path / "recommender.bin")
    loaded = Recommender.load(tmp_path / "recommender.bin")
    assert (
        loaded is not model
        and loaded.as_of_ == RUN_DATE
        and loaded.get_params() == model.get_params()
    )
    served = loaded.recommend()
    pd.testing.assert_frame_equal(served.user_item_scores, two_stage.user_item_scores)
    pd.testing.assert_frame_equal(served.item_user_scores, two_stage.item_user_scores)
    pd.testing.assert_frame_equal(loaded.recommend_items(), two_stage.user_item_scores)
    pd.testing.assert_frame_equal(loaded.recommend_users(), two_stage.item_user_scores)


def test_stored_bytes_from_another_version_or_no_recommender_stop_clearly():
    with pytest.raises(RuntimeError, match="before fit"):
        Recommender(FAST).to_bytes()
    with pytest.raises(ValueError, match="not a stored proactive_recs Recommender"):
        Recommender.from_bytes(b"\x00\x00\x00\x05hello")
    header = b'{"format": 1, "version": "0.0.1"}'
    old = len(header).to_bytes(4, "big") + header + b"..."
    with pytest.raises(ValueError, match="written by proactive_recs 0.0.1.*fit it again"):
        Recommender.from_bytes(old)


def test_freed_memory_goes_back_between_training_phases_only(data, monkeypatch):
    """A fit that trains hands freed memory back after the rankers, after stage selection
    and after the category choice (at 1M users each phase frees GBs that glibc otherwise
    keeps: the L backtest's first week peaked 1-2 GB higher); a daily fit on stored stages
    trains nothing and pays for no collection."""
    from proactive_recs.recommender import two_stage as two_stage_module

    interactions, users, items = data
    calls = []
    monkeypatch.setattr(two_stage_module, "return_freed_memory", lambda: calls.append(1) or True)
    week_earlier = RUN_DATE - pd.Timedelta(days=7)
    weekly = Recommender(FAST).fit(interactions, users, items, as_of=week_earlier)
    assert weekly.ranker_ is not None
    # after the rankers, stage selection and the category choice; stage selection replays
    # the fit's own rankers one horizon back, which trains nothing more
    assert "ranker trained without that window" in weekly.selection_.replay
    assert len(calls) == 3
    calls.clear()
    stored = TrainedStages.from_bytes(weekly.trained_stages().to_bytes())
    Recommender(FAST).fit(interactions, users, items, as_of=RUN_DATE, stages=stored)
    assert calls == []


def test_a_later_fit_reuses_stored_stages_and_refits_only_mf(data, two_stage):
    """The weekly fit's stages (tuned MF settings, rankers) serve a daily fit a week later:
    no training happens, MF is refitted on the later interactions, and stages trained with
    other settings or after the run are not used (the fit trains and says why)."""
    interactions, users, items = data
    week_earlier = RUN_DATE - pd.Timedelta(days=7)
    weekly = Recommender(FAST).fit(interactions, users, items, as_of=week_earlier)
    stored = TrainedStages.from_bytes(weekly.trained_stages().to_bytes())
    assert stored.as_of == week_earlier and stored.ranker is not None

    daily = Recommender(FAST).fit(interactions, users, items, as_of=RUN_DATE, stages=stored)
    assert daily.stage_ == "two_stage" and "reused" in daily.stages_used_
    assert "training_rows" not in daily.diagnostics_  # nothing was trained
    assert daily.mf_params_ == stored.mf_params
    # MF and the snapshot are today's; the ranker is last week's, not retrained
    assert daily.snapshot_.as_of == RUN_DATE and weekly.snapshot_.as_of == week_earlier
    assert daily.snapshot_.data.seen.nnz > weekly.snapshot_.data.seen.nnz
    assert daily.ranker_ is stored.ranker and daily.cold_ranker_ is stored.cold_ranker
    served = daily.recommend()
    params = dict(zip(served.params["parameter"], served.params["value"], strict=True))
    assert params["stages"].startswith("stages trained as of")
    assert len(served.user_item_scores) and len(served.item_user_scores)
    # only settings that change training invalidate the stages; list lengths do not
    longer = Recommender({**FAST, "k_items": 7}).fit(
        interactions, users, items, as_of=RUN_DATE, stages=stored
    )
    assert "reused" in longer.stages_used_

    other = Recommender({**FAST, "factors": 6}).fit(
        interactions, users, items, as_of=RUN_DATE, stages=stored
    )
    assert "other settings: factors" in other.stages_used_
    assert other.diagnostics_["training_rows"] > 0  # trained itself
    backfill = Recommender(FAST).fit(
        interactions, users, items, as_of=week_earlier - pd.Timedelta(days=1), stages=stored
    )
    assert "after the run" in backfill.stages_used_


def test_a_fit_on_stored_stages_starts_mf_from_their_item_factors(data, two_stage):
    """The weekly stages keep the as-of MF's item factors (int8 and a scale per item); a daily
    fit on them runs mf_warm_start_iterations sweeps from there (new items from small random
    vectors) and says so, serves what a fit from random factors serves on most pairs, and
    is reproducible; with 0 sweeps, or stages without factors, MF starts from random
    factors and runs its full iterations."""
    interactions, users, items = data
    week_earlier = RUN_DATE - pd.Timedelta(days=7)
    weekly = Recommender(FAST).fit(interactions, users, items, as_of=week_earlier)
    stored = TrainedStages.from_bytes(weekly.trained_stages().to_bytes())
    assert stored.mf_item_factors.dtype == np.int8
    assert list(stored.mf_item_ids) == list(weekly.snapshot_.data.item_ids)
    step = stored.mf_item_scale[:, None]
    restored = stored.mf_item_factors * step
    assert (np.abs(restored - weekly.snapshot_.mf.item_factors_) <= step / 2 + 1e-7).all()

    def fit(params, stages):
        fitted = Recommender({**FAST, **params}).fit(
            interactions, users, items, as_of=RUN_DATE, stages=stages
        )
        return fitted, fitted.recommend()

    warm, warm_lists = fit({"mf_warm_start_iterations": 2}, stored)
    assert warm.snapshot_.mf.iterations == 2
    assert warm.params_used_["mf_warm_start"].startswith("2 sweeps from the item factors")
    cold, cold_lists = fit({"mf_warm_start_iterations": 0}, stored)
    assert cold.snapshot_.mf.iterations == FAST["iterations"]
    assert cold.params_used_["mf_warm_start"] == "off: mf_warm_start_iterations is 0"
    # the same stages reused either way, and on most pairs the same lists
    assert "reused" in warm.stages_used_ and "reused" in cold.stages_used_

    def pairs_of(lists) -> set:
        frame = lists.user_item_scores
        return set(zip(frame["user_id"], frame["item_id"], strict=True))

    pairs = {"warm": pairs_of(warm_lists), "cold": pairs_of(cold_lists)}
    # closer to it than a fit from another seed (which also trains its own stages) is
    _, seeded = fit({"random_state": 1}, None)
    other = pairs_of(seeded)
    shared = len(pairs["warm"] & pairs["cold"]) / len(pairs["cold"])  # 0.72 when written
    assert shared >= 0.6 and shared > len(other & pairs["cold"]) / len(pairs["cold"])  # 0.37
    _, again = fit({"mf_warm_start_iterations": 2}, stored)
    pd.testing.assert_frame_equal(again.user_item_scores, warm_lists.user_item_scores)
    pd.testing.assert_frame_equal(again.item_user_scores, warm_lists.item_user_scores)

    no_factors = TrainedStages.from_bytes(weekly.trained_stages().to_bytes())
    no_factors.mf_item_ids = no_factors.mf_item_factors = None  # e.g. over the size cap
    no_factors.mf_item_scale = None
    plain, _ = fit({}, no_factors)
    assert plain.snapshot_.mf.iterations == FAST["iterations"]
    assert plain.params_used_["mf_warm_start"].startswith("off: the stored stages hold no")
    # a fit that trains its own stages has none to start from
    trained = Recommender(FAST).fit(interactions, users, items, as_of=RUN_DATE)
    assert trained.params_used_["mf_warm_start"] == "off: no stored stages"


def _boosted_first(frame, owner, member, boosted, exclude_owners):
    """Per owner list: the boosted member is first, or (MF scores) its raw score is
    negative, so its boosted score s / b sits just below 0: only positive scores may be
    above it, and it may be cut from a list of positive scores."""
    checked = 0
    for key, group in frame.groupby(owner):
        if key in exclude_owners:
            continue
        group = group.sort_values("rank")
        hit = group[group[member] == boosted]
        if hit.empty:
            assert (group["score"] > 0).all(), (key, group)
            continue
        above = group[group["rank"] < hit["rank"].iloc[0]]
        assert above.empty or (hit["score"].iloc[0] <= 0 and (above["score"] > 0).all())
        checked += above.empty
    return checked


@pytest.mark.parametrize("second_stage", [False, True])
def test_a_boosted_item_and_user_go_up(data, second_stage):
    interactions, users, items = data
    items = items.copy()
    items.loc[items["item_id"] == "i010", "boost"] = 1e6
    users = users.copy()
    users.loc[users["user_id"] == "u005", "boost"] = 1e6
    params = {**FAST, "second_stage": second_stage}
    result = score(interactions, users, items, RUN_DATE, params)
    _check_frames(result, users, items, interactions)
    before = interactions[interactions["occurred_at"] < RUN_DATE]
    ui = result.user_item_scores
    ui = ui[~ui["is_fallback"]]
    had_item = set(before.loc[before["item_id"] == "i010", "user_id"])
    firsts = _boosted_first(ui, "user_id", "item_id", "i010", had_item)
    iu = result.item_user_scores
    had_user = set(before.loc[before["user_id"] == "u005", "item_id"]) | {"cold_item"}
    firsts_i = _boosted_first(iu, "item_id", "user_id", "u005", had_user)
    if second_stage:  # probabilities are >= 0: the boosted one is always first
        assert firsts == ui["user_id"].nunique() - len(had_item & set(ui["user_id"]))
        assert firsts_i == iu["item_id"].nunique() - len(had_user & set(iu["item_id"]))
    assert firsts > 50 and firsts_i > 20


def test_allow_repeats_lets_seen_items_back(data):
    interactions, users, items = data
    params = {**FAST, "second_stage": False, "allow_repeats": True}
    result = score(interactions, users, items, RUN_DATE, params)
    before = interactions[interactions["occurred_at"] < RUN_DATE]
    seen = set(zip(before["user_id"], before["item_id"], strict=True))
    ui = result.user_item_scores
    assert seen & set(zip(ui["user_id"], ui["item_id"], strict=True))


def test_mf_stage_when_the_ranker_cannot_be_trained(data, caplog):
    interactions, users, items = data
    params = {**FAST, "min_positives": 10**9}
    with caplog.at_level(logging.WARNING, logger="proactive_recs"):
        result = score(interactions, users, items, RUN_DATE, params)
    assert result.stage == "mf"
    assert "second stage skipped" in caplog.text
    _check_frames(result, users, items, interactions)


def test_tuning_records_the_chosen_parameters(data):
    interactions, users, items = data
    grid = [{"factors": 4}, {"factors": 8}]
    params = {**FAST, "second_stage": False, "tune": True, "tune_grid": grid}
    result = score(interactions, users, items, RUN_DATE, params)
    tried = result.diagnostics["tuning"]
    assert list(tried["factors"]) == [4, 8]
    chosen = tried.loc[tried["objective"].idxmax(), "factors"]
    used = dict(zip(result.params["parameter"], result.params["value"], strict=True))
    assert used["factors"] == str(chosen)


# ------------------------------------------------------------------------- fallback


USERS = pd.DataFrame({"user_id": ["a", "b", "c"], "is_eligible": [True, True, False]})
ITEMS = pd.DataFrame({"item_id": ["x", "y"], "passes_filter": [True, True]})


def _assert_popularity_fallback(result, caplog):
    assert result.stage == "popularity"
    assert "falling back to popularity" in caplog.text
    ui, iu = result.user_item_scores, result.item_user_scores
    assert ui["is_fallback"].all() and iu["is_fallback"].all()
    assert "c" not in set(ui["user_id"]) | set(iu["user_id"])
    return ui, iu


def test_empty_interactions_fall_back_to_popularity(caplog):
    empty = pd.DataFrame(columns=["user_id", "item_id", "occurred_at", "event_weight"])
    with caplog.at_level(logging.WARNING, logger="proactive_recs"):
        result = score(empty, USERS, ITEMS, RUN_DATE)
    ui, iu = _assert_popularity_fallback(result, caplog)
    # With nothing known, every servable pair is a candidate: 2 items per user.
    assert ui.groupby("user_id").size().to_dict() == {"a": 2, "b": 2}
    assert iu.groupby("item_id").size().to_dict() == {"x": 2, "y": 2}


def test_a_handful_of_rows_falls_back_and_ranks_by_popularity(caplog):
    rows = pd.DataFrame(
        {
            "user_id": ["a", "c", "c"],
            "item_id": ["x", "y", "x"],
            "occurred_at": pd.to_datetime(["2024-06-01", "2024-06-02", "2024-06-03"]),
        }
    )
    with caplog.at_level(logging.WARNING, logger="proactive_recs"):
        result = score(rows, USERS, ITEMS, RUN_DATE)
    ui, iu = _assert_popularity_fallback(result, caplog)
    # a already has x -> only y; b gets x (2 buyers) before y (1 buyer).
    assert ui[ui["user_id"] == "a"]["item_id"].tolist() == ["y"]
    assert ui[ui["user_id"] == "b"].sort_values("rank")["item_id"].tolist() == ["x", "y"]
    # y's audience: a (1 item) before b (0 items); c is not eligible.
    assert iu[iu["item_id"] == "y"].sort_values("rank")["user_id"].tolist() == ["a", "b"]


def test_fewer_users_than_factors_falls_back(caplog):
    rows = synthetic_interactions(n_users=20, n_items=100, n_events=600)
    with caplog.at_level(logging.WARNING, logger="proactive_recs"):
        result = score(rows, run_date=RUN_DATE, params={"factors": 32})
    _assert_popularity_fallback_no_users(result, caplog)


def _assert_popularity_fallback_no_users(result, caplog):
    assert result.stage == "popularity" and "falling back to popularity" in caplog.text
    assert result.user_item_scores["is_fallback"].all()
    assert len(result.user_item_scores) > 0 and len(result.item_user_scores) > 0


def test_nothing_at_all_does_not_raise(caplog):
    with caplog.at_level(logging.WARNING, logger="proactive_recs"):
        result = score(None)
    assert result.stage == "popularity"
    assert result.user_item_scores.empty and result.item_user_scores.empty


def test_an_unknown_parameter_stops_naming_it_and_the_known_ones():
    with pytest.raises(ValueError, match=r"\['factorz'\] unknown.*known: \[.*'factors'"):
        score(None, params={"factorz": 3})


def test_a_brand_new_item_goes_to_active_buyers_of_its_category(data):
    interactions, users, _ = data
    item_ids = sorted(interactions["item_id"].unique())
    items = pd.DataFrame(
        {
            "item_id": [*item_ids, "new_g1", "new_plain"],
            # synthetic items i, i + 4, ... share a group: use it as the category
            "category": [f"g{int(i[1:]) % 4}" for i in item_ids] + ["g1", None],
        }
    )
    result = score(interactions, users, items, RUN_DATE, {**FAST, "second_stage": False})
    iu = result.item_user_scores
    audience = iu[iu["item_id"] == "new_g1"].sort_values("rank")
    assert len(audience) == FAST["k_users"] and audience["is_fallback"].all()
    before = interactions[interactions["occurred_at"] < RUN_DATE]
    in_g1 = before["item_id"].str[1:].astype(int) % 4 == 1
    share_g1 = in_g1.groupby(before["user_id"]).mean()
    assert (share_g1.reindex(audience["user_id"]) > 0.5).all()
    # Nothing known about it (no interaction, no attribute): no audience, listed instead.
    assert "new_plain" not in set(iu["item_id"])
    assert result.unscored_items.to_dict("records") == [
        {"item_id": "new_plain", "reason": "no_interactions_and_no_usable_attributes"}
    ]


def test_parameters_given_as_text_are_coerced():
    from proactive_recs.recommender.two_stage import resolve_params

    p = resolve_params(
        {"factors": "16", "alpha": "2.5", "second_stage": "false", "half_life_days": "30"}
    )
    assert p["factors"] == 16 and p["alpha"] == 2.5 and p["second_stage"] is False
    assert p["half_life_days"] == 30
    assert resolve_params({"half_life_days": "none"})["half_life_days"] is None


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"k_items": -1}, "'k_items' must be >= 0"),
        ({"factors": 0}, "'factors' must be >= 1"),
        ({"negative_rate": 0}, "'negative_rate' must be in"),
        ({"max_training_rows": 0}, "'max_training_rows' must be >= 1 or None"),
        ({"calibration": "isotonic"}, "'calibration' must be one of"),
        ({"tune_grid": "factors=32"}, "'tune_grid' must be a list of maps"),
        ({"second_stage": "maybe"}, "expected a boolean, got 'maybe'"),
    ],
)
def test_a_bad_recommender_setting_stops_naming_it(params, message):
    with pytest.raises(ValueError, match=message):
        score(None, params=params)


def test_the_defaults_have_one_home():
    from proactive_recs.recommender.config import RecommenderConfig

    assert DEFAULT_PARAMS == RecommenderConfig().as_dict()
    # a deep copy each time: a caller mutating its dict cannot change the defaults
    resolved = RecommenderConfig.from_dict({"factors": "16"}).as_dict()
    resolved["tune_grid"].append({"factors": 8})
    assert len(RecommenderConfig().tune_grid) == 4 and resolved["factors"] == 16
