"""The SQL intervals behind campaign_lift (macros/stats/intervals.sql), rendered as dbt would
and run on DuckDB, against the formulas computed here and against a published example."""

from __future__ import annotations

import math

import duckdb
import jinja2
import pytest

from conftest import REPO

Z = 1.959964
MACROS = (REPO / "macros" / "stats" / "intervals.sql").read_text()


def sql(expression: str) -> str:
    return jinja2.Environment().from_string(MACROS + expression).render()


def run(expression: str, **columns):
    names = ", ".join(f"{value!r} as {name}" for name, value in columns.items())
    with duckdb.connect() as con:
        return con.execute(f"select {sql(expression)} from (select {names}) as t").fetchone()[0]


def wilson(c: int, n: int, side: str) -> float:
    p = c / n
    centre = p + Z * Z / (2 * n)
    half = Z * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n))
    return ((centre - half) if side == "lower" else (centre + half)) / (1 + Z * Z / n)


@pytest.mark.parametrize(("c", "n"), [(0, 1), (0, 20), (1, 3), (7, 40), (40, 40), (3, 5000)])
def test_wilson_bounds_by_hand(c, n):
    for side in ("lower", "upper"):
        got = run(f"{{{{ proactive_recs_wilson_bound('c', 'n', '{side}') }}}}", c=c, n=n)
        assert got == pytest.approx(wilson(c, n, side), abs=1e-12)
    assert run("{{ proactive_recs_wilson_bound('c', 'n', 'lower') }}", c=0, n=0) is None
    lower = run("{{ proactive_recs_wilson_bound('c', 'n', 'lower') }}", c=c, n=n)
    upper = run("{{ proactive_recs_wilson_bound('c', 'n', 'upper') }}", c=c, n=n)
    assert -1e-12 <= lower <= c / n <= upper <= 1 + 1e-12  # inside [0, 1], around the rate


def _newcombe(c1, n1, c0, n0, side):
    return run(
        f"{{{{ proactive_recs_newcombe_bound('c1', 'n1', 'c0', 'n0', '{side}') }}}}",
        c1=c1,
        n1=n1,
        c0=c0,
        n0=n0,
    )


def test_newcombes_bounds_by_hand():
    c1, n1, c0, n0 = 10, 40, 1, 20
    p1, p0 = c1 / n1, c0 / n0
    l1, u1 = wilson(c1, n1, "lower"), wilson(c1, n1, "upper")
    l0, u0 = wilson(c0, n0, "lower"), wilson(c0, n0, "upper")
    lower = p1 - p0 - math.sqrt((p1 - l1) ** 2 + (u0 - p0) ** 2)
    upper = p1 - p0 + math.sqrt((u1 - p1) ** 2 + (p0 - l0) ** 2)
    assert _newcombe(c1, n1, c0, n0, "lower") == pytest.approx(lower, abs=1e-12)
    assert _newcombe(c1, n1, c0, n0, "upper") == pytest.approx(upper, abs=1e-12)
    assert _newcombe(1, 0, 1, 20, "lower") is None  # an empty group: no interval


def test_newcombes_published_example():
    """Newcombe (1998), Statistics in Medicine 17: 873-890, example (a): 56/70 against
    48/80, difference 0.2000, method 10 (hybrid score) interval 0.0524 to 0.3339."""
    assert _newcombe(56, 70, 48, 80, "lower") == pytest.approx(0.0524, abs=5e-5)
    assert _newcombe(56, 70, 48, 80, "upper") == pytest.approx(0.3339, abs=5e-5)


def test_users_needed_by_hand():
    p1, p0 = 0.06, 0.04
    pbar = (p1 + p0) / 2
    term = Z * math.sqrt(2 * pbar * (1 - pbar)) + 0.841621 * math.sqrt(
        p1 * (1 - p1) + p0 * (1 - p0)
    )
    expected = math.ceil(term**2 / (p1 - p0) ** 2)
    assert run("{{ proactive_recs_users_needed('p1', 'p0') }}", p1=p1, p0=p0) == expected
    assert 1800 < expected < 2000  # the textbook figure for 4 % -> 6 % is about 1,900
    assert run("{{ proactive_recs_users_needed('p1', 'p0') }}", p1=0.05, p0=0.05) is None


@pytest.mark.parametrize(
    ("n1", "n0", "p1", "p0"),
    [(400, 100, 0.02, 0.02), (200, 50, 0.10, 0.10), (60, 60, 0.30, 0.30), (500, 120, 0.05, 0.02)],
)
def test_newcombes_interval_covers_the_true_difference_about_95_percent(n1, n0, p1, p0):
    """Coverage over 4,000 draws of the two groups (small and unequal groups, rare rates, and
    one real difference): the interval holds the true difference about 95 % of the time."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(20261201)
    draws = 4_000
    frame = {"c1": rng.binomial(n1, p1, draws), "c0": rng.binomial(n0, p0, draws)}
    bounds = {
        side: sql(f"{{{{ proactive_recs_newcombe_bound('c1', {n1}, 'c0', {n0}, '{side}') }}}}")
        for side in ("lower", "upper")
    }
    with duckdb.connect() as con:
        con.register("draws", pd.DataFrame(frame))
        covered = con.execute(
            f"select avg(case when {bounds['lower']} <= {p1 - p0} and {p1 - p0} "
            f"<= {bounds['upper']} then 1.0 else 0.0 end) from draws"
        ).fetchone()[0]
    # 4,000 draws: a binomial standard error of 0.35 points around 95 %
    assert 0.93 <= covered <= 0.975, covered
