"""Top-K both ways spread over (user bucket, item block) partitions, as the Snowflake UDTF
runs it, merged by the SQL macro, against one topk_both pass over everything."""

from __future__ import annotations

import duckdb
import jinja2
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from conftest import REPO
from proactive_recs.estimators.topk import topk_both
from proactive_recs.warehouse.partitioned_topk import (
    OUTPUT_COLUMNS,
    PartitionTopK,
    partition_rows,
    score_partitions,
)

MERGE_MACRO = REPO / "macros" / "snowflake" / "merge_partitioned_topk.sql"


def merge_in_sql(partials: pd.DataFrame, k_items: int, k_users: int) -> pd.DataFrame:
    """The dbt macro's SQL, rendered as dbt would, run on DuckDB."""
    template = jinja2.Environment().from_string(
        MERGE_MACRO.read_text()
        + f"{{{{ proactive_recs_merge_partitioned_topk('partials', {k_items}, {k_users}) }}}}"
    )
    with duckdb.connect() as con:
        con.register("partials", partials)
        return con.execute(template.render()).df()


def lists_of(merged: pd.DataFrame, direction: str, n_owners: int, k: int):
    ids = np.full((n_owners, k), -1, dtype=np.int64)
    scores = np.full((n_owners, k), -np.inf, dtype=np.float64)
    part = merged[merged["direction"] == direction]
    ids[part["owner_position"], part["rank"] - 1] = part["member_position"]
    scores[part["owner_position"], part["rank"] - 1] = part["score"]
    return ids, scores


def world(n_users=90, n_items=40, factors=6, seed=0, ties=False):
    rng = np.random.default_rng(seed)
    U = rng.normal(size=(n_users, factors)).astype(np.float32)
    V = rng.normal(size=(n_items, factors)).astype(np.float32)
    if ties:  # whole groups of identical users and items: every score ties within them
        U = np.repeat(U[: n_users // 3], 3, axis=0)
        V = np.repeat(V[: n_items // 4], 4, axis=0)
        U = np.round(U, 1)
        V = np.round(V, 1)
    seen = sp.random(n_users, n_items, density=0.1, random_state=seed, format="csr")
    users = pd.DataFrame(
        {
            "position": np.arange(n_users),
            "factors": list(U),
            "servable": rng.random(n_users) > 0.1,
            "boost": np.where(rng.random(n_users) < 0.2, 2.0, 1.0),
            "excluded": [seen.indices[seen.indptr[u] : seen.indptr[u + 1]] for u in range(n_users)],
        }
    )
    items = pd.DataFrame(
        {
            "position": np.arange(n_items),
            "factors": list(V),
            "servable": rng.random(n_items) > 0.1,
            "boost": np.where(rng.random(n_items) < 0.2, 0.5, 1.0),
        }
    )
    reference = topk_both(
        U,
        V,
        k_items=5,
        k_users=12,
        exclude=seen,
        user_mask=users["servable"].to_numpy(),
        item_mask=items["servable"].to_numpy(),
        user_boost=users["boost"].to_numpy(),
        item_boost=items["boost"].to_numpy(),
    )
    return users, items, reference


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize(("n_buckets", "n_blocks"), [(1, 1), (4, 3), (7, 1), (1, 5)])
def test_merged_partitions_give_the_one_pass_lists(ties, n_buckets, n_blocks):
    users, items, reference = world(ties=ties)
    rows = partition_rows(
        users, items, n_buckets=n_buckets, n_blocks=n_blocks, k_items=5, k_users=12
    )
    merged = merge_in_sql(score_partitions(rows), 5, 12)
    ui, ui_scores = lists_of(merged, "user_item", len(users), 5)
    iu, iu_scores = lists_of(merged, "item_user", len(items), 12)
    np.testing.assert_array_equal(ui, reference.user_items)
    np.testing.assert_array_equal(iu, reference.item_users)
    np.testing.assert_array_equal(ui_scores, reference.user_item_scores)
    np.testing.assert_array_equal(iu_scores, reference.item_user_scores)


def test_the_handler_reads_snowflakes_upper_case_columns_and_empty_sides():
    users, items, _ = world(n_users=12, n_items=8)
    rows = partition_rows(users, items, n_buckets=2, n_blocks=2, k_items=3, k_users=4)
    one = rows[(rows["bucket"] == 0) & (rows["block"] == 1)].drop(columns=["bucket", "block"])
    out = PartitionTopK().end_partition(one.rename(columns=str.upper))
    assert list(out.columns) == OUTPUT_COLUMNS and len(out) > 0
    # a partition with users and no item (or the reverse) yields nothing
    only_users = one[one["side"] == "user"]
    assert PartitionTopK().end_partition(only_users).empty


# ---------------------------------------------------------------- the Snowflake model


def render_for_snowflake(path, **extra_vars) -> str:
    """A model or macro call rendered as dbt would for the snowflake target, with the
    project's var defaults, refs as bare names and the project's macros (no account)."""
    import yaml

    defaults = yaml.safe_load((REPO / "dbt_project.yml").read_text())["vars"]
    values = {**defaults, **extra_vars}
    macros = "".join(p.read_text() for p in sorted((REPO / "macros" / "snowflake").glob("*.sql")))
    env = jinja2.Environment(extensions=["jinja2.ext.do"])
    target = type("Target", (), {"type": "snowflake", "database": "analytics", "schema": "recs"})
    context = {
        "var": lambda name, default=None: values.get(name, default),
        "ref": lambda name: f"analytics.recs.{name}",
        "config": lambda **_: "",
        "target": target,
    }
    text = path if isinstance(path, str) else path.read_text()
    return env.from_string(macros + text).render(**context)


def test_the_snowflake_model_and_its_function_render_to_valid_snowflake_sql():
    import sqlfluff

    model = render_for_snowflake(REPO / "models/marts/recommendations/partitioned_mf_scores.sql")
    ddl = render_for_snowflake("{{ proactive_recs_create_partition_topk_function() }}")
    sqlfluff.parse(model, dialect="snowflake")  # raises on a parse error
    sqlfluff.parse(ddl, dialect="snowflake")
    assert "table(analytics.recs.proactive_recs_partition_topk(" in model
    assert "over (partition by partition_input.bucket, partition_input.block)" in model
    for fragment in (
        "runtime_version = '3.11'",
        "packages = ('numpy', 'pandas', 'pyarrow', 'scipy', 'scikit-learn', 'threadpoolctl',"
        " 'numba')",
        "imports = ('@proactive_recs_stage/proactive_recs.zip')",
        "from proactive_recs.warehouse.partitioned_topk import PartitionTopK",
    ):
        assert fragment in ddl, fragment
    # the handler the DDL names is importable and marked vectorized the way Snowflake reads it
    assert PartitionTopK.end_partition._sf_vectorized_input is pd.DataFrame


def test_on_the_demo_the_partitions_give_the_recommenders_own_mf_lists(demo_db, tmp_path):
    """The demo built with the plain-MF stage serving (second stage off): its
    user_item_scores / item_user_scores against the partitioned scoring of its own
    user_factors / item_factors tables, as partitioned_mf_scores feeds the UDTF."""
    import shutil

    from conftest import DEMO_VARS, run_dbt

    path = tmp_path / "demo.duckdb"
    shutil.copy(demo_db, path)
    vars_ = {**DEMO_VARS, "proactive_recs_recommender_params": {"second_stage": False}}
    models = ["recommendations", "user_item_scores", "item_user_scores", "user_factors"]
    done = run_dbt(["run", "--select", *models, "item_factors", "model_parameters"], path, vars_)
    assert done.returncode == 0, done.stdout[-3000:]
    with duckdb.connect(str(path), read_only=True) as con:
        users = con.execute("select * from user_factors order by user_id").df()
        items = con.execute("select * from item_factors order by item_id").df()
        params = dict(con.execute("select parameter, value from model_parameters").fetchall())
        stages = con.execute("select distinct stage from model_parameters").fetchall()
        seen = con.execute(
            "select distinct i.user_id, i.item_id from int_interactions as i, int_run_context"
            " as r where i.occurred_at < r.run_date"
        ).df()
        served_ui = con.execute(
            "select user_id, item_id, rank, score from user_item_scores where not is_fallback"
        ).df()
        served_iu = con.execute(
            "select item_id, user_id, rank, score from item_user_scores where basis = 'history'"
        ).df()
    assert stages == [("mf",)]  # plain MF served: the lists the UDTF must reproduce
    k_items, k_users = int(params["k_items"]), int(params["k_users"])
    users["position"], items["position"] = np.arange(len(users)), np.arange(len(items))
    item_position = pd.Series(items["position"].to_numpy(), index=items["item_id"])
    seen = seen[seen["item_id"].isin(item_position.index)]
    excluded = seen.groupby("user_id")["item_id"].agg(lambda ids: item_position[ids].to_numpy())
    users["excluded"] = users["user_id"].map(excluded)
    users = users.rename(columns={"is_servable": "servable"})
    items = items.rename(columns={"is_servable": "servable"})
    rows = partition_rows(users, items, n_buckets=5, n_blocks=3, k_items=k_items, k_users=k_users)
    merged = merge_in_sql(score_partitions(rows), k_items, k_users)
    user_ids, item_ids = users["user_id"].to_numpy(), items["item_id"].to_numpy()
    ui = merged[merged["direction"] == "user_item"]
    iu = merged[merged["direction"] == "item_user"]
    ours_ui = pd.DataFrame(
        {
            "user_id": user_ids[ui["owner_position"]],
            "item_id": item_ids[ui["member_position"]],
            "rank": ui["rank"].to_numpy(),
            "score": ui["score"].to_numpy(),
        }
    )
    ours_iu = pd.DataFrame(
        {
            "item_id": item_ids[iu["owner_position"]],
            "user_id": user_ids[iu["member_position"]],
            "rank": iu["rank"].to_numpy(),
            "score": iu["score"].to_numpy(),
        }
    )
    assert len(ours_ui) > 1000 and len(ours_iu) > 1000
    for ours, served, keys in (
        (ours_ui, served_ui, ["user_id", "rank"]),
        (ours_iu, served_iu, ["item_id", "rank"]),
    ):
        ours = ours.sort_values(keys).reset_index(drop=True)
        served = served.sort_values(keys).reset_index(drop=True)
        pd.testing.assert_frame_equal(ours, served[ours.columns], check_dtype=False)
