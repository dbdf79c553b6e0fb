"""What a run fell back on, so that nobody has to read logs to find out (``run_diagnostics``).

Each row is one thing that did not go as configured: a user whose time zone the package did
not understand (quiet hours then use the default zone), scores served by a fallback instead
of the trained model, a daily run that had to train the recommender because no usable weekly
stages were stored. dbt tests with
severity ``warn`` on the table make each kind show in ``dbt build``'s output.
"""

from __future__ import annotations

import pandas as pd

from proactive_recs.notifications.frequency import is_known_timezone

COLUMNS = ["diagnostic", "subject_type", "subject_id", "raw_value", "detail", "n_rows"]


def timezone_fallbacks(users: pd.DataFrame, default_timezone: str) -> pd.DataFrame:
    """One row per user whose non-blank time zone does not resolve (the default is used)."""
    raw = users["timezone"].astype("string").str.strip().fillna("")
    # a handful of distinct zones among many users: each is resolved once
    verdict = {text: text == "" or is_known_timezone(text) for text in raw.unique()}
    known = raw.map(verdict).astype(bool)
    unknown = users[~known.to_numpy()]
    return pd.DataFrame(
        {
            "diagnostic": "timezone_fallback",
            "subject_type": "user",
            "subject_id": unknown["user_id"].astype(str).to_numpy(),
            "raw_value": unknown["timezone"].astype(str).to_numpy(),
            "detail": f"not an IANA name, offset or known abbreviation: {default_timezone} used",
            "n_rows": 1,
        },
        columns=COLUMNS,
    )


def score_fallbacks(scores: pd.DataFrame, direction: str) -> pd.DataFrame:
    """One row per served stage with fallback rows in a score table (popularity, heuristics)."""
    if scores.empty or "is_fallback" not in scores:
        return pd.DataFrame(columns=COLUMNS)
    fallback = scores[scores["is_fallback"].eq(True)]
    if fallback.empty:
        return pd.DataFrame(columns=COLUMNS)
    basis = fallback["basis"] if "basis" in fallback else pd.Series("fallback", fallback.index)
    counts = basis.fillna("fallback").value_counts().sort_index()
    return pd.DataFrame(
        {
            "diagnostic": "score_fallback",
            "subject_type": "table",
            "subject_id": direction,
            "raw_value": counts.index.astype(str),
            "detail": "rows served by a fallback instead of the trained model (basis)",
            "n_rows": counts.to_numpy(),
        },
        columns=COLUMNS,
    )


def stages_trained_in_run(parameters: pd.DataFrame | None) -> pd.DataFrame:
    """One row when the run's recommender did not reuse the weekly fit's trained stages
    (model_parameters 'stages'): it tuned and trained everything itself, which costs most of
    a fit. The raw value says why (no weekly run yet, other settings, ...)."""
    if parameters is None or parameters.empty:
        return pd.DataFrame(columns=COLUMNS)
    values = parameters.set_index("parameter")["value"].astype(str)
    used = values.get("stages")
    if used is None or "reused" in used:
        return pd.DataFrame(columns=COLUMNS)
    lookup = values.get("stages_lookup", "")
    return pd.DataFrame(
        {
            "diagnostic": ["stages_trained_in_run"],
            "subject_type": ["model"],
            "subject_id": ["recommendations"],
            "raw_value": [f"{used}; {lookup}" if lookup else used],
            "detail": [
                "no usable weekly stages (recommender_stages): this run tuned and trained the "
                "recommender itself; run the weekly selector to make daily runs refit only MF"
            ],
            "n_rows": [1],
        },
        columns=COLUMNS,
    )


def run_diagnostics(
    users: pd.DataFrame,
    user_item_scores: pd.DataFrame,
    item_user_scores: pd.DataFrame,
    default_timezone: str = "UTC",
    parameters: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Every diagnostic of the run, sorted, with fixed column types."""
    parts = [
        timezone_fallbacks(users, default_timezone),
        score_fallbacks(user_item_scores, "user_item_scores"),
        score_fallbacks(item_user_scores, "item_user_scores"),
        stages_trained_in_run(parameters),
    ]
    # empty parts left out of the concat (pandas warns about their all-NA columns)
    parts = [p for p in parts if len(p)] or [pd.DataFrame(columns=COLUMNS)]
    out = pd.concat(parts, ignore_index=True)
    for column in COLUMNS[:-1]:
        out[column] = out[column].astype("string")
    out["n_rows"] = out["n_rows"].astype("int64")
    return out.sort_values(["diagnostic", "subject_id", "raw_value"]).reset_index(drop=True)
