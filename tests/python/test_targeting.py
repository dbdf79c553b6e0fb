"""Filters and boosters: evaluated per row, bad expressions named, on DuckDB and pandas."""

from __future__ import annotations

import duckdb
import pandas as pd
import pytest

from conftest import DEMO_VARS, REPO, run_dbt
from proactive_recs.notifications.targeting import (
    TargetingExpressionError,
    TargetingRule,
    evaluate_targeting,
)

USERS = pd.DataFrame(
    {
        "user_id": ["a", "b", "c"],
        "days_since_joined": [3, 30, None],
        "loyalty_group": ["loyal", None, "regular"],
    }
)


def test_filter_and_booster_are_evaluated_per_row_with_null_defaults():
    rule = TargetingRule(
        "welcome",
        filter_sql="days_since_joined <= 7",
        booster_sql="case when loyalty_group = 'loyal' then 2.0 end",
    )
    got = evaluate_targeting(USERS, [rule], key="user_id").set_index("user_id")
    # a: joined 3 days ago, loyal; b: 30 days, no group;
    # c: unknown join date -> filter null -> false
    assert got["passes_filter"].to_dict() == {"a": True, "b": False, "c": False}
    # the booster is null for non-loyal users: null counts as neutral 1.0
    assert got["boost"].to_dict() == {"a": 2.0, "b": 1.0, "c": 1.0}
    assert set(got["target"]) == {"welcome"}


def test_empty_expressions_pass_everyone_unboosted_and_targets_stack():
    rules = [TargetingRule("scores"), TargetingRule("c1", filter_sql="user_id = 'b'")]
    got = evaluate_targeting(USERS, rules, key="user_id")
    assert len(got) == 6
    scores = got[got["target"] == "scores"]
    assert scores["passes_filter"].all() and (scores["boost"] == 1.0).all()
    assert got[got["target"] == "c1"].set_index("user_id")["passes_filter"].to_dict() == {
        "a": False,
        "b": True,
        "c": False,
    }


def test_duckdb_relation_is_evaluated_in_the_database():
    with duckdb.connect() as con:
        relation = con.from_df(USERS)
        got = evaluate_targeting(
            relation, [TargetingRule("s", filter_sql="user_id > 'a'")], key="user_id"
        )
    assert got.set_index("user_id")["passes_filter"].to_dict() == {"a": False, "b": True, "c": True}


@pytest.mark.parametrize(
    "rule, fragment",
    [
        (
            TargetingRule(
                "new_arrivals", filter_sql="no_such_column > 1", origin="campaign 'new_arrivals'"
            ),
            "filter `no_such_column > 1`",
        ),
        (
            TargetingRule("x", booster_sql="case when then", origin="var user_booster"),
            "booster `case when then`",
        ),
    ],
)
def test_expression_that_does_not_compile_names_origin_and_expression(rule, fragment):
    with pytest.raises(TargetingExpressionError) as error:
        evaluate_targeting(USERS, [rule], key="user_id", context_name="int_user_context")
    message = str(error.value)
    assert rule.origin in message and fragment in message and "int_user_context" in message


def test_negative_boost_is_refused():
    rule = TargetingRule("c", booster_sql="-1.0", origin="campaign 'c'")
    with pytest.raises(TargetingExpressionError, match="negative boost"):
        evaluate_targeting(USERS, [rule], key="user_id")


@pytest.mark.parametrize(
    "booster, fragment",
    [
        ("'inf'", "non-finite boost (inf)"),
        ("cast('nan' as double)", "non-finite boost (nan)"),
        ("case when loyalty_group = 'loyal' then 1e400 else 1 end", "non-finite"),
        ("loyalty_group", "booster `loyalty_group`"),  # text: fails when computed
    ],
)
def test_boosters_that_are_not_finite_numbers_stop_naming_the_campaign(booster, fragment):
    rule = TargetingRule("c", booster_sql=booster, origin="campaign 'new_arrivals'")
    with pytest.raises(TargetingExpressionError) as error:
        evaluate_targeting(USERS, [rule], key="user_id", context_name="int_user_context")
    assert "campaign 'new_arrivals'" in str(error.value) and fragment in str(error.value)


@pytest.mark.dbt
def test_dbt_build_stops_on_a_bad_user_filter_naming_it(tmp_path):
    path = tmp_path / "bad_filter.duckdb"
    assert run_dbt(["seed"], path, DEMO_VARS).returncode == 0
    result = run_dbt(
        ["run", "--select", "+user_targeting", "--exclude", "tag:demo_data"],
        path,
        {**DEMO_VARS, "proactive_recs_user_filter": "loyalty_grup = 'loyal'"},
    )
    assert result.returncode != 0
    assert (
        "var proactive_recs_user_filter / proactive_recs_user_booster: "
        "filter `loyalty_grup = 'loyal'` does not compile"
    ) in result.stdout


def test_missing_package_is_named_with_how_to_provide_it():
    from proactive_recs.warehouse.dbt_io import require_packages

    require_packages(["numpy", "pandas"])  # present: no error
    with pytest.raises(ModuleNotFoundError) as error:
        require_packages(["numpy", "implicit_not_installed_here"])
    assert "implicit_not_installed_here" in str(error.value)
    assert "numpy" not in str(error.value).split("\n", 1)[1]


def test_snowflake_stage_zip_holds_an_importable_package(tmp_path):
    import subprocess
    import sys
    import zipfile

    from proactive_recs_tools.snowflake_stage import build_zip

    path = build_zip(tmp_path / "proactive_recs.zip")
    names = zipfile.ZipFile(path).namelist()
    assert (
        "proactive_recs/__init__.py" in names
        and "proactive_recs/notifications/targeting.py" in names
    )
    # the runtime only: no tool (bench, generator, loaders, GX suites, report) is shipped
    assert all(name.startswith("proactive_recs/") for name in names)
    tools = {path.name for path in (REPO / "src" / "proactive_recs_tools").glob("*.py")}
    assert not {name.rsplit("/", 1)[-1] for name in names} & (tools - {"__init__.py"})
    # importable from the zip alone, as Snowflake's IMPORTS put it on sys.path
    code = "import proactive_recs.notifications.targeting as t; print(t.__file__)"
    out = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(path)!r}); {code}"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert str(path) in out.stdout
