"""Great Expectations (GX Core 1.x) checks on a built DuckDB file: sources, staging, outputs.

    python -m proactive_recs_tools.validation --duckdb proactive_recs.duckdb [--schema main]
        [--source-schema main] [--vars-file vars/demo.yml] [--run-date 2026-11-01]
        [--cap email=3 --cap push=2] [--id-mostly 0.95] [--data-docs target/data_docs]

Each table is read with duckdb into pandas and validated by an ephemeral GX context with one
pandas datasource per suite (GX's SQL path through DuckDB is not dependable). Three suites:

* ``sources``: the raw tables staging reads (schema, mostly non-null ids, row counts);
* ``staging``: the clean ``stg_*`` tables (keys, accepted values, ranges, timestamps not
  after the run date, share of purchases);
* ``outputs``: the public tables (README "Data flow"), each only when it is built, plus frames
  derived in pandas for rules that span rows or tables (ranks contiguous per key, no
  suppressed user in an audience, sends per user within the caps, audience sizes).

Exit code 0 when every expectation passes, 1 when one fails (one ``FAILED ...`` line per
expectation, naming its type, arguments and table), 2 when the database cannot be opened or
a required (source or staging) table is missing. Outputs not built yet are skipped.
Full description of every check: docs/data_quality.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from proactive_recs.contract import CHANNELS, REQUIRED_COLUMNS
from proactive_recs.data.instants import utc_instant
from proactive_recs.notifications.backtest import POLICIES
from proactive_recs.notifications.frequency import FrequencyRules

__all__ = [
    "CHANNELS",
    "OUTPUT_TABLES",
    "SOURCE_COLUMNS",
    "STAGING_TABLES",
    "CheckResult",
    "Failure",
    "Settings",
    "TableCheck",
    "ValidationReport",
    "add_settings_arguments",
    "build_checks",
    "load_vars",
    "main",
    "resolve_caps",
    "resolve_run_date",
    "rolling_sends",
    "run_checks",
    "settings_from_args",
    "validate",
]

# --------------------------------------------------------------------------- contract

# Required raw columns per source (docs/raw_data.md, macros/sources.sql).
SOURCE_COLUMNS: dict[str, tuple[str, ...]] = REQUIRED_COLUMNS
# Key columns that must be mostly non-null in the raw tables (null or blank = null_id).
SOURCE_ID_COLUMNS: dict[str, tuple[str, ...]] = {
    "users": ("user_id",),
    "items": ("item_id",),
    "transactions": ("user_id", "item_id"),
    "notification_sends": ("send_id", "user_id"),
    "notification_events": ("send_id",),
}
# A shop that never sent anything through the tool has empty send/event tables.
SOURCES_MAY_BE_EMPTY = frozenset({"notification_sends", "notification_events"})

STAGING_TABLES = (
    "stg_users",
    "stg_items",
    "stg_transactions",
    "stg_notification_sends",
    "stg_notification_events",
)
OUTPUT_TABLES = (
    "user_item_scores",
    "item_user_scores",
    "prelaunch_item_user_scores",
    "user_category_scores",
    "model_evaluation",
    "notification_audience",
    "email_digest",
    "notification_log",
    "campaign_backtest",
)

NOTIFICATION_EVENT_TYPES = (
    "delivered",
    "open",
    "click",
    "conversion",
    "unsubscribe",
    "bounce",
    "complaint",
)
DIRECTIONS = ("user_to_item", "item_to_user", "user_to_category", "send_time")
BOUNDED_METRICS = ("ndcg", "recall", "precision", "map", "coverage", "ece", "capture")
BACKTEST_METRICS = (
    "sends",
    "conversions",
    "conversions_per_send",
    "users_reached",
    "p95_sends_per_user_week",
    "max_sends_per_user_week",
)
# --cap overrides these per channel: the library's default caps (frequency.FrequencyRules).
DEFAULT_CAPS = {
    "email": FrequencyRules().email_cap_per_week,
    "push": FrequencyRules().push_cap_per_week,
}
WEEK = pd.Timedelta(days=7)
FLOAT_MAX = sys.float_info.max

EXIT_OK, EXIT_FAILED, EXIT_MISSING = 0, 1, 2


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Settings:
    """Where the tables are and the rules the outputs must respect.

    ``caps`` (per channel, sends per rolling 7 days) and ``run_date`` left None are resolved
    from the database and the vars (:func:`resolve_caps`, :func:`resolve_run_date`).
    """

    schema: str = "main"
    source_schema: str | None = None  # None = schema
    source_tables: Mapping[str, str] = field(default_factory=dict)  # source -> table name
    run_date: str | None = None
    caps: Mapping[str, int] | None = None
    caps_table: str = "frequency_caps"
    max_sends_per_user_week: int | None = None
    id_mostly: float | None = None  # None = the var proactive_recs_validation_id_mostly, else 0.95
    min_conversion_share: float | None = None  # None = the var, else 0.01
    vars: Mapping = field(default_factory=dict)  # dbt vars read from --vars-file

    def source_table(self, source: str) -> str:
        return (
            self.source_tables.get(source)
            or self.vars.get(f"proactive_recs_{source}_table")
            or f"raw_{source}"
        )

    @property
    def resolved_id_mostly(self) -> float:
        if self.id_mostly is not None:
            return float(self.id_mostly)
        return float(self.vars.get("proactive_recs_validation_id_mostly", 0.95))

    @property
    def resolved_min_conversion_share(self) -> float:
        if self.min_conversion_share is not None:
            return float(self.min_conversion_share)
        return float(self.vars.get("proactive_recs_validation_min_conversion_share", 0.01))

    @property
    def resolved_source_schema(self) -> str:
        return self.source_schema or self.vars.get("proactive_recs_source_schema") or self.schema


def load_vars(paths: Iterable[str | os.PathLike]) -> dict:
    """dbt vars from YAML files, later files winning; a dbt_project.yml's ``vars:`` is used."""
    import yaml  # dbt-core's dependency

    merged: dict = {}
    for path in paths:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a mapping of dbt vars")
        if isinstance(loaded.get("vars"), dict):
            loaded = loaded["vars"]
        merged.update({k: v for k, v in loaded.items() if not isinstance(v, dict)})
    return merged


def _truthy(value) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes")


def resolve_caps(con, settings: Settings, present: set[str]) -> tuple[dict[str, int], str]:
    """Most sends per user and channel in any rolling 7 days, and where that came from.

    In order: ``settings.caps`` (``--cap``); the table ``settings.caps_table`` (channel,
    max_sends_per_week) when built; else the var ``proactive_recs_frequency_rules`` over the
    library defaults: ``<channel>_cap_per_week``, or ``<channel>_cadence_ceiling`` when
    ``adaptive_cadence`` is true, since adaptive cadence may raise a user's allowance up to
    the ceiling.
    """
    if settings.caps:
        return {**DEFAULT_CAPS, **{k: int(v) for k, v in settings.caps.items()}}, "--cap"
    if settings.caps_table in present:
        frame = con.execute(
            f"select * from {_qualified(settings.schema, settings.caps_table)}"
        ).df()
        if {"channel", "max_sends_per_week"} <= set(frame.columns) and len(frame):
            caps = {
                str(c): int(v)
                for c, v in zip(frame["channel"], frame["max_sends_per_week"], strict=True)
                if pd.notna(v)
            }
            return {**DEFAULT_CAPS, **caps}, f"table {settings.caps_table}"
    # the var proactive_recs_frequency_rules, read by the library's own FrequencyRules (one
    # home for the rules' defaults); adaptive cadence may raise a user's allowance up to the
    # ceiling, so that is the most a week may hold then
    rules = FrequencyRules.from_dict(settings.vars.get("proactive_recs_frequency_rules") or {})
    origin = "vars" if settings.vars.get("proactive_recs_frequency_rules") else "defaults"
    if rules.adaptive_cadence:
        caps = {"email": rules.email_cadence_ceiling, "push": rules.push_cadence_ceiling}
        return caps, origin + " (adaptive cadence ceilings)"
    return {"email": rules.email_cap_per_week, "push": rules.push_cap_per_week}, origin


def _max_timestamp(con, schema: str, table: str, column: str, present: set[str]):
    if table not in present:
        return None
    try:
        (value,) = con.execute(
            f"select max({_ident(column)}) from {_qualified(schema, table)}"
        ).fetchone()
    except duckdb.Error:
        return None
    return None if value is None else utc_instant(value, name=f"{table}.{column}")


def resolve_run_date(con, settings: Settings, present: set[str]) -> tuple[pd.Timestamp | None, str]:
    """The moment the checked run planned for, and where it came from.

    ``--run-date`` when given (checking a run other than the last one); else the run's own
    instant, ``int_run_context.run_date``: the one value every model of that run used, pinned
    by the var or the invocation's start. Without that table there is no run to check the
    time stamps against, and the checks that need a run date say so instead of guessing.
    """
    if settings.run_date:
        return utc_instant(settings.run_date, name="--run-date"), "--run-date"
    logged = _max_timestamp(con, settings.schema, "int_run_context", "run_date", present)
    if logged is not None:
        return logged, "int_run_context.run_date"
    return None, "unknown (no int_run_context table)"


# --------------------------------------------------------------------------- helpers


def _ident(name: str) -> str:
    return '"' + str(name).replace('"', '""') + '"'


def _qualified(schema: str, table: str) -> str:
    return f"{_ident(schema)}.{_ident(table)}"


def list_tables(con, schema: str) -> set[str]:
    return {
        name
        for (name,) in con.execute(
            "select table_name from information_schema.tables where table_schema = ?", [schema]
        ).fetchall()
    }


def table_columns(con, schema: str, table: str) -> list[str]:
    return [
        name
        for (name,) in con.execute(
            "select column_name from information_schema.columns "
            "where table_schema = ? and table_name = ? order by ordinal_position",
            [schema, table],
        ).fetchall()
    ]


def read_table(con, schema: str, table: str, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """A table as pandas; only ``columns`` (those present) when given. Time zones -> UTC."""
    if columns is not None:
        present = table_columns(con, schema, table)
        chosen = [c for c in columns if c in present]
        select = ", ".join(_ident(c) for c in chosen) if chosen else "*"
        frame = con.execute(f"select {select} from {_qualified(schema, table)}").df()
        if not chosen:
            frame = frame.iloc[:, :0]
    else:
        frame = con.execute(f"select * from {_qualified(schema, table)}").df()
    for name in frame.columns:
        if isinstance(frame[name].dtype, pd.DatetimeTZDtype):
            frame[name] = frame[name].dt.tz_convert("UTC").dt.tz_localize(None)
    return frame


def _blank_to_null(series: pd.Series) -> pd.Series:
    """Nulls and values blank after trimming become None (staging's null_id rule)."""
    blank = series.isna() | series.astype(str).str.strip().eq("")
    return series.astype(object).where(~blank, None)


def rolling_sends(
    audience: pd.DataFrame,
    history: pd.DataFrame | None,
    key: str = "channel",
    run_date: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Most sends per (user, ``key``) in a rolling 7 days ending at one of this run's sends.

    ``audience`` rows flagged ``is_holdout`` are not sends. Each send of the run at ``s``
    counts the history sends and the run's sends with the same user and ``key`` in
    ``(s - 7 days, s]``; the result keeps the largest count per (user_id, key). A send with
    no ``scheduled_send_at`` counts as sent at ``run_date``. Columns: user_id, key,
    sends_7d.
    """
    columns = ["user_id", key, "sends_7d"]
    run = audience.copy()
    if "is_holdout" in run.columns:
        run = run[~run["is_holdout"].fillna(False).astype(bool)]
    at = (
        pd.to_datetime(run["scheduled_send_at"])
        if "scheduled_send_at" in run.columns
        else pd.Series(pd.NaT, index=run.index, dtype="datetime64[ns]")
    )
    if run_date is not None:
        at = at.fillna(run_date)
    run = pd.DataFrame(
        {
            "user_id": run["user_id"].astype(str),
            key: run[key].astype(str),
            "at": at.astype("datetime64[ns]"),
        }
    ).dropna(subset=["at"])
    if run.empty:
        return pd.DataFrame(
            {
                "user_id": pd.Series(dtype=object),
                key: pd.Series(dtype=object),
                "sends_7d": pd.Series(dtype=np.int64),
            }
        )[columns]
    run = run.reset_index(drop=True)
    run["send"] = np.arange(len(run))
    others = [run[["user_id", key, "at"]]]
    if history is not None and len(history) and {"user_id", key, "sent_at"} <= set(history):
        past = history[["user_id", key, "sent_at"]].dropna()
        others.append(
            pd.DataFrame(
                {
                    "user_id": past["user_id"].astype(str),
                    key: past[key].astype(str),
                    "at": pd.to_datetime(past["sent_at"]).astype("datetime64[ns]"),
                }
            )
        )
    every = pd.concat(others, ignore_index=True)
    pairs = run.merge(every, on=["user_id", key], suffixes=("", "_other"))
    inside = (pairs["at_other"] > pairs["at"] - WEEK) & (pairs["at_other"] <= pairs["at"])
    per_send = pairs[inside].groupby(["user_id", key, "send"]).size().rename("sends_7d")
    out = per_send.groupby(level=["user_id", key]).max().reset_index()
    out["sends_7d"] = out["sends_7d"].astype(np.int64)
    return out[columns]


# --------------------------------------------------------------------------- checks


@dataclass
class TableCheck:
    """One frame and the expectations it must meet (one GX suite)."""

    suite: str  # sources | staging | outputs
    name: str  # shown in messages: the table, or "table [what was derived]"
    frame: pd.DataFrame
    expectations: list = field(default_factory=list)

    def expect(self, kind: str, **kwargs) -> TableCheck:
        """Add ``great_expectations.expectations.<kind>(**kwargs)`` when its columns exist.

        A missing column is reported once by the table's ``ExpectColumnToExist``; the
        expectations on it are left out instead of failing with a GX error each.
        """
        import great_expectations.expectations as gxe

        needed = [
            kwargs.get("column"),
            kwargs.get("column_A"),
            kwargs.get("column_B"),
            *kwargs.get("column_list", []),
        ]
        if kind != "ExpectColumnToExist" and any(
            c is not None and c not in self.frame.columns for c in needed
        ):
            return self
        self.expectations.append(getattr(gxe, kind)(**kwargs))
        return self

    def columns_exist(self, columns: Iterable[str]) -> TableCheck:
        for column in columns:
            self.expect("ExpectColumnToExist", column=column)
        return self


@dataclass
class Plan:
    checks: list[TableCheck] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # required tables absent
    skipped: list[str] = field(default_factory=list)  # outputs not built
    notes: list[str] = field(default_factory=list)


def _source_checks(con, settings: Settings, plan: Plan) -> None:
    schema = settings.resolved_source_schema
    present = list_tables(con, schema)
    for source, required in SOURCE_COLUMNS.items():
        table = settings.source_table(source)
        if table not in present:
            plan.missing.append(table if schema == settings.schema else f"{schema}.{table}")
            continue
        frame = read_table(con, schema, table, required)
        for column in SOURCE_ID_COLUMNS[source]:
            if column in frame.columns:
                frame[column] = _blank_to_null(frame[column])
        check = TableCheck("sources", table, frame).columns_exist(required)
        check.expect(
            "ExpectTableRowCountToBeBetween", min_value=0 if source in SOURCES_MAY_BE_EMPTY else 1
        )
        for column in SOURCE_ID_COLUMNS[source]:
            check.expect(
                "ExpectColumnValuesToNotBeNull", column=column, mostly=settings.resolved_id_mostly
            )
        plan.checks.append(check)


def _staging_checks(
    con, settings: Settings, plan: Plan, present: set[str], run_date: pd.Timestamp | None
) -> None:
    schema = settings.schema
    for table in STAGING_TABLES:
        if table not in present:
            plan.missing.append(table)
    until = None if run_date is None else run_date.to_pydatetime()

    def not_after_run(check: TableCheck, column: str) -> None:
        if until is not None:
            check.expect("ExpectColumnValuesToBeBetween", column=column, max_value=until)

    if "stg_users" in present:
        check = TableCheck("staging", "stg_users", read_table(con, schema, "stg_users"))
        check.columns_exist(SOURCE_COLUMNS["users"])
        check.expect("ExpectTableRowCountToBeBetween", min_value=1)
        check.expect("ExpectColumnValuesToBeUnique", column="user_id")
        check.expect("ExpectColumnValuesToNotBeNull", column="user_id")
        check.expect("ExpectColumnValuesToBeInSet", column="email_opt_in", value_set=[True, False])
        not_after_run(check, "joined_at")
        plan.checks.append(check)

    if "stg_items" in present:
        check = TableCheck("staging", "stg_items", read_table(con, schema, "stg_items"))
        check.columns_exist(SOURCE_COLUMNS["items"])
        check.expect("ExpectTableRowCountToBeBetween", min_value=1)
        check.expect("ExpectColumnValuesToBeUnique", column="item_id")
        check.expect("ExpectColumnValuesToNotBeNull", column="item_id")
        check.expect("ExpectColumnValuesToBeBetween", column="price", min_value=0)
        plan.checks.append(check)

    if "stg_transactions" in present:
        frame = read_table(
            con,
            schema,
            "stg_transactions",
            ["user_id", "item_id", "occurred_at", "event_type", "quantity", "amount"],
        )
        # The vocabulary the build used (stg_event_type_weights: the var
        # proactive_recs_event_type_weights or the seed): no event type is hard-coded here.
        vocabulary = (
            read_table(con, schema, "stg_event_type_weights")
            if "stg_event_type_weights" in present
            else pd.DataFrame({"event_type": [], "is_conversion": []})
        )
        event_types = sorted(vocabulary["event_type"].dropna().astype(str))
        conversion_types = sorted(
            vocabulary.loc[vocabulary["is_conversion"].fillna(False).astype(bool), "event_type"]
            .dropna()
            .astype(str)
        )
        check = TableCheck("staging", "stg_transactions", frame)
        check.columns_exist(SOURCE_COLUMNS["transactions"])
        check.expect("ExpectTableRowCountToBeBetween", min_value=1)
        for column in ("user_id", "item_id", "occurred_at", "event_type", "quantity"):
            check.expect("ExpectColumnValuesToNotBeNull", column=column)
        if event_types:
            check.expect("ExpectColumnValuesToBeInSet", column="event_type", value_set=event_types)
        check.expect(
            "ExpectColumnValuesToBeBetween", column="quantity", min_value=0, strict_min=True
        )
        not_after_run(check, "occurred_at")
        # Distribution sanity: at least min_conversion_share of the lines are conversions
        # (``mostly`` on "is a conversion type"), when the vocabulary names any (the var
        # proactive_recs_conversion_event_types); the upper bound of 1 always holds.
        if conversion_types:
            check.expect(
                "ExpectColumnValuesToBeInSet",
                column="event_type",
                value_set=conversion_types,
                mostly=settings.resolved_min_conversion_share,
            )
        plan.checks.append(check)

    if "stg_notification_sends" in present:
        check = TableCheck(
            "staging", "stg_notification_sends", read_table(con, schema, "stg_notification_sends")
        )
        check.columns_exist(SOURCE_COLUMNS["notification_sends"])
        check.expect("ExpectColumnValuesToBeUnique", column="send_id")
        for column in ("send_id", "user_id", "channel", "sent_at"):
            check.expect("ExpectColumnValuesToNotBeNull", column=column)
        check.expect("ExpectColumnValuesToBeInSet", column="channel", value_set=list(CHANNELS))
        not_after_run(check, "sent_at")
        plan.checks.append(check)

    if "stg_notification_events" in present:
        check = TableCheck(
            "staging", "stg_notification_events", read_table(con, schema, "stg_notification_events")
        )
        check.columns_exist(SOURCE_COLUMNS["notification_events"])
        for column in ("send_id", "event_type", "occurred_at"):
            check.expect("ExpectColumnValuesToNotBeNull", column=column)
        check.expect(
            "ExpectColumnValuesToBeInSet",
            column="event_type",
            value_set=list(NOTIFICATION_EVENT_TYPES),
        )
        check.expect(
            "ExpectCompoundColumnsToBeUnique", column_list=["send_id", "event_type", "occurred_at"]
        )
        not_after_run(check, "occurred_at")
        plan.checks.append(check)


def _score_checks(plan: Plan, table: str, frame: pd.DataFrame, key: str, other: str) -> None:
    check = TableCheck("outputs", table, frame).columns_exist([key, other, "rank", "score"])
    check.expect("ExpectCompoundColumnsToBeUnique", column_list=[key, other])
    for column in (key, other, "rank", "score"):
        check.expect("ExpectColumnValuesToNotBeNull", column=column)
    check.expect("ExpectColumnValuesToBeBetween", column="rank", min_value=1)
    # Finite: NaN fails not-null above, +-inf fails this range.
    check.expect(
        "ExpectColumnValuesToBeBetween", column="score", min_value=-FLOAT_MAX, max_value=FLOAT_MAX
    )
    plan.checks.append(check)
    if {key, "rank"} <= set(frame.columns):
        ranks = (
            frame.dropna(subset=[key])
            .groupby(key)["rank"]
            .agg(n_rows="size", n_distinct_ranks="nunique", min_rank="min", max_rank="max")
            .reset_index()
        )
        derived = TableCheck("outputs", f"{table} [ranks per {key}]", ranks)
        # Ranks per key are exactly 1..n: starting at 1, no gaps, no ties.
        derived.expect("ExpectColumnValuesToBeBetween", column="min_rank", min_value=1, max_value=1)
        derived.expect("ExpectColumnPairValuesToBeEqual", column_A="max_rank", column_B="n_rows")
        derived.expect(
            "ExpectColumnPairValuesToBeEqual", column_A="n_distinct_ranks", column_B="n_rows"
        )
        plan.checks.append(derived)


def _digest_length(value) -> int | None:
    """Items in a digest: length of the JSON array, 0 if not an array, None if not JSON."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if not isinstance(value, str):
        value = json.dumps(list(value) if not isinstance(value, dict) else value, default=str)
    try:
        parsed = json.loads(value)
    except ValueError:
        return None
    return len(parsed) if isinstance(parsed, list) else 0


def _as_json_text(value):
    if value is None or isinstance(value, str) or (isinstance(value, float) and math.isnan(value)):
        return value
    return json.dumps(list(value) if not isinstance(value, dict) else value, default=str)


def _suppression_check(
    plan: Plan, table: str, frame: pd.DataFrame, eligibility: pd.DataFrame | None
) -> None:
    if eligibility is None:
        plan.notes.append(f"{table}: suppression not checked (int_user_eligibility not built)")
        return
    if "user_id" not in frame.columns:
        return
    joined = frame[["user_id"]].merge(
        eligibility[["user_id", "is_suppressed"]].drop_duplicates("user_id"),
        on="user_id",
        how="left",
    )
    joined["is_suppressed"] = joined["is_suppressed"].astype(object)
    derived = TableCheck("outputs", f"{table} [joined to int_user_eligibility]", joined)
    # Null = the user is unknown to int_user_eligibility, which cannot be sent either.
    derived.expect("ExpectColumnValuesToNotBeNull", column="is_suppressed")
    derived.expect("ExpectColumnValuesToBeInSet", column="is_suppressed", value_set=[False])
    plan.checks.append(derived)


def _audience_checks(
    con,
    settings: Settings,
    plan: Plan,
    present: set[str],
    audience: pd.DataFrame,
    eligibility: pd.DataFrame | None,
    caps: Mapping[str, int],
    run_date,
) -> None:
    schema = settings.schema
    columns = [
        "send_key",
        "user_id",
        "email",
        "channel",
        "campaign_id",
        "item_id",
        "rank",
        "score",
        "scheduled_send_at",
        "is_holdout",
    ]
    check = TableCheck("outputs", "notification_audience", audience).columns_exist(columns)
    check.expect("ExpectColumnValuesToBeUnique", column="send_key")
    for column in ("send_key", "user_id", "channel", "campaign_id", "is_holdout"):
        check.expect("ExpectColumnValuesToNotBeNull", column=column)
    check.expect("ExpectColumnValuesToBeInSet", column="channel", value_set=list(CHANNELS))
    check.expect("ExpectColumnValuesToBeBetween", column="rank", min_value=1)
    check.expect(
        "ExpectColumnValuesToBeBetween", column="score", min_value=-FLOAT_MAX, max_value=FLOAT_MAX
    )
    # the campaigns this run planned (stg_campaigns: the user's table or the package seed)
    campaigns = read_table(con, schema, "stg_campaigns") if "stg_campaigns" in present else None
    if campaigns is not None and "campaign_id" in campaigns.columns:
        check.expect(
            "ExpectColumnValuesToBeInSet",
            column="campaign_id",
            value_set=sorted(campaigns["campaign_id"].dropna().astype(str)),
        )
    plan.checks.append(check)

    _suppression_check(plan, "notification_audience", audience, eligibility)

    # The send ledger (confirmed sends plus earlier runs' synced sends not confirmed yet): a
    # check over the bare history would not see yesterday's plan and pass a carpet bomb.
    history_table = next(
        (t for t in ("int_send_ledger", "stg_notification_sends") if t in present), None
    )
    history = (
        read_table(con, schema, history_table, ["user_id", "campaign_id", "channel", "sent_at"])
        if history_table
        else None
    )
    if {"user_id", "channel"} <= set(audience.columns):
        per_channel = rolling_sends(audience, history, "channel", run_date)
        per_channel["cap"] = per_channel["channel"].map(caps).astype(float)
        derived = TableCheck(
            "outputs",
            "notification_audience [sends per user and channel, rolling 7 days]",
            per_channel,
        )
        derived.expect("ExpectColumnValuesToNotBeNull", column="cap")  # a known channel
        derived.expect(
            "ExpectColumnPairValuesAToBeGreaterThanB",
            column_A="cap",
            column_B="sends_7d",
            or_equal=True,
            ignore_row_if="either_value_is_missing",
        )
        plan.checks.append(derived)

    if campaigns is None:
        plan.notes.append(
            "notification_audience: audience sizes and campaign caps not checked "
            "(stg_campaigns not built)"
        )
        return
    if {"campaign_id", "user_id"} <= set(
        audience.columns
    ) and "max_sends_per_user_week" in campaigns.columns:
        per_campaign = rolling_sends(audience, history, "campaign_id", run_date)
        limit = campaigns.set_index(campaigns["campaign_id"].astype(str))["max_sends_per_user_week"]
        per_campaign["campaign_cap"] = pd.to_numeric(
            per_campaign["campaign_id"].map(limit), errors="coerce"
        )
        per_campaign = per_campaign.dropna(subset=["campaign_cap"])
        derived = TableCheck(
            "outputs",
            "notification_audience [sends per user and campaign, rolling 7 days]",
            per_campaign,
        )
        derived.expect(
            "ExpectColumnPairValuesAToBeGreaterThanB",
            column_A="campaign_cap",
            column_B="sends_7d",
            or_equal=True,
        )
        plan.checks.append(derived)
    if {"campaign_id", "item_id"} <= set(audience.columns) and "audience_size" in campaigns.columns:
        sizes = (
            audience.assign(campaign_id=audience["campaign_id"].astype(str))
            .groupby(["campaign_id", "item_id"], dropna=False)
            .size()
            .rename("n_users")
            .reset_index()
        )
        bound = campaigns.set_index(campaigns["campaign_id"].astype(str))["audience_size"]
        sizes["audience_size"] = pd.to_numeric(sizes["campaign_id"].map(bound), errors="coerce")
        sizes = sizes.dropna(subset=["audience_size"])  # digests: no size bound
        derived = TableCheck(
            "outputs", "notification_audience [users per campaign and item]", sizes
        )
        derived.expect(
            "ExpectColumnPairValuesAToBeGreaterThanB",
            column_A="audience_size",
            column_B="n_users",
            or_equal=True,
        )
        plan.checks.append(derived)


def _output_checks(
    con, settings: Settings, plan: Plan, present: set[str], caps: Mapping[str, int], run_date
) -> None:
    schema = settings.schema
    plan.skipped.extend(t for t in OUTPUT_TABLES if t not in present)
    eligibility = (
        read_table(con, schema, "int_user_eligibility", ["user_id", "is_suppressed"])
        if "int_user_eligibility" in present
        else None
    )

    if "user_item_scores" in present:
        _score_checks(
            plan,
            "user_item_scores",
            read_table(con, schema, "user_item_scores"),
            "user_id",
            "item_id",
        )
    if "item_user_scores" in present:
        _score_checks(
            plan,
            "item_user_scores",
            read_table(con, schema, "item_user_scores"),
            "item_id",
            "user_id",
        )
    if "prelaunch_item_user_scores" in present:
        frame = read_table(con, schema, "prelaunch_item_user_scores")
        _score_checks(plan, "prelaunch_item_user_scores", frame, "item_id", "user_id")
        # Pre-launch audiences are for items not yet on sale at the run date.
        upcoming = TableCheck(
            "outputs", "prelaunch_item_user_scores [not yet on sale]", frame
        ).columns_exist(["available_from"])
        upcoming.expect(
            "ExpectColumnValuesToBeBetween",
            column="available_from",
            min_value=pd.Timestamp(run_date),
            strict_min=True,
        )
        plan.checks.append(upcoming)
    if "user_category_scores" in present:
        _score_checks(
            plan,
            "user_category_scores",
            read_table(con, schema, "user_category_scores"),
            "user_id",
            "category",
        )

    if "model_evaluation" in present:
        frame = read_table(con, schema, "model_evaluation")
        check = TableCheck("outputs", "model_evaluation", frame).columns_exist(
            ["model", "direction", "segment", "metric", "k", "value"]
        )
        check.expect(
            "ExpectCompoundColumnsToBeUnique",
            column_list=["model", "direction", "segment", "metric", "k"],
        )
        for column in ("model", "direction", "segment", "metric", "value"):
            check.expect("ExpectColumnValuesToNotBeNull", column=column)
        check.expect("ExpectColumnValuesToBeInSet", column="direction", value_set=list(DIRECTIONS))
        plan.checks.append(check)
        if {"metric", "value"} <= set(frame.columns):
            bounded = frame[frame["metric"].isin(BOUNDED_METRICS)]
            derived = TableCheck(
                "outputs",
                "model_evaluation [metric in " + ", ".join(BOUNDED_METRICS) + "]",
                bounded,
            )
            derived.expect(
                "ExpectColumnValuesToBeBetween", column="value", min_value=0, max_value=1
            )
            plan.checks.append(derived)

    if "notification_audience" in present:
        _audience_checks(
            con,
            settings,
            plan,
            present,
            read_table(con, schema, "notification_audience"),
            eligibility,
            caps,
            run_date,
        )

    if "email_digest" in present:
        frame = read_table(con, schema, "email_digest")
        if "items" in frame.columns:
            frame["items"] = frame["items"].map(_as_json_text)
            frame["items_array_length"] = frame["items"].map(_digest_length).astype(float)
        check = TableCheck("outputs", "email_digest", frame).columns_exist(
            ["user_id", "email", "items"]
        )
        check.expect("ExpectColumnValuesToBeUnique", column="user_id")
        check.expect("ExpectColumnValuesToNotBeNull", column="user_id")
        check.expect("ExpectColumnValuesToNotBeNull", column="items")
        check.expect("ExpectColumnValuesToBeJsonParseable", column="items")
        check.expect("ExpectColumnValuesToBeBetween", column="items_array_length", min_value=1)
        plan.checks.append(check)
        _suppression_check(plan, "email_digest", frame, eligibility)

    if "notification_log" in present:
        frame = read_table(con, schema, "notification_log", ["send_key", "run_date"])
        check = TableCheck("outputs", "notification_log", frame).columns_exist(
            ["send_key", "run_date"]
        )
        check.expect("ExpectColumnValuesToNotBeNull", column="send_key")
        check.expect("ExpectColumnValuesToBeUnique", column="send_key")
        check.expect("ExpectColumnValuesToNotBeNull", column="run_date")
        plan.checks.append(check)

    if "campaign_backtest" in present:
        frame = read_table(con, schema, "campaign_backtest")
        check = TableCheck("outputs", "campaign_backtest", frame).columns_exist(
            ["policy", "metric", "value"]
        )
        check.expect("ExpectColumnValuesToBeInSet", column="policy", value_set=list(POLICIES))
        check.expect(
            "ExpectColumnValuesToBeInSet", column="metric", value_set=list(BACKTEST_METRICS)
        )
        check.expect("ExpectCompoundColumnsToBeUnique", column_list=["policy", "metric"])
        for column in ("policy", "metric", "value"):
            check.expect("ExpectColumnValuesToNotBeNull", column=column)
        plan.checks.append(check)
        if {"policy", "metric", "value"} <= set(frame.columns):
            weekly_cap = (
                settings.max_sends_per_user_week
                if settings.max_sends_per_user_week is not None
                else sum(caps.get(c, 0) for c in CHANNELS)
            )
            configured = frame[
                (frame["policy"] == "configured") & (frame["metric"] == "max_sends_per_user_week")
            ]
            derived = TableCheck(
                "outputs", "campaign_backtest [configured max_sends_per_user_week]", configured
            )
            derived.expect("ExpectTableRowCountToEqual", value=1)
            derived.expect(
                "ExpectColumnValuesToBeBetween", column="value", min_value=0, max_value=weekly_cap
            )
            plan.checks.append(derived)
            rates = frame[frame["metric"] == "conversions_per_send"]
            derived = TableCheck("outputs", "campaign_backtest [conversions_per_send]", rates)
            derived.expect(
                "ExpectColumnValuesToBeBetween", column="value", min_value=0, max_value=1
            )
            plan.checks.append(derived)


def build_checks(con, settings: Settings) -> tuple[Plan, dict]:
    """Every check to run on the database behind ``con``, plus the context it used."""
    plan = Plan()
    present = list_tables(con, settings.schema)
    run_date, run_date_origin = resolve_run_date(con, settings, present)
    caps, caps_origin = resolve_caps(con, settings, present)
    _source_checks(con, settings, plan)
    _staging_checks(con, settings, plan, present, run_date)
    _output_checks(con, settings, plan, present, caps, run_date)
    context = {
        "run_date": run_date,
        "run_date_origin": run_date_origin,
        "caps": caps,
        "caps_origin": caps_origin,
    }
    return plan, context


# --------------------------------------------------------------------------- running GX


def _format_value(value) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple | set):
        return "[" + ", ".join(_format_value(v) for v in value) + "]"
    if hasattr(value, "isoformat"):
        return value.isoformat(sep=" ") if hasattr(value, "hour") else value.isoformat()
    if isinstance(value, float) and abs(value) == FLOAT_MAX:
        return "-float_max" if value < 0 else "float_max"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass(frozen=True)
class Failure:
    """One failed expectation, with what GX observed."""

    expectation_type: str
    kwargs: dict
    table: str
    unexpected_count: int | None = None
    element_count: int | None = None
    observed_value: object = None
    examples: tuple = ()
    error: str | None = None

    @property
    def arguments(self) -> str:
        return ", ".join(f"{k}={_format_value(v)}" for k, v in self.kwargs.items())

    def message(self) -> str:
        head = f"FAILED {self.expectation_type}({self.arguments}) on {self.table}"
        if self.error:
            return f"{head}: error: {self.error}"
        if self.unexpected_count is not None:
            detail = f"{self.unexpected_count:,} unexpected"
            if self.element_count:
                detail += f" of {self.element_count:,}"
            if self.examples:
                detail += " (e.g. " + ", ".join(_format_value(v) for v in self.examples) + ")"
            return f"{head}: {detail}"
        if self.expectation_type == "expect_column_to_exist":
            return f"{head}: column not found"
        if self.observed_value is not None:
            return f"{head}: observed {_format_value(self.observed_value)}"
        return head


@dataclass
class CheckResult:
    check: TableCheck
    n_expectations: int
    failures: list[Failure]


def _failure(result, table: str) -> Failure:
    config = result.expectation_config
    kwargs = {k: v for k, v in config.kwargs.items() if k != "batch_id"}
    info = result.exception_info or {}
    error = None
    if info.get("raised_exception"):
        error = info.get("exception_message")
    elif info and "raised_exception" not in info:  # keyed by metric: {metric_id: {...}}
        messages = [
            v.get("exception_message")
            for v in info.values()
            if isinstance(v, dict) and v.get("raised_exception")
        ]
        error = "; ".join(sorted({m for m in messages if m})) or None
    outcome = dict(result.result or {})
    examples = tuple(outcome.get("partial_unexpected_list") or ())[:3]
    if config.type == "expect_column_values_to_not_be_null":
        examples = ()
    return Failure(
        expectation_type=config.type,
        kwargs=kwargs,
        table=table,
        unexpected_count=outcome.get("unexpected_count"),
        element_count=outcome.get("element_count"),
        observed_value=outcome.get("observed_value"),
        examples=examples,
        error=error,
    )


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def run_checks(
    checks: Sequence[TableCheck], data_docs_dir: str | os.PathLike | None = None
) -> tuple[list[CheckResult], str | None]:
    """Validate each check's frame with GX; returns the results and the Data Docs index."""
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    if data_docs_dir is not None:
        base = Path(data_docs_dir).resolve()
        base.mkdir(parents=True, exist_ok=True)
        context.add_data_docs_site(
            "proactive_recs",
            {
                "class_name": "SiteBuilder",
                "show_how_to_buttons": False,
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(base),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
    run_id = RunIdentifier(run_name="proactive_recs_validation")
    datasources = {}
    results = []
    for number, check in enumerate(checks):
        if not check.expectations:
            continue
        if check.suite not in datasources:
            datasources[check.suite] = context.data_sources.add_pandas(check.suite)
        name = f"{number:02d}_{_slug(check.name)}"[:100]
        asset = datasources[check.suite].add_dataframe_asset(name)
        batch = asset.add_batch_definition_whole_dataframe("whole_table")
        suite = context.suites.add(
            gx.ExpectationSuite(name=f"{check.suite}.{name}", expectations=check.expectations)
        )
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=f"{check.suite}.{name}", data=batch, suite=suite)
        )
        outcome = definition.run(
            batch_parameters={"dataframe": check.frame}, result_format="SUMMARY", run_id=run_id
        )
        failures = [_failure(r, check.name) for r in outcome.results if not r.success]
        results.append(CheckResult(check, len(outcome.results), failures))
    index = None
    if data_docs_dir is not None and results:
        urls = context.build_data_docs(site_names=["proactive_recs"])
        index = urls.get("proactive_recs")
    return results, index


# --------------------------------------------------------------------------- report


@dataclass
class ValidationReport:
    results: list[CheckResult] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    data_docs: str | None = None
    context: dict = field(default_factory=dict)

    @property
    def failures(self) -> list[Failure]:
        return [f for r in self.results for f in r.failures]

    @property
    def exit_code(self) -> int:
        if self.error or self.missing:
            return EXIT_MISSING
        return EXIT_FAILED if self.failures else EXIT_OK

    def lines(self) -> list[str]:
        out = []
        if self.error:
            return [self.error]
        ctx = self.context
        if ctx:
            run_date = ctx.get("run_date")
            out.append(
                f"run date: {run_date if run_date is not None else 'unknown'} "
                f"({ctx.get('run_date_origin')}); caps per user, channel and rolling "
                "7 days: "
                + ", ".join(f"{k} {v}" for k, v in ctx["caps"].items())
                + f" ({ctx.get('caps_origin')})"
            )
        width = max([len(r.check.name) for r in self.results] + [20]) + 2
        for suite in ("sources", "staging", "outputs"):
            own = [r for r in self.results if r.check.suite == suite]
            if not own and not (suite == "outputs" and self.skipped):
                continue
            out.append(suite)
            for r in own:
                status = "FAILED" if r.failures else "ok"
                tail = (
                    f"{len(r.failures)} of {r.n_expectations} expectations failed"
                    if r.failures
                    else f"{r.n_expectations} expectations"
                )
                out.append(f"  {status:<7}{r.check.name:<{width}}{tail}")
            if suite == "outputs" and self.skipped:
                out.append("  not built, skipped: " + ", ".join(self.skipped))
        out.extend(f"note: {n}" for n in self.notes)
        if self.missing:
            out.append("missing: " + ", ".join(self.missing))
        out.extend(f.message() for f in self.failures)
        if self.data_docs:
            out.append(f"data docs: {self.data_docs}")
        n_failed = len(self.failures)
        if self.missing:
            out.append(
                f"result: INCOMPLETE ({len(self.missing)} required table(s) missing"
                f", {n_failed} expectation(s) failed)"
            )
        elif n_failed:
            out.append(f"result: FAILED ({n_failed} expectation(s) failed)")
        else:
            out.append(
                f"result: ok ({sum(r.n_expectations for r in self.results)} expectations passed)"
            )
        return out

    def problems(self) -> list[str]:
        """The lines that explain a non-zero exit (for stderr)."""
        if self.error:
            return [self.error]
        out = [f.message() for f in self.failures]
        if self.missing:
            out.append("missing: " + ", ".join(self.missing))
        return out


def validate(
    duckdb_path: str | os.PathLike,
    settings: Settings | None = None,
    data_docs_dir: str | os.PathLike | None = None,
) -> ValidationReport:
    """Run every suite on the DuckDB file; never raises for a missing or half-built database."""
    settings = settings or Settings()
    path = Path(duckdb_path)
    if not path.exists():
        return ValidationReport(
            error=f"cannot open {path}: no such DuckDB file (run dbt build first)"
        )
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        return ValidationReport(error=f"cannot open {path}: {exc}")
    with con:
        try:
            plan, context = build_checks(con, settings)
        except duckdb.Error as exc:  # e.g. a view over a dropped table
            return ValidationReport(error=f"cannot read {path}: {exc}")
    results, index = run_checks(plan.checks, data_docs_dir) if plan.checks else ([], None)
    return ValidationReport(
        results=results,
        missing=plan.missing,
        skipped=plan.skipped,
        notes=plan.notes,
        data_docs=index,
        context=context,
    )


def _parse_cap(text: str) -> tuple[str, int]:
    channel, _, value = text.partition("=")
    if channel not in CHANNELS or not value.strip().isdigit():
        raise argparse.ArgumentTypeError(
            f"--cap wants CHANNEL=N with CHANNEL in {CHANNELS}, got {text!r}"
        )
    return channel, int(value)


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """The options shared by this CLI and ``proactive_recs_tools.report``."""
    parser.add_argument("--duckdb", default=os.environ.get("DUCKDB_PATH", "proactive_recs.duckdb"))
    parser.add_argument("--schema", default="main", help="schema of the dbt models")
    parser.add_argument(
        "--source-schema",
        default=None,
        help="schema of the raw source tables (default: the vars' "
        "proactive_recs_source_schema, else --schema)",
    )
    parser.add_argument(
        "--vars-file",
        action="append",
        default=[],
        help="dbt vars YAML (e.g. vars/demo.yml; repeatable): proactive_recs_run_date, "
        "source schema/tables, proactive_recs_frequency_rules, "
        "proactive_recs_validation_id_mostly",
    )
    parser.add_argument(
        "--run-date",
        default=None,
        help="the run's date (default: from vars, "
        "notification_log, else the latest staging timestamp)",
    )
    parser.add_argument(
        "--cap",
        action="append",
        type=_parse_cap,
        default=[],
        metavar="CHANNEL=N",
        help="most sends per user and channel in a rolling 7 days (repeatable)",
    )
    parser.add_argument(
        "--caps-table",
        default="frequency_caps",
        help="optional table (channel, max_sends_per_week) holding the caps",
    )
    parser.add_argument(
        "--max-sends-per-user-week",
        type=int,
        default=None,
        help="bound for campaign_backtest's configured max_sends_per_user_week "
        "(default: sum of the channel caps)",
    )


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings from :func:`add_settings_arguments`' options (reads the vars files)."""
    return Settings(
        schema=args.schema,
        source_schema=args.source_schema,
        run_date=args.run_date,
        caps=dict(args.cap) or None,
        caps_table=args.caps_table,
        max_sends_per_user_week=args.max_sends_per_user_week,
        id_mostly=getattr(args, "id_mostly", None),
        vars=load_vars(args.vars_file),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m proactive_recs_tools.validation",
        description="Validate sources, staging and outputs of a built DuckDB file with GX.",
    )
    add_settings_arguments(parser)
    parser.add_argument(
        "--id-mostly",
        type=float,
        default=None,
        help="least share of non-null ids in the raw tables (default: the var "
        "proactive_recs_validation_id_mostly, else 0.95)",
    )
    parser.add_argument(
        "--data-docs",
        default="target/data_docs",
        help="directory of the Data Docs site (default target/data_docs)",
    )
    parser.add_argument("--no-data-docs", action="store_true", help="do not build Data Docs")
    args = parser.parse_args(argv)
    try:
        settings = settings_from_args(args)
    except (OSError, ValueError) as exc:
        print(f"cannot read vars: {exc}", file=sys.stderr)
        return EXIT_MISSING
    print(
        f"proactive_recs validation of {args.duckdb} (schema {args.schema}, sources "
        f"{settings.resolved_source_schema})",
        flush=True,
    )
    report = validate(args.duckdb, settings, None if args.no_data_docs else args.data_docs)
    print("\n".join(report.lines()), flush=True)
    if report.exit_code != EXIT_OK:
        print("\n".join(report.problems()), file=sys.stderr)
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
