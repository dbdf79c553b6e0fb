"""The recommendation marts of the demo build: day-0 audiences, pre-launch audiences,
explanations and the cold_items evaluation segment, as consumers read them."""

import pandas as pd

RUN_DATE = pd.Timestamp("2026-11-01")  # vars/demo.yml


def _df(con, sql):
    return con.execute(sql).df()


def test_prelaunch_audiences_are_for_items_about_to_go_on_sale_only(demo_con):
    pre = _df(demo_con, "select * from prelaunch_item_user_scores")
    assert len(pre) > 0
    starts = pd.to_datetime(pre["available_from"]).dt.tz_localize(None)
    assert (starts > RUN_DATE).all() and (starts <= RUN_DATE + pd.Timedelta(days=14)).all()
    sendable = _df(demo_con, "select distinct item_id from item_user_scores")
    digest = _df(demo_con, "select distinct item_id from user_item_scores")
    assert not set(pre["item_id"]) & (set(sendable["item_id"]) | set(digest["item_id"]))


def test_attribute_audiences_only_for_items_without_history(demo_con):
    rows = _df(
        demo_con,
        """
        select s.basis, c.n_interactions, s.is_fallback
        from item_user_scores as s
        inner join int_item_context as c using (item_id)
        """,
    )
    day0 = rows[rows["basis"] == "attributes"]
    assert len(day0) > 0 and (day0["n_interactions"] == 0).all()
    assert not day0["is_fallback"].any()
    assert (rows.loc[rows["basis"] == "history", "n_interactions"] > 0).all()


def test_because_item_is_in_the_users_history(demo_con):
    bad = _df(
        demo_con,
        """
        select s.user_id, s.because_item_id
        from user_item_scores as s
        left join (
            select distinct user_id, item_id from int_interactions
            where occurred_at < timestamp '2026-11-01'
        ) as h on h.user_id = s.user_id and h.item_id = s.because_item_id
        where s.because_item_id is not null and h.item_id is null
        """,
    )
    assert bad.empty
    share = _df(
        demo_con, "select avg((because_item_id is not null)::int) as s from user_item_scores"
    )
    assert share["s"].iloc[0] > 0.5


def test_cold_items_segment_beats_category_affinity(demo_con):
    m = _df(
        demo_con,
        """
        select model, value from model_evaluation
        where segment = 'cold_items' and metric = 'recall' and k = 100
        """,
    ).set_index("model")["value"]
    # Target 1.2x (measured 1.25x on the demo); the guard leaves room for small changes.
    assert m["served"] >= 1.1 * m["category_affinity"]
    assert m["served"] > 2 * m["random"]


def test_the_demo_measures_what_week_old_stages_cost(demo_con):
    """vars/demo.yml sets proactive_recs_evaluate_week_old_stages: the stages trained a
    week before the cutoff are reused there and scored on the same test window."""
    m = _df(
        demo_con,
        """
        select model, direction, value from model_evaluation
        where segment = 'all' and metric in ('ndcg', 'recall')
          and ((direction = 'user_to_item' and metric = 'ndcg' and k = 10)
            or (direction = 'item_to_user' and metric = 'recall' and k = 100))
        """,
    ).set_index(["model", "direction"])["value"]
    for direction in ("user_to_item", "item_to_user"):
        week_old, fresh = m[("served_stages_week_old", direction)], m[("served", direction)]
        # measured 0.2646 / 0.2637 (user -> item) and 0.4878 / 0.4906: within a few percent
        assert abs(week_old - fresh) <= 0.05 * fresh
    reused = _df(
        demo_con,
        """
        select parameter_value from model_evaluation_parameters
        where model = 'served_stages_week_old' and parameter = 'stages'
        """,
    )
    assert len(reused) == 1 and "reused" in reused.iloc[0, 0]


def test_served_is_at_least_every_baseline_in_every_direction_and_segment(demo_con):
    """Issue 17's promise read from model_evaluation as a BI tool would: in each segment and
    direction, on each ranking metric, the served model scores at least as well as every
    reference beside it (plain MF, the recency and popularity baselines, heavy users,
    category history and affinity, random; population and uniform for send times). Coverage
    and calibration error are left out: random covers the most items, and lower ECE is
    better. served_stages_week_old is the served model with week-old stages, not a baseline.
    The closest call on the demo is user -> category (ndcg@1 0.8293 against history alone
    0.8287): the blend's weight is chosen on the validation window, never on this one."""
    m = _df(
        demo_con,
        """
        select segment, direction, metric, k, model, value from model_evaluation
        where metric not in ('coverage', 'ece')
        """,
    )
    served = m[m["model"] == "served"].set_index(["segment", "direction", "metric", "k"])["value"]
    baselines = m[~m["model"].isin(["served", "served_stages_week_old"])]
    compared = baselines.join(served.rename("served"), on=["segment", "direction", "metric", "k"])
    assert compared["served"].notna().all(), "a baseline row without a served row beside it"
    # every direction and segment of the evaluation is compared, not only the usual ones
    assert set(map(tuple, compared[["segment", "direction"]].drop_duplicates().values)) == {
        ("all", "user_to_item"),
        ("all", "item_to_user"),
        ("all", "user_to_category"),
        ("all", "send_time"),
        ("cold_items", "item_to_user"),
    }
    below = compared[compared["served"] < compared["value"]]
    assert below.empty, below.to_string()
    # the decisions behind the served model are recorded beside the figures
    decided = _df(
        demo_con,
        """
        select parameter, parameter_value from model_evaluation_parameters
        where model = 'served'
        """,
    ).set_index("parameter")["parameter_value"]
    for decision in ("served_user_to_item", "served_item_to_user", "category_weight"):
        assert decided[decision] and decided[f"{decision}_reason"]
