"""The dbt Python models on the Snowflake path: Snowpark's local testing mode.

Each model's ``model(dbt, session)`` runs with a real Snowpark Session
(``local_testing``) and its refs served as Snowpark DataFrames built from the demo build,
with upper-case column names as Snowflake returns them. The stand-in ``dbt`` object below
offers what dbt-snowflake's generated code offers a model: ``ref``, ``config`` and
``config.get``. What local testing cannot run (SQL text, e.g. non-empty filter expressions;
stages; Anaconda packages) is listed in the README's "Running on Snowflake".
"""

from __future__ import annotations

import importlib.util
import json

import duckdb
import pandas as pd
import pytest

from conftest import REPO

snowpark = pytest.importorskip("snowflake.snowpark", reason="the snowflake extra is not installed")

pytestmark = pytest.mark.dbt


class _Config:
    def __init__(self, values: dict):
        self._values = values

    def __call__(self, **kwargs):  # dbt.config(materialized=...) inside the model
        return None

    def get(self, key, default=None):
        return self._values.get(key, default)


class SnowparkDbt:
    """What a dbt Python model sees of dbt, with refs as Snowpark DataFrames."""

    def __init__(self, session, con, config: dict):
        self._session, self._con = session, con
        self.config = _Config(config)

    def ref(self, name: str):
        frame = self._con.execute(f"select * from main.{name}").df()
        frame.columns = [c.upper() for c in frame.columns]  # unquoted Snowflake identifiers
        # Snowpark takes None, not pandas' NA, in nullable (extension) columns
        for column in frame.columns:
            if isinstance(frame[column].dtype, pd.api.extensions.ExtensionDtype):
                values = frame[column].astype(object)
                frame[column] = values.where(values.notna(), None)
        return self._session.create_dataframe(frame)


def load_model(relative_path: str):
    spec = importlib.util.spec_from_file_location("model_under_test", REPO / relative_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.model


@pytest.fixture(scope="module")
def session():
    session = snowpark.Session.builder.config("local_testing", True).create()
    yield session
    session.close()


@pytest.fixture
def con(demo_db):
    with duckdb.connect(str(demo_db), read_only=True) as connection:
        yield connection


def same_rows(left: pd.DataFrame, right: pd.DataFrame, keys: list[str]) -> None:
    left = left[sorted(left.columns)].sort_values(keys).reset_index(drop=True)
    right = right[sorted(left.columns)].sort_values(keys).reset_index(drop=True)
    pd.testing.assert_frame_equal(left, right, check_dtype=False, check_exact=False, rtol=1e-6)


def test_item_targeting_on_snowpark_matches_the_duckdb_build(session, con):
    model = load_model("python_models/targeting/item_targeting.py")
    got = model(
        SnowparkDbt(session, con, {"meta": {"item_filter": "", "item_booster": ""}}), session
    )
    same_rows(got, con.execute("select * from main.item_targeting").df(), ["item_id"])


def test_user_targeting_on_snowpark_evaluates_every_campaign(session, con):
    model = load_model("python_models/targeting/user_targeting.py")
    dbt = SnowparkDbt(session, con, {"meta": {"user_filter": "", "user_booster": ""}})
    # Local testing has no SQL text: keep the campaigns but without their expressions.
    original_ref = dbt.ref

    def ref(name):
        frame = original_ref(name)
        if name == "stg_campaigns":
            frame = frame.with_column("USER_FILTER", snowpark.functions.lit(None)).with_column(
                "USER_BOOSTER", snowpark.functions.lit(None)
            )
        return frame

    dbt.ref = ref
    got = model(dbt, session)
    n_users = con.execute("select count(*) from main.int_user_context").fetchone()[0]
    n_targets = con.execute("select count(*) from main.stg_campaigns").fetchone()[0] + 1
    assert len(got) == n_users * n_targets
    assert got["passes_filter"].all() and (got["boost"] == 1.0).all()


def test_recommendations_on_snowpark_match_the_duckdb_build(session, con):
    model = load_model("python_models/recommender/recommendations.py")
    params = con.execute("select parameter, value from main.model_parameters").df()
    # The DuckDB build tuned its hyper-parameters; reuse them so both paths fit the same model.
    chosen = dict(zip(params["parameter"], params["value"], strict=True))
    run_params = {
        "factors": int(chosen["factors"]),
        "alpha": float(chosen["alpha"]),
        "regularization": float(chosen["regularization"]),
        "tune": False,
    }
    meta = {"horizon_days": "30", "recommender_params": json.dumps(run_params)}
    got = model(SnowparkDbt(session, con, {"meta": meta}), session)
    ours = got[got["record_type"] == "user_item"][["user_id", "item_id", "rank", "score"]]
    built = con.execute("select user_id, item_id, rank, score from main.user_item_scores").df()
    assert len(ours) == len(built) > 0
    # Same users served, and for most users the same best item (MF and ranker are seeded).
    assert set(ours["user_id"]) == set(built["user_id"])
    top_ours = ours[ours["rank"] == 1].set_index("user_id")["item_id"]
    top_built = built[built["rank"] == 1].set_index("user_id")["item_id"]
    assert (top_ours == top_built.reindex(top_ours.index)).mean() > 0.9


def test_run_diagnostics_on_snowpark_match_the_duckdb_build(session, con):
    """A model that builds its frame in pandas goes through the same Snowpark cell rules."""
    model = load_model("python_models/diagnostics/run_diagnostics.py")
    got = model(SnowparkDbt(session, con, {"meta": {"default_timezone": "UTC"}}), session)
    built = con.execute("select * from main.run_diagnostics").df()
    assert len(got) == len(built) > 0
    same_rows(got, built, ["diagnostic", "subject_id", "raw_value"])


def test_to_pandas_projects_snowpark_frames_before_reading(session):
    from proactive_recs.warehouse.dbt_io import to_pandas

    frame = session.create_dataframe(
        pd.DataFrame({"USER_ID": ["u1", "u2"], "ITEM_ID": ["i1", "i2"], "SCORE": [0.5, 0.25]})
    )
    got = to_pandas(frame, columns=["score", "user_id"])
    assert list(got.columns) == ["score", "user_id"]
    assert got.to_dict("list") == {"score": [0.5, 0.25], "user_id": ["u1", "u2"]}


def test_rows_since_in_and_matching_filter_snowpark_frames_in_the_warehouse(session):
    from proactive_recs.warehouse.dbt_io import rows_in, rows_matching, rows_since

    day = pd.Timestamp("2026-01-01")
    sends = session.create_dataframe(
        pd.DataFrame(
            {
                "SEND_ID": [f"s{k}" for k in range(6)],
                "SENT_AT": [day + pd.Timedelta(days=k) for k in range(6)],
            }
        )
    )
    events = session.create_dataframe(
        pd.DataFrame({"SEND_ID": ["s1", "s4", "s4", "s5", "ghost"], "N": [1, 2, 3, 4, 5]})
    )
    recent = rows_since(sends, "sent_at", day + pd.Timedelta(days=4))
    # collect(): local testing's to_pandas misaligns the columns of a filtered frame
    assert sorted(row["SEND_ID"] for row in recent.collect()) == ["s4", "s5"]
    theirs = rows_matching(events, recent, "send_id")
    assert sorted(row["N"] for row in theirs.collect()) == [2, 3, 4]
    assert sorted(
        row["SEND_ID"] for row in rows_in(sends, "send_id", ["s0", "s2", "x"]).collect()
    ) == [
        "s0",
        "s2",
    ]
    assert rows_in(sends, "send_id", []).collect() == []
    # with the session the values are a frame of their own and the filter a semi join
    with_session = rows_in(sends, "send_id", ["s0", "s2'q", "s5", "x"], session=session)
    assert sorted(row["SEND_ID"] for row in with_session.collect()) == ["s0", "s5"]
    assert rows_in(sends, "send_id", [], session=session).collect() == []
