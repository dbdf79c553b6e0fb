"""The daily recommendations reuse the weekly fit's trained stages (recommender_stages), as
a scheduler would run them: a daily build after a weekly one refits only MF, from the stored
item factors; without the weekly table the daily run trains itself and run_diagnostics says
so."""

from __future__ import annotations

import duckdb
import pytest

from conftest import DEMO_VARS, run_dbt

DAILY_SCORES = ["run", "--select", "recommendations", "user_item_scores", "item_user_scores",
                "model_parameters", "run_diagnostics"]  # fmt: skip


def _parameters(con) -> dict:
    rows = con.sql("select parameter, value from main.model_parameters").fetchall()
    return dict(rows)


def _scores(con, table: str):
    return con.sql(f"select * from main.{table} order by all").fetchall()


def _pairs(rows) -> set:
    return {(row[0], row[1]) for row in rows}


@pytest.mark.dbt
def test_a_daily_run_reuses_the_weekly_stages_and_starts_mf_from_their_item_factors(demo_copy):
    with duckdb.connect(str(demo_copy), read_only=True) as con:
        stored = con.sql("select fitted_as_of, n_bytes from main.recommender_stages").fetchall()
        before = {t: _scores(con, t) for t in ("user_item_scores", "item_user_scores")}
    assert len(stored) == 1 and stored[0][1] > 0  # the demo's weekly run, at its run date

    result = run_dbt(DAILY_SCORES, demo_copy, DEMO_VARS)
    assert result.returncode == 0, result.stdout[-3000:]
    with duckdb.connect(str(demo_copy), read_only=True) as con:
        parameters = _parameters(con)
        assert "reused" in parameters["stages"], parameters["stages"]
        assert parameters["stages_lookup"].startswith("recommender_stages ")
        assert parameters["mf_warm_start"].startswith("3 sweeps from the item factors of the")
        kinds = {r[0] for r in con.sql("select diagnostic from main.run_diagnostics").fetchall()}
        assert "stages_trained_in_run" not in kinds
        # the same stages and interactions: the same lists as the build's own daily run
        for table, rows in before.items():
            assert _scores(con, table) == rows, table

    # MF from random factors (15 sweeps, what the weekly fit did as of the same instant):
    # most of the same pairs
    cold_vars = {**DEMO_VARS, "proactive_recs_recommender_params": {"mf_warm_start_iterations": 0}}
    result = run_dbt(DAILY_SCORES, demo_copy, cold_vars)
    assert result.returncode == 0, result.stdout[-3000:]
    with duckdb.connect(str(demo_copy), read_only=True) as con:
        parameters = _parameters(con)
        assert "reused" in parameters["stages"], parameters["stages"]
        assert parameters["mf_warm_start"] == "off: mf_warm_start_iterations is 0"
        for table in before:
            cold, warm = _pairs(_scores(con, table)), _pairs(before[table])
            assert len(cold & warm) >= 0.8 * len(cold), table


@pytest.mark.dbt
def test_without_weekly_stages_the_daily_run_trains_itself_and_says_so(demo_copy):
    with duckdb.connect(str(demo_copy)) as con:
        con.execute("drop table main.recommender_stages")
    result = run_dbt(DAILY_SCORES, demo_copy, DEMO_VARS)
    assert result.returncode == 0, result.stdout[-3000:]
    with duckdb.connect(str(demo_copy), read_only=True) as con:
        parameters = _parameters(con)
        assert parameters["stages"] == "trained in this fit"
        assert "recommender_stages" in parameters["stages_lookup"]
        diagnostic = con.sql(
            "select raw_value, detail from main.run_diagnostics"
            " where diagnostic = 'stages_trained_in_run'"
        ).fetchall()
    assert len(diagnostic) == 1 and "weekly selector" in diagnostic[0][1]
    assert "recommender_stages" in diagnostic[0][0]
