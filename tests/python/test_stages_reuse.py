"""The daily recommendations reuse the weekly fit's trained stages (recommender_stages), as
a scheduler would run them: a daily build after a weekly one refits only MF; without the
weekly table the daily run trains itself and run_diagnostics says so."""

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


@pytest.mark.dbt
def test_a_daily_run_reuses_the_weekly_stages_and_serves_what_a_full_fit_serves(demo_copy):
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
        kinds = {r[0] for r in con.sql("select diagnostic from main.run_diagnostics").fetchall()}
        assert "stages_trained_in_run" not in kinds
        # stages trained as of the same instant with the same settings: the daily fit that
        # reuses them serves exactly what a fit that trains everything served
        for table, rows in before.items():
            assert _scores(con, table) == rows, table


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
