"""Filters and boosters: SQL expressions an analytics engineer writes, evaluated per row.

A *filter* is a boolean predicate ("days_since_joined <= 7"), a *booster* a numeric
expression ("case when loyalty_group = 'loyal' then 2.0 else 1.0 end"; 1.0 = neutral). Both
are written against a context table (int_user_context / int_item_context) and evaluated in
the warehouse that holds it, so they use that warehouse's SQL dialect.

This module is the one place where they are evaluated, for the vars (the score tables) and
for every campaign alike. It works on a DuckDB relation (dbt-duckdb's ``dbt.ref``), a
Snowpark DataFrame (Snowflake) or a pandas frame (tests, ad-hoc), and turns an expression that
does not compile into an error naming where it came from and the expression itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd


class TargetingExpressionError(ValueError):
    """A filter or booster expression that the warehouse cannot evaluate."""


@dataclass(frozen=True)
class TargetingRule:
    """One filter + booster pair and where it came from (for error messages).

    target: the name the result rows carry ('scores' for the vars, else a campaign_id).
    origin: human description, e.g. "campaign 'new_arrivals'" or "var user_filter".
    """

    target: str
    filter_sql: str | None = None
    booster_sql: str | None = None
    origin: str = ""

    def columns(self, key: str) -> list[tuple[str, str, str]]:
        """(sql, alias, which) for the key, target, passes_filter and boost columns."""
        filter_sql = (self.filter_sql or "").strip() or "true"
        booster_sql = (self.booster_sql or "").strip() or "1.0"
        target_literal = "'" + self.target.replace("'", "''") + "'"
        return [
            (key, key, "key"),
            (target_literal, "target", "target"),
            (f"coalesce(cast(({filter_sql}) as boolean), false)", "passes_filter", "filter"),
            (f"coalesce(cast(({booster_sql}) as double), 1.0)", "boost", "booster"),
        ]


def _describe_failure(rule: TargetingRule, context_name: str, error: Exception) -> str:
    parts = []
    if (rule.filter_sql or "").strip():
        parts.append(f"filter `{rule.filter_sql.strip()}`")
    if (rule.booster_sql or "").strip():
        parts.append(f"booster `{rule.booster_sql.strip()}`")
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return (
        f"{rule.origin or rule.target}: {' / '.join(parts) or 'expression'} does not compile "
        f"against {context_name}: {first_line}"
    )


def _is_snowpark(frame) -> bool:
    return type(frame).__module__.startswith("snowflake.snowpark")


def _evaluate_duckdb(relation: duckdb.DuckDBPyRelation, rule, key, context_name):
    select_list = ", ".join(f"{sql} as {alias}" for sql, alias, _ in rule.columns(key))
    try:
        result = relation.query("context", f"select {select_list} from context")
        # Bind and type-check now, so a bad expression is reported here, not at write time.
        result.limit(0).fetchall()
        # Values fail only when computed (a text booster: "could not convert 'x' to DOUBLE").
        return result.df()
    except duckdb.Error as error:
        raise TargetingExpressionError(_describe_failure(rule, context_name, error)) from error


def _evaluate_snowpark(frame, rule, key, context_name):
    from snowflake.snowpark.functions import col, lit, sql_expr

    # Empty expressions become literals rather than SQL text: same result, and it keeps the
    # default path runnable in Snowpark's local testing mode, which has no SQL text support.
    def column(sql, alias, which):
        if which == "key":
            return col(key).alias(alias)
        if which == "target":
            return lit(rule.target).alias(alias)
        if which == "filter" and not (rule.filter_sql or "").strip():
            return lit(True).alias(alias)
        if which == "booster" and not (rule.booster_sql or "").strip():
            return lit(1.0).alias(alias)
        return sql_expr(sql).alias(alias)

    try:
        result = frame.select(*[column(*spec) for spec in rule.columns(key)])
        result.limit(0).collect()
    except Exception as error:  # Snowpark raises several exception types for SQL errors
        raise TargetingExpressionError(_describe_failure(rule, context_name, error)) from error
    return result.to_pandas().rename(columns=str.lower)


def evaluate_targeting(
    context, rules: list[TargetingRule], key: str, context_name: str = "the context"
) -> pd.DataFrame:
    """Evaluate every rule on every context row: columns target, <key>, passes_filter, boost.

    ``context`` is a DuckDB relation, a Snowpark DataFrame or a pandas frame. Raises
    TargetingExpressionError naming the rule's origin and expression when one does not compile.
    A negative boost is an error too: boosts multiply scores and must not flip their order.
    """
    frames = []
    for rule in rules:
        if isinstance(context, duckdb.DuckDBPyRelation):
            frame = _evaluate_duckdb(context, rule, key, context_name)
        elif _is_snowpark(context):
            frame = _evaluate_snowpark(context, rule, key, context_name)
        elif isinstance(context, pd.DataFrame):
            with duckdb.connect() as con:
                frame = _evaluate_duckdb(con.from_df(context), rule, key, context_name)
        else:
            raise TypeError(f"cannot evaluate targeting on a {type(context).__name__}")
        boost = pd.to_numeric(frame["boost"], errors="coerce").astype(float)
        # inf / NaN would make expected values inf or NaN and the allocation meaningless.
        for bad, what in ((~np.isfinite(boost), "a non-finite"), (boost < 0, "a negative")):
            if bad.any():
                example = frame.loc[bad, key].iloc[0]
                raise TargetingExpressionError(
                    f"{rule.origin or rule.target}: booster `{rule.booster_sql}` gives {what} "
                    f"boost ({frame.loc[bad, 'boost'].iloc[0]}) for {key} {example!r}"
                )
        frames.append(frame[["target", key, "passes_filter", "boost"]])
    if not frames:
        return pd.DataFrame({"target": [], key: [], "passes_filter": [], "boost": []})
    result = pd.concat(frames, ignore_index=True)
    result["passes_filter"] = result["passes_filter"].astype(bool)
    result["boost"] = result["boost"].astype(float)
    return result
