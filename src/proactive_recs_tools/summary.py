"""Print what a pipeline run produced: rows per main output, rejected raw rows per reason.

    python -m proactive_recs_tools.summary --duckdb proactive_recs.duckdb [--schema main]

Run by ``make demo`` after ``dbt build``. Outputs that a later stage has not built yet are
listed as missing rather than failing, so the summary is useful on a half-built database.
"""

from __future__ import annotations

import argparse
import os

import duckdb

# Public outputs (README "Data flow") first, then the clean staging tables they are built from.
MAIN_OUTPUTS = (
    "user_item_scores",
    "item_user_scores",
    "user_category_scores",
    "model_evaluation",
    "notification_audience",
    "notification_sync",
    "notification_holdout",
    "email_digest",
    "notification_log",
    "run_diagnostics",
    "campaign_backtest",
    "stg_users",
    "stg_items",
    "stg_transactions",
    "stg_notification_sends",
    "stg_notification_events",
    "rejected_rows",
)


def summarize(con: duckdb.DuckDBPyConnection, schema: str = "main") -> list[str]:
    """Lines of the summary for the database behind ``con``."""
    present = {
        name
        for (name,) in con.execute(
            "select table_name from information_schema.tables where table_schema = ?", [schema]
        ).fetchall()
    }
    lines = ["rows per output"]
    for name in MAIN_OUTPUTS:
        if name in present:
            (rows,) = con.execute(f'select count(*) from "{schema}"."{name}"').fetchone()
            lines.append(f"  {name:<26}{rows:>12,}")
        else:
            lines.append(f"  {name:<26}{'(not built)':>12}")
    if "rejected_rows" in present:
        lines.append("rejected raw rows per source and reason")
        rows = con.execute(
            f'select source_name, rejection_reason, count(*) from "{schema}".rejected_rows '
            "group by all order by source_name, count(*) desc"
        ).fetchall()
        for source_name, reason, count in rows:
            lines.append(f"  {source_name:<22}{reason:<24}{count:>10,}")
        if not rows:
            lines.append("  (none)")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duckdb", default=os.environ.get("DUCKDB_PATH", "proactive_recs.duckdb"))
    parser.add_argument("--schema", default="main")
    args = parser.parse_args(argv)
    with duckdb.connect(args.duckdb, read_only=True) as con:
        print("\n".join(summarize(con, args.schema)))


if __name__ == "__main__":
    main()
