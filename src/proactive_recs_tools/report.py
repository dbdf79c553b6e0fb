"""One static, self-contained HTML page about a pipeline run, for marketers and analysts.

    python -m proactive_recs_tools.report --duckdb proactive_recs.duckdb --out target/report.html
        [--schema main] [--vars-file vars/demo.yml] [--cap email=3 --cap push=2]

Charts are Plotly figures (hover values, zoom; :mod:`proactive_recs_tools.charts`) with
plotly.js embedded once in the page: it opens offline, from a file or an e-mail attachment,
and fetches nothing. Each plot sits in an element with a stable id and is drawn from its
table when present; when the table is not built yet the element holds a "Not built yet"
note instead:

* ``plot-model-metrics``: ndcg@k / recall@k per model, one chart per direction
  (model_evaluation, segment 'all');
* ``plot-calibration``: observed rate against mean predicted score per bin
  (calibration_curve: bin, mean_predicted, observed_rate, n);
* ``plot-audience-size``: sends and holdouts per campaign (notification_audience);
* ``plot-sends-per-user``: users by their most sends in a rolling 7 days (history + this
  run) per channel, against the cap (notification_audience, int_notification_sends);
* ``plot-backtest``: conversions per send and max sends per user-week per policy
  (campaign_backtest);
* ``plot-send-times``: users by their chosen send hour, weekdays and weekends, and the
  send-time evaluation against the population's hour (user_send_times, model_evaluation);
* ``plot-lift``: lift against the holdout per campaign, channel and week, with its 95 %
  interval, and the cumulative lift since each campaign's first week (campaign_lift);

plus row counts of the outputs and rejected raw rows per source and reason.
"""

from __future__ import annotations

import argparse
import datetime as dt
import html
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import duckdb
import pandas as pd

from .charts import band_chart, bar_chart, heatmap_chart, interval_chart, line_chart, plotly_js
from .summary import MAIN_OUTPUTS
from .validation import (
    CHANNELS,
    POLICIES,
    Settings,
    add_settings_arguments,
    list_tables,
    read_table,
    resolve_caps,
    resolve_run_date,
    rolling_sends,
    settings_from_args,
)

__all__ = ["PLOT_IDS", "bar_chart", "line_chart", "main", "render_report", "write_report"]

PLOT_IDS = (
    "plot-model-metrics",
    "plot-calibration",
    "plot-audience-size",
    "plot-sends-per-user",
    "plot-backtest",
    "plot-send-times",
    "plot-lift",
)
CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;background:#f8fafc;
color:#0f172a}
header{background:#0f172a;color:#f8fafc;padding:20px 32px}
header h1{margin:0 0 4px;font-size:22px}
header p{margin:0;color:#cbd5e1;font-size:14px}
main{padding:16px 32px 48px;max-width:1200px}
section{background:#fff;border:1px solid #e2e8f0;border-radius:8px;padding:16px 20px;
margin:16px 0}
section h2{margin:0 0 4px;font-size:18px}
p.what{margin:0 0 12px;color:#475569;font-size:14px}
.row{display:flex;flex-wrap:wrap;gap:16px}
.note{background:#fef9c3;border:1px solid #fde047;border-radius:6px;padding:10px 14px;
color:#713f12;font-size:14px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{border-bottom:1px solid #e2e8f0;padding:4px 10px;text-align:left}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
details{margin-top:8px;font-size:13px}
.tables{display:flex;flex-wrap:wrap;gap:32px}
"""


# --------------------------------------------------------------------------- formatting


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _fmt(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    value = float(value)
    if value == 0:
        return "0"
    if value == int(value) and abs(value) >= 1:
        return f"{int(value):,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


# --------------------------------------------------------------------------- sections


def _not_built(plot_id: str, tables: Sequence[str], extra: str = "") -> str:
    names = ", ".join(f"<code>{_e(t)}</code>" for t in tables)
    return (
        f'<div id="{plot_id}" class="plot not-built"><p class="note">Not built yet: '
        f"{names} {'is' if len(tables) == 1 else 'are'} not in this database. {extra}"
        "</p></div>"
    )


def _empty_note(plot_id: str, text: str) -> str:
    return f'<div id="{plot_id}" class="plot empty"><p class="note">{_e(text)}</p></div>'


def _table(frame: pd.DataFrame, numeric: Sequence[str] = ()) -> str:
    head = "".join(f'<th class="{"n" if c in numeric else ""}">{_e(c)}</th>' for c in frame.columns)
    rows = []
    for record in frame.itertuples(index=False):
        cells = []
        for column, value in zip(frame.columns, record, strict=True):
            if column in numeric:
                cells.append(f'<td class="n">{_e(_fmt(value) if pd.notna(value) else "–")}</td>')
            else:
                cells.append(f"<td>{_e('' if value is None else value)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _section(title: str, what: str, body: str) -> str:
    return f'<section><h2>{_e(title)}</h2><p class="what">{what}</p>{body}</section>'


def _model_order(models) -> list[str]:
    first = [m for m in ("served", "als") if m in set(models)]
    return first + sorted(m for m in set(models) if m not in first)


def model_metrics_section(con, schema: str, present: set[str]) -> str:
    plot_id = "plot-model-metrics"
    what = (
        "Ranking quality of the served model against its baselines on the held-out test "
        "window (docs/evaluation.md), segment <code>all</code>. Higher is better."
    )
    if "model_evaluation" not in present:
        return _section(
            "Model metrics against baselines", what, _not_built(plot_id, ["model_evaluation"])
        )
    frame = read_table(con, schema, "model_evaluation")
    needed = {"model", "direction", "metric", "value"}
    if not needed <= set(frame.columns):
        return _section(
            "Model metrics against baselines",
            what,
            _empty_note(
                plot_id,
                "model_evaluation lacks columns: " + ", ".join(sorted(needed - set(frame.columns))),
            ),
        )
    if "segment" in frame.columns:
        frame = frame[frame["segment"].astype(str) == "all"]
    frame = frame[frame["metric"].isin(["ndcg", "recall"])].copy()
    if frame.empty:
        return _section(
            "Model metrics against baselines",
            what,
            _empty_note(plot_id, "model_evaluation has no ndcg or recall rows yet."),
        )
    if "k" in frame.columns:
        frame["k_num"] = pd.to_numeric(frame["k"], errors="coerce")
        frame["label"] = [
            f"{m}@{int(k)}" if pd.notna(k) else str(m)
            for m, k in zip(frame["metric"], frame["k_num"], strict=True)
        ]
    else:
        frame["k_num"] = 0
        frame["label"] = frame["metric"].astype(str)
    charts, tables = [], []
    for direction in sorted(
        frame["direction"].dropna().unique(), key=lambda d: (d != "user_to_item", d)
    ):
        own = frame[frame["direction"] == direction]
        labels = own.drop_duplicates("label").sort_values(["metric", "k_num"])["label"].tolist()
        models = _model_order(own["model"].dropna().astype(str))
        table = own.pivot_table(index="model", columns="label", values="value", aggfunc="mean")
        series = [
            (
                m,
                [
                    float(table.at[m, lab])
                    if lab in table.columns and pd.notna(table.at[m, lab])
                    else None
                    for lab in labels
                ],
            )
            for m in models
        ]
        charts.append(
            bar_chart(
                labels,
                series,
                title=f"{direction}: ndcg / recall per model",
                y_label="value",
                value_labels=len(models) <= 4,
            )
        )
        shown = table.reindex(index=models, columns=labels).reset_index()
        tables.append(f"<h3>{_e(direction)}</h3>" + _table(shown, numeric=labels))
    body = (
        f'<div id="{plot_id}" class="plot">{"".join(charts)}</div>'
        f"<details><summary>Values</summary>{''.join(tables)}</details>"
    )
    return _section("Model metrics against baselines", what, body)


def calibration_section(con, schema: str, present: set[str]) -> str:
    plot_id = "plot-calibration"
    what = (
        "Share of scored pairs that did interact (observed) against the mean predicted "
        "score, per score bin. Points on the dashed diagonal are well calibrated."
    )
    if "calibration_curve" not in present:
        return _section("Calibration", what, _not_built(plot_id, ["calibration_curve"]))
    frame = read_table(con, schema, "calibration_curve")
    needed = {"mean_predicted", "observed_rate"}
    if not needed <= set(frame.columns) or frame.empty:
        return _section(
            "Calibration",
            what,
            _empty_note(
                plot_id, "calibration_curve has no rows (or lacks mean_predicted / observed_rate)."
            ),
        )
    order = ["bin"] if "bin" in frame.columns else ["mean_predicted"]
    groups = (
        [(str(name), part) for name, part in frame.groupby("model", sort=True)]
        if "model" in frame.columns
        else [("model", frame)]
    )
    series = []
    for name, part in groups:
        part = part.sort_values(order)
        series.append(
            (
                name,
                part["mean_predicted"].astype(float).tolist(),
                part["observed_rate"].astype(float).tolist(),
            )
        )
    chart = line_chart(
        series,
        title="Calibration curve",
        x_label="mean predicted score",
        y_label="observed interaction rate",
    )
    shown = [
        c for c in ("model", "bin", "mean_predicted", "observed_rate", "n") if c in frame.columns
    ]
    body = (
        f'<div id="{plot_id}" class="plot">{chart}</div><details><summary>Values</summary>'
        f"{_table(frame[shown], numeric=['mean_predicted', 'observed_rate', 'n'])}"
        "</details>"
    )
    return _section("Calibration", what, body)


def audience_section(con, schema: str, present: set[str]) -> str:
    plot_id = "plot-audience-size"
    what = (
        "Planned sends of this run per campaign; holdout users are chosen like everyone "
        "else but not sent, to measure lift."
    )
    if "notification_audience" not in present:
        return _section(
            "Audience size per campaign", what, _not_built(plot_id, ["notification_audience"])
        )
    frame = read_table(con, schema, "notification_audience")
    if "campaign_id" not in frame.columns or frame.empty:
        return _section(
            "Audience size per campaign",
            what,
            _empty_note(plot_id, "notification_audience is empty: this run plans no sends."),
        )
    holdout = (
        frame["is_holdout"].fillna(False).astype(bool)
        if "is_holdout" in frame.columns
        else pd.Series(False, index=frame.index)
    )
    frame = frame.assign(campaign_id=frame["campaign_id"].astype(str), holdout=holdout)
    summary = frame.groupby("campaign_id").agg(
        sends=("holdout", lambda s: int((~s).sum())),
        holdout=("holdout", "sum"),
        users=("user_id", "nunique") if "user_id" in frame.columns else ("holdout", "size"),
    )
    if "item_id" in frame.columns:
        summary["items"] = frame.groupby("campaign_id")["item_id"].nunique()
        summary["max_users_per_item"] = (
            frame.groupby(["campaign_id", "item_id"]).size().groupby("campaign_id").max()
        )
    if "channel" in frame.columns:
        summary["channel"] = frame.groupby("campaign_id")["channel"].first()
    if "stg_campaigns" in present:  # the campaigns the run planned (text columns)
        campaigns = read_table(con, schema, "stg_campaigns")
        if {"campaign_id", "audience_size"} <= set(campaigns.columns):
            summary["audience_size_per_item"] = pd.to_numeric(
                campaigns.set_index(campaigns["campaign_id"].astype(str))["audience_size"],
                errors="coerce",
            )
    summary = summary.sort_values("sends", ascending=False)
    groups = summary.index.tolist()
    chart = bar_chart(
        groups,
        [
            ("sent", summary["sends"].astype(float).tolist()),
            ("holdout", summary["holdout"].astype(float).tolist()),
        ],
        title="Planned sends per campaign",
        y_label="sends",
    )
    numeric = [c for c in summary.columns if c != "channel"]
    body = (
        f'<div id="{plot_id}" class="plot">{chart}</div>'
        f"{_table(summary.reset_index(), numeric=numeric)}"
    )
    return _section("Audience size per campaign", what, body)


def sends_per_user_section(
    con, schema: str, present: set[str], caps: Mapping[str, int], caps_origin: str, run_date
) -> str:
    plot_id = "plot-sends-per-user"
    what = (
        "For each user who gets a send in this run: the most sends on the channel within "
        "any rolling 7 days ending at one of this run's sends, counting the send history "
        "(<code>int_notification_sends</code>) and this run. The dashed line is the cap "
        f"({_e(caps_origin)}); every bar must stay left of it."
    )
    if "notification_audience" not in present:
        return _section(
            "Sends per user against the cap", what, _not_built(plot_id, ["notification_audience"])
        )
    audience = read_table(con, schema, "notification_audience")
    if not {"user_id", "channel"} <= set(audience.columns) or audience.empty:
        return _section(
            "Sends per user against the cap",
            what,
            _empty_note(plot_id, "notification_audience is empty: no sends."),
        )
    history = (
        read_table(
            con, schema, "int_notification_sends", ["user_id", "campaign_id", "channel", "sent_at"]
        )
        if "int_notification_sends" in present
        else None
    )
    counts = rolling_sends(audience, history, "channel", run_date)
    if counts.empty:
        return _section(
            "Sends per user against the cap",
            what,
            _empty_note(plot_id, "Every planned send is a holdout: nothing is sent."),
        )
    charts = []
    for channel in [c for c in CHANNELS if c in set(counts["channel"])] + sorted(
        set(counts["channel"]) - set(CHANNELS)
    ):
        own = counts[counts["channel"] == channel]["sends_7d"]
        cap = caps.get(channel)
        top = int(max(own.max(), (cap or 0) + 1))
        histogram = own.value_counts()
        groups = [str(k) for k in range(1, top + 1)]
        values = [float(histogram.get(k, 0)) for k in range(1, top + 1)]
        over = int((own > cap).sum()) if cap is not None else 0
        title = f"{channel}: users by sends in 7 days" + (f" ({over} over the cap)" if over else "")
        charts.append(
            bar_chart(
                groups,
                [("users", values)],
                title=title,
                y_label="users",
                vline_after=(cap - 1) if cap is not None else None,
                vline_label=f"cap {cap}",
                width=560,
                height=300,
            )
        )
    body = f'<div id="{plot_id}" class="plot row">{"".join(charts)}</div>'
    return _section("Sends per user against the cap", what, body)


def backtest_section(
    con, schema: str, present: set[str], caps: Mapping[str, int], weekly_cap: int | None
) -> str:
    plot_id = "plot-backtest"
    what = (
        "Weekly runs replayed over a past window (docs/evaluation.md): the project's configured "
        "rules against sending to everyone (carpet_bomb), to the most active users "
        "(heavy_users), to them under the same caps and send volume (heavy_users_capped) "
        "and to each item's top users with no cap (topk_no_allocation)."
    )
    if "campaign_backtest" not in present:
        return _section(
            "Backtest: policies side by side", what, _not_built(plot_id, ["campaign_backtest"])
        )
    frame = read_table(con, schema, "campaign_backtest")
    if not {"policy", "metric", "value"} <= set(frame.columns) or frame.empty:
        return _section(
            "Backtest: policies side by side",
            what,
            _empty_note(plot_id, "campaign_backtest has no rows yet."),
        )
    table = frame.pivot_table(index="policy", columns="metric", values="value", aggfunc="first")
    policies = [p for p in POLICIES if p in table.index] + sorted(set(table.index) - set(POLICIES))
    table = table.reindex(policies)

    def column(metric: str) -> list[float | None]:
        if metric not in table.columns:
            return [None] * len(policies)
        return [float(v) if pd.notna(v) else None for v in table[metric]]

    cap = weekly_cap if weekly_cap is not None else sum(caps.get(c, 0) for c in CHANNELS)
    charts = [
        bar_chart(
            policies,
            [("conversions per send", column("conversions_per_send"))],
            title="Conversions per send",
            y_label="conversions / send",
            width=560,
            height=320,
        ),
        bar_chart(
            policies,
            [("max sends per user-week", column("max_sends_per_user_week"))],
            title="Most sends to one user in a week",
            y_label="sends",
            ref_value=float(cap),
            ref_label=f"cap {cap} (all channels)",
            width=560,
            height=320,
        ),
    ]
    body = (
        f'<div id="{plot_id}" class="plot row">{"".join(charts)}</div>'
        f"{_table(table.reset_index(), numeric=list(table.columns))}"
    )
    return _section("Backtest: policies side by side", what, body)


def send_times_section(con, schema: str, present: set[str]) -> str:
    plot_id = "plot-send-times"
    title = "When to send"
    what = (
        "Users by the local hour their first send of a run aims at (learned from when they "
        "act; rule <code>send_time</code>), and how much of the test window's activity the "
        "chosen hours catch against the population's hour (model_evaluation, send_time)."
    )
    if "user_send_times" not in present:
        return _section(title, what, _not_built(plot_id, ["user_send_times"]))
    frame = read_table(con, schema, "user_send_times")
    if not {"weekday_hour", "weekend_hour"} <= set(frame.columns) or frame.empty:
        return _section(title, what, _empty_note(plot_id, "user_send_times has no rows."))
    hours = list(range(24))
    grid = [
        frame[column].value_counts().reindex(hours, fill_value=0).astype(float).tolist()
        for column in ("weekday_hour", "weekend_hour")
    ]
    chart = heatmap_chart(
        ["weekdays", "weekends"],
        [f"{h:02d}h" for h in hours],
        grid,
        title="Users per chosen send hour (local time)",
        value_label="users",
    )
    body = f'<div id="{plot_id}" class="plot">{chart}</div>'
    if "send_time_basis" in frame.columns:
        basis = frame["send_time_basis"].value_counts().rename_axis("basis").reset_index()
        body += _table(basis, numeric=["count"])
    if "model_evaluation" in present:
        metrics = read_table(con, schema, "model_evaluation")
        if "direction" in metrics.columns:
            capture = metrics[metrics["direction"].astype(str) == "send_time"]
            if not capture.empty:
                table = capture.pivot_table(index="model", columns="k", values="value")
                table.columns = [f"within ±{int(k)} h" for k in table.columns]
                body += _table(table.reset_index(), numeric=list(table.columns))
    return _section(title, what, body)


def lift_section(con, schema: str, present: set[str]) -> str:
    plot_id = "plot-lift"
    title = "Lift against the holdout"
    what = (
        "Conversion rate of the users sent minus that of the holdout users the same rules "
        "planned, per campaign, channel and week, with its 95 % interval (Newcombe); an "
        "interval across 0 is no evidence either way (campaign_lift)."
    )
    if "campaign_lift" not in present:
        return _section(title, what, _not_built(plot_id, ["campaign_lift"]))
    frame = read_table(con, schema, "campaign_lift")
    needed = {"campaign_id", "channel", "week_start", "halo_lift_abs"}
    if not needed <= set(frame.columns) or frame.empty:
        return _section(title, what, _empty_note(plot_id, "campaign_lift has no rows yet."))
    frame = frame.sort_values(["week_start", "campaign_id", "channel"])
    # the item lift where measured (item pushes), else the halo (digests)
    use_item = frame["lift_abs"].notna() if "lift_abs" in frame.columns else False
    value = frame["lift_abs"].where(use_item, frame["halo_lift_abs"])
    lower = frame["lift_abs_lower"].where(use_item, frame["halo_lift_abs_lower"])
    upper = frame["lift_abs_upper"].where(use_item, frame["halo_lift_abs_upper"])
    labels = [
        f"{c} · {ch} · {pd.Timestamp(w):%Y-%m-%d}" + ("" if item else " (halo)")
        for c, ch, w, item in zip(
            frame["campaign_id"], frame["channel"], frame["week_start"], use_item, strict=True
        )
    ]
    chart = interval_chart(
        labels,
        value.astype(float).tolist(),
        lower.astype(float).tolist(),
        upper.astype(float).tolist(),
        title="Lift in conversion rate (sent - holdout)",
        y_label="lift",
    )
    shown = [
        c
        for c in (
            "campaign_id", "channel", "week_start", "users_treated", "users_holdout",
            "rate_treated", "rate_holdout", "lift_abs", "lift_abs_lower", "lift_abs_upper",
            "halo_lift_abs", "is_complete", "reason",
        )
        if c in frame.columns
    ]  # fmt: skip
    numeric = [c for c in shown if c not in ("campaign_id", "channel", "week_start", "reason")]
    if "cumulative_lift_abs" in frame.columns:  # since launch: narrows as the weeks add up
        series = [
            (
                f"{campaign} · {channel}",
                [f"{pd.Timestamp(w):%Y-%m-%d}" for w in group["week_start"]],
                group["cumulative_lift_abs"].astype(float).tolist(),
                group["cumulative_lift_abs_lower"].astype(float).tolist(),
                group["cumulative_lift_abs_upper"].astype(float).tolist(),
            )
            for (campaign, channel), group in frame.groupby(["campaign_id", "channel"])
            if group["cumulative_lift_abs"].notna().any()
        ]
        if series:
            chart += band_chart(
                series,
                title="Cumulative lift since the campaign's first week (95 % interval)",
                x_label="week of planning",
                y_label="lift",
            )
    body = (
        f'<div id="{plot_id}" class="plot">{chart}</div>'
        f"<details><summary>Values</summary>{_table(frame[shown], numeric=numeric)}</details>"
    )
    return _section(title, what, body)


def tables_section(con, schema: str, present: set[str]) -> str:
    counts = []
    for name in MAIN_OUTPUTS:
        if name in present:
            (rows,) = con.execute(f'select count(*) from "{schema}"."{name}"').fetchone()
            counts.append((name, f"{rows:,}"))
        else:
            counts.append((name, "not built yet"))
    parts = [
        "<div><h3>Rows per table</h3>"
        + _table(pd.DataFrame(counts, columns=["table", "rows"]))
        + "</div>"
    ]
    if "rejected_rows" in present:
        rejected = con.execute(
            f'select source_name as source, rejection_reason as reason, count(*) as "rows" '
            f'from "{schema}".rejected_rows group by all order by source, "rows" desc'
        ).df()
        inner = (
            _table(rejected, numeric=["rows"])
            if len(rejected)
            else '<p class="note">No raw row was rejected.</p>'
        )
    else:
        inner = (
            '<p class="note">Not built yet: <code>rejected_rows</code> is not in this database.</p>'
        )
    parts.append("<div><h3>Rejected raw rows per reason</h3>" + inner + "</div>")
    return _section(
        "Tables",
        "What the run wrote, and every raw row staging did not keep (reasons: docs/raw_data.md).",
        f'<div class="tables">{"".join(parts)}</div>',
    )


def render_report(con, settings: Settings | None = None, source: str = "") -> str:
    """The whole HTML page for the database behind ``con``."""
    settings = settings or Settings()
    schema = settings.schema
    present = list_tables(con, schema)
    run_date, run_origin = resolve_run_date(con, settings, present)
    caps, caps_origin = resolve_caps(con, settings, present)
    generated = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    run_text = (
        f"run date {run_date:%Y-%m-%d %H:%M} ({run_origin})"
        if run_date is not None
        else "run date unknown"
    )
    sections = [
        model_metrics_section(con, schema, present),
        calibration_section(con, schema, present),
        audience_section(con, schema, present),
        sends_per_user_section(con, schema, present, caps, caps_origin, run_date),
        backtest_section(con, schema, present, caps, settings.max_sends_per_user_week),
        send_times_section(con, schema, present),
        lift_section(con, schema, present),
        tables_section(con, schema, present),
    ]
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>proactive_recs run report</title>"
        f"<style>{CSS}</style>"
        f'<script type="text/javascript">{plotly_js()}</script></head><body>'
        "<header><h1>proactive_recs run report</h1>"
        f"<p>{_e(source)} · schema {_e(schema)} · {_e(run_text)} · generated "
        f"{_e(generated)}</p></header>"
        f"<main>{''.join(sections)}</main></body></html>\n"
    )


def write_report(duckdb_path, out, settings: Settings | None = None) -> Path:
    """Render the report of the DuckDB file into ``out`` (directories created)."""
    with duckdb.connect(str(duckdb_path), read_only=True) as con:
        page = render_report(con, settings, source=str(duckdb_path))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m proactive_recs_tools.report", description=__doc__.splitlines()[0]
    )
    add_settings_arguments(parser)
    parser.add_argument("--out", default="target/report.html")
    args = parser.parse_args(argv)
    if not Path(args.duckdb).exists():
        print(
            f"cannot open {args.duckdb}: no such DuckDB file (run dbt build first)", file=sys.stderr
        )
        return 2
    try:
        settings = settings_from_args(args)
        out = write_report(args.duckdb, args.out, settings)
    except (OSError, ValueError, duckdb.Error) as exc:
        print(f"cannot write the report: {exc}", file=sys.stderr)
        return 2
    print(f"report: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
